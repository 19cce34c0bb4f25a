"""Learners: networks, their targets and optimizers, how they collect experience and when they take a step.

A learner has the interface the training loop (:func:`pgm_marl.train.train`) runs, Algorithm 1's:

* ``act(obs, deterministic=False)``: a_i ~ pi_i(. | o_i) for every agent (environment format of
  :meth:`~pgm_marl.models.actions.ActionSpaces.act`);
* ``store(state, actions, reward, next_state, terminated)``: D <- D u {(s, a, r, s')};
* ``updates_due(env_steps_before, env_steps, round_end)``: how many gradient steps are due now, and
  ``learn()``: one of them, returning its diagnostics;
* ``memory`` (``state_dict`` / ``load_state_dict``), ``generators()`` and ``state_dict`` /
  ``load_state_dict``: what a checkpoint holds; ``on_policy``.

:class:`Learner` (MA-SAC and its critic-based variants) learns off-policy from a replay buffer; it maps each
named loss of :class:`~pgm_marl.inference.masac.MASACLoss` to its parameters and optimizer and does nothing
else (all maths lives in :mod:`pgm_marl.inference`). :class:`ReinforceLearner` (reinforce-elbo) learns from each
round's own episodes.
"""
from __future__ import annotations

import copy
import dataclasses

import pyro
import torch

from .allocator import keep_freed_memory
from .errors import UserError
from .inference.actor import NeuralPolicies
from .inference.masac import MASACLoss
from .inference.others import OthersModels
from .inference.reinforce import reinforce_surrogate
from .inference.variants import parse_algo_spec, temperatures
from .models.actions import ActionSpaces
from .models.opponents import ConditionalActors
from .models.worlds import EpisodeWorld
from .critics import make_critic
from .networks import Actors, Sharing, polyak_update
from .replay import ReplayMemory

__all__ = ["Learner", "ReinforceLearner", "TrainedPolicies", "make_learner", "action_spaces", "run_algorithms"]


def make_learner(spec, cfg):
    """The learner the algorithms call for: off-policy with critics, or on-policy without (reinforce-elbo)."""
    algorithms = run_algorithms(spec, cfg)
    critics = {a.critic for a in algorithms}
    if len(critics) > 1:
        raise UserError(f"--algo {cfg.algo!r} mixes critic-free (reinforce-elbo) and critic-based algorithms; "
                        "accepted: all agents with a critic, or all without")
    cls = Learner if critics == {True} else ReinforceLearner
    return cls(spec, cfg, algorithms=algorithms)


def run_algorithms(spec, cfg) -> list:
    """Each agent's algorithm: ``--algo`` (a preset, or one per team) with ``--common-draws`` applied
    (``Algorithm.draws``; a combination it does not apply to is a one-line error)."""
    algorithms = parse_algo_spec(cfg.algo, spec.teams, spec.agents)
    if not getattr(cfg, "common_draws", False):
        return algorithms
    try:
        return [dataclasses.replace(a, draws="common") for a in algorithms]
    except ValueError as err:
        raise UserError(f"--common-draws with --algo {cfg.algo}: {err}") from None


def action_spaces(spec, algorithms) -> ActionSpaces:
    """The agents' action spaces for their algorithms (a box's policy family is the algorithm's); an algorithm
    that cannot handle an agent's space is refused with a one-line error."""
    try:
        spaces = ActionSpaces.from_specs(spec.action_spaces, algorithms)
    except ValueError as err:
        raise UserError(f"task {spec.name!r}: {err}") from None
    for agent, space, algorithm in zip(spec.agents, spaces, algorithms):
        if algorithm.estimator == "exact" and not space.enumerable:
            raise UserError(f"--algo {algorithm.name}: agent {agent!r} has action space {space}, but the exact "
                            "estimator sums eq. 9 over a finite set of actions; accepted for Box actions: masac, "
                            "masac-auto, maddpg")
        if getattr(space, "deterministic", False) and (algorithm.temperature != 0 or algorithm.estimator != "reparam"):
            raise UserError(f"--algo {algorithm.name}: agent {agent!r} has a deterministic Box policy, which needs "
                            "temperature 0 and estimator 'reparam' (a point mass has no entropy and no score "
                            f"function); got temperature {algorithm.temperature!r}, estimator {algorithm.estimator!r}")
    return spaces


class TrainedPolicies:
    """The agents' actors alone, for acting with a trained run (``pgm-marl evaluate``): no critic, no loss and so
    no temperature. ``load_state_dict`` takes the ``learner`` part of a checkpoint of either learner (both keep
    their actors under ``"actors"``; an optimistic agent's q_i, which acting needs, is under ``"others"``);
    ``act`` is theirs."""

    def __init__(self, spec, cfg, algorithms=None):
        self.algorithms = list(algorithms or run_algorithms(spec, cfg))
        self.spaces = action_spaces(spec, self.algorithms)
        self.actors = make_actors(spec, self.spaces, self.algorithms, cfg, parameter_sharing(spec, cfg))
        self.others = make_others(spec, self.spaces, self.algorithms, cfg)  # q_i: acting imagines a_{-i}

    @torch.no_grad()
    def act(self, obs, deterministic: bool = False):
        if self.others is not None:
            return self.others.act(self.actors, self.actors.pad_obs(obs), deterministic)
        return self.spaces.act(self.actors(self.actors.pad_obs(obs)), deterministic)

    def load_state_dict(self, state: dict) -> None:
        self.actors.load_state_dict(state["actors"])
        if self.others is not None:
            self.others.load_state_dict(state["others"])


def parameter_sharing(spec, cfg) -> Sharing | None:
    """``--share-params``: one parameter group per team (none: one network per agent)."""
    return Sharing.by_team(spec.agents, spec.teams) if getattr(cfg, "share_params", False) else None


def make_actors(spec, spaces, algorithms, cfg, sharing):
    """pi_i(a_i | o_i) for every agent (section 5.2), or pi_i(a_i | o_i, a_{-i}) for the agents whose guide is
    optimistic (:class:`~pgm_marl.models.opponents.ConditionalActors`)."""
    conditioned = [a.guide == "optimistic" for a in algorithms]
    if any(conditioned):
        return ConditionalActors(spec.obs_dims, spaces, conditioned, cfg.hidden, cfg.precision, sharing)
    return Actors(spec.obs_dims, spaces, cfg.hidden, cfg.precision, sharing)


def make_others(spec, spaces, algorithms, cfg) -> OthersModels | None:
    """The opponent models rho and imagined-action models q the algorithms declare (``others="inferred"``,
    ``guide="optimistic"``), or None when every agent reads pi_j and acts by eq. 4's guide."""
    if all(a.others == "given" and a.guide == "factorized" for a in algorithms):
        return None
    return OthersModels(spec, spaces, algorithms, cfg.hidden, cfg.precision)


class Learner:
    """MA-SAC-family learner for a :class:`~pgm_marl.envs.TaskSpec` and a :class:`~pgm_marl.config.TrainConfig`.

    ``actors`` / ``critic`` default to the paper's MLPs (:class:`Actors`, :class:`TwinCritics`); any modules
    with the same interface (e.g. tabular ones, to check the derivation exactly) train with the same code.
    ``algorithms``: one per agent (default: parsed from ``cfg.algo``). ``others``: the opponent / imagined-action
    models (:class:`~pgm_marl.inference.others.OthersModels`) to use instead of the default ones, for algorithms
    with ``others="inferred"`` or ``guide="optimistic"``; they are created after the actors and critics.
    """

    on_policy = False

    def __init__(self, spec, cfg, actors=None, critic=None, algorithms=None, others=None):
        keep_freed_memory()  # batch-1024 activations are reused, not page-faulted in anew each step
        self.spec, self.cfg = spec, cfg
        self.algorithms = list(algorithms or run_algorithms(spec, cfg))
        if any(not a.critic for a in self.algorithms):
            raise ValueError(f"--algo {cfg.algo!r}: critic-free algorithms train with ReinforceLearner")
        self.spaces = action_spaces(spec, self.algorithms)
        alpha = temperatures(self.algorithms, cfg.task, cfg.alpha, spec.n_agents)
        torch.manual_seed(cfg.seed)  # network initialisation
        sharing = parameter_sharing(spec, cfg)
        self.actors = actors if actors is not None else make_actors(spec, self.spaces, self.algorithms, cfg, sharing)
        # the critic form (--critic) is chosen here and nowhere else: eq. 7-9 only call critic(state, joint)
        self.critic = critic if critic is not None else make_critic(getattr(cfg, "critic", "mlp"), spec, self.spaces,
                                                                    cfg.hidden, cfg.precision, sharing)
        self.target_actors, self.target_critic = copy.deepcopy(self.actors), copy.deepcopy(self.critic)
        for p in list(self.target_actors.parameters()) + list(self.target_critic.parameters()):
            p.requires_grad_(False)
        self.others = others if others is not None else make_others(spec, self.spaces, self.algorithms, cfg)
        self.loss = MASACLoss(self.actors, self.critic, self.target_actors, self.target_critic, self.algorithms,
                              self.spaces, alpha, cfg.gamma, self.others)
        imagined = self.others.imagined if self.others is not None and self.others.imagined is not None else None
        self.optimizers = {  # q_i is trained by the actor's loss (the optimistic ELBO), with the actor
            "loss/actor": torch.optim.Adam(list(self.actors.parameters()) + list(
                imagined.parameters() if imagined is not None else []), lr=cfg.lr, fused=True),
            "loss/critic": torch.optim.Adam(self.critic.parameters(), lr=cfg.lr, fused=True),
            "loss/temperature": torch.optim.Adam([self.loss.log_alpha], lr=cfg.lr),
        }
        if self.others is not None and self.others.opponents is not None:
            self.optimizers["loss/opponents"] = torch.optim.Adam(self.others.opponents.parameters(), lr=cfg.lr,
                                                                 fused=True)
        self.memory = ReplayMemory(cfg, spec.state_dim, spec.n_agents, self.spaces.storage_width,
                                   self.spaces.storage_dtype)

    @torch.no_grad()
    def act(self, obs, deterministic: bool = False):
        """Decentralised execution: agent i acts on its own observation; ``deterministic``: the mode (section 5.3)."""
        if self.others is not None:  # (an optimistic agent imagines a_{-i} with q_i first)
            return self.others.act(self.actors, self.actors.pad_obs(obs), deterministic)
        return self.spaces.act(self.actors(self.actors.pad_obs(obs)), deterministic)

    def store(self, state, actions, reward, next_state, terminated) -> None:
        self.memory.add(state, self.spaces.store(actions), reward, next_state, terminated)

    def updates_due(self, env_steps_before: int, env_steps: int, round_end: bool) -> int:
        return self.memory.updates_due(env_steps_before, env_steps)

    def generators(self) -> dict:
        return self.memory.generators()

    def learn(self) -> dict[str, float]:
        """One gradient step on a batch sampled from the replay buffer (and, where the others' models are fitted
        on the newest transitions, a batch of those)."""
        if self.others is not None and self.others.opponent_data == "latest":
            return self.update(self.memory.sample(), self.memory.latest())
        return self.update(self.memory.sample())

    def update(self, batch, opponent_batch=None) -> dict[str, float]:
        """One gradient step for every agent (Algorithm 1): actor, critic, temperature, then Polyak targets;
        rho (``others="inferred"``) on ``opponent_batch`` if given, else on ``batch``."""
        with pyro.validation_enabled(False):  # support checks of every site, every step: the tests keep them on
            losses = self.loss(batch, opponent_batch)
        for name, opt in self.optimizers.items():
            if name in losses:
                opt.zero_grad(set_to_none=True)
                losses[name].backward()
                opt.step()
        polyak_update(self.target_actors, self.actors, self.cfg.tau)
        polyak_update(self.target_critic, self.critic, self.cfg.tau)
        if self.others is not None:
            self.others.update_targets(self.cfg.tau)
        out = {k: float(v.detach()) for k, v in losses.items() if v.dim() == 0}
        for k, v in losses.items():
            if v.dim() == 1:
                out.update({f"{k}/{a}": float(x) for a, x in zip(self.spec.agents, v)})
        out.update({f"alpha/{a}": float(x) for a, x in zip(self.spec.agents, self.loss.alpha())})
        return out

    def state_dict(self) -> dict:
        state = {"actors": self.actors.state_dict(), "critic": self.critic.state_dict(),
                 "target_actors": self.target_actors.state_dict(), "target_critic": self.target_critic.state_dict(),
                 "log_alpha": self.loss.log_alpha.detach().clone(),
                 "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()}}
        if self.others is not None:  # rho, q and their targets
            state["others"] = self.others.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        for name in ("actors", "critic", "target_actors", "target_critic"):
            getattr(self, name).load_state_dict(state[name])
        if self.others is not None:
            self.others.load_state_dict(state["others"])
        with torch.no_grad():
            self.loss.log_alpha.copy_(state["log_alpha"])
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])


class RoundMemory:
    """The current round's episodes (on-policy: nothing outlives a round, so a checkpoint holds nothing)."""

    def __init__(self):
        self.states, self.actions, self.rewards, self.last_state = [], [], [], None

    def add(self, state, actions, reward, next_state) -> None:
        self.states.append(state)
        self.actions.append(actions)
        self.rewards.append(reward)
        self.last_state = next_state

    def take(self):
        """``states [T+1, K, D]``, stored actions ``[T, K, width]``, rewards ``[T, K, n]``; then empty."""
        out = (torch.stack(self.states + [self.last_state]), torch.stack(self.actions), torch.stack(self.rewards))
        self.__init__()
        return out

    def state_dict(self, files=None) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        self.__init__()  # (checkpoints are written between rounds: there is nothing to restore)


class ReinforceLearner:
    """``reinforce-elbo``: SVI on the trajectory ELBO (eq. 5) of each agent from on-policy episodes, no critic.

    It collects one round (``num_envs`` episodes) and takes one step at its end (no replay buffer): the
    gradient is the score-function estimate of :func:`~pgm_marl.inference.reinforce.reinforce_surrogate` with
    reward-to-go and a leave-one-out baseline over the round's episodes (with ``num_envs = 1``: a running mean
    of earlier rounds' rewards-to-go, decay ``baseline_decay``).
    """

    baseline_decay = 0.9
    on_policy = True

    def __init__(self, spec, cfg, algorithms=None):
        self.spec, self.cfg = spec, cfg
        self.algorithms = list(algorithms or run_algorithms(spec, cfg))
        self.spaces = action_spaces(spec, self.algorithms)
        # > 0: checked there
        self.alpha = torch.tensor(temperatures(self.algorithms, cfg.task, cfg.alpha, spec.n_agents))
        torch.manual_seed(cfg.seed)
        self.actors = Actors(spec.obs_dims, self.spaces, cfg.hidden, cfg.precision, parameter_sharing(spec, cfg))
        self.optimizer = torch.optim.Adam(self.actors.parameters(), lr=cfg.lr)
        self.baseline = torch.zeros(0)  # running mean of rewards-to-go [T, n] (used when num_envs == 1)
        self.memory = RoundMemory()

    @torch.no_grad()
    def act(self, obs, deterministic: bool = False):
        return self.spaces.act(self.actors(self.actors.pad_obs(obs)), deterministic)

    def store(self, state, actions, reward, next_state, terminated) -> None:
        self.memory.add(state, self.spaces.store(actions), reward, next_state)

    def updates_due(self, env_steps_before: int, env_steps: int, round_end: bool) -> int:
        return int(round_end)

    def generators(self) -> dict:
        return {}

    def learn(self) -> dict[str, float]:
        return self.update_episodes(*self.memory.take())

    def update_episodes(self, states, actions, rewards) -> dict[str, float]:
        """One SVI step on ``sum_i ELBO_i`` from states ``[T+1, K, D]``, stored actions ``[T, K, width]``,
        rewards ``[T, K, n]``."""
        world = EpisodeWorld(states, self.spaces.encode(actions), rewards)
        if len(self.baseline) == 0:
            self.baseline = torch.zeros(rewards.shape[0], self.spec.n_agents)
        running = self.baseline if states.shape[1] == 1 else None  # None: leave-one-out over the round
        surrogate, elbo, togo = reinforce_surrogate(world, NeuralPolicies(self.actors, self.spaces), self.alpha,
                                                    baseline=running)
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
