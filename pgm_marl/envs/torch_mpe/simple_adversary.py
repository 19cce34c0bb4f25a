"""Physical deception: ``mpe2.simple_adversary.simple_adversary`` (``simple_adversary_v3``) for K copies.

Reproduces ``Scenario.make_world(N)`` (adversary_0 then N good agents, size 0.15, silent, no collisions;
N landmarks of size 0.08), ``reset_world`` (one goal landmark uniform in {0..N-1}, shared by all agents;
agents and landmarks uniform in ``[-1, 1]^2``; goal colored green), ``observation`` (good agents:
``[goal rel pos, landmark rel pos, other agents' rel pos]``; adversary: ``[landmark rel pos, other agents'
rel pos]``) and the shaped rewards (adversary: ``-dist(adversary, goal)``; good agents:
``-min_good dist(good, goal) + sum_adversaries dist(adversary, goal)``). Full observability only.
"""
from __future__ import annotations

import numpy as np
import torch

from .core import MPEState, MPEWorld, ObsPool


class SimpleAdversary(MPEWorld):
    name = "simple_adversary_v3"

    def __init__(self, N: int = 2, **kw):
        self.N = N  # (checked once, by the task's options: pgm_marl.envs.tasks.check_env_kwargs)
        A, L = self.N + 1, self.N
        adv = [i < 1 for i in range(A)]
        self.is_adv = adv
        names = [f"adversary_{i}" if adv[i] else f"agent_{i - 1}" for i in range(A)]
        super().__init__(agent_names=names, agent_size=[0.15] * A, agent_collide=[False] * A,
                         movable=[True] * A, silent=[True] * A, accel=[None] * A, max_speed=[None] * A,
                         landmark_size=[0.08] * L, landmark_collide=[False] * L, dim_c=2, **kw)
        E = self.E
        pool = ObsPool({"to_goal": (2, A), "rel": (2, A, E)})
        rows = []
        for i in range(A):
            r = [] if adv[i] else [("to_goal", (d, i)) for d in range(2)]
            r += [("rel", (d, i, A + j)) for j in range(L) for d in range(2)]
            r += [("rel", (d, i, o)) for o in range(A) if o != i for d in range(2)]
            rows.append(r)
        self._build_obs(pool, rows)
        self._adv = torch.as_tensor(adv, device=self.device)[:, None]

    def sample_reset(self, K, generator):
        goal = torch.randint(self.L, (K,), generator=generator, device=self.device)
        pos = self.uniform(K, generator, [-1.0] * self.E, [1.0] * self.E)
        return pos, goal

    def to_goal(self, s: MPEState, rel):
        """``[2, A, K]``: goal landmark - agent."""
        K = s.goal.shape[0]
        return rel[:, :, self.A:].gather(2, s.goal.view(1, 1, 1, K).expand(2, self.A, 1, K))[:, :, 0]

    def obs_pieces(self, s: MPEState, rel):
        return [self.to_goal(s, rel), rel]

    def reward(self, s: MPEState, rel):
        g = self.to_goal(s, rel)
        d = torch.hypot(g[0], g[1])  # [A, K]
        good = d[0] - d[1:].amin(0)  # adversary dist - min_good dist
        return torch.where(self._adv, -d, good)

    def goal_from_mpe2(self, world) -> int:
        if len({id(a.goal_a) for a in world.agents}) != 1:
            raise ValueError("simple_adversary: agents have different goal landmarks")
        return [i for i, lm in enumerate(world.landmarks) if lm is world.agents[0].goal_a][0]

    def goal_to_mpe2(self, world, goal: int) -> None:
        world.agents[0].color = np.array([0.85, 0.35, 0.35])
        for a in world.agents[1:]:
            a.color = np.array([0.35, 0.35, 0.85])
        for lm in world.landmarks:
            lm.color = np.array([0.15, 0.15, 0.15])
        world.landmarks[goal].color = np.array([0.15, 0.65, 0.15])
        for a in world.agents:
            a.goal_a = world.landmarks[goal]
