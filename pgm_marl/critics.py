r"""The forms of Q_i(s, a) (section 5.4, ``--critic``): one interface, so eq. 7-9 never see which one runs.

Every form is a module with twin critics for all ``n`` agents and the interface of
:class:`~pgm_marl.networks.TwinCritics`, the only thing :class:`~pgm_marl.inference.masac.MASACLoss` and
:class:`~pgm_marl.models.worlds.CriticWorld` call:

* ``forward(state [B, D], joint [n, *batch, B, sum size]) -> (q1, q2)``, each ``[n, *batch, B]``: agent i's
  critics see the global state (the concatenated observations) and ``joint[i]``, its own view of the joint
  action (site values: one-hot or relaxed one-hot for discrete actions, the action vector for boxes);
* ``min(state, joint)``: the smaller twin.

The forms differ only in what they read:

========================  ===========================================================================  =======
``--critic``              Q_i reads                                                                    source
========================  ===========================================================================  =======
``mlp``                   the whole state and joint action (one MLP per agent; the paper's critic)     eq. 7-8
``local``                 o_i, a_i only: no centralisation                                             --
``mean-field``            o_i, a_i and, per team, the mean action of the team's other members          Yang 18
``attention``             o_i, a_i and an attention summary of every other agent's (o_j, a_j)          Iqbal 19
========================  ===========================================================================  =======

With :class:`~pgm_marl.networks.Sharing` (``--share-params``) the agents of a team share each form's per-agent
parameters and an agent-index input tells them apart.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .config import CRITIC_FORMS
from .errors import UserError
from .models.actions import ActionSpaces
from .networks import BatchedLinear, BatchedMLP, Sharing, TwinCritics, gather_last, observation_index

__all__ = ["CRITIC_FORMS", "make_critic", "LocalCritics", "MeanFieldCritics", "AttentionCritics", "AgentInputs"]


class AgentInputs(nn.Module):
    """Each agent's slice of the state and of a joint action, zero-padded to the widest agent."""

    def __init__(self, obs_dims: Sequence[int], sizes: Sequence[int]):
        super().__init__()
        self.n, self.d_obs, self.size = len(obs_dims), max(obs_dims), max(sizes)
        self.register_buffer("obs_index", observation_index(obs_dims), persistent=False)
        self.register_buffer("slot_index", observation_index(sizes), persistent=False)
        self.equal_sizes = len(set(sizes)) == 1

    def obs(self, state: torch.Tensor) -> torch.Tensor:
        """``state [B, D] -> o [n, B, max d_i]``."""
        return gather_last(state, self.obs_index)

    def slots(self, joint: torch.Tensor) -> torch.Tensor:
        """``joint [n, *batch, B, S] -> [n, *batch, B, n, max size]``: ego i's value of every agent j's action (a
        view of ``joint`` when every agent's action is as wide: no copy of the n^2 B values, none in backward)."""
        if self.equal_sizes:
            return joint.unflatten(-1, (self.n, self.size))
        padded = torch.cat([joint, joint.new_zeros(joint.shape[:-1] + (1,))], -1)
        return padded[..., self.slot_index]

    def own(self, slots: torch.Tensor) -> torch.Tensor:
        """Each ego's own action ``[n, *batch, B, max size]`` from :meth:`slots`."""
        return slots.diagonal(dim1=0, dim2=-2).movedim(-1, 0)


class _Form(nn.Module):
    def min(self, state: torch.Tensor, joint_actions: torch.Tensor) -> torch.Tensor:
        return torch.minimum(*self(state, joint_actions))


class LocalCritics(_Form):
    """``Q_i(o_i, a_i)``: independent learners' critics, no centralisation (the baseline every other form must
    beat); the other agents enter only through the data."""

    def __init__(self, obs_dims, action_spaces, hidden: int = 128, precision: str = "float32",
                 sharing: Sharing | None = None):
        super().__init__()
        spaces = ActionSpaces.coerce(action_spaces)
        self.inputs = AgentInputs(obs_dims, spaces.sizes)
        self.n = len(obs_dims)
        self.net = BatchedMLP(2 * self.n, self.inputs.d_obs + self.extra_width(spaces) + self.inputs.size, 1,
                              hidden, precision=precision, sharing=None if sharing is None else sharing.twice())

    def extra_width(self, spaces) -> int:
        return 0

    def extra(self, slots: torch.Tensor) -> list:
        return []

    def forward(self, state: torch.Tensor, joint_actions: torch.Tensor):
        slots = self.inputs.slots(joint_actions)  # [n, *batch, B, n, size]
        acts = torch.cat([self.inputs.own(slots), *self.extra(slots)], -1)  # [n, *batch, B, d_act]: a few floats
        q = self.net(None, first=self._first_layer(self.inputs.obs(state), acts)).squeeze(-1)
        return q[: self.n], q[self.n:]

    def _first_layer(self, obs: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
        """The first layer of the ``2n`` networks on ``[o_i, acts_i]``, written ``W_o o_i + W_a acts_i + b`` (the
        same product, summed in another order): ``o [n, B, d_obs]`` once for both twins and every ``*batch``
        (one GEMM of width 2H, its input neither copied nor concatenated with the actions), the narrow action
        part as its own small product. Returns ``[2n, *batch, B, H]`` (twin 1's n networks, then twin 2's)."""
        n = self.n
        weight, bias = self.net.layers[0].params()  # [2n, d_obs + d_act, H], [2n, 1, H]
        d_obs, hidden = obs.shape[-1], weight.shape[-1]
        w_obs = torch.cat([weight[:n, :d_obs], weight[n:, :d_obs]], -1)  # [n, d_obs, 2H]: both twins side by side
        h_obs = torch.bmm(obs.reshape(n, -1, d_obs).to(weight.dtype), w_obs)  # [n, B, 2H]
        batch = acts.shape[1:-1]  # (*batch, B)
        h_obs = h_obs.view(n, *([1] * (len(batch) - obs.dim() + 2)), *obs.shape[1:-1], 2, hidden).movedim(-2, 0)
        h_act = torch.baddbmm(bias, torch.cat([acts, acts]).reshape(2 * n, -1, acts.shape[-1]).to(weight.dtype),
                              weight[:, d_obs:])  # [2n, *batch * B, H]
        return (h_act.view(2, n, *batch, hidden) + h_obs).view(2 * n, *batch, hidden)


class MeanFieldCritics(LocalCritics):
    """``Q_i(o_i, a_i, mean_{j in T, j != i} a_j for each team T)`` (Yang et al. 2018): the others enter only
    through one mean action per team (a mean of one-hot vectors for discrete actions, of the action vectors for
    boxes; an agent alone in its team reads zeros for its own team), so the input does not grow with n."""

    def __init__(self, obs_dims, action_spaces, teams: Sequence[Sequence[int]], hidden: int = 128,
                 precision: str = "float32", sharing: Sharing | None = None):
        n = len(obs_dims)
        if n < 2:
            raise UserError("--critic mean-field needs other agents (Q_i reads their mean action), but the task "
                            "has 1 agent; accepted for it: mlp, local")
        spaces = ActionSpaces.coerce(action_spaces)
        self.team_sizes = [max(spaces.sizes[j] for j in team) for team in teams]
        super().__init__(obs_dims, spaces, hidden, precision, sharing)
        weights = torch.zeros(len(teams), n, n)  # [team, ego, other]: the averaging weights
        for t, team in enumerate(teams):
            for i in range(n):
                others = [j for j in team if j != i]
                weights[t, i, others] = 1.0 / max(len(others), 1)
        self.register_buffer("mean_weights", weights, persistent=False)

    def extra_width(self, spaces) -> int:
        return sum(self.team_sizes)

    def extra(self, slots: torch.Tensor) -> list:
        n = self.n
        if slots.stride(0) == 0:  # one joint action for every ego (the critic loss): each ego's means from one copy
            one = slots[0]  # [*batch, B, n, size]
            flat = one.movedim(-2, 0).reshape(n, -1)  # [n, (*batch, B, size)]: agent-major, one small copy
            means = (self.mean_weights.view(-1, n) @ flat).view(len(self.team_sizes), n, *one.shape[:-2], -1)
            return [means[t][..., :size] for t, size in enumerate(self.team_sizes)]
        w = self.mean_weights.reshape(len(self.team_sizes), n, *([1] * (slots.dim() - 3)), n, 1)
        return [(slots * w[t]).sum(-2)[..., :size] for t, size in enumerate(self.team_sizes)]


class AttentionCritics(_Form):
    r"""The attention critic of Iqbal & Sha 2019 (MAAC), one per twin:

    .. math::

        e_j = \mathrm{LeakyReLU}(W_j [o_j, a_j]), \quad
        x_i = \big\Vert_h \sum_{j \ne i} \mathrm{softmax}_j\Big(\frac{(W^h_q e_i)^\top W^h_k e_j}{\sqrt{d_k}}\Big)
              \mathrm{LeakyReLU}(W^h_v e_j), \quad
        Q_i = f_i([e_i, x_i])

    with per-agent encoders ``W_j`` and output heads ``f_i`` (Linear(2H, H), ReLU, Linear(H, 1)), and keys,
    queries and values shared by all agents. Unlike MAAC, whose head outputs Q for every discrete action of
    agent i, the query and the head read agent i's embedding of its own action, so relaxed one-hot and box
    actions enter Q_i differentiably, as eq. 9 needs. Left out of MAAC: the 1e-3 penalty on the attention
    logits and the 1/n scaling of shared modules' gradients (they would change the loss).

    Cost: four paths give the same numbers. One joint action for every ego (the critic loss): each agent's
    embedding, key and value once, n B rows through the H x H projections. Every ego i != j sees one value of
    a_j (``--common-draws``, :class:`~pgm_marl.models.distributions.CommonOthers`, and the exact estimator):
    the same, plus each ego's own embedding for its query and head. Each ego its own draw of a_{-i} (the actor
    step of eq. 9 by default): agent i's view of agent j's embedding differs per ego; for one-hot actions of
    the others (exact draws or buffer actions in every loss) each agent's embedding, key and value are computed
    once per action and looked up: n B |A| rows through the projections and n^2 B |A| H for the scores;
    otherwise (boxes, relaxed actions of the others) every (ego, agent) pair is embedded, n^2 B rows.
    Measured costs against the other forms: docs/RESULTS.md, "Many agents" (slower than ``mlp`` below about 24
    agents).
    """

    def __init__(self, obs_dims, action_spaces, hidden: int = 128, precision: str = "float32",
                 sharing: Sharing | None = None, heads: int = 4):
        super().__init__()
        n = len(obs_dims)
        if n < 2:
            raise UserError("--critic attention needs other agents to attend to, but the task has 1 agent; "
                            "accepted for it: mlp, local")
        if hidden % heads:
            raise UserError(f"--critic attention splits hidden={hidden} into {heads} heads; accepted: a multiple "
                            f"of {heads}")
        spaces = ActionSpaces.coerce(action_spaces)
        self.n, self.heads, self.hidden = n, heads, hidden
        self.inputs = AgentInputs(obs_dims, spaces.sizes)
        self.counts = [s.n if s.enumerable else 0 for s in spaces]  # one-hot lookups need discrete actions
        twins = None if sharing is None else sharing.twice()
        self.encoder = BatchedLinear(2 * n, self.inputs.d_obs + self.inputs.size, hidden, sharing=twins)
        self.query = BatchedLinear(2, hidden, hidden)  # (biases of the query and the key are unused: zeroed)
        self.key = BatchedLinear(2, hidden, hidden)
        self.value = BatchedLinear(2, hidden, hidden)
        with torch.no_grad():
            self.query.bias.zero_()
            self.key.bias.zero_()
        self.query.bias.requires_grad_(False)
        self.key.bias.requires_grad_(False)
        self.head = BatchedMLP(2 * n, 2 * hidden, 1, hidden, layers=1, precision=precision, sharing=twins)

    def _heads(self, x: torch.Tensor, layer: BatchedLinear) -> torch.Tensor:
        """``x [2, M, k, H]`` through a twin's shared projection -> ``[2, M, heads, k, d]`` (values: LeakyReLU)."""
        w, b = layer.params()
        t, m, k, hid = x.shape
        out = torch.baddbmm(b, x.reshape(2, -1, hid), w)
        if layer is self.value:
            out = F.leaky_relu(out)
        return out.view(t, m, k, self.heads, hid // self.heads).transpose(2, 3)

    def forward(self, state: torch.Tensor, joint_actions: torch.Tensor):
        """Tensors are laid out batch-major (``[twin, row, head, agent, ...]``) so that every attention product is
        one batched matrix product over (twin, row, head)."""
        n, hid, heads = self.n, self.hidden, self.heads
        batch = joint_actions.shape[1:-2]
        B = state.shape[0]
        shared = joint_actions.stride(0) == 0 and not batch  # every ego sees the same joint action
        joint = joint_actions.reshape(n, -1, B, joint_actions.shape[-1])  # [n, R, B, S]
        R = joint.shape[1]
        slots = self.inputs.slots(joint[:1] if shared else joint)  # [n_ego or 1, R, B, n, size]
        w, b = self.encoder.params()
        w_obs, w_act = w[:, : self.inputs.d_obs], w[:, self.inputs.d_obs:]  # [2n, d, H]
        obs = self.inputs.obs(state)  # [n, B, d_obs]
        h_obs = torch.baddbmm(b, torch.cat([obs, obs]), w_obs).view(2, n, 1, B, hid)  # state part, once
        own = slots[0].movedim(-2, 0) if shared else self.inputs.own(slots)  # [n, R, B, size]
        h_own = torch.bmm(torch.cat([own, own]).reshape(2 * n, -1, own.shape[-1]), w_act)
        e_self = F.leaky_relu(h_obs + h_own.view(2, n, R, B, hid))  # [2, n, R, B, H]: e_i as ego i sees a_i
        e_rows = e_self.view(2, n, R * B, hid).transpose(1, 2).contiguous()  # [2, M, n, H]
        query = self._heads(e_rows, self.query) * (1.0 / math.sqrt(hid // heads))  # [2, M, heads, n, d], scaled
        eye = torch.eye(n, dtype=torch.bool)
        common = None if shared else self._common_others(slots)  # [n, R, B, size]: a_j as every ego i != j sees it
        if shared or common is not None:  # e_j is the same for every ego i != j: keys and values once per agent
            if shared:
                e_others = e_rows
            else:
                h_common = torch.bmm(torch.cat([common, common]).reshape(2 * n, -1, common.shape[-1]), w_act)
                e_others = F.leaky_relu(h_obs + h_common.view(2, n, R, B, hid))
                e_others = e_others.view(2, n, R * B, hid).transpose(1, 2).contiguous()  # [2, M, n, H]
            keys, values = self._heads(e_others, self.key), self._heads(e_others, self.value)
            logits = query @ keys.transpose(-1, -2)  # [2, M, heads, i, j]
            summary = logits.masked_fill(eye, -math.inf).softmax(-1) @ values  # [2, M, heads, i, d]
        elif self._one_hot_others(slots):  # lookup: every agent's embedding, key, value per discrete action
            a_max = max(self.counts)
            rows = h_obs.view(2, n, B, hid).transpose(1, 2).unsqueeze(3)  # [2, B, n, 1, H]
            table = F.leaky_relu(rows + w_act[:, :a_max].view(2, 1, n, a_max, hid))  # [2, B, n, A, H]
            if R > 1:
                table = table.unsqueeze(1).expand(2, R, B, n, a_max, hid)
            table = table.reshape(2, R * B, n * a_max, hid)
            keys, values = self._heads(table, self.key), self._heads(table, self.value)  # [2, M, heads, nA, d]
            index = slots[..., :a_max].argmax(-1).view(n, R * B, n).transpose(0, 1)  # [M, i, j]: ego i's a_j
            index = index.view(1, R * B, 1, n, n, 1).expand(2, -1, heads, -1, -1, 1)
            scores = (query @ keys.transpose(-1, -2)).view(2, R * B, heads, n, n, a_max)
            weights = scores.gather(-1, index).squeeze(-1).masked_fill(eye, -math.inf).softmax(-1)
            spread = torch.zeros_like(scores).scatter(-1, index, weights.unsqueeze(-1))  # w_ij at (j, a_j)
            summary = spread.view(2, R * B, heads, n, n * a_max) @ values  # [2, M, heads, i, d]
        else:  # every (ego, agent) pair embedded: e_j as ego i sees a_j
            acts = slots.movedim(-2, 1)  # [i, j, R, B, size]
            h_pair = torch.einsum("ijrbs,tjsh->tijrbh", acts, w_act.view(2, n, -1, hid))
            e_pair = F.leaky_relu(h_obs.unsqueeze(1) + h_pair)  # [2, i, j, R, B, H]
            pairs = e_pair.permute(0, 3, 4, 1, 2, 5).reshape(2, R * B * n, n, hid)  # [2, (M, i), j, H]
            keys = self._heads(pairs, self.key).view(2, R * B, n, heads, n, -1).transpose(2, 3)
            values = self._heads(pairs, self.value).view(2, R * B, n, heads, n, -1).transpose(2, 3)
            logits = (query.unsqueeze(-2) @ keys.transpose(-1, -2)).squeeze(-2)  # [2, M, heads, i, j]
            weights = logits.masked_fill(eye, -math.inf).softmax(-1)
            summary = (weights.unsqueeze(-2) @ values).squeeze(-2)  # [2, M, heads, i, d]
        summary = summary.permute(0, 3, 1, 2, 4).reshape(2, n, R * B, hid)  # [2, n, M, H]
        # the head's first layer on [e_i, x_i], written W_e e_i + W_x x_i + b: two products and no [2n, M, 2H]
        # concatenated copy (in the dtype of --precision)
        w_h, b_h = self.head.layers[0].params()  # [2n, 2H, H], [2n, 1, H]
        first = torch.baddbmm(b_h, e_self.reshape(2 * n, -1, hid).to(w_h.dtype), w_h[:, :hid])
        first = torch.baddbmm(first, summary.reshape(2 * n, -1, hid).to(w_h.dtype), w_h[:, hid:])
        q = self.head(None, first=first).reshape(2 * n, *batch, B)
        return q[:n], q[n:]

    def _common_others(self, slots: torch.Tensor) -> torch.Tensor | None:
        """Each agent's action as the other egos see it, ``[n, *batch, B, size]``, if every ego i != j sees the same
        value of a_j (common draws, :class:`~pgm_marl.models.distributions.CommonOthers`, or the exact
        estimator's one joint sample), else None."""
        n = self.n
        source = torch.tensor([1 if j == 0 else 0 for j in range(n)])  # an ego other than j, for each agent j
        common = slots.movedim(-2, 1)[source, torch.arange(n)]  # [n, *batch, B, size]
        same = (slots == common.movedim(0, -2).unsqueeze(0)).all(-1)  # [n_ego, *batch, B, n]
        off = ~torch.eye(n, dtype=torch.bool).view(n, *([1] * (slots.dim() - 3)), n)
        return common if bool((same | ~off).all()) else None

    def _one_hot_others(self, slots: torch.Tensor) -> bool:
        """Whether every agent is discrete and each ego's value of every other agent's action is one-hot."""
        if not all(self.counts):
            return False
        off = ~torch.eye(self.n, dtype=torch.bool).view(self.n, *([1] * (slots.dim() - 3)), self.n)
        binary = ((slots == 0) | (slots == 1)).all(-1) & (slots.sum(-1) == 1)
        return bool((binary | ~off).all())


def make_critic(form: str, spec, action_spaces, hidden: int = 128, precision: str = "float32",
                sharing: Sharing | None = None) -> nn.Module:
    """Twin critics of ``form`` for every agent of ``spec`` (a :class:`~pgm_marl.envs.TaskSpec`)."""
    spaces = ActionSpaces.coerce(action_spaces)
    if form == "mlp":
        return TwinCritics(spec.state_dim, spaces.sizes, hidden, precision, sharing)
    if form == "local":
        return LocalCritics(spec.obs_dims, spaces, hidden, precision, sharing)
    if form == "mean-field":
        teams = [list(spec.team_indices(t)) for t in spec.teams]
        return MeanFieldCritics(spec.obs_dims, spaces, teams, hidden, precision, sharing)
    if form == "attention":
        return AttentionCritics(spec.obs_dims, spaces, hidden, precision, sharing)
    raise UserError(f"unknown critic {form!r}; accepted: {', '.join(CRITIC_FORMS)}")
