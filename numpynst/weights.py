"""VGG weights on disk: the shipped file, Keras HDF5 reading/validation/writing, official downloads.

File layout (Keras "notop" weight files, which this module reads and writes)::

    /                         attrs: layer_names = [b"input_1", b"block1_conv1", ..., b"block5_pool"]
    /block1_conv1/            attrs: weight_names = [b"block1_conv1_W_1:0", b"block1_conv1_b_1:0"]
        block1_conv1_W_1:0    (3, 3, C_in, C_out)   kernel, cross-correlation, input channels BGR
        block1_conv1_b_1:0    (C_out,)              bias
    /block1_pool/             attrs: weight_names = []        (layers without weights)
    ...

Keras 2 files name the datasets ``block1_conv1/block1_conv1/kernel:0`` and ``.../bias:0`` instead;
both styles are read. Dense layers (``fc1``, ``fc2``, ``predictions``) of "top" files are ignored.

Everything is read and checked before anything is returned (no half-loaded model): every conv
layer of the architecture present and no other, kernels ``3x3`` whose input channels chain (3 for
the first layer, then the previous layer's outputs), biases matching, float data, no NaN/inf.
Each problem raises :class:`WeightsError` naming the file and the layer.
"""

from __future__ import annotations

import http.client
import importlib.resources
import os
import re
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Mapping, NamedTuple

import numpy as np

from .arch import BLOCK_WIDTHS, all_layer_names, conv_layer_names
from .checks import first_line
from .errors import OptionError, WeightsError, short_path
from .files import atomic_path, file_digest, move_noreplace, regular_file

__all__ = ["WeightsError", "VGGWeights", "OfficialFile", "OFFICIAL_FILES", "DEFAULT_WEIGHTS_NAME",
           "default_weights_path", "cache_dir", "read_vgg_weights", "write_vgg_h5", "fetch",
           "weights_info"]

DEFAULT_WEIGHTS_NAME = "vgg19_notop_f16.h5"

_CONV_RE = re.compile(r"block(\d+)_conv(\d+)")
# Keras 1: "block1_conv1_W_1:0" / "block1_conv1_b_1:0"; Keras 2: "kernel:0" / "bias:0"
_KERNEL_RE = re.compile(r"(kernel|.*_W(_\d+)?)(:\d+)?")
_BIAS_RE = re.compile(r"(bias|.*_b(_\d+)?)(:\d+)?")


class VGGWeights(NamedTuple):
    """Validated weights: ``params`` maps conv name -> (W float32 (3,3,Cin,Cout), b float32 (Cout,))."""

    arch: str
    path: Path
    params: dict[str, tuple[np.ndarray, np.ndarray]]


class OfficialFile(NamedTuple):
    """A downloadable weights file and its published checksum."""

    url: str
    filename: str
    algo: str      # hashlib name: "md5" or "sha256"
    digest: str    # hex digest published by Keras (keras.applications' file_hash)


_RELEASE = "https://github.com/fchollet/deep-learning-models/releases/download/v0.1/"
OFFICIAL_FILES: dict[str, OfficialFile] = {
    "vgg19": OfficialFile(_RELEASE + "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
                          "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
                          "md5", "253f8cb515780f3b799900260a226db6"),
    "vgg16": OfficialFile(_RELEASE + "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                          "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                          "md5", "6d6bbae143d832006294945121d1f1fc"),
}


# ------------------------------------------------------------------------------- locations
def default_weights_path() -> Path:
    """The shipped VGG19 file.

    Looked up inside the installed package first (a wheel carries it as
    ``numpynst/_weights/vgg19_notop_f16.h5``), then in a source checkout's ``weights/`` folder
    (editable installs, running from the repository). If neither exists the package path is
    returned, and reading it gives a :class:`WeightsError` that says how to get weights.
    """
    packaged = Path(str(importlib.resources.files("numpynst"))) / "_weights" / DEFAULT_WEIGHTS_NAME
    if packaged.is_file():
        return packaged
    checkout = Path(__file__).resolve().parent.parent / "weights" / DEFAULT_WEIGHTS_NAME
    return checkout if checkout.is_file() else packaged


def cache_dir() -> Path:
    """Where downloads go: ``$NUMPYNST_HOME`` if set, else ``~/.cache/numpynst``."""
    home = os.environ.get("NUMPYNST_HOME")
    return Path(home).expanduser() if home else Path.home() / ".cache" / "numpynst"


# ------------------------------------------------------------------------------- reading
def read_vgg_weights(path: str | os.PathLike) -> VGGWeights:
    """Read and validate a VGG16/VGG19 weights file in Keras HDF5 layout.

    Returns:
        :class:`VGGWeights` with ``arch`` detected from the conv layer names (13 -> vgg16,
        16 -> vgg19) and float32 ``params`` in network order.
    Raises:
        WeightsError naming the file (and the layer) for a missing/non-HDF5 file, missing or
        unexpected conv layers, wrong or non-chaining shapes, non-float data, NaN or inf.
    """
    arch, params, _ = _read(Path(path))
    return VGGWeights(arch, Path(path), params)


def _open(path: Path):
    import h5py  # noqa: PLC0415  (keep `import numpynst` light)

    try:
        os.stat(path)
    except FileNotFoundError:
        raise WeightsError(f"weights file {short_path(path)} does not exist; use the shipped VGG19 (see "
                           f"`numpynst weights path`) or download one with `numpynst weights fetch vgg19`") \
            from None
    except OSError:
        pass                    # regular_file says what is wrong (a name too long, ...)
    # a FIFO or device would block h5py's open (or stream forever): refuse before opening
    regular_file(path, "weights file", error=WeightsError)
    try:
        return h5py.File(path, "r")
    except (OSError, ValueError, RuntimeError) as exc:
        raise WeightsError(f"weights file {short_path(path)} is not a readable HDF5 file ({first_line(exc)})") from None


# Errors h5py raises for damaged files (a corrupt chunk: OSError "Can't read data"; broken
# object headers: RuntimeError/KeyError/ValueError).
_H5_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError)
_MAX_DEPTH = 8              # Keras nests 4 deep; deeper means a hard-link cycle or a hostile file
_MAX_ENTRIES = 10_000       # a VGG file has ~100 entries


def _walk(path: Path, group: Any, where: str) -> dict[str, Any]:
    """``{relative name: h5py.Dataset}`` below ``group``, found without following any link.

    Every entry is looked at as a *link* first (``get(name, getlink=True)``): a soft link or an
    external link (dangling or not) is refused, so reading never leaves this file or chases a
    name; hard links are the file's own objects. Raises :class:`WeightsError`.
    """
    import h5py  # noqa: PLC0415

    found: dict[str, Any] = {}
    todo = [(group, "", 0)]
    seen = 0
    while todo:
        g, prefix, depth = todo.pop()
        try:
            keys = list(g.keys())
        except _H5_ERRORS as exc:
            raise WeightsError(f"weights file {short_path(path)}: cannot list {where}/{prefix} ({first_line(exc)})") from None
        for key in keys:
            seen += 1
            name = f"{prefix}{key}"
            if seen > _MAX_ENTRIES:
                raise WeightsError(f"weights file {short_path(path)}: more than {_MAX_ENTRIES:,} entries under {where or '/'}")
            try:
                link = g.get(key, getlink=True)
            except _H5_ERRORS as exc:
                raise WeightsError(f"weights file {short_path(path)}: cannot read the link {where}/{name} "
                                   f"({first_line(exc)})") from None
            if isinstance(link, h5py.SoftLink):
                raise WeightsError(f"weights file {short_path(path)}: {where}/{name} is a soft link to {link.path}; "
                                   f"links are not followed")
            if isinstance(link, h5py.ExternalLink):
                raise WeightsError(f"weights file {short_path(path)}: {where}/{name} is an external link to "
                                   f"{link.filename}:{link.path}; links to other files are not followed")
            if not isinstance(link, h5py.HardLink):
                raise WeightsError(f"weights file {short_path(path)}: {where}/{name} is a link of unknown kind")
            try:
                obj = g[key]
            except _H5_ERRORS as exc:
                raise WeightsError(f"weights file {short_path(path)}: cannot open {where}/{name} ({first_line(exc)})") from None
            if isinstance(obj, h5py.Dataset):
                found[name] = obj
            elif isinstance(obj, h5py.Group):
                if depth + 1 >= _MAX_DEPTH:
                    raise WeightsError(f"weights file {short_path(path)}: groups nested deeper than {_MAX_DEPTH} "
                                       f"levels under {where or '/'} (a link cycle?)")
                todo.append((obj, f"{name}/", depth + 1))
    return found


def _weights_root(path: Path, f: Any) -> tuple[Any, str]:
    """The group holding the layers: ``/``, or ``/model_weights`` of a whole saved Keras model."""
    import h5py  # noqa: PLC0415

    try:
        link = f.get("model_weights", getlink=True)
    except _H5_ERRORS as exc:
        raise WeightsError(f"weights file {short_path(path)}: cannot read its root ({first_line(exc)})") from None
    if isinstance(link, h5py.HardLink) and isinstance(f["model_weights"], h5py.Group):
        return f["model_weights"], "/model_weights"
    return f, ""


def _read(path: Path) -> tuple[str, dict[str, tuple[np.ndarray, np.ndarray]], dict[str, str]]:
    """-> (arch, params float32, {layer: stored kernel dtype}); all checks of :func:`read_vgg_weights`.

    Order: walk the structure (no links followed), then check every layer's declared shapes and
    dtypes against the architecture, and only then read data, so a file that declares terabytes
    is refused before anything is allocated.
    """
    with _open(path) as f:
        root, where = _weights_root(path, f)
        datasets = _walk(path, root, where)
        tops = sorted({name.split("/", 1)[0] for name in datasets} | set(root.keys()))
        found = sorted((k for k in tops if _CONV_RE.fullmatch(k)),
                       key=lambda k: tuple(int(v) for v in _CONV_RE.fullmatch(k).groups()))
        if not found:
            keys = ", ".join(tops[:8]) or "none"
            raise WeightsError(f"weights file {short_path(path)} holds no VGG conv layers (groups named blockN_convM); "
                               f"top-level entries: {keys}")
        arch = _detect_arch(found)
        expected = conv_layer_names(arch)
        extra = [k for k in found if k not in expected]
        if extra:
            raise WeightsError(f"weights file {short_path(path)}: unexpected conv layer(s) {', '.join(extra)} "
                               f"(not part of {arch.upper()}, whose conv layers are "
                               f"{expected[0]} .. {expected[-1]})")
        missing = [k for k in expected if k not in found]
        if missing:
            raise WeightsError(f"weights file {short_path(path)}: layer(s) {', '.join(missing)} of {arch.upper()} "
                               f"are missing")
        layers = {name: _layer_datasets(path, name, datasets) for name in expected}
        _check_declared(path, layers)
        params: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        dtypes: dict[str, str] = {}
        for name, (wd, bd) in layers.items():
            where = f"weights file {short_path(path)}, layer {name}"
            w, b = _read_dataset(where, "kernel", wd), _read_dataset(where, "bias", bd)
            for label, a in (("kernel", w), ("bias", b)):
                if not np.isfinite(a).all():
                    raise WeightsError(f"{where}: {label} contains {int((~np.isfinite(a)).sum())} "
                                       f"NaN/inf value(s)")
            dtypes[name] = str(w.dtype)
            params[name] = (w.astype(np.float32), b.astype(np.float32))
    return arch, params, dtypes


def _check_declared(path: Path, layers: Mapping[str, tuple[Any, Any]]) -> None:
    """Declared shapes and dtypes (nothing read yet) against the architecture.

    Kernel ``(3, 3, C_in, C_out)`` with ``C_in`` = 3 for the first layer, else the previous
    layer's ``C_out``; ``C_out`` at most VGG's width for the block (:data:`arch.BLOCK_WIDTHS`);
    bias ``(C_out,)``; floating-point data of at most 8 bytes per value.
    """
    cin, prev = 3, None
    for name, (wd, bd) in layers.items():
        where = f"weights file {short_path(path)}, layer {name}"
        shape = tuple(int(n) for n in wd.shape)
        if len(shape) != 4 or shape[:2] != (3, 3):
            hint = (" (a channels-first 'th' kernel? use the *_tf_dim_ordering_tf_kernels* file)"
                    if len(shape) == 4 and shape[2:] == (3, 3) else "")
            raise WeightsError(f"{where}: kernel has shape {shape}, expected (3, 3, C_in, C_out){hint}")
        if shape[2] != cin:
            src = "the 3 (BGR) input channels" if prev is None else f"{prev}'s {cin} output channels"
            raise WeightsError(f"{where}: kernel has C_in={shape[2]} (shape {shape}) but must match {src}")
        block = int(_CONV_RE.fullmatch(name).group(1))
        widest = BLOCK_WIDTHS[block - 1]
        if not 1 <= shape[3] <= widest:
            raise WeightsError(f"{where}: kernel has C_out={shape[3]} (shape {shape}); VGG's block "
                               f"{block} has at most {widest} channels")
        bshape = tuple(int(n) for n in bd.shape)
        if bshape != (shape[3],):
            raise WeightsError(f"{where}: bias has shape {bshape}, expected ({shape[3]},) to match "
                               f"the kernel {shape}")
        for label, d in (("kernel", wd), ("bias", bd)):
            if d.dtype.kind != "f" or d.dtype.itemsize > 8:
                raise WeightsError(f"{where}: {label} has dtype {d.dtype}, expected floating point")
        cin, prev = shape[3], name


def _read_dataset(where: str, label: str, dataset: Any) -> np.ndarray:
    """``dataset[()]``, with damaged data (a corrupt chunk, a failing filter) as WeightsError."""
    try:
        return np.asarray(dataset[()])
    except MemoryError:
        raise WeightsError(f"{where}: not enough memory to read the {label}") from None
    except _H5_ERRORS as exc:
        raise WeightsError(f"{where}: cannot read the {label} (damaged data: {first_line(exc)})") from None


def _detect_arch(found: list[str]) -> str:
    """vgg19 if any layer exists only in VGG19 (``blockN_conv4``), else vgg16."""
    only19 = set(conv_layer_names("vgg19")) - set(conv_layer_names("vgg16"))
    return "vgg19" if only19 & set(found) else "vgg16"


def _layer_datasets(path: Path, name: str, datasets: Mapping[str, Any]) -> tuple[Any, Any]:
    """The (kernel, bias) datasets of one layer, in either Keras naming style (not read)."""
    if name in datasets:
        raise WeightsError(f"weights file {short_path(path)}, layer {name}: expected a group, found a dataset")
    inside = {k: d for k, d in datasets.items() if k.startswith(name + "/")}
    kernels = [k for k in inside if _KERNEL_RE.fullmatch(k.rsplit("/", 1)[-1])]
    biases = [k for k in inside if _BIAS_RE.fullmatch(k.rsplit("/", 1)[-1])]
    if len(kernels) != 1 or len(biases) != 1:
        shown = sorted(k.split("/", 1)[1] for k in inside)
        raise WeightsError(f"weights file {short_path(path)}, layer {name}: expected one kernel ({name}_W_1:0 or "
                           f"kernel:0) and one bias ({name}_b_1:0 or bias:0), found datasets "
                           f"{shown or 'none'}")
    return inside[kernels[0]], inside[biases[0]]


# ------------------------------------------------------------------------------- writing
def write_vgg_h5(path: str | os.PathLike, params: Mapping[str, tuple[Any, Any]], *,
                 dtype: Any = np.float16, attrs: Mapping[str, Any] | None = None,
                 compression_level: int = 9) -> Path:
    """Write conv weights as a Keras "notop" HDF5 file (layout in the module docstring).

    ``params`` must hold exactly the conv layers of VGG16 or VGG19 (arch detected from the names).
    Datasets are stored in ``dtype`` with gzip + byte shuffle; no timestamps, so the same input
    gives the same bytes. ``attrs`` are extra root attributes (provenance). Written to a temporary
    file, read back and checked like any weights file, then moved into place
    (:func:`numpynst.files.atomic_path`): a reader never sees a half-written file.
    """
    import h5py  # noqa: PLC0415

    path = Path(path)
    names = list(params)
    arch = _detect_arch(names)
    if sorted(names) != sorted(conv_layer_names(arch)):
        raise OptionError(f"write_vgg_h5: params must hold exactly the conv layers of VGG16 or VGG19, "
                          f"got {', '.join(names)}")
    layer_names = ["input_1", *all_layer_names(arch)]

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            f.attrs["layer_names"] = np.array([n.encode() for n in layer_names])
            for key, value in (attrs or {}).items():
                f.attrs[key] = value
            for name in layer_names:
                g = f.create_group(name)
                if name not in params:
                    g.attrs["weight_names"] = np.array([], dtype="S1")
                    continue
                wn = [f"{name}_W_1:0", f"{name}_b_1:0"]
                g.attrs["weight_names"] = np.array([n.encode() for n in wn])
                for dname, a in zip(wn, params[name]):
                    g.create_dataset(dname, data=np.asarray(a, dtype=dtype), compression="gzip",
                                     compression_opts=compression_level, shuffle=True, track_times=False)

    # verified by reading it back in full, as every reader will, before it takes the name
    with atomic_path(path, verify=_read) as tmp:
        write(tmp)
    return path


# ------------------------------------------------------------------------------- info
def weights_info(path: str | os.PathLike | None = None) -> str:
    """A human-readable summary: file size, sha256, architecture, each layer's shapes/dtype/params."""
    p = default_weights_path() if path is None else Path(path)
    arch, params, dtypes = _read(p)
    size = p.stat().st_size
    total = sum(w.size + b.size for w, b in params.values())
    lines = [f"file:          {p}",
             f"size:          {size:,} bytes ({size / 2 ** 20:.1f} MiB)",
             f"sha256:        {file_digest(p)}",
             f"architecture:  {arch} ({len(params)} conv layers, {total:,} parameters)",
             "",
             f"{'layer':<14}{'kernel':<22}{'bias':<9}{'dtype':<9}{'params':>11}"]
    for name, (w, b) in params.items():
        lines.append(f"{name:<14}{str(w.shape):<22}{str(b.shape):<9}{dtypes[name]:<9}{w.size + b.size:>11,}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------- download
def fetch(arch: str, dest: str | os.PathLike | None = None, progress: bool = True,
          timeout: float = 30.0) -> Path:
    """Download the official Keras "notop" weights for ``arch`` ("vgg16"/"vgg19").

    Goes to ``dest`` (default :func:`cache_dir`). Data streams into ``<file>.part``; an interrupted
    download resumes from there (HTTP Range) on the next call. The file is checked against the
    checksum Keras publishes and only then renamed into place, so the final path never holds a
    partial or corrupt file. A file already in place with the right checksum is not downloaded again.

    Raises:
        OptionError for an unknown ``arch``; WeightsError when offline, on an HTTP error or on a
        checksum mismatch, saying where to download the file by hand and where to put it.
    """
    if arch not in OFFICIAL_FILES:
        raise OptionError(f"architecture must be one of {', '.join(OFFICIAL_FILES)}, got {arch!r}")
    spec = OFFICIAL_FILES[arch]
    folder = Path(dest).expanduser() if dest is not None else cache_dir()
    target = folder / spec.filename
    by_hand = f"download {spec.url} by hand and save it as {target}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WeightsError(f"cannot create download folder {short_path(folder)} ({exc.strerror or exc})") from None
    if target.is_file() and not target.is_symlink() and file_digest(target, spec.algo) == spec.digest:
        return target
    if os.path.lexists(target):      # someone else's file under the official name: never replaced
        raise WeightsError(f"{short_path(target)} exists but is not the published {arch} file (or not a regular "
                           f"file); move it away or download elsewhere with --dest")
    part = target.with_name(target.name + ".part")
    if os.path.lexists(part) and (part.is_symlink() or not part.is_file()):
        raise WeightsError(f"{part} exists and is not a regular file; refusing to append a download to it")
    for attempt in range(2):
        try:
            resumed = _download(spec.url, part, progress, timeout)
        except (urllib.error.URLError, http.client.HTTPException, socket.timeout, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            kept = part.stat().st_size if part.is_file() else 0
            again = (f"run the command again to resume ({kept:,} bytes kept in {part})" if kept
                     else "run the command again when online")
            raise WeightsError(f"could not download {spec.url} ({reason}); {again}, or {by_hand}") from None
        digest = file_digest(part, spec.algo)
        if digest == spec.digest:
            try:
                return move_noreplace(part, target)
            except FileExistsError:
                raise WeightsError(f"{short_path(target)} appeared during the download and was not replaced; "
                                   f"the checked download is in {part}") from None
        part.unlink()
        if not (resumed and attempt == 0):
            break
        # a resumed download can splice two different files: retry once from scratch
    raise WeightsError(f"downloaded {spec.url} but its {spec.algo} is {digest}, not the published "
                       f"{spec.digest}; deleted it, run the command again or {by_hand}")


def _download(url: str, part: Path, progress: bool, timeout: float) -> bool:
    """Stream ``url`` into ``part``, appending from its current size when the server allows.

    Returns True when the data was appended to an existing partial file. Raises OSError /
    URLError on network errors and when the connection ends before Content-Length bytes.
    """
    from tqdm.auto import tqdm  # noqa: PLC0415

    have = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": "numpynst"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:   # nothing left to send: the part is complete (or too long)
            return True
        raise
    with resp:
        resumed = bool(have) and resp.status == 206 and \
            resp.headers.get("Content-Range", "").startswith(f"bytes {have}-")
        if not resumed:
            have = 0                   # server ignored the Range: start over
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        with open(part, "ab" if resumed else "wb") as fh, \
                tqdm(total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                     desc=part.name[:-5], disable=not progress, leave=False) as bar:
            for chunk in iter(lambda: resp.read(1 << 16), b""):
                fh.write(chunk)
                bar.update(len(chunk))
    size = part.stat().st_size
    if total is not None and size != total:
        raise OSError(f"connection closed after {size:,} of {total:,} bytes")
    return resumed
