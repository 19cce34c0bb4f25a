r"""An optimistic guide over the others' actions (after ROMMEO, Tian et al. 2019): a new variational family for
agent i's model of Figure 1, the model itself unchanged.

The factorized guide of eq. 4 draws a_{-i} from the others' policies, so ELBO_i keeps a Jensen gap over a_{-i}
(README: "the price of not being risk-seeking"). This guide gives agent i its own model of the others' actions,
q_i(a_{-i} | o_i), and lets its policy act on the actions it imagines:

.. math::

    q_i(\tau) = p(s_0) \prod_t q_i(a_{-i}^t \mid o_i^t)\,\pi_i(a_i^t \mid o_i^t, a_{-i}^t)\,
        p(s_{t+1} \mid s_t, a^t),

while the model keeps a_{-i} ~ pi_{-i} (or agent i's rho_i of :mod:`pgm_marl.models.opponents`) as the prior.
Eq. 5 with this guide is

.. math::

    \mathrm{ELBO}_i = \mathbb E_{q_i}\Big[\sum_t \frac{r_i(s_t, a_t)}{\alpha} + \log p(a_i^t)
        - \log \pi_i(a_i^t \mid o_i^t, a_{-i}^t)
        - \log \frac{q_i(a_{-i}^t \mid o_i^t)}{\pi_{-i}(a_{-i}^t \mid s_t)}\Big],

the factorized ELBO plus freedom over a_{-i} at the price of KL(q_i || pi_{-i}). It is maximal (and equal to
log p(o_i = 1 | s_0) in a one-step game) at q_i = p(a_{-i} | s, o_i = 1) and pi_i = p(a_i | s, a_{-i}, o_i = 1)
(:func:`~pgm_marl.inference.exact.optimistic_optimum`). Site names and infos are those of
:func:`~pgm_marl.models.agent_mdp.agent_model`, so :func:`~pgm_marl.inference.elbo.elbo_particles` reads the
terms off the traces as before: ``log_policy`` is log pi_i(a_i | o_i, a_{-i}); the others' sites no longer
cancel, and their ``env`` term is -KL(q_i || pi_{-i}).

Agent j's site holds a value per ego (the ego plate). Ego e's row must hold the a_j it imagined *before* its
own a_e is drawn from pi_e(. | o_e, a_{-e}), and every site has rows of several egos, so the guide draws the
others' rows of every site first (:meth:`OptimisticViews.imagine`) and then each ego's own action
(:class:`OwnOrImagined`). What the guide needs of the policies object beyond the :class:`~pgm_marl.models.worlds.
Policies` protocol (``params``, ``action_spaces``: the model's side) is ``imagine(j, s, egos, estimator, relax,
hard_others, shape) -> (site, value)`` and ``own_sites(s, values, egos, estimator, relax)``: another family
over the others' actions (e.g. conditioned on the state, or on a_i as PR2's) is another policies object with
these two methods; the guide, the model and the losses stay as they are.
"""
from __future__ import annotations

import pyro
import torch
from pyro.distributions import TorchDistribution, constraints
from pyro.poutine.runtime import get_plates

from .actions import ActionSpaces
from .agent_mdp import ego_indices, per_agent
from .distributions import Replayed
from .opponents import EgoViews, ViewSpace, _pad_to, ego_rows

__all__ = ["optimistic_guide", "OwnOrImagined", "OptimisticViews", "plate_shape"]


def plate_shape() -> torch.Size:
    """The batch shape of the enclosing plates (what a site drawn here would have)."""
    frames = [f for f in get_plates() if f.dim is not None]
    shape = [1] * max((-f.dim for f in frames), default=0)
    for f in frames:
        shape[f.dim] = f.size
    return torch.Size(shape)


class OwnOrImagined(TorchDistribution):
    """Agent j's action site in the optimistic guide: where ``is_ego`` (``[n_ego]``) the ego's own action, drawn
    here from ``own`` (pi_j given what j imagines), elsewhere ``value``, the a_j the other egos imagined (or drew),
    already drawn from ``others``. A box value keeps its pre-squash ``u`` (``_presquash``)."""

    arg_constraints = {}
    support = constraints.real_vector

    def __init__(self, own, others, value: torch.Tensor, is_ego: torch.Tensor, validate_args=None):
        self.own, self.others, self.value, self.is_ego = own, others, value, is_ego
        batch = torch.broadcast_shapes(own.batch_shape, others.batch_shape, value.shape[:-1], is_ego.shape)
        super().__init__(batch, value.shape[-1:], validate_args=False)

    @property
    def has_rsample(self):
        return self.own.has_rsample

    def expand(self, batch_shape, _instance=None):
        return OwnOrImagined(self.own.expand(batch_shape), self.others, self.value, self.is_ego)

    def _draw(self, own):
        mask = self.is_ego[..., None]
        out = torch.where(mask, own, self.value)
        u_own, u_value = getattr(own, "_presquash", None), getattr(self.value, "_presquash", None)
        if u_own is not None and u_value is not None:
            out._presquash = torch.where(mask, u_own, u_value)
        return out

    def rsample(self, sample_shape=torch.Size()):
        return self._draw(self.own.rsample(sample_shape))

    def sample(self, sample_shape=torch.Size()):
        return self._draw(self.own.sample(sample_shape))

    def log_prob(self, value):
        return torch.where(self.is_ego, self.own.log_prob(value), self.others.log_prob(value))


def optimistic_guide(world, policies, agent=None, alpha: float = 1.0, estimator: str = "reparam", relax=1.0,
                     hard_others: bool = False, common_others=False) -> None:
    r"""Eq. 5's variational distribution replaced: q_i(a_{-i} | o_i) pi_i(a_i | o_i, a_{-i}) per step, with the
    world's own dynamics (the module docstring).

    The arguments are :func:`~pgm_marl.models.guide.policy_guide`'s. Per step: every ego's imagined a_{-e}
    (:meth:`imagine`: drawn from q_e; rows of egos with the factorized guide draw from their model of the
    others, exactly where ``hard_others``), then each ego's own a_e ~ pi_e(. | o_e, a_{-e}) (relaxed). Only
    ego e's parameters (theta_e, and q_e's) receive gradients from ego e's rows. Each ego imagines its own
    a_{-e}, so there is no draw the egos could share: ``common_others`` is refused.
    """
    if any(common_others if isinstance(common_others, (list, tuple)) else [common_others]):
        raise ValueError("optimistic_guide: each ego imagines its own a_{-e}, so common_others is not available; "
                         "accepted: common_others=False")
    egos = ego_indices(agent, world.n_agents)
    with world.plate():
        s = pyro.sample("s_0", world.initial(), infer={"kind": "state", "t": 0})
        with pyro.plate("ego", len(egos), dim=-1):
            for t in range(world.horizon):
                shape = plate_shape()
                drawn = [policies.imagine(j, s, egos, estimator, relax, hard_others, shape)
                         for j in range(world.n_agents)]
                own = policies.own_sites(s, [v for _, v in drawn], egos, estimator, relax)
                actions = []
                for j, (others, value) in enumerate(drawn):
                    is_ego = (egos == j).unsqueeze(-1)
                    d = world.replayed(j, OwnOrImagined(own[j], others, value, is_ego.squeeze(-1)), is_ego, t)
                    actions.append(pyro.sample(f"a_{j}_{t}", d, infer={"kind": "action", "agent": j, "t": t,
                                                                       "egos": egos}))
                if t + 1 < world.horizon:
                    s = pyro.sample(f"s_{t + 1}", world.transition(s, actions, t), infer={"kind": "state", "t": t + 1})


class OptimisticViews(EgoViews):
    """The policies object of :func:`optimistic_guide` for the learner's networks (every agent is an ego).

    The model's side is :class:`~pgm_marl.models.opponents.EgoViews` (row e of agent j: pi_j or rho_e^j). The
    guide's rows of agent j's site: ego e with the optimistic guide imagines a_j ~ q_e^j(. | o_e) (relaxed,
    gradient to q_e); an ego with the factorized guide draws from its model of j, exactly (hard), except that the
    model's pi_j of an optimistic agent j is its behaviour (imagine, then act: a mixture without a density),
    recorded from one exact draw and given log-density 0 in model and guide alike.

    ``actors``: :class:`~pgm_marl.models.opponents.ConditionalActors`; ``imagined``:
    :class:`~pgm_marl.models.opponents.ImaginedNets`; ``behaviour(s)``: one exact draw of every agent's action as
    it acts (site values, a list), needed only when such recorded rows exist.
    """

    def __init__(self, actors, opponents, imagined, spaces: ActionSpaces, model: ActionSpaces, behaviour=None):
        n = len(spaces)
        optimistic = torch.zeros(n, dtype=torch.bool)
        optimistic[imagined.egos] = True
        eye = torch.eye(n, dtype=torch.bool)
        modelled = torch.zeros(n, n, dtype=torch.bool)
        for e, j in (opponents.pairs if opponents is not None else []):
            modelled[e, j] = True
        self.imagining = optimistic[:, None] & ~eye  # [ego, j]: rows drawn from q_e
        recorded = ~modelled & ~optimistic[:, None] & optimistic[None, :] & ~eye
        super().__init__(actors, opponents, spaces, model, recorded)
        self.need_pi = not bool((modelled | eye).all())  # own rows: own_sites; the model's: the uniform prior
        self.imagined, self.optimistic, self.recorded, self.behaviour = imagined, optimistic, recorded, behaviour
        self.guide_spaces = [ViewSpace(spaces[j], model[j], modelled[:, j] | self.imagining[:, j]) for j in range(n)]
        self._qkey, self._q, self._bkey, self._b = None, None, None, None

    def _guide_views(self, s):
        """``[n_ego, n, *batch(s), P]``: the guide's parameters of each row (q_e where ego e imagines)."""
        if self._qkey is not s:
            views = self.views(s).detach()
            q = _pad_to(self.imagined(self.actors.observations(s)), self.width)  # [m, n, ..., P]
            index = torch.tensor(self.imagined.egos, dtype=torch.long)
            self._qkey, self._q = s, views.index_put((index,), q)
        return self._q

    def imagine(self, j, s, egos, estimator, relax, hard_others, shape):
        """Agent j's site at every ego's row but j's own: the guide's distribution and one draw of it (``shape``)."""
        if len(egos) != len(self.spaces):
            raise ValueError(f"OptimisticViews needs every agent as an ego; got egos {egos.tolist()}")
        rows = self.imagining[:, j]
        params = ego_rows(self._guide_views(s)[:, j])[..., : self.guide_spaces[j].param_dim]
        relaxes = {per_agent(relax, e) for e in range(len(egos)) if bool(self.optimistic[e])}
        if len(relaxes) > 1:
            raise ValueError(f"the optimistic egos have different relax values {sorted(relaxes)}; accepted: one")
        hard = ~rows if hard_others else None
        site = self.guide_spaces[j].policy_site(params, estimator, relaxes.pop() if relaxes else 1.0, hard)
        drawn = site.expand(shape)
        value = drawn.rsample() if drawn.has_rsample else drawn.sample()
        if bool(self.recorded[:, j].any()):
            behaviour = self._behaviour(s)[j].unsqueeze(-2)  # [..., 1, size]
            u = getattr(value, "_presquash", None)
            value = torch.where(self.recorded[:, j, None], behaviour.to(value.dtype), value)
            if u is not None:
                value._presquash = u
            site = Replayed(site, behaviour, self.recorded[:, j])
        return site, value

    def _behaviour(self, s):
        if self._bkey is not s:
            with torch.no_grad():
                self._bkey, self._b = s, self.behaviour(s.squeeze(-2))
        return self._b

    def own_sites(self, s, values, egos, estimator, relax):
        """Each agent's own site (used at its own ego row): pi_j(. | o_j, a_{-j} as j imagined them)."""
        joint = torch.cat(values, -1).movedim(-2, 0)  # [n, ..., sum size]: row k is what ego k imagined
        obs = self.actors.observations(s).squeeze(-2)  # (a state shared by the egos: [n, ..., d])
        obs = obs.expand(obs.shape[0], *joint.shape[1:-1], obs.shape[-1])
        params = self.actors(obs, joint)
        return [space.policy_site(self.spaces.own(params, j).unsqueeze(-2), estimator, per_agent(relax, j))
                for j, space in enumerate(self.spaces)]
