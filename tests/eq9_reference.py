"""Test oracle: eq. 9 in closed form, written without Pyro and without the library's action spaces.

It checks :func:`pgm_marl.inference.actor.actor_terms` (tests/test_masac.py) and is the baseline of the overhead
benchmark (benchmarks/bench_actor_overhead.py). It lives with the tests, not in the package: training never
calls it, and it must stay independent of the code it checks. It shares with that code only the noise (same
order and shapes of draws) and the inputs (buffer actions already encoded); the relaxed draws come from
torch's own ``RelaxedOneHotCategorical`` and ``log pi`` is written out, not taken from
:class:`~pgm_marl.models.actions.DiscreteActions` or :class:`~pgm_marl.models.distributions.GumbelSoftmaxPolicy`.
"""
from __future__ import annotations

import torch
from pyro.distributions import RelaxedOneHotCategorical

from pgm_marl.inference.actor import frozen

__all__ = ["eq9_actor_loss"]


def eq9_actor_loss(actors, critic, state, buffer_actions, alpha, resample_all, relax: float = 1.0,
                   common: bool = False) -> torch.Tensor:
    r"""Eq. 9 per agent, ``[n]``: ``E_s E_{a~pi}[alpha_i log pi_i(a_i|o_i) - Q_i(s, a)] + alpha_i log|A_i|``.

    Agent i's critic sees its own relaxed sample (with gradient), the other agents' exact one-hot samples
    (argmax of the same Gumbel noise; ``resample_all[i]``) or their buffer actions (MADDPG). Draws the Gumbel noise in the same order and shape
    as the Pyro guide (one ``[B, n, A_j]`` draw per agent), so with the same seed both agree exactly.
    ``common``: every ego but j reads one exact draw of a_j, the one drawn for the lowest such ego (common random
    numbers across the egos, ``--common-draws``).
    """
    dims = actors.param_dims
    n, batch = len(dims), state.shape[0]
    logits = actors(actors.observations(state))
    ys, log_pi_own = [], []
    for j, d in enumerate(dims):
        lj = logits[j, :, :d]
        y = RelaxedOneHotCategorical(torch.tensor(relax), logits=lj.unsqueeze(1).expand(batch, n, d)).rsample()
        own = torch.arange(n) == j
        y = torch.where(own[None, :, None], y, torch.nn.functional.one_hot(y.detach().argmax(-1), d).to(y.dtype))
        if common:
            first_other = 1 if j == 0 else 0
            y = torch.cat([y[:, e : e + 1] if e == j else y[:, first_other : first_other + 1] for e in range(n)], 1)
        keep = ~(resample_all | own)  # egos that read a_j from the buffer
        y = torch.where(keep[None, :, None], buffer_actions[j].unsqueeze(1), y)
        ys.append(torch.where(own[None, :, None], y, y.detach()))
        log_pi_own.append((y[:, j] * lj.log_softmax(-1)).sum(-1))
    joint = torch.cat(ys, -1).movedim(1, 0)  # [n, B, sum A]
    with frozen(critic):
        q = critic.min(state, joint)  # [n, B]
    log_pi = torch.stack(log_pi_own)  # [n, B]
    log_a = torch.log(torch.tensor(dims, dtype=q.dtype))
    return (alpha[:, None] * log_pi - q).mean(-1) + alpha * log_a
