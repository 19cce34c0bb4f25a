"""Guards that turn silent failures into one-line errors or warnings.

- Non-finite numbers (:class:`~pgm_marl.errors.NonFiniteError`): every environment step is checked before it
  enters the replay buffer (:func:`check_finite_step`), every update's losses and the learner's weights after it
  (:func:`check_finite_update`), and the learner's whole state before a checkpoint is written
  (:func:`check_finite_state`). The fast path is one ``isfinite`` reduction per tensor; the culprit (env copy,
  agent, step, loss, parameter) is looked for only on failure.
- Runs that would never learn (:func:`learning_plan_warning`).

Run folders and output files are guarded in :mod:`pgm_marl.runfolder` (no torch import: checked before any).
"""
from __future__ import annotations

import math
from typing import Any, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from .errors import NonFiniteError, first_line

__all__ = ["check_finite_step", "check_finite_update", "check_finite_weights", "check_finite_state",
           "guarded_update", "nonfinite_distribution_error", "learner_tensors", "learning_plan_warning",
           "first_update_step"]


# ---------------------------------------------------------------- non-finite numbers

def _all_finite(*tensors: torch.Tensor) -> bool:
    ok = torch.isfinite(tensors[0]).all()
    for t in tensors[1:]:
        ok = ok & torch.isfinite(t).all()
    return bool(ok)


def _first_nonfinite(x: torch.Tensor) -> Tuple[int, ...]:
    return tuple((~torch.isfinite(x)).nonzero()[0].tolist())


def check_finite_step(spec, reward: torch.Tensor, state: torch.Tensor, next_state: torch.Tensor, *,
                      episode: int, step: int, env_steps: int) -> None:
    """Raise :class:`NonFiniteError` if an environment step holds a NaN or infinite reward or observation.

    ``reward [K, n]``, ``state`` / ``next_state [K, sum obs_dims]`` of one vector step; ``episode``: episodes
    finished before this round (copy k plays episode ``episode + k + 1``); ``step``: 1-based step of the round;
    ``env_steps``: env steps before this vector step (copy k's transition is env step ``env_steps + k + 1``).
    """
    if math.isfinite(float(reward.sum()) + float(state.sum()) + float(next_state.sum())):
        return  # fast path, ~7 us: a sum is finite iff every element is (barring float32 overflow, checked below)
    for what, x in (("reward", reward), ("observation", state), ("next observation", next_state)):
        if _all_finite(x):
            continue
        k, j = _first_nonfinite(x)
        if what == "reward":
            agent, detail = spec.agents[j], ""
        else:  # column j of the concatenated observations -> agent i, component c
            bounds = torch.tensor(spec.obs_dims).cumsum(0).tolist()
            i = next(i for i, b in enumerate(bounds) if j < b)
            agent, detail = spec.agents[i], f" (component {j - (bounds[i] - spec.obs_dims[i])})"
        raise NonFiniteError(
            f"non-finite {what} {float(x[k, j])} from the environment: task {spec.name}, env copy {k}, "
            f"agent {agent}{detail}, step {step} of episode {episode + k + 1} (env step {env_steps + k + 1}); "
            "training stopped before it entered the replay buffer")


def learner_tensors(learner) -> List[Tuple[str, torch.Tensor]]:
    """``(name, tensor)`` of the learner's parameters (its modules' ``named_parameters``, targets included) and
    floating-point tensor attributes, each tensor once."""
    seen, out = set(), []
    for attr, value in vars(learner).items():
        if isinstance(value, nn.Module):
            named = [(f"{attr}.{n}", p) for n, p in value.named_parameters()]
        elif isinstance(value, torch.Tensor) and value.is_floating_point():
            named = [(attr, value)]
        else:
            continue
        for name, t in named:
            if id(t) not in seen:
                seen.add(id(t))
                out.append((name, t))
    return out


def _agent_of(t: torch.Tensor, index: Sequence[int], agents: Sequence[str]) -> str:
    """Stacked networks keep agents on dim 0 (twin critics: 2n rows); '' when the tensor is not per agent."""
    n = len(agents)
    if t.dim() >= 1 and n and t.shape[0] in (n, 2 * n):
        return f" (agent {agents[index[0] % n]})"
    return ""


def _nonfinite_weight(learner, agents: Sequence[str]) -> Optional[str]:
    """Name of the first non-finite learner tensor, with its agent, or None when all are finite."""
    tensors = learner_tensors(learner)
    if not tensors or _all_finite(torch.stack([t.detach().sum() for _, t in tensors])):
        return None  # (a sum is non-finite when any element is; float32 weights never overflow a sum)
    for name, t in tensors:
        if not _all_finite(t.detach()):
            return f"{name}{_agent_of(t, _first_nonfinite(t.detach()), agents)}"
    return None


def check_finite_weights(learner, agents: Sequence[str], when: str) -> None:
    """Raise :class:`NonFiniteError` naming the first non-finite learner parameter (``when``: e.g. 'after update 3')."""
    bad = _nonfinite_weight(learner, agents)
    if bad is not None:
        raise NonFiniteError(f"non-finite weights in {bad} {when}; training diverged (try a lower --lr)")


def check_finite_update(diagnostics: Mapping[str, Any], learner, agents: Sequence[str], *, update: int,
                        env_steps: int) -> None:
    """After update number ``update``: its losses (the diagnostics it returned) and the learner's weights."""
    when = f"at update {update} (env step {env_steps})"
    bad = [k for k, v in diagnostics.items() if isinstance(v, (int, float)) and not math.isfinite(v)]
    if bad:
        key = next((k for k in bad if k.startswith("loss/")), bad[0])
        named = [a for k in bad for a in agents if k.endswith("/" + a)]
        if any(key.endswith("/" + a) for a in agents):
            key = key.rsplit("/", 1)[0]
        weight = _nonfinite_weight(learner, agents)
        if named:
            who = f"agent {named[0]}"
        elif weight and "(agent " in weight:
            who = weight[weight.index("(agent ") + 1:-1]
        else:
            who = "all agents (the loss sums them)"
        value = next(v for k, v in diagnostics.items() if k in bad and k.startswith(key))
        raise NonFiniteError(f"non-finite {key} = {value} for {who} {when}; training diverged (try a lower --lr)")
    check_finite_weights(learner, agents, when.replace("at update", "after update"))


def guarded_update(update_fn, learner, agents: Sequence[str], *, update: int, env_steps: int) -> dict:
    """Run ``update_fn()`` (one learner update, number ``update``) and check its losses and the weights after it.

    A ``ValueError`` from inside the update becomes a one-line :class:`NonFiniteError` only when it is about
    non-finite numbers (torch.distributions refusing NaN parameters, or weights that are no longer finite);
    any other exception is a bug and propagates with its traceback.
    """
    try:
        diagnostics = update_fn()
    except ValueError as err:
        weight = _nonfinite_weight(learner, agents)
        if weight is not None or nonfinite_distribution_error(err):
            where = f"; non-finite weights in {weight}" if weight else ""
            raise NonFiniteError(f"non-finite values in update {update} (env step {env_steps}): {first_line(err)}"
                                 f"{where}; training diverged (try a lower --lr)") from None
        raise
    check_finite_update(diagnostics, learner, agents, update=update, env_steps=env_steps)
    return diagnostics


def nonfinite_distribution_error(err: BaseException) -> bool:
    """Whether ``err`` is torch.distributions' argument validation refusing NaN/inf parameters
    ("Expected parameter logits ... but found invalid values")."""
    text = str(err)
    return isinstance(err, ValueError) and text.startswith("Expected parameter") and "invalid values" in text


def _walk(state: Any, prefix: str) -> Iterable[Tuple[str, Any]]:
    if isinstance(state, Mapping):
        for k, v in state.items():
            yield from _walk(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(state, (list, tuple)):
        for i, v in enumerate(state):
            yield from _walk(v, f"{prefix}[{i}]")
    else:
        yield prefix, state


def check_finite_state(state: Any, what: str, agents: Sequence[str] = ()) -> None:
    """Raise :class:`NonFiniteError` if any float tensor or float in the nested ``state`` is not finite."""
    for name, v in _walk(state, ""):
        if isinstance(v, torch.Tensor) and v.is_floating_point() and not _all_finite(v):
            raise NonFiniteError(f"{what}: {name}{_agent_of(v, _first_nonfinite(v), agents)} holds non-finite values")
        if isinstance(v, float) and not math.isfinite(v):
            raise NonFiniteError(f"{what}: {name} = {v}")


# ---------------------------------------------------------------- runs that would never learn

def first_update_step(cfg) -> Optional[int]:
    """Env step (counted over all copies) of the first gradient step of an off-policy run, or None if none."""
    k = cfg.num_envs
    rounds = -(-cfg.episodes // k)
    total = rounds * k * cfg.max_cycles
    need = max(cfg.learning_starts, cfg.batch_size, 1)  # the buffer holds min(steps, buffer_size) >= batch_size
    s0 = -(-need // k) * k
    if s0 > total:
        return None
    m = ((s0 - k) // cfg.update_every + 1) * cfg.update_every  # first multiple of update_every in (s0 - k, ...]
    return max(s0, -(-m // k) * k) if m <= total else None  # the vector step whose k env steps cross m


def learning_plan_warning(cfg, on_policy: bool = False) -> Optional[str]:
    """A one-line warning when the run's settings mean it will never take a gradient step, naming the flag."""
    if on_policy or first_update_step(cfg) is not None:
        return None
    k = cfg.num_envs
    total = -(-cfg.episodes // k) * k * cfg.max_cycles
    collects = f"it collects {total} env steps (--episodes {cfg.episodes} x --max-cycles {cfg.max_cycles})"

    def episodes_for(steps: int) -> int:
        return -(-steps // cfg.max_cycles)

    if cfg.learning_starts > total and cfg.learning_starts >= cfg.batch_size:
        fix = (f"learning starts after {cfg.learning_starts} (--learning-starts); lower --learning-starts to at "
               f"most {total} or raise --episodes to at least {episodes_for(cfg.learning_starts)}")
    elif cfg.batch_size > total:
        fix = (f"--batch-size {cfg.batch_size} needs that many transitions in the replay buffer; lower --batch-size "
               f"to at most {total} or raise --episodes to at least {episodes_for(cfg.batch_size)}")
    else:
        fix = (f"one gradient step is taken every {cfg.update_every} env steps (--update-every) once "
               f"{max(cfg.learning_starts, cfg.batch_size)} are collected; lower --update-every or raise --episodes")
    return f"this run will never take a gradient step: {collects}, but {fix}"
