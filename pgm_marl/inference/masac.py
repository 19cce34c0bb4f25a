r"""MA-SAC (Algorithm 1) and its variants as one loss object: named losses for critic, actor and temperature.

Each agent ``i`` carries an :class:`~pgm_marl.inference.variants.Algorithm`; the losses branch only on its
fields (temperature, resample, estimator), so mixed teams (Figure 2c-d) train side by side in one batch. What
an action is (discrete or a box) is the business of the agents' action spaces
(:class:`~pgm_marl.models.actions.ActionSpaces`) only.

* critic (eq. 7-8): regression of both twins to ``r_i + gamma (min twin target Q_i(s', a') - alpha_i log
  pi_i(a'_i | o'_i))`` with ``a'`` drawn exactly from the *target* policies of all agents;
* actor (eq. 9): minus the tempered one-step ELBO of agent i's model, read off Pyro traces
  (:func:`~pgm_marl.inference.actor.actor_terms`), or its exact sum over a_i for ``estimator="exact"``;
* temperature (``"learned"``): ``alpha_i (H(pi_i) - target)`` with ``log alpha_i`` trainable (Haarnoja 2018b);
* opponents (``others="inferred"``): maximum likelihood of each agent's rho_i^j
  (:meth:`~pgm_marl.inference.others.OthersModels.opponent_loss`).

An agent that infers the others or imagines them (``others="inferred"``, ``guide="optimistic"``) reads them
through ``others`` (:class:`~pgm_marl.inference.others.OthersModels`): its draws of eq. 7's a' and the policies
object and guide of its actor step; the losses are otherwise the same functions.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .actor import actor_terms, exact_actor_terms
from .soft_bellman import critic_regression_loss, soft_bellman_target
from .variants import Algorithm

__all__ = ["MASACLoss"]


class MASACLoss(nn.Module):
    """Named losses of MA-SAC and its variants for all agents at once (one batched forward per network).

    ``alpha``: each agent's fixed (or initial, if learned) temperature, resolved once for the run
    (:func:`~pgm_marl.inference.variants.temperatures`). ``others``: the learner's
    :class:`~pgm_marl.inference.others.OthersModels` when some algorithm has ``others="inferred"`` or
    ``guide="optimistic"`` (None otherwise).
    """

    def __init__(self, actors, critic, target_actors, target_critic, algorithms: list[Algorithm], action_spaces,
                 alpha: Sequence[float], gamma: float, others=None):
        super().__init__()
        self.others = others
        self.actors, self.critic = actors, critic
        self.target_actors, self.target_critic = target_actors, target_critic
        self.algorithms, self.spaces, self.gamma = list(algorithms), action_spaces, gamma
        init = torch.tensor([float(a) for a in alpha])
        learned = torch.tensor([a.temperature == "learned" for a in algorithms])
        self.register_buffer("learned", learned)
        self.log_alpha = nn.Parameter(init.clamp(min=1e-8).log())  # trained only where `learned`
        self.register_buffer("fixed_alpha", init)
        self.register_buffer("resample_all", torch.tensor([a.resample == "all" for a in algorithms]))
        self.register_buffer("exact", torch.tensor([a.estimator == "exact" for a in algorithms]))
        self.common = [a.draws == "common" for a in algorithms]  # agent j's a_j: one draw for every other ego
        if any(self.common) and others is not None:
            raise ValueError("draws='common' needs every agent to read the others' own policies (others='given', "
                             "the factorized guide): an agent with its own model of the others reads a_j from it; "
                             "accepted: draws='per-ego' in such a run")
        self.register_buffer("target_entropy", torch.tensor([s.target_entropy(a.target_entropy) for a, s in
                                                             zip(algorithms, action_spaces)]))

    def alpha(self) -> torch.Tensor:
        """Current temperatures ``[n]`` (learned ones detached: they are constants for actor and critic)."""
        return torch.where(self.learned, self.log_alpha.detach().exp(), self.fixed_alpha)

    def _sample(self, actors, state):
        """Joint action ``[B, sum size]`` drawn exactly from ``actors`` and ``log pi_i(a_i)`` ``[n, B]``: eq. 7's
        a', and a_{-i} of the exact estimator. No gradient flows through these draws, so nothing is relaxed,
        and the critic is queried at actions like those it is trained on."""
        return self.spaces.sample(actors(actors.observations(state)))

    def critic_loss(self, batch) -> torch.Tensor:
        """Eq. 8 with the target of eq. 7 (target networks, without gradient)."""
        n = len(self.algorithms)
        with torch.no_grad():
            if self.others is None:
                next_joint, next_log_pi = self._sample(self.target_actors, batch.next_state)
                next_joint = next_joint.expand(n, *next_joint.shape)
            else:  # agent i's a' from its own model of the others and its guide; log pi_i + log q_i / p_i
                next_joint, next_log_pi = self.others.next_actions(self.target_actors, batch.next_state)
            next_q = self.target_critic.min(batch.next_state, next_joint)
            target = soft_bellman_target(batch.reward.T, next_q, next_log_pi, self.alpha().unsqueeze(-1),
                                         self.gamma, batch.terminated)
        joint = torch.cat(self.spaces.encode(batch.actions), -1)
        q1, q2 = self.critic(batch.state, joint.expand(n, *joint.shape))
        return critic_regression_loss(q1, q2, target)

    def actor_terms(self, batch) -> dict[str, torch.Tensor]:
        """Eq. 9 per agent (``-alpha_elbo`` is agent i's actor loss), from Pyro; exact sum where the algorithm
        says (the Pyro path is skipped when every agent sums exactly)."""
        buffer_actions = self.spaces.encode(batch.actions)
        alpha = self.alpha()
        terms = None
        if not self.exact.all():
            relax = [a.relax for a in self.algorithms]
            policies, guide = (None, None) if self.others is None else (self.others.policies(self.actors),
                                                                        self.others.guide)
            terms = actor_terms(self.actors, self.critic, self.spaces, batch.state, buffer_actions, alpha,
                                self.resample_all, relax, policies, guide, self.common)
        if self.exact.any():
            if self.others is None:
                joint, _ = self._sample(self.actors, batch.state)
                joint = joint.detach().expand(len(self.algorithms), *joint.shape)
            else:  # each agent's a_{-i} from its own model of the others
                with torch.no_grad():
                    joint = self.others.next_actions(self.actors, batch.state, target=False)[0]
            if not self.resample_all.all():  # agents resampling only themselves see the buffer's a_{-i}
                buf = torch.cat(buffer_actions, -1)
                joint = torch.where(self.resample_all[:, None, None], joint, buf)
            exact = exact_actor_terms(self.actors, self.critic, self.spaces, batch.state, joint, alpha)
            terms = exact if terms is None else {k: torch.where(self.exact, exact[k], v) if k in exact else v
                                                 for k, v in terms.items()}
        return terms

    def temperature_loss(self, batch) -> torch.Tensor:
        """``sum_i alpha_i (H(pi_i) - target_i)`` over learned temperatures (:meth:`ActionSpace.entropy`: exact
        for discrete actions, a one-sample estimate for a box)."""
        with torch.no_grad():
            params = self.actors(self.actors.observations(batch.state))
            entropy = torch.stack([space.entropy(self.spaces.own(params, j)).mean(-1) if learned else
                                   params.new_zeros(()) for j, (space, learned) in
                                   enumerate(zip(self.spaces, self.learned.tolist()))])
        return (self.learned * self.log_alpha.exp() * (entropy - self.target_entropy)).sum()

    def forward(self, batch, opponent_batch=None) -> dict[str, torch.Tensor]:
        """All losses on ``batch``; rho's maximum likelihood on ``opponent_batch`` where the learner draws one (the
        buffer's newest transitions, ``Algorithm.opponent_data``), else on ``batch``."""
        terms = self.actor_terms(batch)
        out = {"loss/actor": -terms["alpha_elbo"].sum(), "loss/critic": self.critic_loss(batch),
               "actor/expected_q": terms["expected_q"].detach(),
               "actor/alpha_log_pi": terms["alpha_log_policy"].detach()}
        if self.learned.any():
            out["loss/temperature"] = self.temperature_loss(batch)
        if self.others is not None:
            if "alpha_kl_others" in terms:
                out["actor/alpha_kl_others"] = terms["alpha_kl_others"].detach()
            if self.others.opponents is not None:
                out["loss/opponents"], out["opponents/nll"], kl = self.others.opponent_loss(
                    self.actors, batch if opponent_batch is None else opponent_batch)
                out.update(kl)
        return out
