"""Inferred opponents (``others="inferred"``, Lowe et al. 2017, section 4.2): agent i's model holds rho_i^j for pi_j.

Measured (this file's settings): with rho = pi every loss equals masac's to 1e-6 (max abs difference of the
losses about 1e-7: the critic is queried per agent instead of once for all); on a one-step tabular game with the
policies frozen, rho_i^j fitted by maximum likelihood (entropy weight 1e-3) reaches KL(pi_j || rho_i^j) below
1e-3 (max over states and pairs); checkpoint and resume are bit-identical.
"""
import dataclasses
from types import SimpleNamespace

import pytest
import torch

from pgm_marl.config import TrainConfig
from pgm_marl.envs import make_env
from pgm_marl.errors import UserError
from pgm_marl.inference.variants import MASAC, PRESETS, Algorithm
from pgm_marl.learner import Learner
from pgm_marl.models.tabular import TabularMarkovGame
from pgm_marl.replay import Batch
from pgm_marl.train import train
from tabular_learning import collect
from tabular_others import tabular_learner

pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(task, algo, hidden=16):
    return SimpleNamespace(algo=algo, seed=0, hidden=hidden, precision="float32", task=task, gamma=0.95, alpha=None,
                           lr=0.01, tau=0.01, batch_size=32, buffer_size=100, learning_starts=10, update_every=10,
                           replay_dtype="float32", num_envs=1, max_cycles=25)


def _batch(spec, spaces, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    if spaces.all_discrete:
        actions = torch.stack([torch.randint(0, d, (size,), generator=g) for d in spec.action_counts], -1)
    else:
        actions = torch.rand(size, spaces.storage_width, generator=g)
    return Batch(torch.randn(size, spec.state_dim, generator=g), actions, -torch.rand(size, spec.n_agents, generator=g),
                 torch.randn(size, spec.state_dim, generator=g), (torch.rand(size, generator=g) < 0.2).float())


def _rho_is_pi(learner):
    """Every rho_e^j (and its target) set to agent j's actor (and its target)."""
    others = learner.others
    for rho, actors in ((others.opponents, learner.actors), (others.target_opponents, learner.target_actors)):
        with torch.no_grad():
            for r_layer, a_layer in zip(rho.net.layers, actors.net.layers):
                for k, (_, j) in enumerate(rho.pairs):
                    r_layer.weight[k].copy_(a_layer.weight[j])
                    r_layer.bias[k].copy_(a_layer.bias[j])


@pytest.mark.parametrize("task,algo,kw", [
    ("cooperative_navigation", "masac-inferred", {}),
    ("predator_prey", "predators=masac-inferred,prey=masac-exact", {}),
    ("predator_prey", "predators=maddpg-inferred,prey=masac-inferred", {}),
    ("cooperative_navigation", "masac-inferred", {"continuous_actions": True}),
])
def test_with_rho_equal_to_pi_every_loss_is_masacs(task, algo, kw, monkeypatch):
    """rho_i^j = pi_j makes agent i's model that of eq. 2: losses and gradients equal those of the algorithm with
    others="given" on the same draws (rho's rows use the random numbers of j's own draw)."""
    from pgm_marl.inference import variants
    monkeypatch.setattr(variants, "PRESETS", {**PRESETS, "maddpg-inferred": dataclasses.replace(
        PRESETS["maddpg"], name="maddpg-inferred", others="inferred")})
    spec = make_env(task, **kw)[1]
    given, inferred = (Learner(spec, _cfg(task, a)) for a in (algo.replace("-inferred", ""), algo))
    for name in ("actors", "critic", "target_actors", "target_critic"):  # rho is created after them
        for a, b in zip(getattr(given, name).parameters(), getattr(inferred, name).parameters()):
            assert torch.equal(a, b), name
    _rho_is_pi(inferred)
    batch = _batch(spec, given.spaces)
    torch.manual_seed(5)
    a = given.loss(batch)
    torch.manual_seed(5)
    b = inferred.loss(batch)
    for key in a:
        torch.testing.assert_close(b[key], a[key], atol=1e-6, rtol=1e-6, msg=key)
    for loss, group in (("loss/actor", "actors"), ("loss/critic", "critic")):
        ga = torch.autograd.grad(a[loss], list(getattr(given, group).parameters()), allow_unused=True)
        gb = torch.autograd.grad(b[loss], list(getattr(inferred, group).parameters()), allow_unused=True)
        for x, y in zip(ga, gb):
            if x is not None:
                torch.testing.assert_close(y, x, atol=1e-6, rtol=1e-5, msg=loss)
    assert set(b) - set(a) >= {"loss/opponents", "opponents/nll"}


@pytest.mark.parametrize("algo", ["masac-inferred", "masac-optimistic"])
def test_losses_reach_only_their_own_networks(algo):
    """Actor loss: the actors (and q_i, which it trains) only, no gradient to rho, critics or targets; opponents'
    loss: rho only; critic loss: the critic only."""
    spec = make_env("cooperative_communication")[1]
    learner = Learner(spec, _cfg("cooperative_communication", algo))
    losses = learner.loss(_batch(spec, learner.spaces))
    others = learner.others
    targets = [learner.target_actors, learner.target_critic, others.target_opponents, others.target_imagined]
    assert not any(p.requires_grad for m in targets if m is not None for p in m.parameters())  # no gradient at all
    groups = {"actors": learner.actors, "critic": learner.critic, "rho": others.opponents, "q": others.imagined}
    params = {k: list(m.parameters()) for k, m in groups.items() if m is not None}
    actor = {"actors", "q"} if others.imagined is not None else {"actors"}
    expected = {"loss/actor": actor, "loss/critic": {"critic"}, "loss/opponents": {"rho"}}
    for loss, reached in expected.items():
        for name, ps in params.items():
            grads = torch.autograd.grad(losses[loss], ps, retain_graph=True, allow_unused=True)
            touched = any(g is not None and bool(g.abs().sum() > 0) for g in grads)
            assert touched == (name in reached), (loss, name)


def test_rho_converges_to_fixed_policies():
    """Maximum likelihood of the actions of fixed policies (the learner's opponents' loss and optimizer on fresh
    batches) recovers them: KL(pi_j || rho_i^j) < 1e-3 (measured 1.7e-4) on a one-step tabular game; the logged
    diagnostic is that KL on the batch's states."""
    game = TabularMarkovGame.random(2, (3, 2), 1, seed=1)
    cfg = TrainConfig(task="tabular", algo="masac-inferred", seed=0, lr=0.1, gamma=0.5, tau=0.1, alpha=0.3)
    learner = tabular_learner(game, cfg)
    with torch.no_grad():
        learner.actors.logits.copy_(learner.spaces.pad(2 * torch.randn(learner.actors.logits.shape,
                                                                       generator=torch.Generator().manual_seed(3))))
    generator, optimizer = torch.Generator().manual_seed(0), learner.optimizers["loss/opponents"]
    for step in range(300):
        if step == 200:  # (less Adam noise at the end)
            optimizer.param_groups[0]["lr"] = 0.01
        loss, _, _ = learner.others.opponent_loss(learner.actors, collect(game, learner, 1024, generator))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    policies, others = learner.actors.policies(), learner.others
    for (e, j), k in others.pair_index.items():
        rho = others.opponents.logits[k, :, : game.action_sizes[j]].detach().softmax(-1)
        kl = (policies[j] * (policies[j].log() - rho.log())).sum(-1).max().item()
        assert kl < 1e-3, f"rho_{e}^{j}: KL = {kl:.2e}"
    state = torch.eye(2)[[0, 1, 1]]
    diag = learner.loss(Batch(state, torch.zeros(3, 2, dtype=torch.long), torch.zeros(3, 2), state, torch.ones(3)))
    for (e, j), k in others.pair_index.items():
        rho = others.opponents.logits[k, [0, 1, 1], : game.action_sizes[j]].detach().log_softmax(-1)
        pi = policies[j][[0, 1, 1]]
        by_hand = (pi * (pi.log() - rho)).sum(-1).mean()
        torch.testing.assert_close(diag[f"opponents/kl/agent_{e}"], by_hand.float(), atol=1e-6, rtol=1e-5)


TINY = dict(task="cooperative_navigation", episodes=6, eval_every=2, eval_episodes=3, batch_size=32,
            learning_starts=64, update_every=10, hidden=16, buffer_size=500, checkpoint_every=2, progress=False,
            tensorboard=False, num_envs=1, backend="torch")


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return torch.equal(a, b) if torch.is_tensor(a) else a == b


@pytest.mark.parametrize("algo", ["masac-inferred", "masac-optimistic"])
def test_resume_is_bit_identical(tmp_path, algo):
    """A run cut at a checkpoint and resumed ends where the uninterrupted one does: rho, q, their targets and
    their optimizers are in the checkpoint (loaded with weights_only=True)."""
    tiny = {**TINY, "algo": algo}
    straight = train(TrainConfig(**tiny, out=str(tmp_path / "straight")))
    train(TrainConfig(**{**tiny, "episodes": 4}, out=str(tmp_path / "cut")))
    resumed = train(TrainConfig(**tiny, out=str(tmp_path / "cut")), resume=True)
    a, b = (torch.load(run / "checkpoint.pt", weights_only=True) for run in (straight, resumed))
    assert "others" in a["learner"] and "loss/opponents" in a["learner"]["optimizers"]
    assert _same(a["learner"], b["learner"]) and _same(a["rng"], b["rng"])
    def rows(run):  # metrics.csv without wall_seconds (the third column)
        return [[c for k, c in enumerate(r.split(",")) if k != 2] for r in (run / "metrics.csv").read_text().split()]
    assert rows(straight) == rows(resumed)


def test_bad_settings_are_refused_in_one_line():
    with pytest.raises(ValueError, match="others='psychic' is not valid; accepted: given, inferred"):
        Algorithm("x", others="psychic")
    with pytest.raises(ValueError, match="opponent_entropy=-1 is not valid"):
        Algorithm("x", others="inferred", opponent_entropy=-1)
    with pytest.raises(ValueError, match="guide='optimistic' with resample='self' is not implemented"):
        Algorithm("x", guide="optimistic", resample="self")
    with pytest.raises(ValueError, match="guide='optimistic' with estimator='exact'"):
        Algorithm("x", guide="optimistic", estimator="exact")
    with pytest.raises(ValueError, match="others='inferred' needs a critic"):
        Algorithm("x", others="inferred", estimator="score", critic=False)
    spec = make_env("predator_prey")[1]
    given = dataclasses.replace(MASAC, name="optimistic-given", guide="optimistic")  # prior: pi_j itself
    with pytest.raises(UserError, match="agent 'agent_0' .* acts by the optimistic guide.*accepted: others='inferred'"):
        Learner(spec, _cfg("predator_prey", "x"), algorithms=[given, MASAC, MASAC, PRESETS["masac-optimistic"]])
    Learner(spec, _cfg("predator_prey", "x"), algorithms=[given, MASAC, MASAC, MASAC])  # masac's pi_j: a density
    with pytest.raises(UserError, match="unknown algorithm 'masac-infered'; accepted: .*masac-inferred"):
        Learner(spec, _cfg("predator_prey", "masac-infered"))
    with pytest.raises(ValueError, match="opponent_data='recent' is not valid; accepted: latest, uniform"):
        Algorithm("x", others="inferred", opponent_data="recent")
    uniform = dataclasses.replace(PRESETS["masac-inferred"], opponent_data="uniform")
    with pytest.raises(UserError, match="fit rho on the same data; got opponent_data latest, uniform"):
        Learner(spec, _cfg("predator_prey", "x"), algorithms=[uniform, PRESETS["masac-inferred"], MASAC, MASAC])


@pytest.mark.parametrize("data", ["latest", "uniform"])
def test_rho_is_fitted_on_the_newest_transitions_or_on_the_critics_batch(data, monkeypatch):
    """``opponent_data="latest"`` (the preset, Lowe et al.'s latest samples): a gradient step fits rho on the
    buffer's newest ``batch_size`` transitions and the other losses on the uniform batch; ``"uniform"``: rho on
    the critic's batch. The newest transitions are read without drawing random numbers, so the critic's batch is
    the same either way."""
    spec = make_env("cooperative_navigation")[1]
    algorithm = dataclasses.replace(PRESETS["masac-inferred"], opponent_data=data)
    learner = Learner(spec, _cfg("cooperative_navigation", "x"), algorithms=[algorithm] * 3)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):  # 5 x 20 transitions into a buffer of 100: full, the newest at slots 80-99
        b = _batch(spec, learner.spaces, size=20, seed=int(torch.randint(1000, (), generator=g)))
        learner.memory.add(b.state, b.actions, b.reward, b.next_state, b.terminated)
    seen = {}
    real = learner.others.opponent_loss

    def spy(actors, batch):
        seen["rho"] = batch
        return real(actors, batch)

    def update(batch, opponent_batch=None):
        seen["critic"] = batch
        return Learner.update(learner, batch, opponent_batch)

    monkeypatch.setattr(learner.others, "opponent_loss", spy)
    monkeypatch.setattr(learner, "update", update)
    state = learner.memory.generator.get_state()
    learner.learn()
    want = learner.memory.buffer.latest(32) if data == "latest" else seen["critic"]
    assert all(torch.equal(x, y) for x, y in zip(seen["rho"], want))
    learner.memory.generator.set_state(state)
    assert torch.equal(learner.memory.sample().state, seen["critic"].state)  # latest() drew nothing


@pytest.mark.parametrize("task,algo,env_kwargs", [
    ("cooperative_navigation", "masac-inferred", None),
    ("cooperative_navigation", "masac-optimistic", None),
    ("predator_prey", "predators=masac-optimistic,prey=masac", None),
    ("predator_prey", "predators=masac,prey=masac-optimistic", "continuous_actions=True"),
])
def test_new_presets_train_and_evaluate_through_the_cli(tmp_path, task, algo, env_kwargs, capsys):
    """``pgm-marl train --algo ...`` (what ``pgm-marl sweep`` runs) and ``pgm-marl evaluate`` of the run, which
    rebuilds the conditioned actors and q_i from the checkpoint and acts as training does."""
    from pgm_marl import cli
    out = str(tmp_path / "run")
    args = ["train", "--task", task, "--algo", algo, "--episodes", "4", "--eval-every", "2", "--eval-episodes", "2",
            "--batch-size", "32", "--learning-starts", "50", "--update-every", "10", "--hidden", "16",
            "--buffer-size", "500", "--checkpoint-every", "2", "--num-envs", "2", "--no-progress", "--out", out]
    assert cli.main(args + (["--env-kwargs", env_kwargs] if env_kwargs else [])) == 0
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3, rows
    assert cli.main(["evaluate", out, "--episodes", "2"]) == 0
    assert "return" in capsys.readouterr().out
