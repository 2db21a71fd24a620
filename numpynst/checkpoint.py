"""Checkpoints: a long stylize run that survives a power cut, an out-of-memory kill or a reboot.

Every ``checkpoint_every`` seconds (at a logging point of :func:`numpynst.optim.minimize`) the run
writes one file beside its output, ``OUT.checkpoint.npz``, holding everything needed to continue:

* where it stands: the index of the current scale, the iterations of the finished scales and their
  loss history, and the current scale's :class:`numpynst.optim.LoopState` — the iterate ``x``
  (float, the run's dtype), its value and gradient, the best point so far, the scale's history and
  the optimizer's state (:meth:`numpynst.optim.Optimizer.state_dict`: L-BFGS's pairs, step
  multiplier and last decision; Adam's moments and step count);
* what run it belongs to: the options that shape the picture (every field of
  :class:`numpynst.options.StylizeOptions` whose :class:`~numpynst.options.Option` says
  ``picture=True``, so an option added later is covered without touching this module), the
  SHA-256 of each input as the run uses it (the decoded content, style and init pixels at their
  working size, and the weights file), the numpynst version, and the shape of each scale.

Running the same command again finds the file, checks that it is a numpynst checkpoint of the same
run, and continues from it; a checkpoint of another run (other options, other pictures) is refused
in one line naming what differs, and a file there that is no checkpoint at all is never replaced.
The file is written like every output (:mod:`numpynst.files`: a verified temporary, then placed
without replacing anything the tool did not write), and removed once the picture is written.

**Same result.** The file keeps every array in its own dtype, so a resumed run starts from exactly
the state the interrupted one had after the same step; the objective is rebuilt from the same
inputs by the same code. On NumPy with the same BLAS and thread count every operation is
deterministic, so the resumed run ends with the picture of the uninterrupted one, bit for bit
(tests/test_checkpoint.py checks it; docs/checkpoints.md). Another thread count may change the
order of BLAS's sums, and with it the last bits; CuPy's atomics (a few reductions) likewise.

**Size.** The L-BFGS history dominates: ``2 m + 3`` image-sized vectors (the ``m`` pairs of ``S``
and ``Y``, plus ``x``, its gradient and the best point), ``(2 m + 3) 3 H W`` floats: with m = 10
in float32, 0.29 GB at 1024 px square and 4.6 GB at 4096 px. Adam keeps 5 such vectors, gradient
descent 3 (tests/test_checkpoint.py checks the formula against a written file).

**When.** ``checkpoint_every=None`` (the default) writes one every :data:`DEFAULT_EVERY` seconds
when the planner (:mod:`numpynst.plan`) expects the whole run to take longer than that, and none
for a shorter run (its loss costs less than the writing); a number writes one that often
whatever the plan (0: at every logging point); ``no_checkpoint=True`` writes none and resumes from
none.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import stat
import sys
import zipfile
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np

from .errors import OptionError, short_path
from .optim import LoopState
from .options import DEFAULT_CHECKPOINT_SECONDS

FORMAT = "numpynst-checkpoint"
VERSION = 1
#: Seconds between checkpoints when the option leaves it to the plan.
DEFAULT_EVERY = DEFAULT_CHECKPOINT_SECONDS
SUFFIX = ".checkpoint.npz"
_OPT = "opt."                  # prefix of the optimizer's arrays in the file


def checkpoint_path(output: str | os.PathLike) -> Path:
    """The checkpoint of the picture ``output``: ``OUT.png`` -> ``OUT.png.checkpoint.npz``; when
    that name would pass the filesystem's 255-byte limit, the output's name is cut and a digest
    of it keeps it unique (``OUT...-<8 hex>.checkpoint.npz``)."""
    out = Path(os.fspath(output)).expanduser()
    name = out.name + SUFFIX
    if len(os.fsencode(name)) > 255:
        tag = "-" + hashlib.sha256(os.fsencode(out.name)).hexdigest()[:8] + SUFFIX
        stem = os.fsencode(out.name)[:255 - len(tag)].decode("utf-8", "ignore")
        name = stem + tag
    return out.with_name(name)


# --------------------------------------------------------------------------------------------
# what run a checkpoint belongs to
# --------------------------------------------------------------------------------------------

def _digest_array(a: Any) -> str:
    a = np.ascontiguousarray(np.asarray(a))
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def _jsonable(v: Any) -> Any:
    """An option's value as JSON: numbers, text, lists and dicts as they are; a path as text; an
    array (an init image given in Python) as its digest."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, os.PathLike):
        return os.fsdecode(os.fspath(v))
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if hasattr(v, "shape"):
        return {"array sha256": _digest_array(v)}
    return repr(v)


def options_record(options: Any) -> dict[str, Any]:
    """``{name: value}`` of every option of ``options`` (a validated
    :class:`~numpynst.options.StylizeOptions`) that shapes the picture, as JSON values."""
    from .options import option
    return {f.name: _jsonable(getattr(options, f.name)) for f in dataclasses.fields(options)
            if option(f.name).picture}


def input_digests(prepared: Any) -> dict[str, str]:
    """``{input: sha256}`` of what a :class:`numpynst.transfer.Prepared` run computes from: the
    content, style and init pixels as decoded and sized, and the weights (the file's bytes when the
    model was read from one, else its parameters)."""
    out = {"content image": _digest_array(prepared.content)}
    for i, s in enumerate(prepared.styles):
        out[f"style image #{i + 1}"] = _digest_array(s)
    if prepared.init is not None:
        out["init image"] = _digest_array(prepared.init)
    out["weights"] = _weights_digest(prepared.model)
    return out


def _weights_digest(model: Any) -> str:
    path = getattr(model, "path", None)
    if path is not None:
        from .model_cache import weights_digest          # once per process and file
        return weights_digest(path)
    h = hashlib.sha256()
    for name in sorted(model.params):
        for a in model.params[name]:
            from .backend import to_host
            h.update(_digest_array(to_host(a)).encode())
    return h.hexdigest()


def planned_seconds(prepared: Any) -> float:
    """The planner's estimate of the whole run: seconds per iteration x iterations, every scale."""
    return sum(float(prepared.plans[s].seconds) * prepared.options.iterations for s in prepared.scales)


# --------------------------------------------------------------------------------------------
# the state of a run
# --------------------------------------------------------------------------------------------

class RunState(NamedTuple):
    """Where a stylize run stands (what a checkpoint holds besides its identity).

    ``scale_index``: the scale being optimised (into the run's ``scales``); ``total``: iterations of
    the finished scales; ``done_history``: their rows ``[J, content, style, tv]`` (float64
    ``(n, 4)``); ``loop``: the current scale's :class:`~numpynst.optim.LoopState`."""
    scale_index: int
    total: int
    done_history: np.ndarray
    loop: LoopState


class Checkpoint:
    """The checkpoint file of one run: decides whether to write, loads, saves and removes it.

    ``path``: the file (:func:`checkpoint_path` of the output); ``every``: seconds between two
    checkpoints, ``None`` for the plan's choice (module docstring); ``enabled``: False for none at
    all. :meth:`bind` (called by :func:`numpynst.transfer.run` with the prepared run) fixes the run's
    identity and the interval; :meth:`load` then returns the :class:`RunState` to continue from,
    or ``None``; :meth:`save` writes one; :meth:`remove` deletes it once the picture is safe.
    ``log`` receives the one-line notes (resuming, a checkpoint that could not be written).
    """

    def __init__(self, path: str | os.PathLike, every: float | None = None, enabled: bool = True,
                 log: Callable[[str], Any] | None = None):
        self.path = Path(os.fspath(path)).expanduser()
        self.every = every
        self.enabled = enabled
        self.log = log or (lambda line: print(line, file=sys.stderr))
        self.active = False              # writing checkpoints in this run (bind decides)
        self.identity: dict[str, Any] | None = None
        self._ours: tuple | None = None      # identity (:func:`_identity`) of the file this run wrote/read
        self._failed = False
        self.writes = 0

    # ---------------------------------------------------------------- identity
    def bind(self, prepared: Any) -> None:
        """Fix the run's identity (options, input digests, version, scales) and whether and how
        often to write. With ``every=None`` a run the planner expects to be shorter than
        :data:`DEFAULT_EVERY` writes none (but still resumes from an existing checkpoint)."""
        from . import __version__
        opts = prepared.options
        self.identity = {
            "format": FORMAT, "version": VERSION, "numpynst": __version__,
            "options": options_record(opts),
            "inputs": input_digests(prepared) if self.enabled else {},
            "shapes": [list(prepared.plans[s].hw) for s in prepared.scales],
            "dtype": np.dtype(prepared.model.dtype).name,
        }
        if self.every is None:
            self.active = self.enabled and planned_seconds(prepared) > DEFAULT_EVERY
            self.every = DEFAULT_EVERY
        else:
            self.active = self.enabled

    def _differences(self, meta: dict[str, Any]) -> list[str]:
        mine = self.identity
        out = []
        if meta.get("numpynst") != mine["numpynst"]:
            out.append(f"made by numpynst {meta.get('numpynst')}, this is {mine['numpynst']}")
        for key in sorted(set(mine["options"]) | set(meta.get("options", {}))):
            a, b = meta.get("options", {}).get(key, "(none)"), mine["options"].get(key, "(none)")
            if a != b:
                out.append(f"option {key} {_brief(a)} there, {_brief(b)} now")
        for key in sorted(set(mine["inputs"]) | set(meta.get("inputs", {}))):
            if meta.get("inputs", {}).get(key) != mine["inputs"].get(key):
                out.append(f"the {key} differs")
        if not out and (meta.get("shapes") != mine["shapes"] or meta.get("dtype") != mine["dtype"]):
            out.append("the plan of the scales differs (sizes or precision)")
        return out

    # ---------------------------------------------------------------- reading
    def load(self) -> RunState | None:
        """The state to continue from, if a checkpoint of this very run is at :attr:`path`.

        ``None`` when there is none (or checkpoints are off). :class:`OptionError` (one line) when
        the file there is not a numpynst checkpoint, is damaged, or belongs to another run (names
        the first differences); nothing is changed then."""
        if not self.enabled or not os.path.lexists(self.path):
            return None
        from .files import open_regular
        where = f"checkpoint {short_path(self.path)}"
        fh = open_regular(self.path, "checkpoint")
        try:
            st = os.fstat(fh.fileno())
            try:
                with np.load(fh, allow_pickle=False) as z:
                    meta = json.loads(bytes(z["meta"]).decode("utf-8"))
                    if meta.get("format") != FORMAT:
                        raise ValueError("no numpynst checkpoint marker")
                    arrays = {k: np.array(z[k]) for k in z.files if k != "meta"}
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:   # JSON, UTF-8: ValueError
                from .files import describe
                raise OptionError(f"{where} exists but is not a readable numpynst checkpoint ({describe(exc)}); "
                                  f"it was left alone: move it away to start afresh") from None
        finally:
            fh.close()
        if meta.get("version") != VERSION:
            raise OptionError(f"{where} has format version {meta.get('version')}, this numpynst reads "
                              f"{VERSION}; remove it to start afresh")
        diffs = self._differences(meta)
        if diffs:
            raise OptionError(f"{where} belongs to another run ({'; '.join(diffs[:3])}"
                              f"{'; ...' if len(diffs) > 3 else ''}): run the same command to continue "
                              f"it, or remove it to start afresh")
        self._ours = _identity(st)
        opt = dict(meta["optimizer"])
        opt.update({k[len(_OPT):]: v for k, v in arrays.items() if k.startswith(_OPT)})
        loop = LoopState(int(meta["step"]), arrays["x"], arrays["f"], arrays["g"], arrays["best_x"],
                         arrays["best_f"], arrays["history"], opt)
        state = RunState(int(meta["scale_index"]), int(meta["total"]), arrays["done_history"], loop)
        if not 0 <= state.scale_index < len(self.identity["shapes"]):
            raise OptionError(f"{where} is damaged (scale {state.scale_index} of "
                              f"{len(self.identity['shapes'])}); remove it to start afresh")
        return state

    # ---------------------------------------------------------------- writing
    def save(self, state: RunState) -> bool:
        """Write ``state`` atomically (verified, placed without replacing anything this run did not
        write). A failure (full disk, a file that appeared at the path) is one note through
        :attr:`log` and ``False``: the run goes on, the previous checkpoint stays."""
        from .files import atomic_file, describe
        loop = state.loop
        numbers = {k: v for k, v in loop.optimizer.items() if not isinstance(v, np.ndarray)}
        meta = dict(self.identity, scale_index=int(state.scale_index), total=int(state.total),
                    step=int(loop.step), optimizer=numbers)
        arrays = {"meta": np.frombuffer(json.dumps(meta, sort_keys=True).encode("utf-8"), dtype=np.uint8),
                  "x": loop.x, "f": loop.f, "g": loop.g, "best_x": loop.best_x, "best_f": loop.best_f,
                  "history": loop.history, "done_history": np.asarray(state.done_history, dtype=np.float64),
                  **{_OPT + k: v for k, v in loop.optimizer.items() if isinstance(v, np.ndarray)}}
        try:
            overwrite = self._may_replace()
            with atomic_file(self.path, overwrite=overwrite, verify=_verify) as fh:
                np.savez(fh, **arrays)
            self._ours = _identity(os.lstat(self.path))
            self._failed = False
            self.writes += 1
            return True
        except (OSError, OptionError) as exc:
            if not self._failed:
                self.log(f"numpynst: warning: checkpoint {short_path(self.path)} not written: {describe(exc)}")
            self._failed = True
            return False

    def _may_replace(self) -> bool:
        """Whether a file at :attr:`path` may be replaced: only the one this run wrote or read."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return False
        if stat.S_ISREG(st.st_mode) and _identity(st) == self._ours:
            return True
        raise FileExistsError(f"{short_path(self.path)} appeared during the run and is not this run's "
                              f"checkpoint; it was left alone")

    def remove(self) -> None:
        """Delete the checkpoint once the picture is written; only the file this run wrote or read."""
        try:
            st = os.lstat(self.path)
        except OSError:
            return
        if _identity(st) == self._ours and stat.S_ISREG(st.st_mode):
            os.unlink(self.path)
            self._ours = None


def _identity(st: os.stat_result) -> tuple:
    """What tells this run's file from one put in its place: the inode alone does not (a file
    removed and another created may get the same number), with its size and times it does."""
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _verify(path: Path) -> None:
    """Read a written checkpoint back whole (every member, so the zip CRCs are checked)."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(bytes(z["meta"]).decode("utf-8"))
        if meta.get("format") != FORMAT:
            raise ValueError("the marker did not read back")
        for k in z.files:
            z[k]


def _brief(v: Any) -> str:
    text = json.dumps(v) if not isinstance(v, str) else v
    return text if len(text) <= 40 else text[:37] + "..."
