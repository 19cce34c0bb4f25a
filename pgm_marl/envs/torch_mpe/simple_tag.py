"""Predator-prey: ``mpe2.simple_tag.simple_tag`` (``simple_tag_v3``) for K copies.

Reproduces ``Scenario.make_world(num_good, num_adversaries, num_obstacles)`` (adversaries first:
size 0.075, accel 3, max_speed 1; good agents: size 0.05, accel 4, max_speed 1.3; all agents collide
and are silent, dim_c = 2; obstacles: size 0.2, collide, immovable), ``reset_world`` (agents uniform in
``[-1, 1]^2``, obstacles uniform in ``[-0.9, 0.9]^2``), ``observation`` (``[self_vel, self_pos, obstacle rel
pos, other agents' rel pos, velocities of the other agents that are good]``) and ``reward`` with the
hard-coded ``shape = False``: a good agent gets ``-10`` per adversary touching it (dist < size sum) minus
``bound(|x|) + bound(|y|)`` (0 below 0.9, ``(x - 0.9) * 10`` below 1, else ``min(exp(2x - 2), 10)``); every
adversary gets ``+10`` per touching (good, adversary) pair. Full observability, no curriculum.
"""
from __future__ import annotations

import torch

from .core import MPEState, MPEWorld, ObsPool


class SimpleTag(MPEWorld):
    name = "simple_tag_v3"

    def __init__(self, num_good: int = 1, num_adversaries: int = 3, num_obstacles: int = 2, **kw):
        # (sizes checked once, by the task's options: pgm_marl.envs.tasks.check_env_kwargs; nothing coerced here)
        self.num_good, self.num_adversaries, self.num_obstacles = num_good, num_adversaries, num_obstacles
        nadv, A, L = self.num_adversaries, self.num_adversaries + self.num_good, self.num_obstacles
        adv = [i < nadv for i in range(A)]
        self.is_adv = adv
        names = [f"adversary_{i}" if adv[i] else f"agent_{i - nadv}" for i in range(A)]
        super().__init__(agent_names=names, agent_size=[0.075 if a else 0.05 for a in adv],
                         agent_collide=[True] * A, movable=[True] * A, silent=[True] * A,
                         accel=[3.0 if a else 4.0 for a in adv], max_speed=[1.0 if a else 1.3 for a in adv],
                         landmark_size=[0.2] * L, landmark_collide=[True] * L, dim_c=2, **kw)
        E = self.E
        pool = ObsPool({"rel": (2, A, E), "pos": (2, E), "vel": (2, A)})
        rows = []
        for i in range(A):
            r = [("vel", (d, i)) for d in range(2)] + [("pos", (d, i)) for d in range(2)]
            r += [("rel", (d, i, A + j)) for j in range(L) for d in range(2)]
            r += [("rel", (d, i, o)) for o in range(A) if o != i for d in range(2)]
            r += [("vel", (d, o)) for o in range(A) if o != i and not adv[o] for d in range(2)]
            rows.append(r)
        self._build_obs(pool, rows)
        self._size_sum = self.tensor([[self.sizes[i] + self.sizes[j] for j in range(A)] for i in range(A)])[:, :, None]
        adv_t = torch.as_tensor(adv, device=self.device)
        self._good_adv = ((~adv_t)[:, None] & adv_t[None, :])[:, :, None]  # [A, A, 1]: row good, column adversary
        self._adv = adv_t[:, None]

    def sample_reset(self, K, generator):
        A, L = self.A, self.L
        pos = self.uniform(K, generator, [-1.0] * A + [-0.9] * L, [1.0] * A + [0.9] * L)
        return pos, torch.zeros(K, dtype=torch.long, device=self.device)

    def obs_pieces(self, s: MPEState, rel):
        return [rel, s.pos, s.vel]

    @staticmethod
    def bound(x):
        """simple_tag's ``agent_reward.bound`` elementwise."""
        return torch.where(x < 0.9, 0.0, torch.where(x < 1.0, (x - 0.9) * 10, torch.exp(2 * x - 2).clamp(max=10)))

    def reward(self, s: MPEState, rel):
        A = self.A
        dist = torch.hypot(rel[0, :, :A], rel[1, :, :A])  # [A, A, K]
        n_caught = ((dist < self._size_sum) & self._good_adv).sum(1)  # [A, K]: adversaries touching good agent i
        b = self.bound(s.pos[:, :A].abs())  # [2, A, K]
        good = -10 * n_caught - b[0] - b[1]
        adv = 10 * n_caught.sum(0)  # [K]: touching (good, adversary) pairs
        return torch.where(self._adv, adv.to(good.dtype), good)
