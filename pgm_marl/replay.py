"""Round-robin replay buffer of joint transitions (global state, joint action, per-agent rewards), and the
off-policy collection schedule around it (:class:`ReplayMemory`)."""
from __future__ import annotations

from typing import Dict, NamedTuple, Optional

import torch


class Batch(NamedTuple):
    state: torch.Tensor  # float32 [B, state_dim]: concatenated per-agent observations
    actions: torch.Tensor  # int64 [B, n_agents] (all discrete), else float32 [B, width] (ActionSpaces.store)
    reward: torch.Tensor  # float32 [B, n_agents]
    next_state: torch.Tensor  # float32 [B, state_dim]
    terminated: torch.Tensor  # float32 [B]: 1.0 where the episode really ended (not a time limit)


class ReplayBuffer:
    """Preallocated tensors; ``add`` writes K transitions at once, overwriting the oldest when full.

    Actions: ``action_width`` columns (default ``n_agents``: one action index per agent) of ``action_dtype``
    (float32 where some agent's actions are boxes).
    """

    def __init__(self, capacity: int, state_dim: int, n_agents: int, action_width: Optional[int] = None,
                 action_dtype: torch.dtype = torch.int64):
        if capacity < 1:
            raise ValueError(f"capacity must be a positive int, got {capacity!r}")
        self.capacity, self.state_dim, self.n_agents = capacity, state_dim, n_agents
        self.state = torch.zeros(capacity, state_dim)
        self.actions = torch.zeros(capacity, n_agents if action_width is None else action_width, dtype=action_dtype)
        self.reward = torch.zeros(capacity, n_agents)
        self.next_state = torch.zeros(capacity, state_dim)
        self.terminated = torch.zeros(capacity)
        self.cursor = 0  # next slot to write
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, state, actions, reward, next_state, terminated) -> None:
        """Insert K transitions: ``state [K, D], actions [K, n], reward [K, n], next_state [K, D], terminated [K]``."""
        k = state.shape[0]
        if k > self.capacity:  # only the newest `capacity` survive
            state, actions, reward, next_state, terminated = (
                x[-self.capacity:] for x in (state, actions, reward, next_state, terminated))
            k = self.capacity
        idx = (self.cursor + torch.arange(k)) % self.capacity
        self.state[idx] = state.float()
        self.actions[idx] = actions.to(self.actions.dtype)
        self.reward[idx] = reward.float()
        self.next_state[idx] = next_state.float()
        self.terminated[idx] = terminated.float()
        self.cursor = (self.cursor + k) % self.capacity
        self.size = min(self.size + k, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        """Uniform sample with replacement, reproducible through ``generator``."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        idx = torch.randint(self.size, (batch_size,), generator=generator)
        return Batch(self.state[idx], self.actions[idx], self.reward[idx], self.next_state[idx], self.terminated[idx])

    def state_dict(self) -> Dict[str, object]:
        """Only the filled part plus cursor (a full buffer keeps its slot order)."""
        n = self.size
        # torch.save writes a view's whole storage, so copy a partly filled buffer's prefix
        part = (lambda x: x) if n == self.capacity else (lambda x: x[:n].clone())
        names = ("state", "actions", "reward", "next_state", "terminated")
        return {"capacity": self.capacity, "cursor": self.cursor, "size": n,
                **{name: part(getattr(self, name)) for name in names}}

    def load_state_dict(self, state: Dict[str, object]) -> None:
        n = int(state["size"])
        if int(state["capacity"]) != self.capacity or state["state"].shape[1:] != self.state.shape[1:] \
                or state["actions"].shape[1:] != self.actions.shape[1:]:
            raise ValueError(f"replay buffer shape mismatch: saved capacity {state['capacity']}, "
                             f"state {tuple(state['state'].shape)}; this buffer has capacity {self.capacity}, "
                             f"state_dim {self.state_dim}, n_agents {self.n_agents}")
        for name in ("state", "actions", "reward", "next_state", "terminated"):
            getattr(self, name)[:n] = state[name]
        self.cursor, self.size = int(state["cursor"]), n


class ReplayMemory:
    """How an off-policy learner collects and when it updates (Algorithm 1): every transition goes into a
    round-robin :class:`ReplayBuffer` of ``cfg.buffer_size`` (allocated at the first write or load), and one
    gradient step is due every ``cfg.update_every`` env steps once ``cfg.learning_starts`` env steps and
    ``cfg.batch_size`` transitions are in; batches are sampled with its own generator (seeded ``cfg.seed``,
    checkpointed as ``"replay"``)."""

    def __init__(self, cfg, state_dim: int, n_agents: int, action_width: Optional[int] = None,
                 action_dtype: torch.dtype = torch.int64):
        self.cfg = cfg
        self._layout = (state_dim, n_agents, action_width, action_dtype)
        self._buffer: Optional[ReplayBuffer] = None
        self.generator = torch.Generator().manual_seed(cfg.seed)

    @property
    def buffer(self) -> ReplayBuffer:
        if self._buffer is None:
            self._buffer = ReplayBuffer(self.cfg.buffer_size, *self._layout)
        return self._buffer

    def __len__(self) -> int:
        return 0 if self._buffer is None else len(self._buffer)

    def add(self, state, actions, reward, next_state, terminated) -> None:
        self.buffer.add(state, actions, reward, next_state, terminated)

    def updates_due(self, env_steps_before: int, env_steps: int) -> int:
        """Gradient steps due after the vector step that took the env step count from ``env_steps_before``."""
        if env_steps < self.cfg.learning_starts or len(self) < self.cfg.batch_size:
            return 0
        return env_steps // self.cfg.update_every - env_steps_before // self.cfg.update_every

    def sample(self) -> Batch:
        return self.buffer.sample(self.cfg.batch_size, self.generator)

    def generators(self) -> Dict[str, torch.Generator]:
        return {"replay": self.generator}

    def state_dict(self) -> Dict[str, object]:
        return self.buffer.state_dict()

    def load_state_dict(self, state: Dict[str, object]) -> None:
        self.buffer.load_state_dict(state)
