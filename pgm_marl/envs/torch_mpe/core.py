"""Batched torch world step shared by the four MPE scenarios (``K`` env copies at once).

Reproduces mpe2 1.1.1:

- ``mpe2._mpe_utils.core.World.step``: ``apply_action_force`` (no motor noise in these scenarios),
  ``apply_environment_force`` / ``get_collision_force`` (soft contact ``contact_force * delta / dist *
  logaddexp(0, -(dist - dist_min) / contact_margin) * contact_margin`` for every pair of colliding
  entities, applied to the movable one(s)), ``integrate_state`` (position first, with the *old*
  velocity; then damping, ``+ force / mass * dt`` and the ``max_speed`` clamp) and ``update_agent_state``
  (communication state = communication action, zeros for silent agents);
- ``mpe2._mpe_utils.simple_env.SimpleEnv._execute_world_step`` / ``_set_action``: decoding of discrete
  actions (``action % 5`` movement: 0 no-op, 1 -x, 2 +x, 3 -y, 4 +y; ``action // 5`` one-hot message)
  and continuous Box actions (``u = [a2 - a1, a4 - a3]``, message = the remaining ``dim_c`` entries),
  the movement scaled by ``accel`` (sensitivity 5.0 when ``accel`` is None); continuous actions are
  clipped to ``[0, 1]`` first, as pettingzoo's ``ClipOutOfBoundsWrapper`` does.

Layout: the copy axis ``K`` is the *last* axis of every world tensor, so each elementwise op, pairwise
difference (broadcast over leading entity axes) and reduction runs over contiguous length-``K`` rows:

- :class:`MPEState`: ``pos [2, E, K]`` (x/y of ``world.entities``: agents, then landmarks),
  ``vel [2, A, K]`` (landmarks are immovable in all four scenarios; their velocity is always 0),
  ``c [dim_c, A, K]`` and ``goal [K]`` (the scenario's goal landmark; 0 where unused);
- ``rel [2, A, E, K]``: ``pos[:, e] - pos[:, i]`` for every agent ``i`` and entity ``e``.

Observations are one ``index_select`` from a pool of state pieces (``[*, K]`` rows), transposed to
``[K, sum(obs_dims)]`` (the global state) and returned as per-agent column views. A scenario subclasses
:class:`MPEWorld`, declares its entities, pool pieces and per-agent observation items (in mpe2's
``observation()`` order) and implements ``sample_reset``, ``obs_pieces`` and ``reward``. Everything is
a pure function of tensors (no Python loop over copies or bodies).
"""
from __future__ import annotations

from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch

from ..tasks import ActionSpec

Tensor = torch.Tensor


class MPEState(NamedTuple):
    pos: Tensor  # [2, E, K] positions of world.entities (agents then landmarks)
    vel: Tensor  # [2, A, K] agent velocities
    c: Tensor  # [dim_c, A, K] agent communication states
    goal: Tensor  # [K] long: goal landmark (speaker's goal_b / agents' goal_a), 0 if unused

    @property
    def positions(self) -> Tensor:
        """``[K, E, 2]`` (mpe2's ``p_pos`` of each entity)."""
        return self.pos.permute(2, 1, 0)

    @property
    def velocities(self) -> Tensor:
        """``[K, A, 2]`` (mpe2's ``p_vel`` of each agent)."""
        return self.vel.permute(2, 1, 0)

    @property
    def comm(self) -> Tensor:
        """``[K, A, dim_c]`` (mpe2's ``state.c`` of each agent)."""
        return self.c.permute(2, 1, 0)

    @property
    def num_envs(self) -> int:
        return self.goal.shape[0]


def where_state(mask: Tensor, a: MPEState, b: MPEState) -> MPEState:
    """Per-copy select: copy ``k`` of the result is ``a``'s where ``mask[k]`` else ``b``'s."""
    return MPEState(*(torch.where(mask, x, y) for x, y in zip(a, b)))


class ObsPool:
    """Row index into ``torch.cat([piece.reshape(-1, K) for piece in pieces])``.

    ``pieces``: name -> shape without the trailing copy axis; an observation item is ``(name, coords)``.
    """

    def __init__(self, pieces: Dict[str, Tuple[int, ...]]):
        self.offsets, off = {}, 0
        for name, shape in pieces.items():
            self.offsets[name] = (off, tuple(shape))
            off += int(np.prod(shape))
        self.size = off

    def row(self, name: str, coords: Sequence[int]) -> int:
        off, shape = self.offsets[name]
        return off + int(np.ravel_multi_index(tuple(coords), shape))


class MPEWorld:
    """Static entity properties of one scenario, precomputed tensors, action decoding and physics."""

    name = "mpe"
    dim_p = 2
    dt = 0.1
    damping = 0.25
    contact_force = 1e2
    contact_margin = 1e-3

    def __init__(self, *, agent_names: Sequence[str], agent_size: Sequence[float],
                 agent_collide: Sequence[bool], movable: Sequence[bool], silent: Sequence[bool],
                 accel: Sequence[Optional[float]], max_speed: Sequence[Optional[float]],
                 landmark_size: Sequence[float], landmark_collide: Sequence[bool], dim_c: int,
                 continuous_actions: bool = False, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32):
        self.agent_names = tuple(agent_names)
        self.A = len(self.agent_names)
        self.L = len(landmark_size)
        self.E = self.A + self.L
        self.dim_c = dim_c
        self.sizes = [float(s) for s in agent_size] + [float(s) for s in landmark_size]
        self.collide = [bool(x) for x in agent_collide] + [bool(x) for x in landmark_collide]
        self.movable = [bool(x) for x in movable]
        self.silent = [bool(x) for x in silent]
        self.accel = list(accel)
        self.max_speed = list(max_speed)
        self.continuous = bool(continuous_actions)
        self.device = torch.device(device)
        self.dtype = dtype
        self._zero_c: Dict[int, Tensor] = {}
        self._build_actions()
        self._build_physics()

    # ------------------------------------------------------------------ construction helpers
    def tensor(self, x, dtype=None) -> Tensor:
        return torch.as_tensor(np.asarray(x), dtype=dtype or self.dtype, device=self.device)

    def long(self, x) -> Tensor:
        return torch.as_tensor(np.asarray(x, dtype=np.int64), device=self.device)

    def action_layout(self, i: int) -> Tuple[int, int]:
        """(number of movement entries, number of message entries) of agent ``i``'s action."""
        move = 2 * self.dim_p + 1 if self.movable[i] else (0 if self.continuous else 1)
        msg = self.dim_c if not self.silent[i] else 0
        return move, msg

    def action_specs(self) -> Tuple[ActionSpec, ...]:
        """mpe2's ``SimpleEnv`` action spaces (Discrete(n) or Box(0, 1, (n,)))."""
        out = []
        for i in range(self.A):
            move, msg = self.action_layout(i)
            if self.continuous:
                n = move + msg
                out.append(ActionSpec("box", shape=(n,), low=(0.0,) * n, high=(1.0,) * n))
            else:
                out.append(ActionSpec("discrete", n=move * (msg if msg else 1)))
        return tuple(out)

    def _build_actions(self) -> None:
        A, dc = self.A, self.dim_c
        specs = self.action_specs()
        sens = [5.0 if a is None else float(a) for a in self.accel]
        self.talks = not all(self.silent)
        if not self.continuous:
            # decoding tables, column offs[i] + a: agent i's action a -> u * sensitivity, message one-hot
            self.n_actions = [s.n for s in specs]
            offs = np.concatenate([[0], np.cumsum(self.n_actions)[:-1]]).astype(np.int64)
            tab_u = np.zeros((2, sum(self.n_actions)))
            tab_c = np.zeros((dc, sum(self.n_actions)))
            for i in range(A):
                for a in range(self.n_actions[i]):
                    act, u = a, np.zeros(2)
                    if self.movable[i]:
                        m = act % 5
                        act //= 5
                        if m == 1:
                            u[0] = -1.0
                        if m == 2:
                            u[0] = +1.0
                        if m == 3:
                            u[1] = -1.0
                        if m == 4:
                            u[1] = +1.0
                        u *= sens[i]
                    tab_u[:, offs[i] + a] = u
                    if not self.silent[i]:
                        tab_c[act, offs[i] + a] = 1.0
            self._tab_u, self._tab_c = self.tensor(tab_u), self.tensor(tab_c)
            self._offs = self.long(offs)[:, None]
        else:
            self.action_sizes = [s.shape[0] for s in specs]
            self.max_action_dim = max(self.action_sizes)
            self._sens = self.tensor(sens)[:, None]  # [A, 1]
            self._movable = torch.as_tensor(self.movable, device=self.device)[:, None]
            self._talking = torch.as_tensor([not s for s in self.silent], device=self.device)[:, None]
            comm = np.zeros((max(dc, 1), A, 1), dtype=np.int64)
            for i in range(A):
                move, msg = self.action_layout(i)
                if msg:
                    comm[:dc, i, 0] = np.arange(move, move + dc)
            self._comm_idx = self.long(comm[:dc])

    def _build_physics(self) -> None:
        A, E = self.A, self.E
        rows = [i for i in range(A) if self.movable[i] and self.collide[i]]
        cols = [e for e in range(E) if self.collide[e]]
        self.has_contacts = bool(rows) and len(cols) > 1
        if self.has_contacts:
            def sel(ix):  # a slice when the indices are a contiguous range
                return slice(ix[0], ix[-1] + 1) if ix == list(range(ix[0], ix[-1] + 1)) else self.long(ix)
            self._rows, self._cols = sel(rows), sel(cols)
            self._rows_are_agents = rows == list(range(A))
            self._rows_t = self.long(rows)
            self._dist_min = self.tensor([[self.sizes[r] + self.sizes[c] for c in cols] for r in rows])[:, :, None]
            # added to the distances: +inf on self-pairs (zero force there instead of 0 / 0), 0 elsewhere
            self._self_pair = self.tensor([[float("inf") if r == c else 0.0 for c in cols] for r in rows])[:, :, None]
            self._zero = torch.zeros((), dtype=self.dtype, device=self.device)
        self.has_max_speed = any(m is not None for m in self.max_speed)
        if self.has_max_speed:
            self._max_speed = self.tensor([float("inf") if m is None else float(m) for m in self.max_speed])[:, None]

    def _build_obs(self, pool: ObsPool, rows: Sequence[Sequence[tuple]]) -> None:
        """Declare the observation: ``rows[i]`` = agent ``i``'s ``(piece, coords)`` items in mpe2's order."""
        self.obs_pool, self.obs_rows = pool, [list(r) for r in rows]
        self.obs_dims = tuple(len(r) for r in rows)
        self.obs_offsets = tuple(int(x) for x in np.concatenate([[0], np.cumsum(self.obs_dims)[:-1]]))
        self._obs_idx = self.long([pool.row(*item) for r in self.obs_rows for item in r])

    # ------------------------------------------------------------------ scenario hooks
    def sample_reset(self, K: int, generator: torch.Generator) -> Tuple[Tensor, Tensor]:
        """``(pos [2, E, K], goal [K] long)`` drawn from the scenario's ``reset_world`` distribution."""
        raise NotImplementedError

    def obs_pieces(self, s: MPEState, rel: Tensor) -> List[Tensor]:
        """The tensors of ``obs_pool`` in declaration order, each ``[*piece shape, K]``."""
        raise NotImplementedError

    def reward(self, s: MPEState, rel: Tensor) -> Tensor:
        """Rewards ``[A, K]`` after the world step (what ``SimpleEnv._execute_world_step`` stores)."""
        raise NotImplementedError

    def goal_from_mpe2(self, world) -> int:
        return 0

    def goal_to_mpe2(self, world, goal: int) -> None:
        return None

    # ------------------------------------------------------------------ shared helpers
    def uniform(self, K: int, generator: torch.Generator, low: Sequence[float], high: Sequence[float]) -> Tensor:
        """Positions ``[2, n, K]``: entity ``e`` uniform in ``[low[e], high[e])^2`` (``low + (high - low) * U``)."""
        u = torch.rand((2, len(low), K), generator=generator, device=self.device, dtype=self.dtype)
        lo = self.tensor(low)[:, None]
        width = self.tensor([h - l for l, h in zip(low, high)])[:, None]
        return lo + width * u

    def rel(self, pos: Tensor) -> Tensor:
        """``rel[d, i, e, k] = pos[d, e, k] - pos[d, i, k]`` for agents ``i``: ``[2, A, E, K]``."""
        return pos[:, None, :, :] - pos[:, : self.A, None, :]

    def split(self, obs: Tensor) -> List[Tensor]:
        """Per-agent column views ``[K, d_i]`` of the concatenated observations ``[K, sum(obs_dims)]``."""
        return [obs[:, o: o + d] for o, d in zip(self.obs_offsets, self.obs_dims)]

    def observe(self, s: MPEState, rel: Tensor) -> Tensor:
        """All agents' observations concatenated in agent order: ``[K, sum(obs_dims)]``."""
        K = s.goal.shape[0]
        pool = torch.cat([p.reshape(-1, K) for p in self.obs_pieces(s, rel)])
        return pool.index_select(0, self._obs_idx).T.contiguous()

    def zero_c(self, K: int) -> Tensor:
        if K not in self._zero_c:
            self._zero_c[K] = torch.zeros(self.dim_c, self.A, K, dtype=self.dtype, device=self.device)
        return self._zero_c[K]

    # ------------------------------------------------------------------ actions
    def decode(self, actions: Tensor) -> Tuple[Tensor, Tensor]:
        """``SimpleEnv._set_action`` for all copies: ``(u [2, A, K], message [dim_c, A, K])`` from checked actions
        in the world's layout: indices ``[A, K]`` (long), or continuous ``[max_action_dim, A, K]`` (agent ``i``
        reads its first ``action_sizes[i]`` entries)."""
        K = actions.shape[-1]
        if not self.continuous:
            col = (actions + self._offs).reshape(-1)  # [A * K]
            u = self._tab_u.index_select(1, col).view(2, self.A, K)
            c = self._tab_c.index_select(1, col).view(self.dim_c, self.A, K) if self.talks else self.zero_c(K)
            return u, c
        a = actions.clamp(0.0, 1.0)  # [D, A, K]; ClipOutOfBoundsWrapper: np.clip(action, 0, 1)
        if any(self.movable):
            u = torch.where(self._movable, (a[[2, 4]] - a[[1, 3]]) * self._sens, 0.0)
        else:
            u = torch.zeros(2, self.A, K, dtype=a.dtype, device=a.device)
        if not self.talks:
            return u, self.zero_c(K)
        c = torch.where(self._talking, a.gather(0, self._comm_idx.expand(-1, -1, K)), 0.0)
        return u, c

    # ------------------------------------------------------------------ physics
    def contact_forces(self, pos: Tensor) -> Tensor:
        """``apply_environment_force``: total soft-contact force on each agent, ``[2, A, K]``."""
        prow, pcol = pos[:, self._rows], pos[:, self._cols]  # [2, R, K], [2, C, K]
        delta = prow[:, :, None, :] - pcol[:, None, :, :]  # [2, R, C, K]: p_row - p_col
        dist = torch.hypot(delta[0], delta[1]) + self._self_pair  # [R, C, K]; inf on self-pairs
        k = self.contact_margin
        pen = torch.logaddexp((self._dist_min - dist) / k, self._zero)  # softplus penetration / k (0 on self-pairs)
        f = (delta * (pen * (k * self.contact_force) / dist)).sum(2)  # [2, R, K]
        if self._rows_are_agents:
            return f
        return torch.zeros(2, self.A, pos.shape[-1], dtype=f.dtype, device=f.device).index_copy(1, self._rows_t, f)

    def physics(self, s: MPEState, u: Tensor, c: Tensor) -> MPEState:
        """``World.step``: forces from the *old* positions, then ``integrate_state`` and the comm update."""
        A = self.A
        force = u + self.contact_forces(s.pos) if self.has_contacts else u
        pa = s.pos[:, :A] + s.vel * self.dt
        pos = torch.cat([pa, s.pos[:, A:]], 1) if self.L else pa
        vel = s.vel * (1 - self.damping) + force * self.dt  # mass == 1
        if self.has_max_speed:
            speed = torch.hypot(vel[0], vel[1])  # [A, K]
            vel = torch.where(speed > self._max_speed, vel / speed * self._max_speed, vel)
        return MPEState(pos, vel, c, s.goal)

    # ------------------------------------------------------------------ full transitions
    def reset_state(self, K: int, generator: torch.Generator) -> MPEState:
        pos, goal = self.sample_reset(K, generator)
        vel = torch.zeros(2, self.A, K, dtype=self.dtype, device=self.device)
        c = torch.zeros(self.dim_c, self.A, K, dtype=self.dtype, device=self.device)
        return MPEState(pos, vel, c, goal)

    def observation(self, s: MPEState) -> Tensor:
        return self.observe(s, self.rel(s.pos))

    def step(self, s: MPEState, actions: Tensor) -> Tuple[MPEState, Tensor, Tensor]:
        """One transition of all copies (checked actions in :meth:`decode`'s layout): ``(next state, obs
        [K, sum d], reward [K, A])``."""
        u, c = self.decode(actions)
        ns = self.physics(s, u, c)
        rel = self.rel(ns.pos)
        return ns, self.observe(ns, rel), self.reward(ns, rel).T.contiguous()

    def empty_state(self, K: int) -> MPEState:
        kw = dict(dtype=self.dtype, device=self.device)
        return MPEState(torch.zeros(2, self.E, K, **kw), torch.zeros(2, self.A, K, **kw),
                        torch.zeros(self.dim_c, self.A, K, **kw), torch.zeros(K, dtype=torch.long, device=self.device))
