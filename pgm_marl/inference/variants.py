"""Algorithms as a few declared differences from MA-SAC (one frozen dataclass; losses branch only on its fields).

========================  ===========  ==========  =========  =======  ==========================================
preset                    temperature  resample    estimator  critic   what changes in eq. 5 / 9
========================  ===========  ==========  =========  =======  ==========================================
``masac``                 paper alpha  all         reparam    yes      nothing: eq. 7-9 (Algorithm 1)
``maddpg``                0            self        reparam    yes      alpha = 0 drops the entropy terms; a_{-i}
                                                                       from the buffer (guide = point mass on data)
``masac-auto``            learned      all         reparam    yes      alpha_i tuned toward a target entropy
``masac-exact``           paper alpha  all         exact      yes      E over a_i summed exactly, not sampled
``reinforce-elbo``        paper alpha  all         score      no       eq. 5 over whole episodes, score function
========================  ===========  ==========  =========  =======  ==========================================
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping, Sequence

from ..errors import UserError

__all__ = ["Algorithm", "PRESETS", "PAPER_ALPHA", "register", "resolve", "parse_algo_spec"]

#: Section 5.2: temperature per task, found by grid search (shared by cooperating agents).
PAPER_ALPHA = {
    "cooperative_navigation": 0.02,
    "cooperative_communication": 0.005,
    "predator_prey": 0.26,
    "physical_deception": 0.01,
}
DEFAULT_ALPHA = 0.02


@dataclass(frozen=True)
class Algorithm:
    """A max-ent multi-agent algorithm derived from agent i's model (Figure 1) and guide (eq. 4).

    Attributes:
        name: preset name, used in logs.
        temperature: ``"paper"`` (the task's alpha from section 5.2, or ``--alpha``), a number >= 0 (0 gives
            the deterministic-policy-gradient limit), or ``"learned"`` (Haarnoja et al. 2018b).
        resample: actions drawn afresh in agent i's actor step: ``"all"`` (eq. 9, MA-SAC) or ``"self"`` (only
            a_i; a_{-i} are the buffer's, as MADDPG).
        estimator: gradient of the expectation over a_i: ``"reparam"`` (Gumbel-softmax, section 5.2),
            ``"score"`` (score function / REINFORCE), or ``"exact"`` (sum over discrete a_i).
        critic: whether a learned Q_i stands in for the future (eq. 7-8); without it the trajectory ELBO of
            eq. 5 is optimised directly from on-policy episodes.
        target_entropy: for ``temperature="learned"``: the target entropy as a fraction of log |A_i|.
        relax: Gumbel-softmax temperature of the ``"reparam"`` estimator (1 in section 5.2). The relaxed
            gradient is biased for discrete actions by O(relax); ``"exact"`` is unbiased.
    """

    name: str
    temperature: float | str = "paper"
    resample: str = "all"
    estimator: str = "reparam"
    critic: bool = True
    target_entropy: float = 0.5
    relax: float = 1.0

    def __post_init__(self):
        checks = {
            "resample": (self.resample, ("all", "self")),
            "estimator": (self.estimator, ("reparam", "score", "exact")),
        }
        for field, (value, accepted) in checks.items():
            if value not in accepted:
                raise ValueError(f"{field}={value!r} is not valid; accepted: {', '.join(accepted)}")
        t = self.temperature
        if not (t in ("paper", "learned") or (isinstance(t, (int, float)) and t >= 0)):
            raise ValueError(f"temperature={t!r} is not valid; accepted: 'paper', 'learned' or a number >= 0")
        if not self.relax > 0:
            raise ValueError(f"relax={self.relax!r} is not valid; accepted: a number > 0")
        if not self.critic and self.estimator != "score":
            raise ValueError(f"critic=False needs estimator='score' (got {self.estimator!r}): "
                             "without a critic the simulator is not differentiable")
        if self.critic and self.estimator == "score":
            raise ValueError("estimator='score' with a critic is not implemented; accepted with critic=True: "
                             "'reparam', 'exact'")

    def alpha(self, task: str, override: float | None = None) -> float:
        """Initial/fixed temperature for ``task``."""
        if isinstance(self.temperature, (int, float)):
            return float(self.temperature)
        return float(override) if override is not None else PAPER_ALPHA.get(task, DEFAULT_ALPHA)

    def differences(self, other: "Algorithm") -> set[str]:
        """Names of the fields (other than ``name``) in which two algorithms differ."""
        return {f.name for f in dataclasses.fields(self)
                if f.name != "name" and getattr(self, f.name) != getattr(other, f.name)}


MASAC = Algorithm("masac")
PRESETS: dict[str, Algorithm] = {
    "masac": MASAC,
    "maddpg": dataclasses.replace(MASAC, name="maddpg", temperature=0.0, resample="self"),
    "masac-auto": dataclasses.replace(MASAC, name="masac-auto", temperature="learned"),
    "masac-exact": dataclasses.replace(MASAC, name="masac-exact", estimator="exact"),
    "reinforce-elbo": dataclasses.replace(MASAC, name="reinforce-elbo", estimator="score", critic=False),
}


def register(algorithm: Algorithm) -> Algorithm:
    """Make a user-defined preset available by name (``pgm-marl train --algo NAME`` in the same process)."""
    PRESETS[algorithm.name] = algorithm
    return algorithm


def resolve(name: str | Algorithm) -> Algorithm:
    if isinstance(name, Algorithm):
        return name
    if name not in PRESETS:
        raise UserError(f"unknown algorithm {name!r}; accepted: {', '.join(PRESETS)}")
    return PRESETS[name]


def parse_algo_spec(spec: str, teams: Mapping[str, Sequence[str]], agents: Sequence[str]) -> list[Algorithm]:
    """``"masac"`` (every agent) or ``"team=algo,team=algo"`` (Figure 2c-d) -> one Algorithm per agent."""
    if "=" not in spec:
        return [resolve(spec.strip())] * len(agents)
    chosen = {}
    for part in spec.split(","):
        team, _, algo = part.partition("=")
        team = team.strip()
        if team not in teams:
            raise UserError(f"unknown team {team!r} in --algo {spec!r}; accepted teams: {', '.join(teams)}")
        chosen[team] = resolve(algo.strip())
    missing = [t for t in teams if t not in chosen]
    if missing:
        raise UserError(f"--algo {spec!r} gives no algorithm for team(s) {', '.join(missing)}; teams: {', '.join(teams)}")
    per_agent = {a: chosen[t] for t, members in teams.items() for a in members}
    return [per_agent[a] for a in agents]
