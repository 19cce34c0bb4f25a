"""Cooperative communication: ``mpe2.simple_speaker_listener.simple_speaker_listener`` (v4) for K copies.

Reproduces ``Scenario.make_world`` (speaker_0: immovable, talks, dim_c = 3; listener_0: movable,
silent; 3 landmarks; nothing collides), ``reset_world`` (goal landmark uniform in {0, 1, 2}; agents and
landmarks uniform in ``[-1, 1]^2``; landmark colors red/green/blue; the listener's color = goal color
+ 0.45), ``observation`` (speaker: the goal landmark's color; listener: ``[self_vel, landmark rel pos,
speaker's comm]``) and ``reward`` (both agents: ``-|listener - goal landmark|^2``).
"""
from __future__ import annotations

import numpy as np
import torch

from .core import MPEState, MPEWorld, ObsPool

LANDMARK_COLORS = ((0.65, 0.15, 0.15), (0.15, 0.65, 0.15), (0.15, 0.15, 0.65))


class SimpleSpeakerListener(MPEWorld):
    name = "simple_speaker_listener_v4"

    def __init__(self, **kw):
        A, L = 2, 3
        super().__init__(agent_names=["speaker_0", "listener_0"], agent_size=[0.075] * A,
                         agent_collide=[False] * A, movable=[False, True], silent=[False, True],
                         accel=[None] * A, max_speed=[None] * A, landmark_size=[0.04] * L,
                         landmark_collide=[False] * L, dim_c=3, **kw)
        E, dc = self.E, self.dim_c
        pool = ObsPool({"goal_color": (3,), "rel": (2, A, E), "vel": (2, A), "c": (dc, A)})
        speaker = [("goal_color", (q,)) for q in range(3)]
        listener = [("vel", (d, 1)) for d in range(2)]
        listener += [("rel", (d, 1, A + j)) for j in range(L) for d in range(2)]
        listener += [("c", (q, 0)) for q in range(dc)]  # the speaker's comm
        self._build_obs(pool, [speaker, listener])
        self._colors = self.tensor(LANDMARK_COLORS).T.contiguous()  # [3, L]

    def sample_reset(self, K, generator):
        goal = torch.randint(self.L, (K,), generator=generator, device=self.device)
        pos = self.uniform(K, generator, [-1.0] * self.E, [1.0] * self.E)
        return pos, goal

    def obs_pieces(self, s: MPEState, rel):
        return [self._colors.index_select(1, s.goal), rel, s.vel, s.c]

    def reward(self, s: MPEState, rel):
        K, A = s.goal.shape[0], self.A
        to_goal = rel[:, 1, A:].gather(1, s.goal.view(1, 1, K).expand(2, 1, K))[:, 0]  # [2, K]: goal - listener
        r = -(to_goal[0] * to_goal[0] + to_goal[1] * to_goal[1])  # [K]
        return r.expand(A, K)

    def goal_from_mpe2(self, world) -> int:
        return [i for i, lm in enumerate(world.landmarks) if lm is world.agents[0].goal_b][0]

    def goal_to_mpe2(self, world, goal: int) -> None:
        for a in world.agents:
            a.goal_a = a.goal_b = None
        world.agents[0].goal_a = world.agents[1]
        world.agents[0].goal_b = world.landmarks[goal]
        for a in world.agents:
            a.color = np.array([0.25, 0.25, 0.25])
        for lm, col in zip(world.landmarks, LANDMARK_COLORS):
            lm.color = np.array(col)
        world.agents[1].color = world.landmarks[goal].color + np.array([0.45, 0.45, 0.45])
