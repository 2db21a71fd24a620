"""What one batch job is, its content-hash identity, and the checks every job passes before anything runs.

A :class:`Job` is one call of :func:`numpynst.transfer.stylize`: a content image, one or more style
images and the keyword options of that call (names and parsing in :mod:`numpynst.batch.options`).
Manifests and grids (:mod:`numpynst.batch.manifest`) produce jobs; :func:`prepare_jobs` checks them
all on the client, before anything runs, and raises one :class:`~numpynst.errors.ManifestError`
naming where the bad job came from (file, row, column).

**Identity.** A job's digest is the SHA-256 of a canonical JSON document holding the SHA-256 of every
input file's *bytes* (content, styles, a weights file, an init image) and the job's options with
stylize's defaults filled in. Renaming or moving an input changes nothing; editing one pixel, or
changing ``iterations`` from 100 to 101, gives a new digest. The output file is
``<name>-<first 12 hex digits>.png``: readable, and a different file for every different job.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..checks import first_line
from ..errors import ManifestError
from ..files import file_digest
from ..objective import DEFAULT_STYLE_LAYERS
from .options import OPTIONS, check_together, parse_file, parse_option, show

DIGEST_VERSION = 2          # bump when the meaning of an option changes, to invalidate old outputs
#                             (2: an empty size is at most 512 px, no longer the content's own size)
_NAME_MAX = 60
_PATH_OPTIONS = ("weights", "init")


@dataclasses.dataclass(frozen=True)
class Job:
    """One stylize call.

    ``content``: path of the content image. ``styles``: paths of the style image(s).
    ``options``: stylize keyword arguments (names in :data:`OPTIONS`), already parsed.
    ``name``: label used in the output file name and the summary (default: content and style stems).
    ``source``: where the job came from, for messages (``"jobs.csv row 3 (line 4)"``).
    ``digest``: hex SHA-256 identity, (re)computed by :func:`prepare_jobs`.
    """

    content: str
    styles: tuple[str, ...]
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    name: str = ""
    source: str = ""
    digest: str = ""

    @property
    def output(self) -> str:
        """File name of the result inside the output folder (needs the digest)."""
        if not self.digest:
            raise ValueError("job has no digest yet: pass it through prepare_jobs() first")
        return f"{self.name}-{self.digest[:12]}.png"

    @property
    def sidecar(self) -> str:
        """File name of the JSON record written next to the result once it is complete."""
        return self.output[:-len(".png")] + ".json"

    def spec(self) -> dict:
        """Plain-data form sent to a worker (no numpynst types: any Dask worker can unpickle it)."""
        return {"name": self.name, "content": self.content, "styles": list(self.styles),
                "options": dict(self.options), "digest": self.digest, "output": self.output,
                "sidecar": self.sidecar}


# ----------------------------------------------------------------------------- identity
_DIGEST_MEMO: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, remembered per (path, size, mtime) so a big weights file is read once."""
    st = os.stat(path)
    key = (os.fspath(path), st.st_size, st.st_mtime_ns)
    if key not in _DIGEST_MEMO:
        _DIGEST_MEMO[key] = file_digest(path, "sha256")
    return _DIGEST_MEMO[key]


def _stylize_defaults() -> dict[str, Any]:
    """Every option a job may set, with the value a job that leaves it empty runs with."""
    from ..options import default_of
    out = {n: default_of(n) for n in OPTIONS}
    out["style_layers"] = dict(DEFAULT_STYLE_LAYERS)
    return out


def job_digest(content: str, styles: Sequence[str], options: Mapping[str, Any]) -> str:
    """Hex SHA-256 identity of a job: input file *contents* plus options with defaults filled in."""
    effective = {**_stylize_defaults(), **options}
    if effective.get("weights") is None:
        from ..weights import default_weights_path
        effective["weights"] = str(default_weights_path())
    for name in _PATH_OPTIONS:                 # a path option is identified by the file's bytes
        v = effective.get(name)
        if isinstance(v, str) and os.path.isfile(v) and not (name == "init" and v in ("content", "noise", "style")):
            effective[name] = {"sha256": file_sha256(v)}
    for name in ("masks", "style_masks"):      # lists of files: each by its bytes
        if isinstance(effective.get(name), (list, tuple)):
            effective[name] = [{"sha256": file_sha256(v)} if isinstance(v, str) and os.path.isfile(v) else v
                               for v in effective[name]]
    doc = {"v": DIGEST_VERSION, "content": file_sha256(content), "styles": [file_sha256(s) for s in styles],
           "options": effective}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def slug(text: str) -> str:
    """A file-name-safe label: letters, digits, ``._-+``; at most 60 characters."""
    s = re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("._") or "job"
    return s[:_NAME_MAX]


def default_name(content: str, styles: Sequence[str]) -> str:
    return slug(Path(content).stem + "__" + "+".join(Path(s).stem for s in styles))


# ----------------------------------------------------------------------------- checking
def _where(job: Job, i: int) -> str:
    return job.source or f"job #{i + 1}"


def prepare_jobs(jobs: Iterable[Job]) -> list[Job]:
    """Check every job (files exist, options valid) and fill in names and digests.

    Raises :class:`ManifestError` for the first problem, naming where the job came from; two jobs that
    would write the same output (same name, same inputs and options) are an error too.
    """
    out: list[Job] = []
    seen: dict[str, str] = {}
    checked: dict[Any, str] = {}            # path -> resolved: a manifest names the same files again and again
    for i, job in enumerate(jobs):
        where = _where(job, i)
        if not isinstance(job, Job):
            raise ManifestError(f"{where}: expected a numpynst.batch.Job, got {type(job).__name__}")
        content = _checked_file(job.content, where, "content", checked)
        styles = tuple(_checked_file(s, where, "style", checked) for s in job.styles)
        if not styles:
            raise ManifestError(f"{where}, column 'style': no style image given")
        options = {}
        for name, value in job.options.items():
            try:
                options[name] = parse_option(name, value)
            except ValueError as exc:
                raise ManifestError(f"{where}, column {name!r}: {exc}") from None
        conflict = check_together(options, len(styles))
        if conflict is not None:
            raise ManifestError(f"{where}, column {conflict[0]!r}: {conflict[1]}")
        if not isinstance(job.name, str):
            raise ManifestError(f"{where}, column 'name': expected text, got {show(job.name)}")
        name = slug(job.name) if job.name else default_name(content, styles)
        digest = job_digest(content, styles, options)     # never trusted from the caller
        job = dataclasses.replace(job, content=content, styles=styles, options=options, name=name,
                                  digest=digest)
        if job.output in seen:
            raise ManifestError(f"{where}: duplicate output {job.output}: same name, inputs and options as "
                                f"{seen[job.output]}; remove one of them")
        seen[job.output] = where
        out.append(job)
    _check_models(out)
    return out


_ARCH_MEMO: dict[tuple[str, int, int], str] = {}


def weights_arch(path: str) -> str:
    """``"vgg16"`` / ``"vgg19"`` of a weights file, validated by :func:`numpynst.weights.read_vgg_weights`
    (declared shapes first, so a hostile file costs nothing); remembered per (path, size, mtime)."""
    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns)
    if key not in _ARCH_MEMO:
        from ..weights import read_vgg_weights
        _ARCH_MEMO[key] = read_vgg_weights(path).arch
    return _ARCH_MEMO[key]


def _check_models(jobs: Sequence[Job]) -> None:
    """A weights file that is not a VGG, or a layer its architecture lacks (``block5_conv4`` of VGG16),
    would fail every job using it at run time: refuse it now, naming the first row that uses it."""
    from ..arch import all_layer_names
    from ..errors import WeightsError
    for i, job in enumerate(jobs):
        weights = job.options.get("weights")
        if weights is None:                    # the shipped VGG19: parse_option checked the names
            continue
        try:
            arch = weights_arch(weights)
        except (WeightsError, OSError) as exc:
            raise ManifestError(f"{_where(job, i)}, column 'weights': {first_line(exc)}") from None
        names = set(all_layer_names(arch))
        for column, layers in (("content_layer", [job.options.get("content_layer")]),
                               ("style_layers", list(job.options.get("style_layers") or ()))):
            bad = [n for n in layers if n is not None and n not in names]
            if bad:
                raise ManifestError(f"{_where(job, i)}, column {column!r}: {bad[0]} is not a layer of "
                                    f"{arch.upper()} (the weights {weights})")


def _checked_file(path: Any, where: str, column: str, checked: dict) -> str:
    key = path if isinstance(path, str) else None
    if key is not None and key in checked:
        return checked[key]
    try:
        resolved = parse_file(path, Path("."))
    except ValueError as exc:
        raise ManifestError(f"{where}, column {column!r}: {exc}") from None
    if key is not None:
        checked[key] = resolved
    return resolved
