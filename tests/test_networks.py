"""The fast paths of the batched networks give the same values and gradients as one plain MLP per agent.

Each path of :class:`~pgm_marl.networks.TwinCritics` (shared joint action: one GEMM for all 2n networks;
per-agent joint actions: split first layer; extra batch dims: the exact estimator) and the narrow output
layer (:class:`~pgm_marl.networks._NarrowLinear`) are checked in float64 against plain per-network products on
the same parameter tensors.
"""
import pytest
import torch

from pgm_marl.networks import Actors, BatchedLinear, TwinCritics, _NarrowLinear, polyak_update


@pytest.fixture(autouse=True)
def _float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _mlp(net, k, x):
    """Network ``k`` of a BatchedMLP, one plain product per layer, on the same parameter tensors."""
    for j, layer in enumerate(net.layers):
        x = x @ layer.weight[k] + layer.bias[k, 0]
        x = torch.relu(x) if j + 1 < len(net.layers) else x
    return x


def _reference_q(critic, state, joint):
    """``[2n, *batch]`` from per-network modules on ``cat(state, joint_k)``."""
    out = []
    for k in range(2 * critic.n):
        j = joint[k % critic.n]
        x = torch.cat([state.expand(j.shape[:-1] + state.shape[-1:]), j], -1)
        out.append(_mlp(critic.net, k, x).squeeze(-1))
    return torch.stack(out)


@pytest.mark.parametrize("path", ["shared", "per_agent", "extra_batch"])
def test_twin_critic_paths_match_per_agent_modules_in_value_and_gradient(path):
    torch.manual_seed(0)
    n, dims, d_state, batch = 3, (5, 3, 4), 10, 9
    critic = TwinCritics(d_state, dims, 16)
    state = torch.randn(batch, d_state)
    if path == "shared":
        base = torch.randn(batch, sum(dims), requires_grad=True)
        joint = base.expand(n, batch, sum(dims))
    elif path == "per_agent":
        base = joint = torch.randn(n, batch, sum(dims), requires_grad=True)
    else:  # [n, candidates, B, sum A]
        base = joint = torch.randn(n, 4, batch, sum(dims), requires_grad=True)
    q1, q2 = critic(state, joint)
    got = torch.cat([q1, q2])
    weights = torch.randn_like(got)
    grads = torch.autograd.grad((got * weights).sum(), [base, *critic.parameters()])
    want = _reference_q(critic, state, joint)
    ref_grads = torch.autograd.grad((want * weights).sum(), [base, *critic.parameters()])
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("k", [1, 5])
def test_narrow_output_layer_gradcheck(k):
    torch.manual_seed(1)
    x = torch.randn(3, 7, 6, requires_grad=True)
    w = torch.randn(3, 6, k, requires_grad=True)
    b = torch.randn(3, 1, k, requires_grad=True)
    torch.testing.assert_close(_NarrowLinear.apply(x, w, b), torch.baddbmm(b, x, w))
    assert torch.autograd.gradcheck(_NarrowLinear.apply, (x, w, b))


def test_shared_input_linear_equals_per_network_products():
    torch.manual_seed(2)
    layer = BatchedLinear(4, 6, 16)
    x = torch.randn(5, 6)
    torch.testing.assert_close(layer(x, shared=True), torch.baddbmm(layer.bias, x.expand(4, 5, 6), layer.weight))


def test_actors_gradients_match_per_agent_modules():
    torch.manual_seed(3)
    actors = Actors((3, 5), (2, 4), 16)
    state = torch.randn(8, 8)
    logits = actors(actors.observations(state))
    w = torch.randn_like(logits)
    grads = torch.autograd.grad((logits * w).sum(), list(actors.parameters()))
    ref = []
    for k, (start, d_obs, d_act) in enumerate(((0, 3, 2), (3, 5, 4))):
        obs = torch.cat([state[:, start:start + d_obs], torch.zeros(8, 5 - d_obs)], -1)
        ref.append((_mlp(actors.net, k, obs)[:, :d_act] * w[k, :, :d_act]).sum())
    ref_grads = torch.autograd.grad(sum(ref), list(actors.parameters()))
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-10)


def test_polyak_update_moves_targets_by_tau():
    torch.manual_seed(4)
    online, target = TwinCritics(4, (2, 2), 8), TwinCritics(4, (2, 2), 8)
    before = [t.detach().clone() for t in target.parameters()]
    polyak_update(target, online, 0.25)
    for t, b, p in zip(target.parameters(), before, online.parameters()):
        torch.testing.assert_close(t, 0.75 * b + 0.25 * p)
