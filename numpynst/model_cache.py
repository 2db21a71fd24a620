"""Models kept loaded in a process, for the jobs and tiles that run there one after another.

A Dask worker runs many batch jobs (:mod:`numpynst.batch.worker`) or many tiles of one picture
(:mod:`numpynst.tiled_dask`); loading VGG19 each time would cost more than a small job. Models are
pooled per ``(weights file, backend, pooling, dtype)``: :func:`acquire_model` hands out an idle one
(or loads one), :func:`release_model` gives it back, so two threads never use one model at once
(the tiles' passes keep their own tapes, :meth:`numpynst.vgg.VGG.forward_tape`, but the stateful
:meth:`~numpynst.vgg.VGG.forward` that a job may use keeps its last tape in the model).
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

_POOL: dict[tuple, list] = {}           # key -> idle models
_POOL_LOCK = threading.Lock()
_LOADS: dict[tuple, int] = {}           # key -> models loaded in this process (for tests and stats)


def _model_key(weights: str | None, backend: str, pooling: str, dtype: Any) -> tuple:
    if weights is None:
        from .weights import default_weights_path
        weights = str(default_weights_path())
    return (os.path.realpath(weights), backend, pooling, np.dtype(dtype).name)


def acquire_model(weights: str | None = None, backend: str = "numpy", pooling: str = "max",
                  dtype: Any = np.float32):
    """An idle cached model for this key, or a newly loaded one; give it back with :func:`release_model`."""
    key = _model_key(weights, backend, pooling, dtype)
    with _POOL_LOCK:
        idle = _POOL.get(key)
        if idle:
            return key, idle.pop()
    from .vgg import VGG
    model = VGG.from_h5(key[0], backend=backend, pooling=pooling, dtype=np.dtype(key[3]))  # outside the lock
    with _POOL_LOCK:
        _LOADS[key] = _LOADS.get(key, 0) + 1
    return key, model


def release_model(key: tuple, model) -> None:
    with _POOL_LOCK:
        _POOL.setdefault(key, []).append(model)


def model_loads() -> dict[str, int]:
    """``{"weights|backend|pooling|dtype": number of loads}`` in this process (run it with ``client.run``)."""
    with _POOL_LOCK:
        return {"|".join(map(str, k)): n for k, n in _LOADS.items()}


def clear_models() -> None:
    """Forget every cached model (frees their memory)."""
    with _POOL_LOCK:
        _POOL.clear()


_DIGESTS: dict[tuple, str] = {}         # (real path, size, mtime, inode) -> sha256 of the file


def weights_digest(path: str | os.PathLike) -> str:
    """SHA-256 of the weights file at ``path``, computed once per process for a given file (its
    size, time and inode unchanged): 0.5 GB of VGG19 is read once, not at every check. A driver
    and its Dask workers compare these to be sure they compute with the same weights."""
    from .files import file_digest
    real = os.path.realpath(os.fspath(path))
    st = os.stat(real)
    key = (real, st.st_size, st.st_mtime_ns, st.st_ino)
    with _POOL_LOCK:
        known = _DIGESTS.get(key)
    if known is None:
        known = file_digest(real)
        with _POOL_LOCK:
            _DIGESTS[key] = known
    return known
