"""``precision="bfloat16"``: the hidden layers' products run in bfloat16, the output layer and everything the
optimizer sees stay float32, and a learner trains with the same seed to the same numbers.

Which bug each test catches: products left in float32 (the sharp cancellation test), an output layer rounded
to bfloat16 (Q-values exact against a float32 head on the same activations), a cast that cuts the gradient
(gradients against the float32 network's), a path of :class:`TwinCritics` that skips the cast (the same sharp
test through each path), a learner that ignores ``cfg.precision``.
"""
import pytest
import torch

from pgm_marl.config import PRECISIONS, TrainConfig
from pgm_marl.envs import make_env
from pgm_marl.errors import ConfigError
from pgm_marl.networks import PRECISIONS as DTYPES
from pgm_marl.networks import Actors, BatchedLinear, TwinCritics
from pgm_marl.replay import ReplayBuffer
from pgm_marl.learner import make_learner


def test_the_config_and_the_networks_accept_the_same_names():
    assert tuple(DTYPES) == PRECISIONS
    with pytest.raises(ConfigError, match=r"^precision must be one of float32, bfloat16, got 'fp16'$"):
        TrainConfig(precision="fp16")
    with pytest.raises(ValueError, match="precision must be one of float32, bfloat16, got 'half'"):
        Actors((3,), (2,), 8, precision="half")


def test_bfloat16_products_round_their_inputs():
    """x = (1 + 2^-10, -1), w = (1, 1): float32 gives 2^-10, bfloat16 rounds 1 + 2^-10 to 1 and gives 0."""
    layer = BatchedLinear(1, 2, 16, dtype=torch.bfloat16)
    with torch.no_grad():
        layer.weight.fill_(1.0)
        layer.bias.zero_()
    x = torch.tensor([[[1 + 2 ** -10, -1.0]]])
    out = layer(x)
    assert out.dtype == torch.bfloat16 and torch.all(out == 0)
    plain = BatchedLinear(1, 2, 16)
    plain.load_state_dict(layer.state_dict())
    assert torch.all(plain(x) == 2 ** -10)


@pytest.mark.parametrize("path", ["shared", "per_agent"])
def test_both_critic_paths_round_the_first_layer(path):
    """State (1 + 2^-10, -1) into a first layer of ones: float32 leaves 2^-10 per unit (Q = 2^-6 through layers
    of ones), bfloat16 rounds the input to (1, -1) and gives Q = 0, on the shared path and on the per-agent
    path (which computes the first layer itself)."""
    qs = {}
    for precision in ("float32", "bfloat16"):
        critic = TwinCritics(2, (1, 1), 4, precision=precision)
        with torch.no_grad():
            for layer in critic.net.layers:
                layer.weight.fill_(1.0)
                layer.bias.zero_()
            critic.net.layers[0].weight[:, 2:] = 0.0  # the action part
        state = torch.tensor([[1 + 2 ** -10, -1.0]])
        joint = torch.zeros(1, 2).expand(2, 1, 2) if path == "shared" else torch.zeros(2, 1, 2)
        calls = []
        critic._per_agent = lambda *args, _f=critic._per_agent: calls.append(1) or _f(*args)
        qs[precision] = torch.cat(critic(state, joint))
        assert len(calls) == (path == "per_agent")
    assert torch.all(qs["float32"] == 2 ** -6) and torch.all(qs["bfloat16"] == 0)


def _critics(precision):
    torch.manual_seed(0)
    return TwinCritics(10, (5, 3, 4), 32, precision=precision)


def _head_input_and_output(critic):
    """A hook on the output layer: what it received and what it returned, each call."""
    seen = []
    critic.net.layers[-1].register_forward_hook(lambda mod, args, out: seen.append((args[0], out)))
    return seen


@pytest.mark.parametrize("path", ["shared", "per_agent"])
def test_bfloat16_critics_keep_a_float32_output_layer_and_their_gradients(path):
    n, batch = 3, 256
    low, full = _critics("bfloat16"), _critics("float32")
    full.load_state_dict(low.state_dict())
    gen = torch.Generator().manual_seed(1)
    state = torch.randn(batch, 10, generator=gen)
    if path == "shared":
        joint = torch.randn(batch, 12, generator=gen).expand(n, batch, 12)
    else:
        joint = torch.randn(n, batch, 12, generator=gen)
    seen = _head_input_and_output(low)
    got = torch.cat(low(state, joint))
    (hidden, out), = seen
    assert hidden.dtype == torch.bfloat16 and got.dtype == out.dtype == torch.float32
    head = low.net.layers[-1]
    torch.testing.assert_close(out, torch.bmm(hidden.float(), head.weight) + head.bias, rtol=1e-6, atol=1e-6)
    want = torch.cat(full(state, joint))
    err = (got - want).abs().max() / want.abs().max()
    assert 1e-5 < err < 3e-2, f"relative difference to float32 {err:.2e}: not bfloat16-sized"
    weights = torch.randn(got.shape, generator=gen)
    for a, b in zip(torch.autograd.grad((got * weights).sum(), list(low.parameters())),
                    torch.autograd.grad((want * weights).sum(), list(full.parameters()))):
        assert a.dtype == torch.float32
        cosine = torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0)
        assert cosine > 0.99, f"gradient cosine {cosine:.4f} against float32"


def test_bfloat16_actors_give_float32_logits():
    torch.manual_seed(0)
    low, full = Actors((3, 5), (2, 4), 16, precision="bfloat16"), Actors((3, 5), (2, 4), 16)
    full.load_state_dict(low.state_dict())
    obs = torch.randn(2, 64, 5)
    got, want = low(obs), full(obs)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=0.05, atol=0.05)
    assert not torch.equal(got, want)


def _update_numbers(precision):
    _, spec = make_env("cooperative_navigation")
    cfg = TrainConfig(task="cooperative_navigation", algo="masac", batch_size=64, hidden=32, precision=precision,
                      progress=False, tensorboard=False, backend="torch")
    learner = make_learner(spec, cfg)
    gen = torch.Generator().manual_seed(0)
    buffer = ReplayBuffer(256, spec.state_dim, spec.n_agents)
    buffer.add(torch.randn(256, spec.state_dim, generator=gen), torch.randint(0, 5, (256, 3), generator=gen),
               torch.randn(256, 3, generator=gen), torch.randn(256, spec.state_dim, generator=gen), torch.zeros(256))
    out = [learner.update(buffer.sample(64, gen)) for _ in range(3)]
    return out, learner


def test_a_bfloat16_learner_repeats_itself_and_differs_from_float32():
    first, learner = _update_numbers("bfloat16")
    again, _ = _update_numbers("bfloat16")
    full, _ = _update_numbers("float32")
    assert first == again
    assert first[-1]["loss/critic"] != full[-1]["loss/critic"]
    assert all(abs(first[-1][k] - full[-1][k]) <= 0.05 * abs(full[-1][k]) + 0.05 for k in full[-1])
    assert all(p.dtype == torch.float32 for p in learner.critic.parameters())
    assert all(s["exp_avg"].dtype == torch.float32 for s in learner.optimizers["loss/critic"].state.values())


def test_the_attention_critic_computes_its_head_in_bfloat16():
    """``AttentionCritics(precision="bfloat16")``: the head's hidden layer (written as two products on e_i and the
    attention summary, without concatenating them) computes in bfloat16 and its output layer in float32: float32
    Q-values close to the float32 critic's on the same parameters, not equal to them, with float32 gradients."""
    from pgm_marl.critics import AttentionCritics

    torch.manual_seed(0)
    low, full = (AttentionCritics((4, 4, 4), [3] * 3, hidden=16, precision=p) for p in ("bfloat16", "float32"))
    full.load_state_dict(low.state_dict())
    state = torch.randn(32, 12)
    joint = torch.nn.functional.one_hot(torch.randint(3, (32, 3)), 3).float().view(32, 9).expand(3, 32, 9)
    q_low, q_full = torch.cat(low(state, joint)), torch.cat(full(state, joint))
    assert q_low.dtype == torch.float32 and not torch.equal(q_low, q_full)
    torch.testing.assert_close(q_low, q_full, atol=0.05, rtol=0.05)
    q_low.sum().backward()
    assert low.head.layers[0].weight.grad.dtype == torch.float32
