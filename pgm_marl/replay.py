"""Round-robin replay buffer of joint transitions (global state, joint action, per-agent rewards), and the
off-policy collection schedule around it (:class:`ReplayMemory`)."""
from __future__ import annotations

from typing import Dict, NamedTuple, Optional

import torch

from .checkpoint import TensorFiles


class Batch(NamedTuple):
    state: torch.Tensor  # float32 [B, state_dim]: concatenated per-agent observations
    actions: torch.Tensor  # int64 [B, n_agents] (all discrete), else float32 [B, width] (ActionSpaces.store)
    reward: torch.Tensor  # float32 [B, n_agents]
    next_state: torch.Tensor  # float32 [B, state_dim]
    terminated: torch.Tensor  # float32 [B]: 1.0 where the episode really ended (not a time limit)


#: ``replay_dtype`` (:data:`pgm_marl.config.REPLAY_DTYPES`) -> the dtype observations are stored in
STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

#: rows per allocated chunk of a :class:`ChunkedRows`: at least this many, and as many as fit in
#: :data:`CHUNK_BYTES` (few chunks for narrow rows: a sample gathers from each chunk it touches; chunks of at most
#: 64 MB for wide ones: a checkpoint rewrites the chunks written since the last, the partly filled one included.
#: A batch of 1024 wide rows reads in 3.8 ms from 20 chunks, 4.2 ms from 80: the count hardly matters)
CHUNK_ROWS = 1 << 10
CHUNK_BYTES = 64 << 20


def chunk_rows(width: int, dtype: torch.dtype, limit: int, chunk_bytes: int | None = None) -> int:
    """Rows per chunk for rows of ``width`` x ``dtype``, at most ``limit`` (the most rows ever held): at least
    :data:`CHUNK_ROWS`, else as many as fit in ``chunk_bytes`` (default :data:`CHUNK_BYTES`)."""
    row_bytes = max(width, 1) * torch.empty((), dtype=dtype).element_size()
    budget = CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    return max(1, min(limit, max(CHUNK_ROWS, budget // row_bytes)))


class ChunkedRows:
    """Rows ``[width]`` of ``dtype`` at int64 positions, stored in chunks of :data:`CHUNK_ROWS` that are allocated
    when first written (memory grows with what is held, never a preallocated ``capacity x width`` block) and
    dropped by :meth:`free_below`. Each chunk carries a *stamp*, the count of ``write`` calls when it was last
    written: a checkpoint names a chunk's file by it, so an unchanged chunk is not written again."""

    def __init__(self, width: int, dtype: torch.dtype = torch.float32, chunk_rows: int = CHUNK_ROWS):
        self.width, self.dtype, self.chunk_rows = width, dtype, chunk_rows
        self.chunks: Dict[int, torch.Tensor] = {}
        self.stamps: Dict[int, int] = {}
        self.writes = 0

    @property
    def nbytes(self) -> int:
        return sum(c.numel() * c.element_size() for c in self.chunks.values())

    def _split(self, index: torch.Tensor):
        chunk = torch.div(index, self.chunk_rows, rounding_mode="floor")
        first, last = int(chunk.min()), int(chunk.max())
        return chunk, index - chunk * self.chunk_rows, range(first, last + 1)

    def write(self, index: torch.Tensor, rows: torch.Tensor) -> None:
        if len(index) == 0:
            return
        chunk, offset, ids = self._split(index)
        rows = rows.to(self.dtype)
        self.writes += 1
        for c in ids:
            mask = chunk == c
            if len(ids) > 1 and not bool(mask.any()):
                continue
            if c not in self.chunks:
                self.chunks[c] = torch.zeros(self.chunk_rows, self.width, dtype=self.dtype)
            self.chunks[c][offset[mask]] = rows[mask]
            self.stamps[c] = self.writes

    def read(self, index: torch.Tensor, out: Optional[torch.Tensor] = None,
             rows: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Rows at ``index`` ``[len(index), width]``: float32 for floating storage, else the stored dtype. With
        ``out`` (and ``rows``, positions in it; default ``0..len(index)-1``) they are written into ``out[rows]``
        chunk by chunk (nothing concatenated first) and ``out`` is returned."""
        dtype = torch.float32 if self.dtype.is_floating_point else self.dtype
        if len(index) == 0:
            return torch.empty(0, self.width, dtype=dtype) if out is None else out
        chunk, offset, ids = self._split(index)
        if out is None and len(ids) == 1:
            return self.chunks[ids[0]].index_select(0, offset).to(dtype)
        out = torch.empty(len(index), self.width, dtype=dtype) if out is None else out
        rows = torch.arange(len(index)) if rows is None else rows
        order = torch.argsort(chunk)  # rows grouped by chunk: one gather per chunk, no masks
        counts = torch.bincount(chunk - ids[0], minlength=len(ids)).tolist()
        for c, o, r, k in zip(ids, torch.split(offset[order], counts), torch.split(rows[order], counts), counts):
            if k:
                out.index_copy_(0, r, self.chunks[c].index_select(0, o).to(dtype))
        return out

    def state_dict(self, name: str, files: Optional[TensorFiles] = None) -> Dict[str, object]:
        """The chunks (themselves, no copy), or with ``files`` their references there (file ``name.chunk.stamp``),
        their stamps and the write count."""
        chunks = dict(self.chunks) if files is None else {
            c: files.put(f"{name}.{c}.{self.stamps[c]}", t) for c, t in self.chunks.items()}
        return {"chunks": chunks, "stamps": dict(self.stamps), "writes": self.writes}

    def load(self, chunks: Dict[int, torch.Tensor], limit: int, stamps: Optional[Dict[int, int]] = None,
             writes: int = 0) -> None:
        """Restore saved ``chunks`` (and their ``stamps`` and write count; a checkpoint from before stamps has
        none: 0). Chunks saved with another row count (a checkpoint written before the chunk sizes changed,
        f2b073a) are rewritten into this one's, position for position, up to ``limit`` (the positions that can
        hold data: the capacity for slot rows, the tail rows written for the tail); each saved chunk is taken out
        of ``chunks`` once rewritten, so the rewrite does not hold the buffer twice."""
        self.chunks, self.stamps, self.writes = {}, {}, int(writes)
        if all(t.shape[0] == self.chunk_rows for t in chunks.values()):
            self.chunks = {int(c): t.to(self.dtype) for c, t in chunks.items()}
            self.stamps = {int(c): int((stamps or {}).get(c, 0)) for c in chunks}
            return
        for c in sorted(chunks, key=int):  # (write() stamps the rewritten chunks)
            t = chunks.pop(c)
            positions = torch.arange(int(c) * t.shape[0], min((int(c) + 1) * t.shape[0], limit))
            self.write(positions, t[: len(positions)])
            del t

    def free_below(self, position: int) -> None:
        """Drop every chunk whose rows all lie below ``position`` (no longer referenced)."""
        for c in [c for c in self.chunks if (c + 1) * self.chunk_rows <= position]:
            del self.chunks[c], self.stamps[c]


#: ``next_slot`` codes: the next state is another transition's state (>= 0), in the tail, or in ``pending``
_TAIL, _PENDING = -1, -2


class ReplayBuffer:
    """Round-robin buffer of ``capacity`` joint transitions that stores each observation once.

    ``add`` writes K transitions at once (one per env copy), overwriting the oldest when full. A transition's
    next state is, while its episode goes on, the state of the transition the same copy adds next (a link to
    that slot); otherwise (the episode ended, or the copy was reset) it is kept in a *tail* of episode-final
    states (about one row per episode); the newest K next states are held until the next ``add`` tells which.
    A link is made only when the next call's state row equals the held next state, so a sampled next state is
    always exactly what was added. Rows live in :class:`ChunkedRows` (allocated as the buffer fills), in
    ``storage_dtype`` (float32; float16 or bfloat16 halve the memory and round each observation to 11 or 8
    significant bits). Sampling draws the same slots, and returns the same values in float32 storage, as a
    buffer storing both states in full.

    Actions: ``action_width`` columns (default ``n_agents``: one action index per agent) of ``action_dtype``
    (float32 where some agent's actions are boxes).
    """

    def __init__(self, capacity: int, state_dim: int, n_agents: int, action_width: Optional[int] = None,
                 action_dtype: torch.dtype = torch.int64, storage_dtype: torch.dtype = torch.float32):
        if capacity < 1:
            raise ValueError(f"capacity must be a positive int, got {capacity!r}")
        self.capacity, self.state_dim, self.n_agents = capacity, state_dim, n_agents
        self.storage_dtype = storage_dtype
        width = n_agents if action_width is None else action_width
        rows = lambda w, dtype: chunk_rows(w, dtype, capacity)  # noqa: E731
        self.states = ChunkedRows(state_dim, storage_dtype, rows(state_dim, storage_dtype))
        self.actions = ChunkedRows(width, action_dtype, rows(width, action_dtype))
        self.reward = ChunkedRows(n_agents, torch.float32, rows(n_agents, torch.float32))
        self.terminated = ChunkedRows(1, torch.float32, rows(1, torch.float32))
        self.next_slot = ChunkedRows(1, torch.int64, rows(1, torch.int64))  # >= 0: that slot's state; _TAIL; _PENDING
        self.next_ref = ChunkedRows(1, torch.int64, rows(1, torch.int64))  # tail position or pending row
        # the tail gets about one row per episode: chunks of an eighth (a checkpoint rewrites its newest one)
        tail_rows = chunk_rows(state_dim, storage_dtype, max(capacity // 8, 1), CHUNK_BYTES // 8)
        self.tail = ChunkedRows(state_dim, storage_dtype, tail_rows)
        self.tail_count = 0  # tail positions ever written
        self.tail_owner = ChunkedRows(1, torch.int64, tail_rows)  # add position of each tail row's transition
        self.pending = torch.zeros(0, state_dim)  # the newest add's next states, float32
        self.pending_slots = torch.zeros(0, dtype=torch.long)
        self.added = 0  # transitions ever added (the position of the next one)
        self.cursor = 0  # next slot to write
        self.size = 0

    def __len__(self) -> int:
        return self.size

    @property
    def nbytes(self) -> int:
        """Bytes held (observations, actions, rewards, links, tail; not the K pending next states)."""
        return sum(x.nbytes for x in (self.states, self.actions, self.reward, self.terminated, self.next_slot,
                                      self.next_ref, self.tail, self.tail_owner))

    def add(self, state, actions, reward, next_state, terminated) -> None:
        """Insert K transitions: ``state [K, D], actions [K, n], reward [K, n], next_state [K, D], terminated [K]``."""
        k = state.shape[0]
        if k > self.capacity:  # only the newest `capacity` survive
            state, actions, reward, next_state, terminated = (
                x[-self.capacity:] for x in (state, actions, reward, next_state, terminated))
            self.added += k - self.capacity
            k = self.capacity
        idx = (self.cursor + torch.arange(k)) % self.capacity
        self._settle_pending(state.float(), idx)
        self.states.write(idx, state)
        self.actions.write(idx, actions)
        self.reward.write(idx, reward.float())
        self.terminated.write(idx, terminated.float().reshape(k, 1))
        self.next_slot.write(idx, torch.full((k, 1), _PENDING))
        self.next_ref.write(idx, torch.arange(k).reshape(k, 1))
        self.pending, self.pending_slots = next_state.float().clone(), idx
        self.added += k
        self.cursor = (self.cursor + k) % self.capacity
        self.size = min(self.size + k, self.capacity)
        self._free_tail()

    def _settle_pending(self, state: torch.Tensor, idx: torch.Tensor) -> None:
        """Resolve the previous add's next states: a link to this add's slot where the copy continues (its next
        state is this add's state, bit for bit), else a tail row. Slots this add overwrites are not touched."""
        slots = self.pending_slots
        if len(slots) == 0:
            return
        alive = ~torch.isin(slots, idx)
        link = torch.zeros(len(slots), dtype=torch.bool)
        if state.shape == self.pending.shape:
            link = (state == self.pending).all(-1)
        linked, tailed = alive & link, alive & ~link
        if bool(linked.any()):  # (then the two adds have the same K: row k is copy k in both)
            self.next_slot.write(slots[linked], idx[linked].unsqueeze(-1))
        n_tail = int(tailed.sum())
        if n_tail:
            pos = self.tail_count + torch.arange(n_tail)
            self.tail.write(pos, self.pending[tailed])
            owners = self.added - len(slots) + torch.nonzero(tailed).squeeze(-1)
            self.tail_owner.write(pos, owners.unsqueeze(-1))
            self.next_slot.write(slots[tailed], torch.full((n_tail, 1), _TAIL))
            self.next_ref.write(slots[tailed], pos.unsqueeze(-1))
            self.tail_count += n_tail
        self.pending_slots = torch.zeros(0, dtype=torch.long)

    def _free_tail(self) -> None:
        """Drop tail chunks whose transitions have all been overwritten (tail rows are written in add order)."""
        oldest = self.added - self.size  # add position of the oldest live transition
        chunk = self.tail.chunk_rows
        for c in sorted(self.tail.chunks):
            last = min((c + 1) * chunk, self.tail_count) - 1
            if last < c * chunk or int(self.tail_owner.read(torch.tensor([last]))[0, 0]) >= oldest:
                break
            for rows in (self.tail, self.tail_owner):
                rows.free_below((c + 1) * chunk)

    def next_states(self, idx: torch.Tensor) -> torch.Tensor:
        """The next states of the transitions in slots ``idx``, float32 ``[len(idx), D]``."""
        code, ref = self.next_slot.read(idx)[:, 0], self.next_ref.read(idx)[:, 0]
        out = torch.empty(len(idx), self.state_dim)
        # each kind of link into its rows of out: the next slot's state, a tail row (an episode's last next state),
        # a pending row (the newest add's next states, not yet settled)
        linked, tail, pending = code >= 0, code == _TAIL, code == _PENDING
        if bool(linked.any()):
            self.states.read(code[linked], out, linked.nonzero()[:, 0])
        if bool(tail.any()):
            self.tail.read(ref[tail], out, tail.nonzero()[:, 0])
        if bool(pending.any()):
            out.index_copy_(0, pending.nonzero()[:, 0], self.pending[ref[pending]].to(self.storage_dtype).float())
        return out

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        """Uniform sample with replacement, reproducible through ``generator``."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        idx = torch.randint(self.size, (batch_size,), generator=generator)
        return self._batch(idx)

    def latest(self, count: int) -> Batch:
        """The newest ``min(count, len(self))`` transitions, newest first (no random numbers drawn)."""
        if self.size == 0:
            raise ValueError("cannot read from an empty replay buffer")
        return self._batch((self.cursor - 1 - torch.arange(min(count, self.size))) % self.capacity)

    def _batch(self, idx: torch.Tensor) -> Batch:
        return Batch(self.states.read(idx), self.actions.read(idx), self.reward.read(idx),
                     self.next_states(idx), self.terminated.read(idx)[:, 0])

    _ROWS = ("states", "actions", "reward", "terminated", "next_slot", "next_ref", "tail", "tail_owner")

    def state_dict(self, files: Optional[TensorFiles] = None) -> Dict[str, object]:
        """Everything held, as the allocated chunks themselves (no copy: a checkpoint of a large buffer does not
        double the memory), or with ``files`` as references to the chunks kept there (only chunks written since
        the last checkpoint are written)."""
        rows = {r: getattr(self, r).state_dict(r, files) for r in self._ROWS}
        return {"format": 2, "capacity": self.capacity, "cursor": self.cursor, "size": self.size,
                "added": self.added, "tail_count": self.tail_count, "pending": self.pending,
                "pending_slots": self.pending_slots, "widths": [getattr(self, r).width for r in self._ROWS],
                **{key: {r: rows[r][key] for r in self._ROWS} for key in ("chunks", "stamps", "writes")}}

    def load_state_dict(self, state: Dict[str, object]) -> None:
        """Restore :meth:`state_dict`, or the older format that stored ``next_state`` in full (into the tail)."""
        widths = [getattr(self, r).width for r in self._ROWS]
        if "format" not in state:
            state = self._from_full_format(state)
        if int(state["capacity"]) != self.capacity or list(state["widths"]) != widths:
            raise ValueError(f"replay buffer shape mismatch: saved capacity {state['capacity']}, row widths "
                             f"{list(state['widths'])}; this buffer has capacity {self.capacity}, row widths {widths} "
                             f"(state_dim {self.state_dim}, n_agents {self.n_agents})")
        tail_count = int(state["tail_count"])
        stamps, writes = state.get("stamps", {}), state.get("writes", {})  # (none before incremental checkpoints)
        for r in self._ROWS:
            getattr(self, r).load(state["chunks"][r], tail_count if r in ("tail", "tail_owner") else self.capacity,
                                  stamps.get(r), writes.get(r, 0))
        self.cursor, self.size, self.added = int(state["cursor"]), int(state["size"]), int(state["added"])
        self.tail_count = tail_count
        self.pending, self.pending_slots = state["pending"], state["pending_slots"]

    def _from_full_format(self, state: Dict[str, object]) -> Dict[str, object]:
        """A checkpoint from before observations were stored once (``state`` and ``next_state`` in full, slot
        order): every next state goes to the tail, in add order."""
        n, cursor = int(state["size"]), int(state["cursor"])
        if int(state["capacity"]) != self.capacity or state["state"].shape[1:] != (self.state_dim,) \
                or state["actions"].shape[1:] != (self.actions.width,):
            raise ValueError(f"replay buffer shape mismatch: saved capacity {state['capacity']}, state "
                             f"{tuple(state['state'].shape)}; this buffer has capacity {self.capacity}, "
                             f"state_dim {self.state_dim}, n_agents {self.n_agents}")
        fresh = ReplayBuffer(self.capacity, self.state_dim, self.n_agents, self.actions.width, self.actions.dtype,
                             self.storage_dtype)
        idx = torch.arange(n)
        order = torch.argsort((idx - cursor) % n) if n == self.capacity else idx  # slots in add order
        fresh.states.write(idx, state["state"])
        fresh.actions.write(idx, state["actions"])
        fresh.reward.write(idx, state["reward"])
        fresh.terminated.write(idx, state["terminated"].reshape(n, 1))
        fresh.next_slot.write(idx, torch.full((n, 1), _TAIL))
        fresh.next_ref.write(order, idx.unsqueeze(-1))  # slot order[p] -> tail position p
        fresh.tail.write(idx, state["next_state"][order])
        fresh.tail_owner.write(idx, idx.unsqueeze(-1))
        fresh.cursor, fresh.size, fresh.added, fresh.tail_count = cursor, n, n, n
        return fresh.state_dict()


class ReplayMemory:
    """How an off-policy learner collects and when it updates (Algorithm 1): every transition goes into a
    round-robin :class:`ReplayBuffer` of ``cfg.buffer_size`` (observations in ``cfg.replay_dtype``), and one
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
            dtype = STORAGE_DTYPES[getattr(self.cfg, "replay_dtype", "float32")]
            self._buffer = ReplayBuffer(self.cfg.buffer_size, *self._layout, storage_dtype=dtype)
        return self._buffer

    @property
    def nbytes(self) -> int:
        """Bytes the buffer holds (it grows as it fills)."""
        return 0 if self._buffer is None else self._buffer.nbytes

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

    def latest(self) -> Batch:
        """The newest ``cfg.batch_size`` transitions (what rho is fitted on with ``opponent_data="latest"``)."""
        return self.buffer.latest(self.cfg.batch_size)

    def generators(self) -> Dict[str, torch.Generator]:
        return {"replay": self.generator}

    def state_dict(self, files: Optional[TensorFiles] = None) -> Dict[str, object]:
        return self.buffer.state_dict(files)

    def load_state_dict(self, state: Dict[str, object]) -> None:
        self.buffer.load_state_dict(state)
