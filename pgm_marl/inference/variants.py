"""Algorithms as a few declared differences from MA-SAC (one frozen dataclass; losses branch only on its fields).

========================  ===========  ==========  =========  =======  ==========================================
preset                    temperature  resample    estimator  critic   what changes in eq. 5 / 9
========================  ===========  ==========  =========  =======  ==========================================
``masac``                 paper alpha  all         reparam    yes      nothing: eq. 7-9 (Algorithm 1)
``maddpg``                0            self        reparam    yes      alpha = 0 drops the entropy terms; a_{-i}
                                                                       from the buffer (guide = point mass on data);
                                                                       box actions: deterministic policy + noise
``masac-auto``            learned      all         reparam    yes      alpha_i tuned toward a target entropy
``masac-exact``           paper alpha  all         exact      yes      E over a_i summed exactly, not sampled
``reinforce-elbo``        paper alpha  all         score      no       eq. 5 over whole episodes, score function
``masac-inferred``        paper alpha  all         reparam    yes      ``others="inferred"``: rho_i^j(a_j | o_j),
                                                                       fitted to the buffer's newest transitions,
                                                                       stands in for pi_j in agent i's model
                                                                       (Lowe et al. 2017, 4.2)
``masac-optimistic``      paper alpha  all         reparam    yes      ``guide="optimistic"``: q_i(a_{-i} | o_i)
                                                                       pi_i(a_i | o_i, a_{-i}) instead of eq. 4,
                                                                       prior rho_i (ROMMEO, Tian et al. 2019)
========================  ===========  ==========  =========  =======  ==========================================

The last two change what agent i's model holds in the environment box of Figure 1 (``others``) and the
variational family (``guide``); the losses that fall out are derived in :mod:`pgm_marl.models.opponents` and
:mod:`pgm_marl.inference.optimistic`.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from typing import Mapping, Sequence

from ..errors import UserError

__all__ = ["Algorithm", "PRESETS", "PAPER_ALPHA", "register", "resolve", "parse_algo_spec", "temperatures"]

#: Section 5.2: temperature per task, found by grid search (shared by cooperating agents).
PAPER_ALPHA = {
    "cooperative_navigation": 0.02,
    "cooperative_communication": 0.005,
    "predator_prey": 0.26,
    "physical_deception": 0.01,
}

#: The number of agents each task had when section 5.2 tuned its temperature (mpe2's default sizes). A reward
#: that sums over landmarks or catches grows with the number of agents while alpha does not, so the paper's
#: value weighs the entropy term less there: at N = 24 in cooperative navigation it let shared policies collapse
#: to one action, and a learned temperature rose from 0.02 to 0.13-0.24 (docs/RESULTS.md, "Many agents").
PAPER_AGENTS = {
    "cooperative_navigation": 3,
    "cooperative_communication": 2,
    "predator_prey": 4,
    "physical_deception": 3,
}


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


@dataclass(frozen=True)
class Algorithm:
    """A max-ent multi-agent algorithm derived from agent i's model (Figure 1) and guide (eq. 4).

    Attributes:
        name: preset name, used in logs.
        temperature: alpha: ``"paper"`` (the task's alpha from section 5.2, or ``--alpha``), a number (0 gives
            the deterministic-policy-gradient limit), or ``"learned"`` (Haarnoja et al. 2018b). Which numbers are
            accepted for which algorithm is :func:`temperatures`'s to say, once, with the run's ``--alpha``.
        resample: actions drawn afresh in agent i's actor step: ``"all"`` (eq. 9, MA-SAC) or ``"self"`` (only
            a_i; a_{-i} are the buffer's, as MADDPG).
        estimator: gradient of the expectation over a_i: ``"reparam"`` (Gumbel-softmax, section 5.2),
            ``"score"`` (score function / REINFORCE), or ``"exact"`` (sum over discrete a_i).
        critic: whether a learned Q_i stands in for the future (eq. 7-8); without it the trajectory ELBO of
            eq. 5 is optimised directly from on-policy episodes.
        target_entropy: for ``temperature="learned"`` and discrete actions: the target entropy as a fraction
            of log |A_i|. (Box actions use Haarnoja et al. 2018b's -dim(A).)
        relax: the Gumbel-softmax relaxation of the ``"reparam"`` estimator for discrete actions (the sample is
            ``softmax((log pi + g) / relax)``; 1 in section 5.2). The relaxed gradient is biased for discrete
            actions by O(relax); ``"exact"`` is unbiased.
        box_policy: the policy family for Box actions: ``"squashed_gaussian"`` (tanh of a Gaussian,
            reparameterized) or ``"deterministic"`` (tanh of the mean, DDPG; a Box agent with it needs
            temperature 0 and the reparam estimator).
        exploration_noise: for a deterministic box policy: the standard deviation of the Gaussian noise added
            at acting time, as a fraction of the box's half-width (0.1 as Lillicrap et al. 2016 and Fujimoto et
            al. 2018 use for actions in [-1, 1]); the critic target uses the target policy's action, unsmoothed.
        others: what stands for pi_j (j != i) in agent i's model (the environment box of Figure 1): ``"given"``
            (pi_j itself, read in centralised training, eq. 2) or ``"inferred"`` (agent i never reads pi_j: its
            own approximation rho_i^j(a_j | o_j), fitted by maximum likelihood to the buffer's a_j with an
            entropy bonus, Lowe et al. 2017, section 4.2; :mod:`pgm_marl.models.opponents`).
        opponent_entropy: the weight lambda of that entropy bonus, ``-E_D[log rho_i^j(a_j | o_j) + lambda
            H(rho_i^j(. | o_j))]`` (``others="inferred"`` only; a number >= 0).
        opponent_data: the transitions rho_i^j is fitted on at each gradient step: ``"latest"`` (the newest
            ``batch_size`` transitions of the buffer, as Lowe et al. 2017, section 4.2, take the latest samples
            of each agent: rho follows the others' current policies) or ``"uniform"`` (the critic's uniform
            batch: rho fits the mixture of every policy the buffer still holds, measurably blurrier than the
            current pi_j, docs/RESULTS.md). All inferring agents of a run fit on the same data.
        guide: the variational family over one step's actions: ``"factorized"`` (eq. 4: every a_j ~ pi_j) or
            ``"optimistic"`` (agent i imagines the others' actions with its own q_i(a_{-i} | o_i) and acts on them,
            pi_i(a_i | o_i, a_{-i}); the model keeps its prior over a_{-i}, whose KL to q_i enters the ELBO;
            Tian et al. 2019; :mod:`pgm_marl.inference.optimistic`). Needs a critic, the reparam estimator,
            resample "all" and a temperature that is not learned.
        draws: how agent j's action is drawn for the other egos in the actor step of eq. 9, where every agent's
            model is unrolled side by side (the ego plate): ``"per-ego"`` (each ego i != j its own draw of a_j,
            the plate's independent models) or ``"common"`` (one draw of a_j per transition, read by every ego
            i != j: common random numbers, :class:`~pgm_marl.models.distributions.CommonOthers`). Each ELBO_i's
            estimator is the same in distribution either way, and so is each agent's gradient with one network
            per agent; only the egos' draws become dependent. It makes the attention critic read each agent's
            (o_j, a_j) once per transition instead of once per ego (README, Critic forms). No effect where a_{-i}
            are the buffer's (resample "self") or drawn once already (estimator "exact"); needs others "given"
            and the factorized guide (an ego's own model of the others has no draw to share).
    """

    name: str
    temperature: float | str = "paper"
    resample: str = "all"
    estimator: str = "reparam"
    critic: bool = True
    target_entropy: float = 0.5
    relax: float = 1.0
    box_policy: str = "squashed_gaussian"
    exploration_noise: float = 0.1
    others: str = "given"
    opponent_entropy: float = 1e-3
    opponent_data: str = "latest"
    guide: str = "factorized"
    draws: str = "per-ego"

    def __post_init__(self):
        checks = {
            "resample": (self.resample, ("all", "self")),
            "estimator": (self.estimator, ("reparam", "score", "exact")),
            "box_policy": (self.box_policy, ("squashed_gaussian", "deterministic")),
            "others": (self.others, ("given", "inferred")),
            "opponent_data": (self.opponent_data, ("latest", "uniform")),
            "guide": (self.guide, ("factorized", "optimistic")),
            "draws": (self.draws, ("per-ego", "common")),
        }
        for field, (value, accepted) in checks.items():
            if value not in accepted:
                raise ValueError(f"{field}={value!r} is not valid; accepted: {', '.join(accepted)}")
        t = self.temperature  # which kind only: the range of a number is checked by temperatures()
        if not (t in ("paper", "learned") if isinstance(t, str) else _is_number(t)):
            raise ValueError(f"temperature={t!r} is not valid; accepted: 'paper', 'learned' or a number")
        if not self.relax > 0:
            raise ValueError(f"relax={self.relax!r} is not valid; accepted: a number > 0")
        if not self.exploration_noise >= 0:
            raise ValueError(f"exploration_noise={self.exploration_noise!r} is not valid; accepted: a number >= 0")
        if not self.critic and self.estimator != "score":
            raise ValueError(f"critic=False needs estimator='score' (got {self.estimator!r}): "
                             "without a critic the simulator is not differentiable")
        if self.critic and self.estimator == "score":
            raise ValueError("estimator='score' with a critic is not implemented; accepted with critic=True: "
                             "'reparam', 'exact'")
        if not (_is_number(self.opponent_entropy) and math.isfinite(self.opponent_entropy)
                and self.opponent_entropy >= 0):
            raise ValueError(f"opponent_entropy={self.opponent_entropy!r} is not valid; accepted: a number >= 0")
        if self.others == "inferred" and not self.critic:
            raise ValueError(f"others={self.others!r} needs a critic (the opponent models stand in for pi_j in the "
                             "critic target and the actor step); accepted with critic=False: others='given'")
        optimistic_needs = {"estimator": "reparam", "resample": "all"}
        for field, needed in optimistic_needs.items():
            if self.guide == "optimistic" and getattr(self, field) != needed:
                raise ValueError(f"guide='optimistic' with {field}={getattr(self, field)!r} is not implemented; "
                                 f"accepted with guide='optimistic': {field}={needed!r}")
        if self.draws == "common" and (self.others != "given" or self.guide != "factorized" or not self.critic):
            raise ValueError(f"draws='common' with others={self.others!r}, guide={self.guide!r}, critic={self.critic} "
                             "is not available (each ego's own model of the others has no draw to share; without a "
                             "critic there is no actor step); accepted with draws='common': others='given', "
                             "guide='factorized', critic=True")
        if self.guide == "optimistic" and self.temperature == "learned":
            raise ValueError("guide='optimistic' with temperature='learned' is not implemented; accepted with "
                             "guide='optimistic': a fixed temperature ('paper' or a number)")

    def differences(self, other: "Algorithm") -> set[str]:
        """Names of the fields (other than ``name``) in which two algorithms differ."""
        return {f.name for f in dataclasses.fields(self)
                if f.name != "name" and getattr(self, f.name) != getattr(other, f.name)}


MASAC = Algorithm("masac")
PRESETS: dict[str, Algorithm] = {
    "masac": MASAC,
    "maddpg": dataclasses.replace(MASAC, name="maddpg", temperature=0.0, resample="self",
                                  box_policy="deterministic"),
    "masac-auto": dataclasses.replace(MASAC, name="masac-auto", temperature="learned"),
    "masac-exact": dataclasses.replace(MASAC, name="masac-exact", estimator="exact"),
    "reinforce-elbo": dataclasses.replace(MASAC, name="reinforce-elbo", estimator="score", critic=False),
    "masac-inferred": dataclasses.replace(MASAC, name="masac-inferred", others="inferred"),
    "masac-optimistic": dataclasses.replace(MASAC, name="masac-optimistic", guide="optimistic", others="inferred"),
}


def register(algorithm: Algorithm, replace: bool = False) -> Algorithm:
    """Make a user-defined preset available by name (``pgm-marl train --algo NAME`` in the same process).

    A name already taken is refused unless ``replace=True`` (registering the very same preset again is a no-op).
    """
    old = PRESETS.get(algorithm.name)
    if old is not None and old != algorithm and not replace:
        raise ValueError(f"an algorithm named {algorithm.name!r} is already registered ({old}); accepted: a new "
                         "name, or register(..., replace=True)")
    PRESETS[algorithm.name] = algorithm
    return algorithm


def temperatures(algorithms: Sequence[Algorithm], task: str, alpha: float | None = None,
                 n_agents: int | None = None) -> list[float]:
    """Each agent's fixed (or, for ``"learned"``, initial) temperature: the one place it is resolved and checked.

    A number in the preset wins; otherwise ``alpha`` (``--alpha``), else the task's value from section 5.2.
    A task the paper does not tune (an import path) has none: ``--alpha`` is then required, not guessed.
    Accepted: a finite number >= 0 (0 is the zero-temperature limit, MADDPG's), or > 0 where the algorithm
    divides by it (reinforce-elbo: eq. 3's ``r / alpha``) or trains its logarithm (``"learned"``). Anything else
    is refused with a one-line ``UserError`` naming the value, where it came from and what is accepted: nothing
    else in the library checks alpha's range. The paper's value used at another number of agents (``n_agents``,
    :data:`PAPER_AGENTS`) trains, with one warning (not for a learned temperature, which it only starts): it was
    tuned at the paper's size.
    """
    out, resized = [], False
    for a in algorithms:
        if _is_number(a.temperature):
            value, source = a.temperature, f"--algo {a.name}'s own temperature"
        elif alpha is not None:
            value, source = alpha, "--alpha"
        elif task in PAPER_ALPHA:
            value, source = PAPER_ALPHA[task], f"the paper's temperature for {task}"
            resized = resized or (a.temperature != "learned" and n_agents not in (None, PAPER_AGENTS[task]))
        else:
            raise UserError(f"task {task!r} has no temperature in the paper (section 5.2 tunes "
                            f"{', '.join(f'{k} {v}' for k, v in PAPER_ALPHA.items())}) and {a.name} needs one; "
                            "accepted: --alpha VALUE (e.g. --alpha 0.02)")
        strict = not a.critic or a.temperature == "learned"
        if not (_is_number(value) and math.isfinite(value) and (value > 0 if strict else value >= 0)):
            accepted = ("a finite number > 0 (eq. 3 divides by it)" if not a.critic else
                        "a finite number > 0 (a learned temperature's logarithm is trained)" if strict else
                        "a finite number >= 0 (0 is the zero-temperature limit, MADDPG's)")
            raise UserError(f"{source} {value!r} is not a valid temperature for {a.name}; accepted: {accepted}")
        out.append(float(value))
    if resized:
        warnings.warn(f"alpha {PAPER_ALPHA[task]} is the paper's temperature for {task} with {PAPER_AGENTS[task]} "
                      f"agents, not {n_agents}: the reward's scale changes with the number of agents, the entropy "
                      "term's does not (docs/RESULTS.md, 'Many agents'); set --alpha (e.g. scaled with the number of "
                      "agents) or use --algo masac-auto", UserWarning, stacklevel=2)
    return out


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
