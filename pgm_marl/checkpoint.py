"""Atomic checkpoints (loadable with ``weights_only=True``) and RNG state capture/restore.

Every RNG that influences training is captured as plain tensors / ints / lists so that
``torch.load(..., weights_only=True)`` accepts it: torch's CPU RNG, extra ``torch.Generator``s
(learner sampling, replay sampling), Python ``random``, NumPy's global RNG and each env copy's
``np_random`` (mpe2 reaches it as ``env.aec_env.unwrapped.np_random``).
"""
from __future__ import annotations

import os
import pickle
import random
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional

import numpy as np
import torch


def save_checkpoint(path: str | Path, payload: Dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically: temp file in the same folder, fsync, ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_checkpoint(path: str | Path) -> Dict[str, Any]:
    """Load a checkpoint on CPU with ``weights_only=True``; one-line errors naming the path."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    try:
        payload = torch.load(path, weights_only=True, map_location="cpu")
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"cannot load checkpoint {path} (corrupt or not a checkpoint): {first}") from None
    if not isinstance(payload, dict):
        raise ValueError(f"checkpoint {path} does not hold a dict")
    return payload


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
    """The ``np.random.Generator`` of each env copy of a :class:`~pgm_marl.envs.VectorEnv`."""
    gens = []
    for env in venv.envs:
        base = getattr(env, "aec_env", env)
        gens.append(getattr(base, "unwrapped", base).np_random)
    return gens


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
            raise ValueError(f"checkpoint has no RNG state for generator {name!r}; has {sorted(state['generators'])}")
        g.set_state(state["generators"][name])
    np_generators = list(np_generators)
    if len(np_generators) != len(state["np_generators"]):
        raise ValueError(f"checkpoint has {len(state['np_generators'])} env RNG states, "
                         f"this run has {len(np_generators)} env copies")
    for g, s in zip(np_generators, state["np_generators"]):
        g.bit_generator.state = _np_unstate(s, g.bit_generator.state)
