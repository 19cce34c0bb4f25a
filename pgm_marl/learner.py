"""The learner: networks, their targets and optimizers, and one gradient step of Algorithm 1.

It maps each named loss of :class:`~pgm_marl.inference.masac.MASACLoss` to its parameters and optimizer and
does nothing else: all maths lives in :mod:`pgm_marl.inference`.
"""
from __future__ import annotations

import copy

import pyro
import torch
from torch import nn

from .errors import UserError
from .allocator import keep_freed_memory
from .inference.actor import NeuralPolicies
from .inference.masac import MASACLoss
from .inference.reinforce import EpisodeWorld, reinforce_surrogate
from .inference.variants import parse_algo_spec
from .networks import Actors, TwinCritics, polyak_update

__all__ = ["Learner", "ReinforceLearner", "make_learner"]


def make_learner(spec, cfg):
    """The learner the algorithms call for: off-policy with critics, or on-policy without (reinforce-elbo)."""
    algorithms = parse_algo_spec(cfg.algo, spec.teams, spec.agents)
    critics = {a.critic for a in algorithms}
    if len(critics) > 1:
        raise UserError(f"--algo {cfg.algo!r} mixes critic-free (reinforce-elbo) and critic-based algorithms; "
                        "accepted: all agents with a critic, or all without")
    return Learner(spec, cfg) if critics == {True} else ReinforceLearner(spec, cfg)


@torch.no_grad()
def act(actors, obs, deterministic: bool = False) -> torch.Tensor:
    """Decentralised execution: agent i acts on its own observation. Returns ``LongTensor [K, n]``."""
    logits = actors(actors.pad_obs(obs))  # [n, K, A_max]; padded actions have probability 0
    if deterministic:  # section 5.3: evaluate the most probable action
        return logits.argmax(-1).T
    gumbel = -torch.empty_like(logits).exponential_().log()  # Gumbel-max: an exact categorical draw, cheaply
    return (logits + gumbel).argmax(-1).T


class Learner:
    """MA-SAC-family learner for a :class:`~pgm_marl.envs.TaskSpec` and a :class:`~pgm_marl.config.TrainConfig`.

    ``actors`` / ``critic`` default to the paper's MLPs (:class:`Actors`, :class:`TwinCritics`); any modules
    with the same interface (e.g. tabular ones, to check the derivation exactly) train with the same code.
    """

    def __init__(self, spec, cfg, actors=None, critic=None):
        spec.require_discrete()
        keep_freed_memory()  # batch-1024 activations are reused, not page-faulted in anew each step
        self.spec, self.cfg = spec, cfg
        self.algorithms = parse_algo_spec(cfg.algo, spec.teams, spec.agents)
        if any(not a.critic for a in self.algorithms):
            raise ValueError(f"--algo {cfg.algo!r}: critic-free algorithms train with ReinforceLearner")
        self.algo_names = {t: self.algorithms[spec.agents.index(m[0])].name for t, m in spec.teams.items()}
        torch.manual_seed(cfg.seed)  # network initialisation
        self.actors = actors if actors is not None else Actors(spec.obs_dims, spec.action_dims, cfg.hidden)
        self.critic = critic if critic is not None else TwinCritics(spec.state_dim, spec.action_dims, cfg.hidden)
        self.target_actors, self.target_critic = copy.deepcopy(self.actors), copy.deepcopy(self.critic)
        for p in list(self.target_actors.parameters()) + list(self.target_critic.parameters()):
            p.requires_grad_(False)
        self.loss = MASACLoss(self.actors, self.critic, self.target_actors, self.target_critic, self.algorithms,
                              cfg.task, cfg.gamma, cfg.alpha)
        self.optimizers = {
            "loss/actor": torch.optim.Adam(self.actors.parameters(), lr=cfg.lr, fused=True),
            "loss/critic": torch.optim.Adam(self.critic.parameters(), lr=cfg.lr, fused=True),
            "loss/temperature": torch.optim.Adam([self.loss.log_alpha], lr=cfg.lr),
        }

    def act(self, obs, deterministic: bool = False) -> torch.Tensor:
        return act(self.actors, obs, deterministic)

    def update(self, batch) -> dict[str, float]:
        """One gradient step for every agent (Algorithm 1): actor, critic, temperature, then Polyak targets."""
        with pyro.validation_enabled(False):  # support checks of every site, every step: the tests keep them on
            losses = self.loss(batch)
        for name, opt in self.optimizers.items():
            if name in losses:
                opt.zero_grad(set_to_none=True)
                losses[name].backward()
                opt.step()
        polyak_update(self.target_actors, self.actors, self.cfg.tau)
        polyak_update(self.target_critic, self.critic, self.cfg.tau)
        out = {k: float(v.detach()) for k, v in losses.items() if v.dim() == 0}
        for k, v in losses.items():
            if v.dim() == 1:
                out.update({f"{k}/{a}": float(x) for a, x in zip(self.spec.agents, v)})
        out.update({f"alpha/{a}": float(x) for a, x in zip(self.spec.agents, self.loss.alpha())})
        return out

    def state_dict(self) -> dict:
        return {"actors": self.actors.state_dict(), "critic": self.critic.state_dict(),
                "target_actors": self.target_actors.state_dict(), "target_critic": self.target_critic.state_dict(),
                "log_alpha": self.loss.log_alpha.detach().clone(),
                "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()}}

    def load_state_dict(self, state: dict) -> None:
        for name in ("actors", "critic", "target_actors", "target_critic"):
            getattr(self, name).load_state_dict(state[name])
        with torch.no_grad():
            self.loss.log_alpha.copy_(state["log_alpha"])
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])


class ReinforceLearner:
    """``reinforce-elbo``: SVI on the trajectory ELBO (eq. 5) of each agent from on-policy episodes, no critic.

    After every round of ``num_envs`` episodes the training loop calls :meth:`update_episodes`; the gradient is
    the score-function estimate of :func:`~pgm_marl.inference.reinforce.reinforce_surrogate` with reward-to-go
    and a leave-one-out baseline over the round's episodes (with ``num_envs = 1``: a running mean of earlier
    rounds' rewards-to-go, decay ``baseline_decay``).
    """

    baseline_decay = 0.9

    on_policy = True

    def __init__(self, spec, cfg):
        spec.require_discrete()
        self.spec, self.cfg = spec, cfg
        self.algorithms = parse_algo_spec(cfg.algo, spec.teams, spec.agents)
        self.algo_names = {t: self.algorithms[spec.agents.index(m[0])].name for t, m in spec.teams.items()}
        alphas = [a.alpha(cfg.task, cfg.alpha) for a in self.algorithms]
        if min(alphas) <= 0:
            raise UserError(f"reinforce-elbo needs a temperature > 0 (eq. 3 divides by it); got --alpha {cfg.alpha}; "
                            "accepted: --alpha > 0 or none")
        self.alpha = torch.tensor(alphas)
        torch.manual_seed(cfg.seed)
        self.actors = Actors(spec.obs_dims, spec.action_dims, cfg.hidden)
        self.optimizer = torch.optim.Adam(self.actors.parameters(), lr=cfg.lr)
        self.baseline = torch.zeros(0)  # running mean of rewards-to-go [T, n] (used when num_envs == 1)

    def act(self, obs, deterministic: bool = False) -> torch.Tensor:
        return act(self.actors, obs, deterministic)

    def update_episodes(self, states, actions, rewards) -> dict[str, float]:
        """One SVI step on ``sum_i ELBO_i`` from states ``[T+1, K, D]``, actions ``[T, K, n]``, rewards ``[T, K, n]``."""
        one_hot = [nn.functional.one_hot(actions[..., j], d).float() for j, d in enumerate(self.actors.action_dims)]
        world = EpisodeWorld(states, one_hot, rewards)
        if len(self.baseline) == 0:
            self.baseline = torch.zeros(rewards.shape[0], self.spec.n_agents)
        running = self.baseline if states.shape[1] == 1 else None  # None: leave-one-out over the round
        surrogate, elbo, togo = reinforce_surrogate(world, NeuralPolicies(self.actors), self.alpha, baseline=running)
        self.baseline = torch.lerp(togo.mean(1), self.baseline, self.baseline_decay)
        self.optimizer.zero_grad(set_to_none=True)
        (-surrogate).backward()
        self.optimizer.step()
        return {f"elbo/{a}": float(e) for a, e in zip(self.spec.agents, elbo)}

    def state_dict(self) -> dict:
        return {"actors": self.actors.state_dict(), "optimizer": self.optimizer.state_dict(),
                "baseline": self.baseline.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.actors.load_state_dict(state["actors"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline = state["baseline"]
