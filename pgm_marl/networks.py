"""Batched per-agent networks (section 5.2): one stacked parameter tensor per layer, one ``bmm`` for all agents.

Agents may differ in observation size (speaker 3, listener 11) and policy width (3 vs 5 logits; a box's mean
and log std). Inputs are zero-padded to the largest size (padded weights only ever multiply zeros, so they get
no gradient) and padded outputs are set to :data:`PAD_LOGIT` by the action spaces
(:meth:`~pgm_marl.models.actions.ActionSpaces.pad`): a padded discrete action has probability 0 and a relaxed
sample of exactly 0.

``precision="bfloat16"`` (opt-in, ``--precision``) computes every layer but the output layer in bfloat16:
inputs, weights and biases are rounded to bfloat16 for the product (the GEMM accumulates in float32), hidden
activations are stored in bfloat16, and the output layer (Q-values, logits, a box's mean and log std) runs in
float32 on them. Parameters, their gradients, Adam and every loss stay float32. On CPUs with bfloat16 dot
products (AVX512_BF16, AMX) the products run 2-3x faster than in float32.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
from torch import nn

from .models.actions import PAD_LOGIT, ActionSpaces

__all__ = ["Sharing", "BatchedLinear", "BatchedMLP", "Actors", "TwinCritics", "observation_index", "gather_last", "PAD_LOGIT", "polyak_update", "PRECISIONS"]

#: ``precision`` (:data:`pgm_marl.config.PRECISIONS`) -> dtype of the hidden layers' products (None: the
#: parameters' own); the output layer always computes in the parameters' dtype
PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16}


def compute_dtype(precision: str):
    """The dtype for ``precision``; a one-line error naming the accepted ones for an unknown name."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return PRECISIONS[precision]


class Sharing(NamedTuple):
    """Parameter sharing among ``n`` batched networks (``--share-params``, as BenchMARL's and EPyMARL's): network
    ``k`` uses parameter group ``groups[k]``; ``ids[k]`` in ``0..n_ids-1`` is its agent index, an extra one-hot
    input that tells the members of a group apart."""

    groups: tuple
    ids: tuple
    n_ids: int

    @property
    def n_groups(self) -> int:
        return max(self.groups) + 1

    @classmethod
    def by_team(cls, agents: Sequence[str], teams) -> "Sharing":
        """One group per team (in ``teams``' order); the agent index is the position within the team."""
        groups, ids = [0] * len(agents), [0] * len(agents)
        for g, members in enumerate(teams.values()):
            for k, member in enumerate(members):
                groups[agents.index(member)], ids[agents.index(member)] = g, k
        return cls(tuple(groups), tuple(ids), max(len(m) for m in teams.values()))

    def twice(self) -> "Sharing":
        """The sharing of twin networks ``[net_1..net_n, net_1'..net_n']``: each twin has its own groups."""
        return Sharing(self.groups + tuple(g + self.n_groups for g in self.groups), self.ids + self.ids, self.n_ids)


class BatchedLinear(nn.Module):
    """``n`` independent linear layers: ``x [n, B, d_in] -> x @ W[n] + b[n]``.

    ``dtype``: the dtype of the product and of the output (None: the parameters' own; inputs of another dtype
    are converted).
    """

    def __init__(self, n: int, d_in: int, d_out: int, fan_in: Sequence[int] | None = None, dtype=None,
                 sharing: "Sharing | None" = None):
        super().__init__()
        self.dtype = dtype
        self.sharing, self.id_weight = sharing, None
        groups = n if sharing is None else sharing.n_groups
        self.weight = nn.Parameter(torch.empty(groups, d_in, d_out))
        self.bias = nn.Parameter(torch.empty(groups, 1, d_out))
        fan_in = list(fan_in or [d_in] * n)
        if sharing is not None:  # a group's fan-in is its first member's; the agent index is n_ids more inputs
            fan_in = [fan_in[sharing.groups.index(g)] + sharing.n_ids for g in range(groups)]
            self.register_buffer("group_index", torch.tensor(sharing.groups), persistent=False)
            self.register_buffer("agent_index", torch.tensor(sharing.ids), persistent=False)
            self.id_weight = nn.Parameter(torch.empty(groups, sharing.n_ids, d_out)) if sharing.n_ids else None
        with torch.no_grad():  # nn.Linear's init, with each agent's true fan-in; padded input rows are zero
            for k, f in enumerate(fan_in):
                bound = 1.0 / math.sqrt(f)
                self.weight[k].uniform_(-bound, bound)
                self.weight[k, f:] = 0.0
                self.bias[k].uniform_(-bound, bound)
                if self.id_weight is not None:
                    self.id_weight[k].uniform_(-bound, bound)

    def forward(self, x: torch.Tensor, shared: bool = False) -> torch.Tensor:
        """``x [n, M, d_in]`` (one input per layer), or ``x [M, d_in]`` fed to all ``n`` with ``shared=True``.

        Returns ``[n, M, d_out]``, agent-major (contiguous, except the narrow outputs of :class:`_NarrowLinear`,
        ``d_out <= NARROW``, which are a transposed view of ``[n, d_out, M]``: only their reshape may copy).
        """
        w, b = self.params()
        n, d_in, d_out = w.shape
        x = x.to(w.dtype)  # (no copy when it already is)
        if shared:  # a stride-0 batch: MKL reads the one input n times, nothing is copied
            x = x.expand(n, *x.shape)
        if d_out <= NARROW:
            return _NarrowLinear.apply(x, w, b)
        return torch.baddbmm(b, x, w)

    def params(self):
        """``(weight, bias)`` ``[n, d_in, d_out]``, ``[n, 1, d_out]`` in the compute dtype (a differentiable cast:
        gradients reach the float32 ones). With :class:`Sharing`, network k uses its group's parameters (the
        gradient of a shared parameter sums over the group) and its bias adds the weight row of its agent index
        (the same as a one-hot agent-index input)."""
        weight, bias = self.weight, self.bias
        if self.sharing is not None:
            g = self.group_index
            weight, bias = weight.index_select(0, g), bias.index_select(0, g)
            if self.id_weight is not None:
                bias = bias + self.id_weight[g, self.agent_index].unsqueeze(1)
        if self.dtype is None or self.dtype == weight.dtype:
            return weight, bias
        return weight.to(self.dtype), bias.to(self.dtype)


#: output widths up to which :class:`_NarrowLinear` replaces ``baddbmm`` (MKL's batched GEMM is slow for them)
NARROW = 8


class _NarrowLinear(torch.autograd.Function):
    """``x @ w + b`` for a narrow ``w [n, d_in, k]`` (policy logits, Q-values), same result as ``baddbmm``.

    MKL's batched GEMM is 3-10x slower when one matrix dimension is a handful (``k``, or ``k`` as the inner
    dimension of the backward products); the same products written as ``w^T x^T`` (and ``g^T x`` for the
    weight gradient) keep the long dimension where MKL wants it. ``k = 1`` is a plain multiply-add.
    """

    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        if w.shape[-1] == 1:  # one matrix-vector product per network, no [n, M, d_in] temporary
            return torch.stack([torch.mv(x[k], w[k, :, 0]) for k in range(w.shape[0])]).unsqueeze(-1) + b
        return torch.bmm(w.transpose(1, 2), x.transpose(1, 2)).transpose(1, 2) + b

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = g * w.transpose(1, 2) if w.shape[-1] == 1 else torch.bmm(g, w.transpose(1, 2))
        if ctx.needs_input_grad[1]:
            gw = torch.bmm(g.transpose(1, 2), x).transpose(1, 2)
        if ctx.needs_input_grad[2]:
            gb = g.sum(1, keepdim=True)
        return gx, gw, gb


class BatchedMLP(nn.Module):
    """``n`` MLPs with ``layers`` ReLU hidden layers of width ``hidden`` (2 x 128 in the paper).

    ``precision``: dtype of the hidden layers' products (:data:`PRECISIONS`; the output layer is float32).
    """

    def __init__(self, n: int, d_in: int, d_out: int, hidden: int = 128, layers: int = 2, fan_in=None,
                 precision: str = "float32", sharing: Sharing | None = None):
        super().__init__()
        dims = [d_in] + [hidden] * layers + [d_out]
        dtype = compute_dtype(precision)
        self.layers = nn.ModuleList(
            BatchedLinear(n, a, b, fan_in if k == 0 else None, dtype if k < layers else None,
                          sharing if k == 0 or sharing is None else sharing._replace(n_ids=0))
            for k, (a, b) in enumerate(zip(dims[:-1], dims[1:])))
        self.n = n

    def forward(self, x: torch.Tensor, shared: bool = False, first: torch.Tensor | None = None) -> torch.Tensor:
        """``x [n, *batch, d_in] -> [n, *batch, d_out]``; ``shared=True``: ``x [*batch, d_in]`` fed to all n.

        ``first``: the first layer's output ``[n, *batch, hidden]`` when the caller computed it itself
        (``x`` is then ignored).
        """
        layers = list(self.layers)
        if first is not None:
            batch, layers = first.shape[1:-1], layers[1:]
            h = torch.relu(first).reshape(self.n, -1, first.shape[-1])  # (relu_ on a view would cost a copy)
        elif shared:
            batch, h = x.shape[:-1], layers[0](x.reshape(-1, x.shape[-1]), shared=True).relu_()
            layers = layers[1:]
        else:
            batch, h = x.shape[1:-1], x.reshape(self.n, -1, x.shape[-1])
        for k, layer in enumerate(layers):
            h = layer(h)
            if k + 1 < len(layers):
                h = h.relu_()  # in place: baddbmm's backward needs its inputs, not its output
        return h.reshape(self.n, *batch, h.shape[-1])

    def agent_module(self, k: int) -> nn.Sequential:
        """Agent ``k``'s network as a plain ``nn.Sequential`` (a copy; used to test the batched forward)."""
        mods = []
        for j, layer in enumerate(self.layers):
            weight, bias = layer.params()
            lin = nn.Linear(weight.shape[1], weight.shape[2])
            with torch.no_grad():
                lin.weight.copy_(weight[k].T)
                lin.bias.copy_(bias[k, 0])
            mods += [lin] + ([nn.ReLU()] if j + 1 < len(self.layers) else [])
        return nn.Sequential(*mods)


def observation_index(obs_dims: Sequence[int]) -> torch.Tensor:
    """``[n, max d_i]`` positions of agent i's observation in the state (concatenated observations); padding
    points one past the state's end (:func:`gather_last` appends a zero there)."""
    offsets = torch.tensor([0] + list(obs_dims)).cumsum(0)
    index = torch.full((len(obs_dims), max(obs_dims)), int(offsets[-1]), dtype=torch.long)
    for k, d in enumerate(obs_dims):
        index[k, :d] = torch.arange(offsets[k], offsets[k] + d)
    return index


def gather_last(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x [*batch, D]``, ``index [n, m]`` into ``0..D`` (``D``: zero padding) ``-> [n, *batch, m]``.

    When ``index`` is ``0..D-1`` in order (every agent's slice as wide: no padding), the result is a view of ``x``
    (no copy of the state, which grows with n^2 in cooperative navigation)."""
    n, m = index.shape
    if n * m == x.shape[-1] and torch.equal(index.flatten(), torch.arange(n * m, device=index.device)):
        return x.unflatten(-1, (n, m)).movedim(-2, 0)
    padded = torch.cat([x, x.new_zeros(x.shape[:-1] + (1,))], -1)
    return padded[..., index].movedim(-2, 0)


class Actors(nn.Module):
    """Decentralised policies ``pi_i(a_i | o_i)``; the observation ``o_i`` is agent i's slice of the state.

    ``action_spaces``: an :class:`~pgm_marl.models.actions.ActionSpaces` (or action counts: all discrete); the
    network outputs each agent's policy parameters (``param_dim`` of its space), padded.
    """

    def __init__(self, obs_dims: Sequence[int], action_spaces, hidden: int = 128, precision: str = "float32",
                 sharing: Sharing | None = None):
        super().__init__()
        self.spaces = ActionSpaces.coerce(action_spaces)
        self.obs_dims, self.param_dims = tuple(obs_dims), self.spaces.param_dims  # policy parameters per agent
        n, d_obs, d_act = len(obs_dims), max(obs_dims), max(self.param_dims)
        self.net = BatchedMLP(n, d_obs, d_act, hidden, fan_in=list(obs_dims), precision=precision, sharing=sharing)
        self.register_buffer("obs_index", observation_index(obs_dims), persistent=False)
        self.register_buffer("pad_mask", self.spaces.pad_mask.clone(), persistent=False)

    def observations(self, state: torch.Tensor) -> torch.Tensor:
        """``state [*batch, D] -> padded per-agent observations [n, *batch, max d_i]``."""
        return gather_last(state, self.obs_index)

    def pad_obs(self, obs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Per-agent observation list ``[K, d_i]`` -> ``[n, K, max d_i]``."""
        return self.observations(torch.cat(list(obs), -1))

    def forward(self, obs_padded: torch.Tensor) -> torch.Tensor:
        """Policy parameters ``[n, *batch, max P_i]`` (discrete: logits); padded entries get :data:`PAD_LOGIT`."""
        return self.spaces.pad(self.net(obs_padded), self.pad_mask)


class TwinCritics(nn.Module):
    """Centralised twin critics ``Q_i^{(1,2)}(s, a)`` on the global state and all agents' actions (Fujimoto et al.)."""

    def __init__(self, state_dim: int, action_sizes: Sequence[int], hidden: int = 128, precision: str = "float32",
                 sharing: Sharing | None = None):
        super().__init__()
        self.n = len(action_sizes)  # each agent's action site size (ActionSpaces.sizes): its part of the joint
        self.net = BatchedMLP(2 * self.n, state_dim + sum(action_sizes), 1, hidden, precision=precision,
                              sharing=None if sharing is None else sharing.twice())

    def forward(self, state: torch.Tensor, joint_actions: torch.Tensor):
        """``state [B, D]``, ``joint_actions [n, *batch, B, sum A]``: agent i's critic sees ``joint_actions[i]``.

        Returns ``(q1, q2)``, each ``[n, *batch, B]``. Two fast paths, same numbers: when every agent's critic
        gets the same joint action (``joint_actions`` expanded along dim 0, stride 0), the whole first layer is
        one GEMM for all ``2n`` networks; otherwise the first layer is split into its state part (common to
        every query: one GEMM) and its action part (one small batched product).
        """
        if joint_actions.stride(0) == 0 and joint_actions.dim() == state.dim() + 1:
            x = torch.cat([state, joint_actions[0]], -1)
            q = self.net(x, shared=True).squeeze(-1)
        else:
            q = self._per_agent(state, joint_actions)
        return q[: self.n], q[self.n:]

    def _per_agent(self, state: torch.Tensor, joint: torch.Tensor) -> torch.Tensor:
        first = self.net.layers[0]
        weight, bias = first.params()
        state, joint = state.to(weight.dtype), joint.to(weight.dtype)
        d_state = state.shape[-1]
        w_state, w_action = weight[:, :d_state], weight[:, d_state:]
        two_n, hidden = weight.shape[0], weight.shape[-1]
        h_state = torch.baddbmm(bias, state.expand(two_n, *state.shape), w_state)  # [2n, B, H]
        batch = joint.shape[1:-1]
        acts = torch.cat([joint, joint], 0).reshape(two_n, -1, joint.shape[-1])
        if len(batch) == 1:  # the usual case: state part added inside the batched product
            h = torch.baddbmm(h_state, acts, w_action)
        else:
            h = torch.bmm(acts, w_action).view(two_n, *batch, hidden) + h_state.reshape(
                two_n, *([1] * (len(batch) - 1)), state.shape[0], hidden)
        return self.net(None, first=h).squeeze(-1)

    def min(self, state, joint_actions) -> torch.Tensor:
        return torch.minimum(*self(state, joint_actions))


@torch.no_grad()
def polyak_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """Target networks as exponential moving averages (Algorithm 1): ``bar theta <- tau theta + (1 - tau) bar theta``."""
    torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), tau)
