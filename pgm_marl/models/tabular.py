"""Tabular Markov games: the finite environment behind the per-agent MDPs of Sec. 4.

A Markov game with ``n`` agents, ``S`` states and action sets of sizes
``A_1, ..., A_n`` is given by

* an initial distribution ``p(s_0)`` (``initial``, shape ``[S]``),
* dynamics ``p(s_{t+1} | s_t, a_t)`` (``transition``, shape ``[S, A_1, ..., A_n, S]``),
* rewards ``r_i(s_t, a_t) <= 0`` (``rewards``, shape ``[n, S, A_1, ..., A_n]``),
  so that ``p(o_i^t = 1 | s_t, a_t) = exp(r_i(s_t, a_t) / alpha)`` is a
  probability (Eq. 3),
* a horizon ``H`` = number of decision steps ``t = 0, ..., H - 1``.

Eq. 2: from agent ``i``'s point of view the other agents ``a_j ~ pi_j(. | s)``
are part of the environment; :meth:`TabularMarkovGame.reward` and
:meth:`TabularMarkovGame.transition_probs` evaluate the game at (possibly
relaxed) joint actions, which a Pyro model of that MDP can call directly.
"""

import torch

_TOL = 1e-5


def _check_probs(name, value, axis_desc):
    """Raise ``ValueError`` unless ``value`` is finite, nonnegative and sums to 1 on its last dim."""
    if not torch.isfinite(value).all():
        raise ValueError(f"{name} must be finite; got non-finite entries in {name}")
    if (value < 0).any():
        raise ValueError(f"{name} must be nonnegative probabilities; got min {value.min().item():.6g}")
    sums = value.sum(-1)
    dev = (sums - 1).abs()
    if sums.numel() and dev.max().item() > _TOL:
        worst = _unravel(int(dev.reshape(-1).argmax()), sums.shape)
        where = f" at index {worst}" if worst else ""
        raise ValueError(
            f"{name} {axis_desc} must sum to 1 (within {_TOL:g}); got sum {sums[worst].item():.6g}{where}"
        )


def _unravel(flat, shape):
    index = []
    for size in reversed(shape):
        flat, k = divmod(flat, size)
        index.append(k)
    return tuple(reversed(index))


def _as_float(value):
    value = torch.as_tensor(value)
    if not value.is_floating_point():
        value = value.to(torch.get_default_dtype())
    return value


def _contract(table, actions, n_trailing):
    """Multilinear extension: sum over joint actions of ``table[..., a_1, ..., a_n, *rest] * prod_j actions[j][a_j]``.

    ``table`` has shape ``batch + (A_1, ..., A_n) + rest`` with ``len(rest) == n_trailing``;
    ``actions[j]`` has shape ``batch' + (A_j,)`` broadcastable against ``batch``.
    """
    n = len(actions)
    for j, a in enumerate(actions):
        trailing = (n - j - 1) + n_trailing
        dtype = torch.promote_types(table.dtype, a.dtype)
        a = a.to(dtype).reshape(a.shape + (1,) * trailing)
        table = (table.to(dtype) * a).sum(-(trailing + 1))
    return table


class TabularMarkovGame:
    """Finite-horizon tabular Markov game ``(p(s_0), p(s'|s,a), r, H)``.

    :param initial: ``[S]`` probabilities ``p(s_0)``.
    :param transition: ``[S, A_1, ..., A_n, S]``; ``transition[s, a_1, ..., a_n]``
        is ``p(. | s, a)``.
    :param rewards: ``[n, S, A_1, ..., A_n]`` finite rewards, all ``<= 0`` (Eq. 3).
    :param int horizon: number of decision steps ``H >= 1``.
    """

    def __init__(self, initial, transition, rewards, horizon):
        initial = _as_float(initial)
        transition = _as_float(transition)
        rewards = _as_float(rewards)
        dtype = torch.promote_types(torch.promote_types(initial.dtype, transition.dtype), rewards.dtype)
        initial, transition, rewards = initial.to(dtype), transition.to(dtype), rewards.to(dtype)

        if initial.dim() != 1 or initial.shape[0] < 1:
            raise ValueError(f"initial must have shape [S] with S >= 1; got shape {tuple(initial.shape)}")
        S = initial.shape[0]
        if transition.dim() < 3 or transition.shape[0] != S or transition.shape[-1] != S:
            raise ValueError(
                f"transition must have shape [S, A_1, ..., A_n, S] with S={S} and n >= 1; "
                f"got shape {tuple(transition.shape)}"
            )
        action_sizes = tuple(transition.shape[1:-1])
        if min(action_sizes) < 1:
            raise ValueError(f"action sizes must be >= 1; got {action_sizes}")
        n = len(action_sizes)
        expected = (n, S) + action_sizes
        if tuple(rewards.shape) != expected:
            raise ValueError(
                f"rewards must have shape [n, S, A_1, ..., A_n] = {expected}; got shape {tuple(rewards.shape)}"
            )
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
            raise ValueError(f"horizon must be a positive int (number of decision steps); got {horizon!r}")
        _check_probs("initial", initial, "entries")
        _check_probs("transition", transition, "rows transition[s, a, :]")
        if not torch.isfinite(rewards).all():
            raise ValueError("rewards must be finite; got non-finite entries (nan or inf)")
        if (rewards > 0).any():
            raise ValueError(
                f"rewards must be <= 0 so that exp(r / alpha) is a probability (Eq. 3); got max reward "
                f"{rewards.max().item():.6g}; shift rewards by their max (rewards - rewards.max())"
            )
        self.initial = initial
        self.transition = transition
        self.rewards = rewards
        self.horizon = horizon

    @property
    def n_agents(self):
        return self.rewards.shape[0]

    @property
    def n_states(self):
        return self.initial.shape[0]

    @property
    def action_sizes(self):
        return tuple(self.transition.shape[1:-1])

    @property
    def dtype(self):
        return self.initial.dtype

    def __repr__(self):
        return (
            f"TabularMarkovGame(n_states={self.n_states}, action_sizes={self.action_sizes}, "
            f"horizon={self.horizon}, dtype={self.dtype})"
        )

    @classmethod
    def random(cls, n_states, action_sizes, horizon, seed, reward_scale=1.0, dtype=None):
        """Random game: flat-Dirichlet ``p(s_0)`` and ``p(.|s,a)``, rewards uniform in ``[-reward_scale, 0]``."""
        if reward_scale < 0:
            raise ValueError(f"reward_scale must be >= 0; got {reward_scale!r}")
        dtype = dtype or torch.get_default_dtype()
        gen = torch.Generator().manual_seed(int(seed))
        action_sizes = tuple(int(a) for a in action_sizes)
        S, n = int(n_states), len(action_sizes)
        initial = _random_simplex((S,), gen, dtype)
        transition = _random_simplex((S,) + action_sizes + (S,), gen, dtype)
        rewards = -reward_scale * torch.rand((n, S) + action_sizes, generator=gen, dtype=dtype)
        return cls(initial, transition, rewards, horizon)

    def reward(self, s, actions):
        """Rewards of all agents at state indices ``s`` and joint actions ``actions``.

        Multilinear extension ``r(s, a) = sum_{b} r[:, s, b_1, ..., b_n] prod_j a_j[b_j]``,
        equal to the table entry for one-hot ``a_j``.

        :param torch.LongTensor s: state indices, any batch shape ``B``.
        :param list actions: ``n`` tensors of shape ``B + [A_j]`` (one-hot or simplex points).
        :returns: tensor of shape ``B + [n]``.
        """
        self._check_actions(actions)
        table = self.rewards.movedim(0, -1)[s]  # B + (A_1..A_n) + (n,)
        return _contract(table, actions, 1)

    def transition_probs(self, s, actions):
        """Next-state distribution ``p(. | s, a)`` as the multilinear extension in the actions.

        :returns: tensor of shape ``B + [S]``.
        """
        self._check_actions(actions)
        return _contract(self.transition[s], actions, 1)

    def _check_actions(self, actions):
        if len(actions) != self.n_agents:
            raise ValueError(f"expected {self.n_agents} action tensors (one per agent); got {len(actions)}")
        for j, (a, size) in enumerate(zip(actions, self.action_sizes)):
            if a.shape[-1:] != (size,):
                raise ValueError(
                    f"actions[{j}] must have last dim A_{j}={size}; got shape {tuple(a.shape)}"
                )


def _random_simplex(shape, gen, dtype):
    """Flat-Dirichlet draws along the last dim (normalized exponentials)."""
    u = torch.rand(shape, generator=gen, dtype=dtype)
    e = -torch.log1p(-u) + torch.finfo(dtype).tiny
    return e / e.sum(-1, keepdim=True)


def random_policies(game, seed):
    """Random stochastic policies ``pi_j(. | s)``: a list of ``n`` tables of shape ``[S, A_j]``."""
    gen = torch.Generator().manual_seed(int(seed))
    return [_random_simplex((game.n_states, A), gen, game.dtype) for A in game.action_sizes]


def validate_policies(game, policies):
    """Raise ``ValueError`` unless ``policies`` holds one ``[S, A_j]`` row-stochastic table per agent."""
    if len(policies) != game.n_agents:
        raise ValueError(f"expected {game.n_agents} policies (one per agent); got {len(policies)}")
    for j, (pi, A) in enumerate(zip(policies, game.action_sizes)):
        if not torch.is_tensor(pi):
            raise ValueError(f"policies[{j}] must be a tensor of shape [S, A_{j}]; got {type(pi).__name__}")
        if tuple(pi.shape) != (game.n_states, A):
            raise ValueError(
                f"policies[{j}] must have shape [S, A_{j}] = {(game.n_states, A)}; got shape {tuple(pi.shape)}"
            )
        _check_probs(f"policies[{j}]", pi.detach(), "rows pi_j(. | s)")
