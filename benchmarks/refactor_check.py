"""Prove that a refactor changed nothing: bit-for-bit results before and after, and the "call walk".

What it checks
--------------
``save DIR`` runs a fixed set of small, deterministic computations through public APIs that the
code had before the refactor and must keep, and writes what they produce into ``DIR``:

* :func:`numpynst.transfer.stylize` on the bundled samples, five runs that between them take every
  optimizer, both weights modes, noise init, coarse-to-fine scales, two blended styles with
  ``preserve_color`` and a forced tiled run: ``image_float`` and ``image`` (``.npy``), the history
  (JSON) and ``iterations``/``stopped``;
* :class:`numpynst.objective.Objective` (float32 and float64) and
  :class:`numpynst.tiled.TiledObjective` (float32) evaluated at one fixed image: ``J``, the
  gradient, each part, and the calibration scales;
* the command line in a subprocess: ``numpynst stylize`` (the decoded picture and its output
  line), ``numpynst stylize --dry-run`` (the plan, verbatim) and ``numpynst batch`` on a two-row
  manifest (the decoded pictures, the sidecar and summary values, the decoded contact sheet).

``DIR/manifest.json`` lists every item. ``compare A B`` then checks each item of ``A`` against
``B``: arrays byte for byte (same dtype, same shape, same bits, so -0.0 vs 0.0 or a NaN payload
counts too; for a float difference it prints the largest absolute difference and the largest
difference in units in the last place), JSON values exactly (floats are written with ``repr``,
which round-trips, so equal text is equal value), texts exactly. One line per item, ``OK name`` or
``DIFF name: ...``, a summary line, exit status 1 on any difference.

Usage (the script imports ``numpynst`` only, so ``PYTHONPATH`` picks the code under test)::

    PYTHONPATH=/path/to/old/checkout python benchmarks/refactor_check.py save /tmp/a   # before
    python benchmarks/refactor_check.py save /tmp/b                                    # after
    python benchmarks/refactor_check.py compare /tmp/a /tmp/b

Run both saves on the same machine with the same environment (thread counts included): NumPy's
BLAS and numpynst's chunked layers give bit-identical results run to run only with the same
settings. ``save`` takes 15-30 s on a (busy) 2-core machine. Running ``save`` twice on the same
code and comparing is the determinism check (it must print only ``OK`` lines).

What is deliberately not compared (it is saved for reading, listed with ``"compared": false``):
the raw stdout of the commands (wall times, the Dask worker's random port, absolute paths), the
batch job digests and the file names derived from them (a digest hashes the default weights file's
*path*, which differs between two checkouts), and the encoded image files (PNG metadata holds
versions and times): the decoded pixels are compared instead. The commands run with the inputs
copied into ``DIR`` and relative paths, so their messages need no path rewriting.

``walk`` -- the call-walk metric
--------------------------------
``walk`` runs ``numpynst.cli.main(["stylize", C, S, "-o", OUT, "--size", "32", "--iterations",
"0", "--quiet"])`` in-process under :func:`sys.setprofile` and follows the parsed arguments through
the package, module by module, the way a reader would. The choices (options in brackets):

* Only the main thread is profiled (``sys.setprofile`` is per thread; at this size the whole run
  is in the main thread).
* The walk starts at the call of ``numpynst.commands.stylize:stylize_to_file`` and ends at its
  return (``--start``); the argument checks that ``run`` makes before it are outside.
* Counted: Python ``call``/``return`` events of frames whose code is in ``numpynst``, except
  ``numpynst/layers/`` (the numerical ops), ``numpynst/__init__``, the anonymous frames
  ``<genexpr>``, ``<lambda>``, ``<listcomp>``, ``<dictcomp>``, ``<setcomp>`` (they belong to the
  function that made them) and the helper modules ``backend`` and ``checks`` (``--ignore``: they
  never call back into the package and are called from every floor, like NumPy). C calls and
  NumPy/stdlib frames are invisible; an uncounted frame is transparent.
* Each function is followed once, at its first call (``--dedupe function``; ``site``: each call
  site once; ``none``: every call): a later call of a function already followed is skipped with
  everything below it, as a reader does not read a function twice. Without this the figures
  measure loop counts (``plan`` asks ``vgg.channels`` once per layer: 66 returns to ``plan``)
  rather than the design.
* After each counted event the *current module* is that of the innermost counted frame: the
  callee's after a call, the caller's after a return (where control lands). A **stay** is a
  maximal run of events with the same current module. **Returns to a module already left** =
  stays in a module that had an earlier stay (= stays - modules visited), also given per module.
* **Floors** follow the design's import direction, highest first: 0 ``cli``, ``commands.*``;
  1 ``batch.*``, ``transfer`` and any new ``run``/``options``/``stylize*`` module; 2 ``plan``,
  ``objective``, ``tiled``, ``tiled_dask``; 3 ``vgg``, ``losses``, ``optim``, ``weights``,
  ``arch``; 4 everything else (``image*``, ``files``, ``provenance``, ``errors``, ``plots``, ...).
* A **climb back up** is either (1) a *call* into a module on a higher floor than the current one
  (a lower module reaching back up: a callback, a lazy import of an upper module, an upper-floor
  helper), or (2) a *ping-pong*: a return lands in a module whose stay then ends by calling
  *down* into a module that already had a stay -- the upper module drives the lower ones one
  step at a time (``transfer -> objective``, back, ``transfer -> objective`` again) instead of
  handing the work over once. An ordinary return is not a climb by itself: control only goes home.
  Both counts are printed; "climbs" is their sum. ``--verbose`` lists every stay (index, module,
  floor, how it was entered, the function entered or returned from, events, marks).

The old code (before the refactor) gives, with the defaults: 14 modules, 83 stays, 69 returns to
a module already left (transfer 15, objective 12, vgg 9, image 7, plan 7, commands.stylize 5,
losses 4, weights 3, files 3, optim 2, arch 1, provenance 1), 18 climbs (1 call up: optim's
``minimize`` calling the objective's ``fun``; 17 ping-pongs). The refactor's issue quoted "14
modules in 48 stays, climbing back up 20 times and returning 34 times to a module already left
(plan.py 9 times, vgg.py 8 times)"; no combination of these options reproduces that exactly (it
was probably counted by hand, on a coarser grain), so compare the old and new code with this
script, not with the issue's figures. ``--ignore=`` (count every module): 16 modules, 97 stays,
81 returns, 22 climbs; ``--dedupe none``: 14 modules, 259 stays, 245 returns (vgg 71, plan 66).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

# ------------------------------------------------------------------------------------------------
# the fixed inputs
# ------------------------------------------------------------------------------------------------

# The bundled samples used (numpynst/data/samples): three photos, two styles.
SAMPLES = ("chelsea", "astronaut", "coffee", "ihc", "hubble")

# The stylize() runs: every optimizer, both weights modes, noise init, scales, two blended styles
# with preserve_color, and a forced tiled run. Sizes 64-96 px and <= 6 iterations keep each run at
# a second or two. tol=None: with so few iterations the tolerance window (20) never applies anyway,
# and passing it keeps a change of tol's default from touching the figures.
STYLIZE_RUNS = {
    "lbfgs_scales": dict(content="chelsea", style="ihc", size=96, iterations=5, optimizer="lbfgs",
                         scales=(0.5, 1.0), weights_mode="calibrated"),
    "adam_raw_noise": dict(content="astronaut", style="hubble", size=64, iterations=6, optimizer="adam",
                           lr=2.0, weights_mode="raw", init="noise", seed=3),
    "gd_calibrated": dict(content="coffee", style="ihc", size=64, iterations=5, optimizer="gd",
                          weights_mode="calibrated", beta=2.0),
    "blend_preserve": dict(content="chelsea", style=["ihc", "hubble"], size=64, iterations=4,
                           optimizer="lbfgs", style_blend=(0.7, 0.3), preserve_color=True),
    # tile 80 is the smallest valid tile at the default layers (multiple of 16, at least the halo
    # 80); at 96x64 it cuts the image into two tiles, so the tiled objective really runs.
    "tiled": dict(content="coffee", style="hubble", size=96, iterations=3, optimizer="lbfgs", tile=80),
}

# The objectives are evaluated on images decoded and resized here with Pillow (not numpynst.image),
# so a change in numpynst's loading cannot hide in the inputs: 96x64 is a multiple of every
# pooling grid of the default layers, and the tile below cuts it in two.
OBJECTIVE_HW = (64, 96)
OBJECTIVE_TILE = 80
NOISE_SEED = 7
NOISE_SIGMA = 8.0

# Per-item kinds in manifest.json, and how compare treats them.
ARRAY, JSON, TEXT, LOG = "array", "json", "text", "log"


def sample_file(name: str) -> Path:
    from numpynst.image import sample_path
    return Path(sample_path(name))


# ------------------------------------------------------------------------------------------------
# save
# ------------------------------------------------------------------------------------------------

def jsonable(value):
    """``value`` as plain JSON types, floats kept exact (json writes them with ``repr``)."""
    if hasattr(value, "_asdict"):                    # NamedTuples (Calibration, ...)
        return {k: jsonable(v) for k, v in value._asdict().items()}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)                          # float32 -> float64 is exact
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return jsonable(value.item())
    return value


class Store:
    """Writes items into DIR and remembers them for manifest.json."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.items: list[dict] = []

    def _add(self, name: str, kind: str, suffix: str, compared: bool = True) -> Path:
        if any(item["name"] == name for item in self.items):
            raise ValueError(f"duplicate item name {name}")
        rel = name.replace("/", "__") + suffix
        self.items.append({"name": name, "kind": kind, "file": rel, "compared": compared})
        return self.root / rel

    def array(self, name: str, value) -> None:
        # np.asarray on a 0-d device scalar or a NumPy array; the copy is on the host either way
        np.save(self._add(name, ARRAY, ".npy"), np.asarray(value), allow_pickle=False)

    def json(self, name: str, value) -> None:
        text = json.dumps(jsonable(value), indent=1, sort_keys=True)
        self._add(name, JSON, ".json").write_text(text + "\n")

    def text(self, name: str, value: str) -> None:
        self._add(name, TEXT, ".txt").write_text(value)

    def log(self, name: str, value: str) -> None:
        """Saved for a human to read, not compared (timings, ports)."""
        self._add(name, LOG, ".log", compared=False).write_text(value)

    def decoded_image(self, name: str, path: Path) -> None:
        """The pixels of an image file, not its bytes (PNG metadata holds versions and times)."""
        from PIL import Image
        with Image.open(path) as im:
            self.array(name, np.asarray(im))

    def write_manifest(self, extra: dict) -> None:
        doc = {"items": self.items, **extra}
        (self.root / "manifest.json").write_text(json.dumps(doc, indent=1) + "\n")


def save_stylize_runs(store: Store) -> None:
    from numpynst.transfer import stylize
    for name, spec in STYLIZE_RUNS.items():
        kw = dict(spec)
        content = sample_file(kw.pop("content"))
        style = kw.pop("style")
        style = [sample_file(s) for s in style] if isinstance(style, list) else sample_file(style)
        result = stylize(content, style, tol=None, **kw)
        store.array(f"stylize/{name}/image_float", result.image_float)
        store.array(f"stylize/{name}/image", result.image)
        store.json(f"stylize/{name}/history", result.history)
        store.json(f"stylize/{name}/outcome", {"iterations": result.iterations, "stopped": result.stopped})


def _pillow_rgb(name: str, hw: tuple[int, int]) -> np.ndarray:
    from PIL import Image
    with Image.open(sample_file(name)) as im:
        return np.asarray(im.convert("RGB").resize((hw[1], hw[0]), Image.BICUBIC))


def _save_evaluation(store: Store, prefix: str, objective, x) -> None:
    ev = objective.evaluate(x)
    store.array(f"{prefix}/J", ev.J)
    store.array(f"{prefix}/grad", ev.grad)
    for part, value in ev.parts.items():
        store.array(f"{prefix}/part_{part}", value)
    store.json(f"{prefix}/scales", objective.scales)


def save_objectives(store: Store) -> None:
    from numpynst.objective import Objective
    from numpynst.tiled import TiledObjective
    from numpynst.vgg import VGG
    content_rgb, style_rgb = _pillow_rgb("chelsea", OBJECTIVE_HW), _pillow_rgb("ihc", OBJECTIVE_HW)
    for dtype in (np.float32, np.float64):
        model = VGG.from_h5(dtype=dtype)
        content, style = model.preprocess(content_rgb), model.preprocess(style_rgb)
        # a fixed point away from the content (at the content itself the content term is 0)
        noise = np.random.default_rng(NOISE_SEED).normal(0.0, NOISE_SIGMA, size=content.shape)
        x = (content + noise.astype(content.dtype)).astype(content.dtype)
        tag = np.dtype(dtype).name
        _save_evaluation(store, f"objective/{tag}",
                         Objective(model, content, style, weights_mode="calibrated"), x)
        if dtype is np.float32:
            _save_evaluation(store, f"tiled/{tag}",
                             TiledObjective(model, content, style, tile=OBJECTIVE_TILE,
                                            weights_mode="calibrated"), x)


# Timing and address fragments of the commands' stdout, replaced so that the rest is compared.
_VOLATILE = [
    (re.compile(r"\b\d+(\.\d+)? s\b"), "<seconds> s"),                   # "1.2 s", "done in 2.1 s"
    (re.compile(r"\(\d+(\.\d+)? jobs/min\)"), "(<rate> jobs/min)"),
    (re.compile(r"tcp://[0-9.]+:\d+"), "tcp://<address>"),
]


def normalise(text: str, root: Path) -> str:
    text = text.replace(str(root.resolve()), "<DIR>")                    # batch prints its outdir resolved
    for pattern, repl in _VOLATILE:
        text = pattern.sub(repl, text)
    return text


def _numpynst_env() -> dict:
    """The environment for ``python -m numpynst``: the child imports the numpynst this process runs."""
    import numpynst
    home = str(Path(numpynst.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([home, *filter(None, [env.get("PYTHONPATH")])])
    return env


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "numpynst", *args], cwd=cwd, env=_numpynst_env(),
                          capture_output=True, text=True, timeout=600)


def _record_command(store: Store, name: str, proc: subprocess.CompletedProcess, root: Path) -> None:
    store.log(f"{name}/stdout_raw", proc.stdout + ("\n--- stderr ---\n" + proc.stderr if proc.stderr else ""))
    store.text(f"{name}/stdout", normalise(proc.stdout, root))
    store.json(f"{name}/exit", {"returncode": proc.returncode})
    if proc.returncode != 0:
        print(f"warning: {name} exited {proc.returncode}: {proc.stderr.strip()[-500:]}", file=sys.stderr)


def save_cli(store: Store) -> None:
    work = store.root / "cli_work"
    (work / "inputs").mkdir(parents=True)
    for name in SAMPLES:                 # relative paths in every message, whatever DIR is
        shutil.copyfile(sample_file(name), work / "inputs" / sample_file(name).name)
    pair = ["inputs/chelsea.jpg", "inputs/ihc.jpg"]

    proc = _cli(work, "stylize", *pair, "-o", "cli.png", "--size", "64", "--iterations", "3", "--quiet")
    _record_command(store, "cli/stylize", proc, work)
    if (work / "cli.png").is_file():
        store.decoded_image("cli/stylize/image", work / "cli.png")

    # --max-memory: the default budget is half the free memory, which varies from run to run
    proc = _cli(work, "stylize", *pair, "-o", "dry.png", "--size", "96", "--scales", "0.5", "1",
                "--tile", "80", "--max-memory", "2GB", "--dry-run")
    store.text("cli/dry_run/stdout", proc.stdout)                         # verbatim
    store.json("cli/dry_run/exit", {"returncode": proc.returncode})

    save_batch(store, work)


# Two jobs at 32/48 px: one plain, one with noise init and raw weights.
BATCH_MANIFEST = ("content,style,size,iterations,init,seed,weights_mode,name\n"
                  "inputs/chelsea.jpg,inputs/ihc.jpg,32,2,,,,one\n"
                  "inputs/coffee.jpg,inputs/hubble.jpg,48,3,noise,5,raw,two\n")
BATCH_JOBS = ("one", "two")
# Sidecar and summary fields that are results; the rest are times, worker addresses, pids,
# absolute paths and digests (see the module docstring).
SIDECAR_FIELDS = ("job", "options", "backend", "J_start", "J_final", "iterations", "stopped")
SUMMARY_FIELDS = ("job", "status", "J_final", "stopped", "iterations", "error", "options")


def save_batch(store: Store, work: Path) -> None:
    (work / "batch.csv").write_text(BATCH_MANIFEST)
    # one local worker: the quickest start on a small machine, and one process computes every job
    proc = _cli(work, "batch", "batch.csv", "-o", "batch_out", "--workers", "1", "--quiet")
    _record_command(store, "cli/batch", proc, work)
    out = work / "batch_out"
    for job in BATCH_JOBS:
        images = sorted(out.glob(f"{job}-*.png"))
        sidecars = sorted(out.glob(f"{job}-*.json"))
        store.json(f"cli/batch/{job}/files", {"png": len(images), "json": len(sidecars)})
        if len(images) == 1:
            store.decoded_image(f"cli/batch/{job}/image", images[0])
        if len(sidecars) == 1:
            side = json.loads(sidecars[0].read_text())
            store.json(f"cli/batch/{job}/sidecar", {k: side.get(k) for k in SIDECAR_FIELDS})
    summary = out / "summary.csv"
    if summary.is_file():
        with open(summary, newline="") as fh:
            rows = [{k: row.get(k) for k in SUMMARY_FIELDS} for row in csv.DictReader(fh)]
        store.json("cli/batch/summary", rows)
    if (out / "contact_sheet.png").is_file():
        store.decoded_image("cli/batch/contact_sheet", out / "contact_sheet.png")


def cmd_save(args) -> int:
    import numpynst
    root = Path(args.dir)
    if root.exists() and any(root.iterdir()):
        print(f"refactor_check: {root} is not empty; give a new folder", file=sys.stderr)
        return 2
    root.mkdir(parents=True, exist_ok=True)
    store = Store(root)
    t0 = time.perf_counter()
    steps = [("stylize", save_stylize_runs), ("objectives", save_objectives), ("cli", save_cli)]
    seconds = {}
    for label, step in steps:
        t = time.perf_counter()
        step(store)
        seconds[label] = round(time.perf_counter() - t, 1)
        print(f"{label}: {seconds[label]} s", flush=True)
    # informational only (compare ignores everything but "items")
    store.write_manifest({"numpynst": str(Path(numpynst.__file__).resolve().parent),
                          "python": sys.version.split()[0], "numpy": np.__version__, "seconds": seconds})
    print(f"saved {len(store.items)} items in {root} ({time.perf_counter() - t0:.1f} s)")
    return 0


# ------------------------------------------------------------------------------------------------
# compare
# ------------------------------------------------------------------------------------------------

def _float_diff(a: np.ndarray, b: np.ndarray) -> str:
    """Largest absolute difference and largest difference in ulps (of the larger magnitude)."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    both = np.isfinite(a64) & np.isfinite(b64)
    differ = ~((a64 == b64) | (np.isnan(a64) & np.isnan(b64)))
    text = f"{int(differ.sum())}/{a.size} elements differ"
    if both.any():
        d = np.abs(a64 - b64)[both]
        ulp = np.spacing(np.maximum(np.abs(a), np.abs(b)).astype(a.dtype))[both].astype(np.float64)
        text += f", max abs diff {d.max():.3g}, max {np.max(d / ulp):.3g} ulp"
    if (np.isfinite(a64) != np.isfinite(b64)).any():
        text += ", finiteness differs"
    return text


def compare_arrays(pa: Path, pb: Path) -> str | None:
    a, b = np.load(pa, allow_pickle=False), np.load(pb, allow_pickle=False)
    if a.dtype != b.dtype:
        return f"dtype {a.dtype} != {b.dtype}"
    if a.shape != b.shape:
        return f"shape {a.shape} != {b.shape}"
    if a.tobytes() == b.tobytes():           # bitwise: -0.0 vs 0.0 and NaN payloads count
        return None
    if np.issubdtype(a.dtype, np.floating):
        if np.array_equal(a, b, equal_nan=True):
            return "equal values, different bits (signed zeros or NaN payloads)"
        return _float_diff(a, b)
    differ = a != b
    return (f"{int(differ.sum())}/{a.size} elements differ, max abs diff "
            f"{int(np.max(np.abs(a.astype(np.int64) - b.astype(np.int64))))}")


def compare_json(pa: Path, pb: Path) -> str | None:
    a, b = (json.loads(p.read_text()) for p in (pa, pb))
    return _json_difference(a, b, "")


def _json_difference(a, b, where: str) -> str | None:
    """The first place where two JSON values differ, or None. Exact: floats compare by ``repr``
    (NaN equals NaN, -0.0 differs from 0.0) and 1 differs from 1.0."""
    if type(a) is not type(b):
        return f"{where or 'value'}: {a!r} ({type(a).__name__}) != {b!r} ({type(b).__name__})"
    if isinstance(a, dict):
        if a.keys() != b.keys():
            return f"{where or 'value'}: keys {sorted(a)} != {sorted(b)}"
        return next((d for k in a
                     if (d := _json_difference(a[k], b[k], f"{where}.{k}" if where else k)) is not None), None)
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{where or 'value'}: {len(a)} entries != {len(b)}"
        return next((d for i, (x, y) in enumerate(zip(a, b))
                     if (d := _json_difference(x, y, f"{where}[{i}]")) is not None), None)
    if repr(a) == repr(b):
        return None
    if isinstance(a, float) and math.isfinite(a) and math.isfinite(b):
        ulps = abs(a - b) / math.ulp(max(abs(a), abs(b)))
        return f"{where or 'value'}: {a!r} != {b!r} (diff {abs(a - b):.3g}, {ulps:.3g} float64 ulp)"
    return f"{where or 'value'}: {a!r} != {b!r}"


def compare_text(pa: Path, pb: Path) -> str | None:
    ta, tb = pa.read_text(), pb.read_text()
    if ta == tb:
        return None
    la, lb = ta.splitlines(), tb.splitlines()
    for i, (x, y) in enumerate(zip(la, lb)):
        if x != y:
            return f"line {i + 1}: {x!r} != {y!r}"
    return f"{len(la)} lines != {len(lb)} lines"


COMPARERS = {ARRAY: compare_arrays, JSON: compare_json, TEXT: compare_text}


def cmd_compare(args) -> int:
    a, b = Path(args.a), Path(args.b)
    items_a = json.loads((a / "manifest.json").read_text())["items"]
    items_b = {item["name"]: item for item in json.loads((b / "manifest.json").read_text())["items"]}
    ok = diff = 0
    for item in items_a:
        name = item["name"]
        if not item.get("compared", True):
            continue
        other = items_b.get(name)
        if other is None:
            problem = f"missing in {b}"
        elif other["kind"] != item["kind"]:
            problem = f"kind {item['kind']} != {other['kind']}"
        else:
            problem = COMPARERS[item["kind"]](a / item["file"], b / other["file"])
        if problem is None:
            ok += 1
            print(f"OK {name}")
        else:
            diff += 1
            print(f"DIFF {name}: {problem}")
    names_a = {item["name"] for item in items_a}
    extra = [n for n, item in items_b.items() if n not in names_a and item.get("compared", True)]
    for name in extra:
        diff += 1
        print(f"DIFF {name}: only in {b}")
    print(f"{ok + diff} items: {ok} identical, {diff} different")
    return 1 if diff else 0


# ------------------------------------------------------------------------------------------------
# walk
# ------------------------------------------------------------------------------------------------

ANONYMOUS = frozenset({"<genexpr>", "<lambda>", "<listcomp>", "<dictcomp>", "<setcomp>"})
FLOOR_NAMES = {
    0: ("cli", "commands"),
    1: ("batch", "transfer", "run", "options", "stylize"),
    2: ("plan", "objective", "tiled", "tiled_dask"),
    3: ("vgg", "losses", "optim", "weights", "arch"),
}
# Helper modules left out of the walk by default (--ignore): the array-namespace plumbing
# (get_xp, to_host) and the argument validators. They never call back into the package and are
# called from every floor, like NumPy; counted, they turn every function that touches an array
# into a "ping-pong" and say nothing about how the product's modules are layered.
DEFAULT_IGNORE = ("backend", "checks")


def floor(module: str) -> int:
    """The design floor of ``numpynst.X`` (0 = top): see the module docstring."""
    parts = module.split(".")
    first = parts[1] if len(parts) > 1 else ""
    for level, names in FLOOR_NAMES.items():
        if first in names or (level == 1 and first.startswith("stylize")):
            return level
    return 4


def _module_of(frame, ignore: frozenset = frozenset()) -> str | None:
    """The numpynst module a frame counts for, or None when it is not counted."""
    name = frame.f_globals.get("__name__", "")
    if not name.startswith("numpynst.") or name.startswith("numpynst.layers"):
        return None                     # outside the package, numpynst/__init__, the layers
    if name in ignore or frame.f_code.co_name in ANONYMOUS:
        return None                     # a helper module; a comprehension or lambda belongs to its maker
    if name.startswith("numpynst.image."):
        return "numpynst.image"         # one idea split into files: counted as the one module it was
    return name


def _counted_caller(frame, ignore: frozenset):
    """The innermost counted frame above ``frame``: where its return lands, who called it."""
    f = frame.f_back
    while f is not None:
        if _module_of(f, ignore) is not None:
            return f
        f = f.f_back
    return None


def _dedupe_key(frame, caller, dedupe: str):
    """What makes a call "already followed": the function (default), the call site, or nothing."""
    if dedupe == "function":
        return frame.f_code
    if dedupe == "site":
        return (caller.f_code, caller.f_lineno, frame.f_code)
    if dedupe == "edge":       # a seam between two modules is read once; inside a module, each function
        here, there = _module_of(caller, _IGNORED[0]) if caller is not None else None, _module_of(frame, _IGNORED[0])
        return ("edge", here, there) if here != there else frame.f_code
    return None


_IGNORED = [frozenset()]        # the --ignore set of the current walk, for _dedupe_key


def record_walk(argv: list[str], start: str, ignore: frozenset = frozenset(),
                dedupe: str = "function") -> list[tuple[str, str, str]]:
    """Run ``numpynst.cli.main(argv)`` profiled; ``[(current module, event, function)]`` per counted
    event, from the call of ``start`` (``module:function``) to its return. A call already followed
    (see :func:`_dedupe_key`) is skipped with everything below it."""
    from numpynst import cli
    start_module, start_func = start.split(":")
    ignore = frozenset(f"numpynst.{m}" for m in ignore)
    _IGNORED[0] = ignore
    events: list[tuple[str, str, str]] = []
    seen: set = set()
    state = {"frame": None, "skip": None}     # the start frame while it runs; the call being skipped

    def profile(frame, event, arg):
        if event not in ("call", "return"):
            return                                 # C calls are invisible
        module = _module_of(frame, ignore)
        if module is None:
            return
        if state["frame"] is None:                 # before the start (or after it)
            if event == "call" and module == start_module and frame.f_code.co_name == start_func:
                state["frame"] = frame
                events.append((module, "call", frame.f_code.co_name))
            return
        if state["skip"] is not None:              # inside a call already followed once
            if event == "return" and frame is state["skip"]:
                state["skip"] = None
            return
        if event == "call":
            key = _dedupe_key(frame, _counted_caller(frame, ignore), dedupe)
            if key is not None and key in seen:
                state["skip"] = frame
                return
            seen.add(key)
            events.append((module, "call", frame.f_code.co_name))
        elif frame is state["frame"]:              # the walk ends where it began
            state["frame"] = None
        else:                                      # control lands in the caller's module
            caller = _counted_caller(frame, ignore)
            if caller is not None:
                events.append((_module_of(caller, ignore), "return", frame.f_code.co_name))

    quiet = io.StringIO()                          # the command's "wrote ..." line is not the report
    sys.setprofile(profile)
    try:
        with contextlib.redirect_stdout(quiet):
            code = cli.main(argv)
    finally:
        sys.setprofile(None)
    if code != 0:
        raise SystemExit(f"refactor_check walk: numpynst exited {code}")
    if not events:
        raise SystemExit(f"refactor_check walk: {start} was never called; name another with --start")
    return events


def stays_of(events):
    """Maximal runs of one module: ``[{"module", "entered", "function", "events"}]``."""
    stays = []
    for module, event, func in events:
        if stays and stays[-1]["module"] == module:
            stays[-1]["events"] += 1
        else:
            stays.append({"module": module, "entered": event, "function": func, "events": 1})
    return stays


def walk_figures(stays) -> dict:
    seen, returns = set(), Counter()
    calls_up, ping_pong = [], []
    for i, s in enumerate(stays):
        m = s["module"]
        if m in seen:
            returns[m] += 1
        seen.add(m)
        if i == 0:
            continue
        prev = stays[i - 1]["module"]
        if s["entered"] == "call" and floor(m) < floor(prev):
            calls_up.append(i)
        # ping-pong: a return lands in m, and m's stay ends by calling down into a module that
        # already had a stay
        if s["entered"] == "return" and i + 1 < len(stays):
            nxt = stays[i + 1]
            if (nxt["entered"] == "call" and floor(nxt["module"]) > floor(m)
                    and any(t["module"] == nxt["module"] for t in stays[:i])):
                ping_pong.append(i)
    return {"modules": sorted(seen, key=lambda n: (floor(n), n)), "stays": len(stays),
            "returns": returns, "calls_up": calls_up, "ping_pong": ping_pong}


def short(module: str) -> str:
    return module.removeprefix("numpynst.")


def cmd_walk(args) -> int:
    from numpynst.image import sample_path
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["stylize", str(sample_path("chelsea")), str(sample_path("ihc")), "-o",
                str(Path(tmp) / "walk.png"), "--size", "32", "--iterations", str(args.iterations), "--quiet"]
        ignore = frozenset(m for m in args.ignore.split(",") if m)
        events = record_walk(argv, args.start, ignore, args.dedupe)
    stays = stays_of(events)
    fig = walk_figures(stays)
    if args.verbose:
        marks = {i: "climb (call up)" for i in fig["calls_up"]}
        marks.update({i: "climb (ping-pong)" for i in fig["ping_pong"]})
        seen = set()
        for i, s in enumerate(stays):
            again = "again" if s["module"] in seen else ""
            seen.add(s["module"])
            print(f"{i + 1:4d} {short(s['module']):<22} floor {floor(s['module'])} "
                  f"{s['entered']:>6} {s['function']:<28} {s['events']:6d} ev  {again:5} {marks.get(i, '')}")
    n_returns = sum(fig["returns"].values())
    per_module = ", ".join(f"{short(m)} {n}" for m, n in fig["returns"].most_common())
    print(f"walk from {args.start} (--iterations {args.iterations}, --dedupe {args.dedupe}, "
          f"--ignore {args.ignore or '(none)'}): {len(events)} counted events")
    print(f"modules visited: {len(fig['modules'])} ({', '.join(short(m) for m in fig['modules'])})")
    print(f"stays: {fig['stays']}")
    print(f"returns to a module already left: {n_returns} ({per_module})")
    print(f"climbs back up: {len(fig['calls_up']) + len(fig['ping_pong'])} "
          f"= {len(fig['calls_up'])} calls up a floor + {len(fig['ping_pong'])} ping-pong returns")
    return 0


# ------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("save", help="run the fixed set and save its results into DIR (new or empty)")
    p.add_argument("dir")
    p.set_defaults(func=cmd_save)
    p = sub.add_parser("compare", help="compare two saved folders bit for bit; exit 1 on any difference")
    p.add_argument("a")
    p.add_argument("b")
    p.set_defaults(func=cmd_compare)
    p = sub.add_parser("walk", help="the call-walk metric of `numpynst stylize` (see the docstring)")
    p.add_argument("--iterations", type=int, default=0, help="--iterations of the profiled run (default 0)")
    p.add_argument("--start", default="numpynst.commands.stylize:stylize_to_file",
                   help="MODULE:FUNCTION whose call starts the walk (default: %(default)s)")
    p.add_argument("--dedupe", choices=("function", "edge", "site", "none"), default="function",
                   help="follow each function once (default), each call site once, or every call")
    p.add_argument("--ignore", default=",".join(DEFAULT_IGNORE), metavar="M1,M2",
                   help="numpynst modules left out of the walk ('' for none; default: %(default)s)")
    p.add_argument("--verbose", action="store_true", help="list every stay")
    p.set_defaults(func=cmd_walk)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
