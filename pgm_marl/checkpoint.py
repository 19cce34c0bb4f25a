"""Atomic checkpoints (loadable with ``weights_only=True``) and RNG state capture/restore.

Large tensors that rarely change (the replay buffer's chunks) can live in :class:`TensorFiles` beside the
checkpoint: each is written once under a name that changes with its content, the checkpoint refers to it by
name, and a later checkpoint rewrites only what changed since (at 24 agents a full replay is ~5.7 GB).

Every RNG that influences training is captured as plain tensors / ints / lists so that
``torch.load(..., weights_only=True)`` accepts it: torch's CPU RNG, extra ``torch.Generator``s
(learner sampling, replay sampling, the torch env's), Python ``random``, NumPy's global RNG and each env copy's
``np_random`` (the env's ``np_generators()``).
"""
from __future__ import annotations

import os
import pickle
import random
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Set

import numpy as np
import torch

from .errors import CheckpointError, MissingFileError, first_line, one_line
from .runfolder import TMP_SUFFIX

#: top-level entries of a training checkpoint (``pgm_marl.train``); ``evaluate`` needs only the first and last
CHECKPOINT_KEYS = ("learner", "buffer", "config", "timing", "rng", "counters")


#: how a checkpoint refers to a tensor kept in its :class:`TensorFiles`: ``{TENSOR_FILE: name}``
TENSOR_FILE = "__tensor_file__"


def dropped_replay(nbytes: int) -> Dict[str, Any]:
    """The ``buffer`` entry of a finished run's last checkpoint whose replay was dropped (``keep_replay=False``,
    :func:`pgm_marl.session.drop_replay`): in place of the transitions, the bytes they held (``nbytes``; for
    ``drop_replay``, its files' sizes)."""
    return {"dropped": True, "nbytes": int(nbytes)}


def replay_dropped(buffer: Any) -> bool:
    """``buffer`` (a checkpoint's entry) is :func:`dropped_replay`'s marker."""
    return isinstance(buffer, Mapping) and buffer.get("dropped") is True


def _atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temp file in ``path``'s folder, fsync, ``os.replace``: ``path`` is whole or untouched."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class TensorFiles:
    """Tensors of a checkpoint kept as one file each in a folder beside it (``checkpoint.pt`` ->
    ``checkpoint_files/``), so that a checkpoint rewrites only the tensors that changed since the last one.

    The caller names each tensor (:meth:`put`) and must give a new name whenever the content changes (the
    replay buffer names a chunk by its position and its last write). A name this object wrote or loaded is not
    written again; any other name is written, atomically, even over a file of that name that an interrupted
    save left behind. After the checkpoint itself is written, :func:`save_checkpoint` deletes every file it
    does not refer to, so a crash at any point leaves the previous checkpoint and all its files intact.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.known: Set[str] = set()  # names whose file holds what this process put or loaded under that name

    @classmethod
    def beside(cls, checkpoint: str | Path) -> "TensorFiles":
        checkpoint = Path(checkpoint)
        return cls(checkpoint.parent / f"{checkpoint.stem}_files")

    def put(self, name: str, tensor: torch.Tensor) -> Dict[str, str]:
        """Keep ``tensor`` as the file ``name`` (written unless already held); returns the reference to store
        in the checkpoint in its place."""
        if "/" in name or name.startswith("."):
            raise ValueError(f"tensor file name {name!r}: accepted: a plain file name")
        if name not in self.known:
            self.folder.mkdir(parents=True, exist_ok=True)
            _atomic_torch_save(tensor, self.folder / name)
            self.known.add(name)
        return {TENSOR_FILE: name}

    def get(self, name: str) -> torch.Tensor:
        path = self.folder / name
        if not path.is_file():
            raise MissingFileError(f"checkpoint file {path} is missing (the checkpoint refers to it)")
        try:
            tensor = torch.load(path, weights_only=True, map_location="cpu")
        except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as err:
            raise CheckpointError(f"cannot load checkpoint file {path} (corrupt or not a tensor): "
                                  f"{first_line(err)}") from None
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"checkpoint file {path} does not hold a tensor")
        self.known.add(name)
        return tensor

    def keep_only(self, names: Iterable[str]) -> None:
        """Delete every file (and temp file) of the folder but ``names``."""
        keep = set(names)
        if self.folder.is_dir():
            for path in self.folder.iterdir():
                if path.name not in keep:
                    path.unlink(missing_ok=True)
        self.known &= keep


def _map_references(obj: Any, fn: Callable[[str], Any]) -> Any:
    """``obj`` (nested dicts / lists / tuples) with each :class:`TensorFiles` reference ``{TENSOR_FILE: name}``
    replaced by ``fn(name)``."""
    if isinstance(obj, Mapping):
        if set(obj) == {TENSOR_FILE}:
            return fn(obj[TENSOR_FILE])
        return {k: _map_references(v, fn) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_map_references(v, fn) for v in obj)
    return obj


def save_checkpoint(path: str | Path, payload: Dict[str, Any], files: Optional[TensorFiles] = None) -> None:
    """Write ``payload`` to ``path`` atomically: temp file in the same folder, fsync, ``os.replace``. ``files``:
    the :class:`TensorFiles` that ``payload``'s tensor references were put in; once ``path`` is written, its
    files that ``payload`` does not refer to are deleted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_torch_save(payload, path)
    if files is not None:
        referred: Set[str] = set()
        _map_references(payload, referred.add)
        files.keep_only(referred)


def _torch_load(path: Path, mmap: bool) -> Any:
    """``torch.load`` on CPU, weights only; ``mmap``: memory-mapped where the file's format allows (then the
    tensors not used, e.g. a replay inside an older checkpoint.pt, are never read)."""
    if mmap:
        try:
            return torch.load(path, weights_only=True, map_location="cpu", mmap=True)
        except RuntimeError as err:
            if "mmap can only be used" not in str(err):  # (a file in torch's legacy format: read it whole)
                raise
    return torch.load(path, weights_only=True, map_location="cpu")


def load_checkpoint(path: str | Path, required: Iterable[str] = (), files: Optional[TensorFiles] = None,
                    only: Optional[Iterable[str]] = None) -> Dict[str, Any]:
    """Load a checkpoint on CPU with ``weights_only=True``; one-line errors naming the path.

    ``required``: top-level keys that must be present, each holding a dict (e.g. :data:`CHECKPOINT_KEYS`).
    Tensors kept in :class:`TensorFiles` (``files``, default the folder beside ``path``) are loaded in place of
    their references; ``files`` then knows them (a later :func:`save_checkpoint` does not rewrite them).
    ``only``: keep just these top-level keys (the others, e.g. the replay, are not read: the file is memory-mapped
    and their chunk files are not opened).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"no checkpoint file at {path}")
    try:
        payload = _torch_load(path, mmap=only is not None)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as err:
        raise CheckpointError(f"cannot load checkpoint {path} (corrupt or not a checkpoint): "
                              f"{first_line(err)}") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"checkpoint {path} does not hold a dict; accepted: a checkpoint.pt written by "
                              "pgm-marl train")
    missing = [k for k in required if not isinstance(payload.get(k), dict)]
    if missing:
        has = ", ".join(map(str, payload)) or "nothing"
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)} (has {has}); accepted: a checkpoint.pt "
                              "written by pgm-marl train")
    if only is not None:
        keep = set(only)
        payload = {k: v for k, v in payload.items() if k in keep}
    return _map_references(payload, (files if files is not None else TensorFiles.beside(path)).get)


def peek_checkpoint(path: str | Path, key: str) -> Any:
    """The top-level entry ``key`` of the checkpoint at ``path`` as stored: its :class:`TensorFiles` references
    not followed (the file is memory-mapped; nothing else is read). For a checked file, after
    :func:`load_checkpoint`."""
    return _torch_load(Path(path), mmap=True).get(key)


def check_counters(counters: Mapping[str, Any]) -> None:
    """The ``counters`` entry of a checkpoint must hold non-negative int ``episode``, ``env_steps``, ``updates``."""
    for key in ("episode", "env_steps", "updates"):
        if not isinstance(counters.get(key), int) or counters[key] < 0:
            raise ValueError(f"counter {key!r} must be a non-negative int, got {counters.get(key)!r}")


def restore(path: str | Path, what: str, load, state: Any) -> None:
    """``load(state)`` (e.g. ``learner.load_state_dict``) for a part of the checkpoint at ``path``; a state that
    does not fit (missing keys, other shapes: the file is not from this run's settings) is a one-line error."""
    try:
        load(state)
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError, AttributeError) as err:
        raise CheckpointError(f"checkpoint {path} does not fit this run's {what} ({type(err).__name__}: "
                              f"{one_line(err)[:300]}); accepted: a checkpoint written with the same task, "
                              "algo and network settings") from None


# ---------------------------------------------------------------- RNG states

def _np_state(bit_generator_state: Mapping) -> Dict[str, Any]:
    """NumPy ``bit_generator.state`` with arrays turned into tensors (ints stay Python ints)."""
    out = {}
    for k, v in bit_generator_state.items():
        if isinstance(v, Mapping):
            out[k] = _np_state(v)
        elif isinstance(v, np.ndarray):
            out[k] = torch.from_numpy(v.astype(np.int64))
        else:
            out[k] = v.item() if isinstance(v, np.generic) else v
    return out


def _np_unstate(state: Mapping, like: Mapping) -> Dict[str, Any]:
    out = {}
    for k, v in state.items():
        if isinstance(v, Mapping):
            out[k] = _np_unstate(v, like[k])
        elif isinstance(v, torch.Tensor):
            out[k] = v.numpy().astype(like[k].dtype)
        else:
            out[k] = v
    return out


def env_generators(venv) -> list:
    """The NumPy generators of a :class:`~pgm_marl.envs.base.VectorEnvBase` (``venv.np_generators()``: each
    PettingZoo copy's ``np_random``; none on the torch backend, whose one ``torch.Generator`` is among the named
    generators, ``venv.generators()``)."""
    return venv.np_generators()


def capture_rng(generators: Optional[Mapping[str, torch.Generator]] = None,
                np_generators: Iterable[np.random.Generator] = ()) -> Dict[str, Any]:
    """Snapshot global RNGs, named torch generators and NumPy generators (e.g. ``env_generators(venv)``)."""
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
        "numpy": _np_state(np.random.get_state(legacy=False)),
        "generators": {name: g.get_state() for name, g in (generators or {}).items()},
        "np_generators": [_np_state(g.bit_generator.state) for g in np_generators],
    }


def restore_rng(state: Mapping[str, Any], generators: Optional[Mapping[str, torch.Generator]] = None,
                np_generators: Iterable[np.random.Generator] = ()) -> None:
    """Inverse of :func:`capture_rng`; the generators must be given in the same names / order."""
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    np_global = np.random.get_state(legacy=False)
    np.random.set_state(_np_unstate(state["numpy"], np_global))
    for name, g in (generators or {}).items():
        if name not in state["generators"]:
            raise CheckpointError(f"checkpoint has no RNG state for generator {name!r}; "
                                  f"has {sorted(state['generators'])}")
        g.set_state(state["generators"][name])
    np_generators = list(np_generators)
    if len(np_generators) != len(state["np_generators"]):
        raise CheckpointError(f"checkpoint has {len(state['np_generators'])} env RNG states, "
                              f"this run has {len(np_generators)} env copies")
    for g, s in zip(np_generators, state["np_generators"]):
        g.bit_generator.state = _np_unstate(s, g.bit_generator.state)
