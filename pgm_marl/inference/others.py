r"""What agent i's losses read of the other agents when it infers them or imagines them (``Algorithm.others``,
``Algorithm.guide``): the networks, their losses and the draws of eq. 7, in one module the learner holds.

**Inferred opponents** (``others="inferred"``, Lowe et al. 2017, section 4.2). Agent i's model holds rho_i^j in
the place of pi_j (:mod:`pgm_marl.models.opponents`); everything that read pi_j now reads rho_i^j:

* the critic target (eq. 7): ``a'_j ~ rho_i^j(. | o'_j)`` (target networks) for j != i, ``a'_i ~ pi_i``;
* the actor step (eq. 9): ``a_{-i} ~ rho_i(. | o_{-i})``, read off the same Pyro model and guide, whose policies
  object (:class:`~pgm_marl.models.opponents.EgoViews`) gives each ego its own model of each agent;
* rho_i^j itself: maximum likelihood of the buffer's a_j with an entropy bonus of weight lambda
  (``opponent_entropy``), :meth:`OthersModels.opponent_loss`:
  :math:`\mathcal L(\phi_i^j) = -\mathbb E_{(o_j, a_j) \sim \mathcal D}[\log \rho_i^j(a_j \mid o_j)
  + \lambda H(\rho_i^j(\cdot \mid o_j))]`, with D the buffer's newest transitions (``opponent_data="latest"``,
  Lowe et al.'s latest samples: rho follows the others' current policies) or the critic's uniform batch
  (``"uniform"``: rho fits the mixture of the past policies the buffer holds).

KL(pi_j || rho_i^j) on the batch is logged as a diagnostic (:meth:`OthersModels.diagnostics`); no loss reads it.

**Optimistic guide** (``guide="optimistic"``, :mod:`pgm_marl.models.optimistic_guide`). With
q_i(a_{-i} | o_i) pi_i(a_i | o_i, a_{-i}) as the guide, eq. 5 per step is
``E_q[r_i / alpha + log p(a_i) - log pi_i(a_i | o_i, a_{-i}) - log q_i(a_{-i} | o_i) + log p_i(a_{-i} | s)]``
with ``p_i`` agent i's prior over the others (pi_{-i}, or rho_i), and the losses that fall out are:

* critic target (eq. 7 under this guide): the soft value at s' is read at the actions agent i *imagines*:
  :math:`\bar Q_i = r_i + \gamma\,(1 - d)\,\big(Q_i(s', a'_i, \tilde a'_{-i}) - \alpha \log \pi_i(a'_i \mid o'_i,
  \tilde a'_{-i}) - \alpha \log \frac{q_i(\tilde a'_{-i} \mid o'_i)}{p_i(\tilde a'_{-i} \mid s')}\big)`,
  :math:`\tilde a'_{-i} \sim q_i(\cdot \mid o'_i),\ a'_i \sim \pi_i(\cdot \mid o'_i, \tilde a'_{-i})`
  (:meth:`OthersModels.next_actions`; the critic is still regressed at the buffer's (s, a), eq. 8);
* actor and q_i (eq. 9 under this guide), one tempered ELBO read off the traces, minimised in theta_i and psi_i:
  :math:`\mathcal E_i = -\mathbb E_{s \sim \mathcal D}\,\mathbb E_{\tilde a_{-i} \sim q_i,\, a_i \sim \pi_i}
  \big[Q_i(s, a_i, \tilde a_{-i}) - \alpha \log \pi_i(a_i \mid o_i, \tilde a_{-i})\big]
  + \alpha\,\mathrm{KL}(q_i(\cdot \mid o_i) \,\|\, p_i(\cdot \mid s))`;
  its gradient in theta_i is the actor's loss, in psi_i the loss of q_i: ``-E[Q] + alpha KL(q_i || p_i) - alpha
  E[H(pi_i)]``.

Acting draws the imagined a_{-i} from q_i, then a_i from pi_i(. | o_i, a_{-i}) (:meth:`OthersModels.act`).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..errors import UserError
from ..models.actions import ActionSpaces
from ..models.guide import policy_guide
from ..models.opponents import EgoViews, ImaginedNets, OpponentNets, other_pairs
from ..models.optimistic_guide import OptimisticViews, optimistic_guide
from ..networks import polyak_update

__all__ = ["OthersModels", "check_others"]


def check_others(agents, spaces, algorithms) -> None:
    """An optimistic agent whose prior over agent j is pi_j itself (``others="given"``) needs pi_j's density: j
    must act by the factorized guide (an optimistic agent's behaviour is a mixture) with a stochastic policy."""
    data = {alg.opponent_data for alg in algorithms if alg.others == "inferred"}
    if len(data) > 1:
        raise UserError(f"agents that infer the others fit rho on the same data; got opponent_data "
                        f"{', '.join(sorted(data))}; accepted: one of latest, uniform for all of them")
    for e, (agent, alg) in enumerate(zip(agents, algorithms)):
        if alg.guide != "optimistic" or alg.others != "given":
            continue
        for j, (other, o_alg) in enumerate(zip(agents, algorithms)):
            if j != e and (o_alg.guide == "optimistic" or getattr(spaces[j], "deterministic", False)):
                why = "acts by the optimistic guide" if o_alg.guide == "optimistic" else "has a deterministic policy"
                raise UserError(f"--algo {alg.name}: agent {agent!r} takes pi_j as its prior over the others' actions "
                                f"(others='given'), but agent {other!r} ({o_alg.name}) {why}, whose density is not "
                                f"available; accepted: others='inferred' for {agent!r} (as masac-optimistic), or an "
                                f"algorithm with a factorized guide and a stochastic policy for {other!r}")


class OthersModels(nn.Module):
    """The opponent models rho (agents with ``others="inferred"``) and imagined-action models q (agents with
    ``guide="optimistic"``) of a learner, their target networks, and what the losses need of them.

    ``spaces``: the agents' action spaces; rho and q use the stochastic family of the same spaces
    (``self.model``). ``opponents`` / ``imagined``: modules to use instead of the default MLPs (same interface:
    :class:`~pgm_marl.models.opponents.OpponentNets`, :class:`~pgm_marl.models.opponents.ImaginedNets`).
    """

    def __init__(self, spec, spaces: ActionSpaces, algorithms, hidden: int = 128, precision: str = "float32",
                 opponents: nn.Module | None = None, imagined: nn.Module | None = None):
        super().__init__()
        check_others(spec.agents, spaces, algorithms)
        n = len(spaces)
        self.agents, self.spaces = list(spec.agents), spaces
        self.model = ActionSpaces.from_specs(spec.action_spaces)
        inferring = [e for e, a in enumerate(algorithms) if a.others == "inferred"]
        imagining = [e for e, a in enumerate(algorithms) if a.guide == "optimistic"]
        if opponents is None and inferring:
            opponents = OpponentNets(spec.obs_dims, self.model, other_pairs(inferring, n), hidden, precision)
        if imagined is None and imagining:
            imagined = ImaginedNets(spec.obs_dims, self.model, imagining, hidden, precision)
        self.opponents, self.imagined = opponents, imagined
        self.target_opponents, self.target_imagined = copy.deepcopy(opponents), copy.deepcopy(imagined)
        for target in (self.target_opponents, self.target_imagined):
            for p in (target.parameters() if target is not None else []):
                p.requires_grad_(False)
        self.register_buffer("entropy_weight", torch.tensor([float(a.opponent_entropy) for a in algorithms]))
        #: the data rho is fitted on (one choice for all inferring agents, :func:`check_others`); None: no rho
        self.opponent_data = algorithms[inferring[0]].opponent_data if inferring else None
        self.pair_index = {pair: k for k, pair in enumerate(opponents.pairs)} if opponents is not None else {}
        self.imagining = list(imagined.egos) if imagined is not None else []

    @property
    def guide(self):
        """The guide of the actor step: :func:`optimistic_guide` if any agent imagines, else eq. 4's."""
        return optimistic_guide if self.imagined is not None else policy_guide

    def policies(self, actors):
        """The policies object of agent i's model and guide (:class:`EgoViews` / :class:`OptimisticViews`)."""
        if self.imagined is None:
            return EgoViews(actors, self.opponents, self.spaces, self.model)
        return OptimisticViews(actors, self.opponents, self.imagined, self.spaces, self.model,
                               behaviour=lambda state: self.spaces.encode(self.spaces.store(
                                   self.act(actors, actors.observations(state)))))

    def _imagine(self, q: torch.Tensor, draw, like: torch.Tensor):
        """Every imagining ego's a_{-e} from ``q`` ``[m, n, *batch, P]`` by ``draw(space, params) -> (value,
        log q)``: the joint ``[n, *batch, sum size]`` (row e: what ego e imagines; zeros elsewhere), the values
        ``{(e, j): value}`` and ``log q_e(a_{-e})`` ``{e: [*batch]}``."""
        n, batch = len(self.spaces), q.shape[2:-1]
        values, log_q = {}, {}
        rows = [like.new_zeros(*batch, sum(self.spaces.sizes)) for _ in range(n)]
        for r, e in enumerate(self.imagining):
            parts = []
            for j in range(n):
                if j == e:
                    parts.append(like.new_zeros(*batch, self.spaces.sizes[j]))
                    continue
                values[e, j], lq = draw(self.model[j], q[r, j, ..., : self.model.param_dims[j]])
                log_q[e] = log_q.get(e, 0.0) + lq
                parts.append(values[e, j].to(like.dtype))
            rows[e] = torch.cat(parts, -1)
        return torch.stack(rows), values, log_q

    @torch.no_grad()
    def act(self, actors, obs: torch.Tensor, deterministic: bool = False):
        """Decentralised acting: ``a_{-i} ~ q_i(. | o_i)`` imagined (or its mode), then ``a_i ~ pi_i(. | o_i,
        a_{-i})`` (or its mode); agents with the factorized guide act as always. ``obs`` ``[n, K, max d]``."""
        if self.imagined is None:
            return self.spaces.act(actors(obs), deterministic)
        joint, _, _ = self._imagine(self.imagined(obs), lambda space, p: (space.encode(space.act(p, deterministic)),
                                                                          p.new_zeros(p.shape[:-1])), obs)
        return self.spaces.act(actors(obs, joint), deterministic)

    def next_actions(self, actors, state: torch.Tensor, target: bool = True):
        r"""Eq. 7's a' for every ego's critic and its log-density ratio (see the module docstring).

        Returns ``joint`` ``[n, B, sum size]`` (row i: the joint action in agent i's target) and ``log_ratio``
        ``[n, B]``: ``log pi_i(a'_i | ...)`` plus, for an imagining ego, ``log q_i(a'_{-i}) - log p_i(a'_{-i})``;
        soft_bellman_target subtracts ``alpha_i`` times it. ``target``: the target networks (``actors`` too are
        the caller's choice). A row whose ego reads pi_j gets agent j's behaviour draw; an inferring ego's rows
        are drawn from its rho with the same random numbers as j's draw (so with rho = pi they are that draw).
        """
        opponents, imagined = (self.target_opponents, self.target_imagined) if target else (self.opponents,
                                                                                           self.imagined)
        n, spaces, model = len(self.spaces), self.spaces, self.model
        obs = actors.observations(state)
        log_ratio = [state.new_zeros(state.shape[0]) for _ in range(n)]
        values, log_q, cond = {}, {}, None
        if imagined is not None:
            cond, values, log_q = self._imagine(imagined(obs), lambda space, p: space.sample(p), state)
        pi = actors(obs) if cond is None else actors(obs, cond)
        rho = opponents(obs) if opponents is not None else None
        for j in range(n):
            rng = torch.get_rng_state()
            a_j, log_pi = spaces[j].sample(spaces.own(pi, j))  # j's behaviour (eq. 7's a'_j)
            values[j, j], log_ratio[j] = a_j, log_pi
            for e in range(n):
                if (e, j) in self.pair_index and (e, j) not in values:  # ego e's model of j, same random numbers
                    torch.set_rng_state(rng)
                    values[e, j], _ = model[j].sample(rho[self.pair_index[e, j], ..., : model.param_dims[j]])
        for e in self.imagining:  # - log p_e(a'_{-e}): the prior density of what ego e imagined
            prior = sum(self._prior_log_prob(e, j, values[e, j], pi, rho) for j in range(n) if j != e)
            log_ratio[e] = log_ratio[e] + log_q[e] - prior
        joint = torch.stack([torch.cat([values.get((e, j), values[j, j]) for j in range(n)], -1) for e in range(n)])
        return joint, torch.stack(log_ratio)

    def _prior_log_prob(self, e, j, value, pi, rho):
        """log p_e(a_j): ego e's rho_e^j, or pi_j (given; a factorized, stochastic agent: :func:`check_others`)."""
        if (e, j) in self.pair_index:
            return self.model[j].policy_site(rho[self.pair_index[e, j], ..., : self.model.param_dims[j]],
                                             "reparam", 1.0).log_prob(value)
        return self.spaces[j].policy_site(self.spaces.own(pi, j), "reparam", 1.0).log_prob(value)

    def opponent_loss(self, actors, batch):
        r"""Maximum likelihood of rho (Lowe et al. 2017, section 4.2): ``sum_{(i, j)} E_D[-log rho_i^j(a_j | o_j) -
        lambda_i H(rho_i^j(. | o_j))]`` over the batch's states and actions. Returns ``(loss, nll, kl)``: ``nll``
        ``[n]`` each inferring agent's mean negative log-likelihood over its opponents (0 for the others), ``kl``
        the diagnostics of :meth:`diagnostics` on the batch's states."""
        obs = actors.observations(batch.state)
        rho = self.opponents(obs)
        kl = self.diagnostics(actors, obs, rho.detach())
        actions = self.spaces.encode(batch.actions)
        n = len(self.spaces)
        total, nll = batch.state.new_zeros(()), [batch.state.new_zeros(()) for _ in range(n)]
        for j in range(n):
            rows = [k for (e, jj), k in self.pair_index.items() if jj == j]
            if not rows:
                continue
            params = rho[rows][..., : self.model.param_dims[j]]  # [r, B, P_j]
            log_rho = self.model[j].policy_site(params, "reparam", 1.0).log_prob(actions[j])  # [r, B]
            entropy = self.model[j].entropy(params)
            egos = [e for (e, jj) in self.pair_index if jj == j]
            weight = self.entropy_weight[egos].unsqueeze(-1)
            total = total + (-log_rho - weight * entropy).mean(-1).sum()
            for e, value in zip(egos, (-log_rho).mean(-1)):
                nll[e] = nll[e] + value.detach() / (n - 1)
        return total, torch.stack(nll), kl

    @torch.no_grad()
    def diagnostics(self, actors, obs, rho) -> dict[str, torch.Tensor]:
        """``opponents/kl/<agent>``: the mean over agent i's opponents j of KL(pi_j || rho_i^j) at the observations
        ``obs`` (rho's parameters there: ``rho``), exact for a finite action set, a one-sample estimate with fixed
        random numbers on a box. Opponents whose behaviour has no density (an optimistic or deterministic agent)
        are left out. A diagnostic only: no loss reads it."""
        pi = actors(obs)
        kls: dict[int, list] = {}
        for (e, j), k in self.pair_index.items():
            if j in self.imagining or getattr(self.spaces[j], "deterministic", False):
                continue
            p_pi, p_rho = self.spaces.own(pi, j), rho[k, ..., : self.model.param_dims[j]]
            if self.spaces[j].enumerable:
                rows = self.spaces[j].enumerate().to(pi.dtype)[:, None, :]  # [A, 1, size]
                log_pi = self.spaces[j].policy_site(p_pi, "reparam", 1.0).log_prob(rows)  # [A, B]
                log_rho = self.model[j].policy_site(p_rho, "reparam", 1.0).log_prob(rows)
                kl = (log_pi.exp() * (log_pi - log_rho)).sum(0)
            else:
                a, log_pi = self.spaces[j].sample(p_pi, torch.Generator().manual_seed(0))
                kl = log_pi - self.model[j].policy_site(p_rho, "reparam", 1.0).log_prob(a)
            kls.setdefault(e, []).append(kl.mean())
        return {f"opponents/kl/{self.agents[e]}": torch.stack(v).mean() for e, v in kls.items()}

    def update_targets(self, tau: float) -> None:
        """Polyak averaging of rho's and q's target networks (Algorithm 1's, for the new networks)."""
        for target, online in ((self.target_opponents, self.opponents), (self.target_imagined, self.imagined)):
            if online is not None:
                polyak_update(target, online, tau)
