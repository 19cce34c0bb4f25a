"""Cooperative navigation: ``mpe2.simple_spread.simple_spread`` (``simple_spread_v3``) for K copies.

Reproduces ``Scenario.make_world(N)`` (N agents of size 0.15, collide, silent, dim_c = 2; N landmarks
that neither collide nor move), ``reset_world`` (agents and landmarks uniform in ``[-1, 1]^2``),
``observation`` (``[self_vel, self_pos, landmark rel pos, other agents' rel pos, other agents' comm]``)
and the reward ``global_reward * (1 - local_ratio) + reward * local_ratio`` of
``SimpleEnv._execute_world_step``, with ``global_reward = -sum_landmarks min_agents dist`` and
``reward = -(number of other agents with dist < size sum)``. Full observability only.
"""
from __future__ import annotations

import torch

from .core import MPEState, MPEWorld, ObsPool


class SimpleSpread(MPEWorld):
    name = "simple_spread_v3"

    def __init__(self, N: int = 3, local_ratio: float = 0.5, **kw):
        # (N and local_ratio checked once, by the task's options: pgm_marl.envs.tasks.check_env_kwargs)
        self.N, self.local_ratio = N, float(local_ratio)
        A = L = self.N
        super().__init__(agent_names=[f"agent_{i}" for i in range(A)], agent_size=[0.15] * A,
                         agent_collide=[True] * A, movable=[True] * A, silent=[True] * A,
                         accel=[None] * A, max_speed=[None] * A, landmark_size=[0.05] * L,
                         landmark_collide=[False] * L, dim_c=2, **kw)
        E, dc = self.E, self.dim_c
        pool = ObsPool({"rel": (2, A, E), "pos": (2, E), "vel": (2, A), "c": (dc, A)})
        rows = []
        for i in range(A):
            r = [("vel", (d, i)) for d in range(2)] + [("pos", (d, i)) for d in range(2)]
            r += [("rel", (d, i, A + j)) for j in range(L) for d in range(2)]
            r += [("rel", (d, i, o)) for o in range(A) if o != i for d in range(2)]
            r += [("c", (q, o)) for o in range(A) if o != i for q in range(dc)]
            rows.append(r)
        self._build_obs(pool, rows)
        # collision threshold: size sum, 0 on the diagonal (an agent never collides with itself)
        self._size_sum = self.tensor([[0.0 if i == j else self.sizes[i] + self.sizes[j] for j in range(A)]
                                      for i in range(A)])[:, :, None]

    def sample_reset(self, K, generator):
        pos = self.uniform(K, generator, [-1.0] * self.E, [1.0] * self.E)
        return pos, torch.zeros(K, dtype=torch.long, device=self.device)

    def obs_pieces(self, s: MPEState, rel):
        return [rel, s.pos, s.vel, s.c]

    def reward(self, s: MPEState, rel):
        A = self.A
        dist = torch.hypot(rel[0], rel[1])  # [A, E, K]
        glob = dist[:, A:].amin(0).sum(0)  # [K]: sum_landmarks min_agents dist (= -global_reward)
        hits = (dist[:, :A] < self._size_sum).sum(1)  # [A, K]: collisions with other agents
        lr = self.local_ratio
        return glob * -(1 - lr) - hits * lr
