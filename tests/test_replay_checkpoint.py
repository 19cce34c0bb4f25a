"""Replay buffer, atomic checkpoints, RNG capture/restore, metrics file and config validation."""
import random

import numpy as np
import pytest
import torch

from pgm_marl import checkpoint
from pgm_marl.checkpoint import (TensorFiles, capture_rng, env_generators, load_checkpoint, restore_rng,
                                 save_checkpoint)
from pgm_marl.config import TrainConfig
from pgm_marl.envs import VectorEnv
from pgm_marl.metrics import MetricsLogger, plot_learning_curve, read_metrics
from pgm_marl.replay import Batch, ReplayBuffer
from pgm_marl.train import run_generators


def fill(buf, start, k, d=4, n=2):
    s = torch.arange(start, start + k, dtype=torch.float32)[:, None].expand(k, d)
    buf.add(s, torch.full((k, n), start % 5), torch.ones(k, n) * start, s + 1, torch.zeros(k))


def test_replay_round_robin():
    buf = ReplayBuffer(5, state_dim=4, n_agents=2)
    fill(buf, 0, 3)
    assert len(buf) == 3 and buf.cursor == 3
    fill(buf, 3, 4)  # wraps: slots 3, 4, 0, 1
    assert len(buf) == 5 and buf.cursor == 2
    assert buf.states.read(torch.arange(5))[:, 0].tolist() == [5, 6, 2, 3, 4]
    fill(buf, 100, 7)  # more than capacity at once: the newest 5 survive
    assert sorted(buf.states.read(torch.arange(5))[:, 0].tolist()) == [102, 103, 104, 105, 106]


def test_replay_sampling_deterministic_and_state_dict():
    buf = ReplayBuffer(10, state_dim=4, n_agents=2)
    fill(buf, 0, 6)
    a = buf.sample(8, torch.Generator().manual_seed(1))
    b = buf.sample(8, torch.Generator().manual_seed(1))
    assert isinstance(a, Batch) and all(torch.equal(x, y) for x, y in zip(a, b))
    assert a.state.shape == (8, 4) and a.actions.dtype == torch.int64 and a.terminated.shape == (8,)
    assert set(a.state[:, 0].tolist()) <= set(range(6))
    sd = buf.state_dict()
    assert sd["size"] == 6 and sd["cursor"] == 6
    other = ReplayBuffer(10, state_dim=4, n_agents=2)
    other.load_state_dict(sd)
    c = other.sample(8, torch.Generator().manual_seed(1))
    assert all(torch.equal(x, y) for x, y in zip(a, c)) and len(other) == 6
    with pytest.raises(ValueError, match="mismatch"):
        ReplayBuffer(11, state_dim=4, n_agents=2).load_state_dict(sd)
    with pytest.raises(ValueError, match="empty"):
        ReplayBuffer(3, 4, 2).sample(1, torch.Generator())


class FullReplay:
    """The reference: a round-robin buffer that stores state and next state of every transition in full."""

    def __init__(self, capacity):
        self.capacity, self.rows, self.cursor = capacity, {}, 0

    def add(self, state, next_state):
        for k in range(state.shape[0]):
            self.rows[(self.cursor + k) % self.capacity] = (state[k].clone(), next_state[k].clone())
        self.cursor = (self.cursor + state.shape[0]) % self.capacity


@pytest.mark.parametrize("capacity,copies,steps,dtype", [(50, 4, 5, torch.float32), (37, 4, 5, torch.float32),
                                                          (9, 4, 3, torch.float32), (23, 3, 4, torch.float16),
                                                          (60, 2, 6, torch.bfloat16)])
def test_lean_replay_returns_what_a_full_buffer_holds(capacity, copies, steps, dtype):
    """Observations stored once (next state = the next row's state, a tail row at an episode's end or reset):
    after every add, every slot's state and next state equal a buffer that stores both in full (rounded to
    the storage dtype), through wrap-around, copies reset mid-episode, tail chunks freed, a checkpoint
    round trip; and sampling draws the same slots. A link to the wrong slot, a tail row freed while still
    referenced, or a pending next state that is not rounded like the stored ones fails here."""
    g = torch.Generator().manual_seed(0)
    lean, full = ReplayBuffer(capacity, 3, 2, storage_dtype=dtype), FullReplay(capacity)
    for episode in range(12):
        s = torch.randn(copies, 3, generator=g)
        for t in range(steps):
            ns = torch.randn(copies, 3, generator=g)
            lean.add(s, torch.randint(5, (copies, 2), generator=g), torch.randn(copies, 2, generator=g), ns,
                     torch.zeros(copies))
            full.add(s, ns)
            s = ns.clone()
            reset = torch.rand(copies, generator=g) < 0.2  # some copies restart mid-episode
            s[reset] = torch.randn(int(reset.sum()), 3, generator=g)
            idx = torch.arange(len(lean))
            want = [torch.stack([full.rows[i][k] for i in range(len(lean))]).to(dtype).float() for k in (0, 1)]
            assert torch.equal(lean.states.read(idx), want[0]) and torch.equal(lean.next_states(idx), want[1])
    assert lean.tail_count > 2 * lean.tail.chunk_rows and 0 not in lean.tail.chunks  # early tail chunks freed
    restored = ReplayBuffer(capacity, 3, 2, storage_dtype=dtype)
    restored.load_state_dict(lean.state_dict())
    a, b = (buf.sample(64, torch.Generator().manual_seed(3)) for buf in (lean, restored))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_lean_replay_memory_grows_with_what_it_holds(monkeypatch):
    """Chunks are allocated as the buffer fills: a buffer of a million transitions holding a few thousand
    holds a few thousand rows, about one state per transition (not two)."""
    from pgm_marl import replay
    monkeypatch.setattr(replay, "CHUNK_ROWS", 4096)  # chunks of 4096 rows (1.6 MB) instead of 64 MB
    monkeypatch.setattr(replay, "CHUNK_BYTES", 1 << 20)
    buf = ReplayBuffer(1_000_000, 100, 2)
    assert buf.nbytes == 0
    for episode in range(20):  # 20 episodes x 25 steps x 100 copies = 50 000 transitions
        s = torch.randn(100, 100)
        for t in range(25):
            ns = torch.randn(100, 100)
            buf.add(s, torch.zeros(100, 2, dtype=torch.long), torch.zeros(100, 2), ns, torch.zeros(100))
            s = ns
    rows = buf.states.chunk_rows
    assert rows == 4096
    chunks = -(-50_000 // rows)  # ceil
    state_bytes = chunks * rows * 100 * 4
    assert len(buf.states.chunks) == chunks and buf.tail.nbytes <= buf.tail.chunk_rows * 100 * 4
    assert state_bytes < 2 * 50_000 * 100 * 4 and buf.nbytes < 1.5 * state_bytes  # a second copy would be 2x


def test_latest_are_the_newest_transitions_newest_first():
    """``latest(k)``: the k transitions added last, newest first, through wrap-around; all of them when fewer are
    held. (Reading the oldest, or slot order instead of add order after wrap-around, fails.)"""
    buf, added = ReplayBuffer(10, 2, 1), []
    for step in range(7):  # 7 x 3 = 21 transitions into 10 slots
        s = torch.arange(3 * step, 3 * step + 3, dtype=torch.float32).unsqueeze(-1).expand(3, 2)
        buf.add(s, torch.zeros(3, 1, dtype=torch.long), torch.zeros(3, 1), s + 100, torch.zeros(3))
        added += list(range(3 * step, 3 * step + 3))
        for k in (1, 4, 10, 12):
            want = torch.tensor(added[::-1][: min(k, len(buf))], dtype=torch.float32)
            got = buf.latest(k)
            assert torch.equal(got.state[:, 0], want) and torch.equal(got.next_state[:, 0], want + 100)
    with pytest.raises(ValueError, match="empty"):
        ReplayBuffer(3, 2, 1).latest(1)


def test_replay_loads_chunks_of_another_size():
    """A checkpoint whose chunks hold another number of rows (written before the chunk sizes changed) resumes:
    the restored buffer samples what the saved one samples, and both go on equal through more adds, wrap-around
    and freed tail chunks. (Taking the saved chunks as they are failed with an IndexError on resume.)"""
    g = torch.Generator().manual_seed(2)
    saved, restored = ReplayBuffer(40, 3, 2), ReplayBuffer(40, 3, 2)
    for r in saved._ROWS:  # the old layout: 7 rows per chunk, against this buffer's one chunk of 40
        getattr(saved, r).chunk_rows = 7

    def add(bufs, steps):
        for t in range(steps):
            s, ns = torch.randn(3, 3, generator=g), torch.randn(3, 3, generator=g)
            a, rew, done = torch.randint(5, (3, 2), generator=g), torch.randn(3, 2, generator=g), torch.zeros(3)
            for buf in bufs:
                buf.add(s, a, rew, ns, done)

    add([saved], 9)
    state = saved.state_dict()
    restored.load_state_dict(state)
    assert not any(state["chunks"].values())  # each saved chunk let go once rewritten: not held twice
    assert set(restored.states.chunks) == {0} and restored.states.chunk_rows != 7
    for k in range(3):  # after loading, and after adds that wrap around
        a, b = (buf.sample(64, torch.Generator().manual_seed(k)) for buf in (saved, restored))
        assert all(torch.equal(x, y) for x, y in zip(a, b))
        add([saved, restored], 11)


def test_replay_loads_the_older_full_format():
    """A checkpoint written before observations were stored once (state and next_state in full) still
    resumes: every sampled transition is what the old buffer held."""
    g = torch.Generator().manual_seed(1)
    n, cap = 7, 7
    old = {"capacity": cap, "cursor": 3, "size": n, "state": torch.randn(n, 4, generator=g),
           "actions": torch.randint(5, (n, 2), generator=g), "reward": torch.randn(n, 2, generator=g),
           "next_state": torch.randn(n, 4, generator=g), "terminated": torch.zeros(n)}
    buf = ReplayBuffer(cap, 4, 2)
    buf.load_state_dict(old)
    batch = buf.sample(32, torch.Generator().manual_seed(0))
    idx = torch.randint(n, (32,), generator=torch.Generator().manual_seed(0))
    assert torch.equal(batch.state, old["state"][idx]) and torch.equal(batch.next_state, old["next_state"][idx])
    assert torch.equal(batch.actions, old["actions"][idx])


def small_chunks(buf, rows=7):
    """``buf`` with chunks of ``rows`` rows (many chunks for a few transitions)."""
    for r in buf._ROWS:
        getattr(buf, r).chunk_rows = rows
    return buf


def add_random(buf, g, steps, copies=3):
    for t in range(steps):
        s, ns = torch.randn(copies, 3, generator=g), torch.randn(copies, 3, generator=g)
        buf.add(s, torch.randint(5, (copies, 2), generator=g), torch.randn(copies, 2, generator=g), ns,
                torch.rand(copies, generator=g).round())


def restored(path, files=None):
    """A buffer loaded from the checkpoint at ``path`` (its chunk files read through ``files``)."""
    buf = small_chunks(ReplayBuffer(40, 3, 2))
    buf.load_state_dict(load_checkpoint(path, files=files)["buffer"])
    return buf


def same_samples(a, b):
    x, y = (buf.sample(64, torch.Generator().manual_seed(5)) for buf in (a, b))
    return all(torch.equal(u, v) for u, v in zip(x, y)) and torch.equal(a.next_states(torch.arange(len(a))),
                                                                        b.next_states(torch.arange(len(b))))


def test_incremental_checkpoint_rewrites_only_changed_chunks(tmp_path):
    """The replay's chunks go to ``checkpoint_files/``, one file each: a checkpoint writes a chunk whose
    content changed since the last one under a new name and leaves an unchanged chunk's file untouched (same
    inode); files no longer referred to are deleted; the checkpoint loads back to the same buffer. (A write
    that does not renew the chunk's name would keep the stale file and fail the round trip; rewriting
    everything fails the inode check.)"""
    g, path = torch.Generator().manual_seed(0), tmp_path / "checkpoint.pt"
    buf, files = small_chunks(ReplayBuffer(40, 3, 2)), TensorFiles.beside(tmp_path / "checkpoint.pt")
    add_random(buf, g, 5)  # 15 transitions: chunks 0-2 of 7 rows
    for _ in range(2):
        before = {(r, c): t.clone() for r in buf._ROWS for c, t in getattr(buf, r).chunks.items()}
        old = buf.state_dict(files)["chunks"]
        inodes = {p.name: p.stat().st_ino for p in files.folder.iterdir()}
        save_checkpoint(path, {"buffer": buf.state_dict(files)}, files)
        add_random(buf, g, 4)  # rows 15-26 (chunks 2-3), links and tail rows of the rows before
        state = buf.state_dict(files)
        save_checkpoint(path, {"buffer": state}, files)
        names = {p.name for p in files.folder.iterdir()}
        refs = {ref[checkpoint.TENSOR_FILE] for r in buf._ROWS for ref in state["chunks"][r].values()}
        assert names == refs  # nothing stale, no temp file
        kept = changed = 0
        for r in buf._ROWS:
            for c, t in getattr(buf, r).chunks.items():
                name = state["chunks"][r][c][checkpoint.TENSOR_FILE]
                if (r, c) not in before or not torch.equal(before[(r, c)], t):
                    assert name not in inodes, f"{r} chunk {c} changed but kept its file {name}"
                    changed += 1
                elif name == old[r][c][checkpoint.TENSOR_FILE]:  # (a chunk rewritten with equal rows is renamed)
                    assert (files.folder / name).stat().st_ino == inodes[name], f"{name} was rewritten"
                    kept += 1
        assert kept >= 6 and changed >= 6  # (the case tests both sides)
        assert same_samples(buf, restored(path))


def test_interrupted_checkpoint_keeps_the_previous_one_and_resume_overwrites_its_leftovers(tmp_path, monkeypatch):
    """A save killed after the chunk files were written but before ``checkpoint.pt`` was replaced leaves the
    previous checkpoint loadable, as it was. A run resumed from it (a new process: a fresh TensorFiles) that
    writes other rows under the same chunk names overwrites those leftover files: what it saves loads back to
    what it holds. (Skipping a file because one of that name exists would load the crashed run's rows.)"""
    path = tmp_path / "checkpoint.pt"
    g, buf, files = torch.Generator().manual_seed(1), small_chunks(ReplayBuffer(40, 3, 2)), TensorFiles.beside(path)
    add_random(buf, g, 4)
    save_checkpoint(path, {"buffer": buf.state_dict(files)}, files)
    first = restored(path)
    add_random(buf, g, 3)
    real = checkpoint._atomic_torch_save

    def crash_on_checkpoint(obj, target):
        if target.name == "checkpoint.pt":
            raise KeyboardInterrupt("killed while writing checkpoint.pt")
        real(obj, target)

    monkeypatch.setattr(checkpoint, "_atomic_torch_save", crash_on_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"buffer": buf.state_dict(files)}, files)
    monkeypatch.undo()
    leftovers = {p.name for p in files.folder.iterdir()}
    assert same_samples(restored(path), first)  # the previous checkpoint, whole
    files2 = TensorFiles.beside(path)  # the resumed process
    resumed = restored(path, files2)
    crashed_only = leftovers - files2.known  # written by the interrupted save alone
    add_random(resumed, torch.Generator().manual_seed(99), 3)  # other rows, the same write counts
    state = resumed.state_dict(files2)
    names = {ref[checkpoint.TENSOR_FILE] for r in resumed._ROWS for ref in state["chunks"][r].values()}
    assert len(names & crashed_only) >= 3, "the case must reuse leftover names"
    save_checkpoint(path, {"buffer": state}, files2)
    assert same_samples(restored(path), resumed)


def test_a_missing_or_corrupt_chunk_file_is_a_one_line_error(tmp_path):
    path, buf = tmp_path / "checkpoint.pt", small_chunks(ReplayBuffer(40, 3, 2))
    files = TensorFiles.beside(path)
    add_random(buf, torch.Generator().manual_seed(2), 3)
    save_checkpoint(path, {"buffer": buf.state_dict(files)}, files)
    victim = sorted(files.folder.iterdir())[0]
    victim.write_bytes(b"not a tensor file")
    with pytest.raises(ValueError, match=f"cannot load checkpoint file .*{victim.name}") as err:
        load_checkpoint(path)
    assert "\n" not in str(err.value)
    victim.unlink()
    with pytest.raises(FileNotFoundError, match=f"{victim.name} is missing"):
        load_checkpoint(path)
    assert load_checkpoint(path, only=("counters",)) == {}  # (the replay's files are not read)


def test_checkpoint_atomic_and_weights_only(tmp_path):
    path = tmp_path / "sub" / "checkpoint.pt"
    payload = {"w": torch.randn(3), "n": 7, "nested": {"big": 2 ** 127 + 5, "s": "x"}}
    save_checkpoint(path, payload)
    save_checkpoint(path, payload)  # overwrite
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.pt"]  # no temp file left
    got = load_checkpoint(path)
    assert torch.equal(got["w"], payload["w"]) and got["nested"]["big"] == 2 ** 127 + 5


def test_only_reads_the_keys_asked_for_in_either_file_format(tmp_path):
    """``only`` memory-maps the file (a replay inside checkpoint.pt is not read) and falls back to reading a file
    in torch's legacy format whole; either way it returns just those keys."""
    payload = {"learner": {"w": torch.arange(3.0)}, "buffer": {"big": torch.zeros(1000)}, "counters": {"episode": 2}}
    for name, new_format in (("zip.pt", True), ("legacy.pt", False)):
        torch.save(payload, tmp_path / name, _use_new_zipfile_serialization=new_format)
        got = load_checkpoint(tmp_path / name, required=("learner",), only=("learner", "counters"))
        assert list(got) == ["learner", "counters"] and torch.equal(got["learner"]["w"], torch.arange(3.0))


def test_checkpoint_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="corrupt.pt") as err:
        load_checkpoint(bad)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("backend", ["pettingzoo", "torch"])
def test_rng_round_trip_through_checkpoint(tmp_path, backend):
    venv = VectorEnv("cooperative_navigation", num_envs=2, seed=3, backend=backend)
    venv.reset()
    gen = torch.Generator().manual_seed(5)
    gens = run_generators(gen, venv)  # the torch backend's env generator travels with the named ones
    assert ("env" in gens) == (backend == "torch")
    save_checkpoint(tmp_path / "c.pt", {"rng": capture_rng(gens, env_generators(venv))})

    def draw():
        obs = venv.reset()
        return (torch.rand(3), random.random(), np.random.rand(), torch.rand(2, generator=gen), obs[0])

    first = draw()
    restore_rng(load_checkpoint(tmp_path / "c.pt")["rng"], gens, env_generators(venv))
    second = draw()
    for x, y in zip(first, second):
        assert torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y


def test_metrics_resume_truncates_rows(tmp_path):
    log = MetricsLogger(tmp_path, ["good", "adversary"])
    for ep in (2, 4, 6):
        log.log_eval(ep, ep * 25, 0.1 * ep, {"good": -ep, "adversary": ep})
    log.close()
    log = MetricsLogger(tmp_path, ["good", "adversary"], resume=True, resume_episode=4)
    log.log_eval(6, 150, 9.0, {"good": -1.0, "adversary": 1.0})
    log.close()
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0]
    assert header == "episode,env_steps,wall_seconds,return/good,return/adversary"
    data = read_metrics(tmp_path / "metrics.csv")
    assert data["episode"] == [2, 4, 6] and data["return/good"] == [-2, -4, -1]
    plot_learning_curve(tmp_path / "metrics.csv", tmp_path / "curve.png", "t")
    assert (tmp_path / "curve.png").stat().st_size > 0


def test_config_validation_and_round_trip(tmp_path):
    cfg = TrainConfig(episodes=10, alpha=0.1)
    cfg.save(tmp_path / "config.json")
    assert TrainConfig.load(tmp_path / "config.json") == cfg
    assert TrainConfig().batch_size * TrainConfig().max_cycles == TrainConfig().learning_starts
    for bad in ({"episodes": 0}, {"eval_every": -1}, {"num_envs": 1.5}, {"gamma": 2.0}, {"critic": "gnn"},
                {"share_params": "yes"}, {"replay_dtype": "int8"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            TrainConfig(**bad)
    with pytest.raises(ValueError, match="unknown config keys"):
        TrainConfig.from_dict({"episodez": 3})


def test_chunked_rows_read_gathers_across_chunks_into_a_batch_or_given_rows():
    """``ChunkedRows.read`` of positions spread over several chunks, in any order and with repeats, equals
    indexing the rows it was given, returned as a batch or written into chosen rows of ``out`` (as the next
    states are); rows of ``out`` not named stay as they were. Pairing a chunk's offsets with another chunk's
    output rows, or writing the batch in chunk order, fails."""
    from pgm_marl.replay import ChunkedRows
    g = torch.Generator().manual_seed(0)
    rows = torch.randn(40, 3, generator=g)
    chunked = ChunkedRows(3, torch.float32, chunk_rows=7)
    chunked.write(torch.arange(40), rows)
    assert len(chunked.chunks) == 6
    index = torch.randint(40, (25,), generator=g)
    assert torch.equal(chunked.read(index), rows[index])
    out = torch.full((30, 3), -1.0)
    at = torch.randperm(30, generator=g)[:25]
    chunked.read(index, out, at)
    want = torch.full((30, 3), -1.0)
    want[at] = rows[index]
    assert torch.equal(out, want)
    half = ChunkedRows(3, torch.float16, chunk_rows=7)  # a compact storage dtype is read back as float32
    half.write(torch.arange(40), rows)
    assert torch.equal(half.read(index), rows[index].half().float())
