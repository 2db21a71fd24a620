"""The frame loop: :func:`stylize_video`, a clip stylized frame by frame without flicker.

For each frame ``t`` of the selected range, in order (Ruder et al. 2016):

1. the frame is resized to the working size (``size``) and its backward and forward optical flows
   to frame ``t-1`` are computed (:mod:`numpynst.video.flow`), with the consistency weights ``w``;
2. the previous *result*, warped by the backward flow (:mod:`numpynst.video.warp`), starts the
   optimisation in place of the init, and the temporal cost
   ``gamma J_temporal(x; warp(result_{t-1}), w)`` (:mod:`numpynst.video.temporal`) is added to
   the objective at every scale (:func:`numpynst.transfer.run`'s ``start`` and ``wrap``);
3. the result is written as ``NNNNN.png`` (the source frame's number) into the frames folder, all
   or nothing, and becomes the previous result.

``independent=True`` skips step 2 (every frame from its own init, no temporal term): the baseline
that flickers. The first frame of a range has no predecessor and is stylized as a picture.

**Streaming.** Frames are decoded one at a time and only the current and previous frame and result
are held, whatever the clip's length; the video file is encoded from the frames folder at the end.

**Resume.** Each written frame carries, in its PNG text, the digest of what made it: the run's
configuration (the options with defaults filled in, the style and weights files' bytes, the
temporal settings) and the SHA-256 of its inputs -- the source frame, the previous source frame and
the previous result (those two only with temporal terms). A re-run recomputes the digest and keeps
every frame whose digest matches, so an interrupted run (Ctrl-C, SIGTERM, a full disk, a crash)
continues where it stopped and loses at most the frame in progress; a frame of another
configuration is never silently reused (refused without ``overwrite``).

**Interrupts.** Ctrl-C (or SIGTERM, which the CLI turns into the same) stops after saving nothing
half-done: the finished frames stay, and for a video output a playable partial video of them is
written beside it (``OUT.partial.mp4``) before returning ``stopped="interrupted"``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from ..errors import ImageError, NumpynstError, OptionError, VideoError, short_path
from ..options import StylizeOptions, resolve

#: Temporal weight gamma used when none is given. Calibrated (the default weights mode): this times
#: the style weight, so that the temporal term keeps its balance against the style term when the
#: style weight moves. On the known-motion clip (benchmarks/README.md, "Video: flicker") the factor
#: 100 met the issue's target (temporal error <= 1/3 of independent frames', style gap closed within
#: 10%) at style weight 1 (gamma 100: 0.31) and at 10 (gamma 1000: 0.33), where a fixed gamma of 100
#: left 0.40. The raw mode's value is a plain gamma, not measured: raw J has no fixed scale, tune it
#: per clip.
DEFAULT_TEMPORAL_WEIGHT = {"calibrated": 100.0, "raw": 1e3}
MAX_TEMPORAL_WEIGHT = 1e6
DIGEST_VERSION = 1
FRAME_NAME = re.compile(r"[0-9]{5,}\.png")
_TAG = "numpynst video frame"


class VideoResult(NamedTuple):
    """What :func:`stylize_video` did. ``frames_dir``: where the frames are; ``video``: the video
    written (``None`` for a frames-folder output or when interrupted); ``partial``: the partial video
    written on an interrupt (else ``None``); ``done``: the frame numbers finished (run now or kept);
    ``stylized``/``kept``: how many of each; ``stopped``: ``"done"``, ``"interrupted"``,
    ``"write failed"`` (a full disk ...) or ``"failed"`` (bad input found mid-clip; ``error`` says why); ``temporal_error``: ``{t: mean |out_t - warp(out_{t-1})|}``
    over the pixels of weight 1 (grey levels); ``seconds``: wall time."""

    frames_dir: Path
    video: Path | None
    partial: Path | None
    done: list
    stylized: int
    kept: int
    stopped: str
    error: str
    temporal_error: dict
    seconds: float


class _WriteFailed(NumpynstError):
    """A finished frame could not be written (full disk, file-size limit): exit 1, not bad input."""


class Plan(NamedTuple):
    """The checked paths of a run: the frames folder, the video (or ``None``) and its partial twin."""

    frames_dir: Path
    video: Path | None
    partial: Path | None


def check_temporal_weight(value: Any, mode: str, beta: float | None = None) -> float:
    """gamma as a float; :class:`OptionError` naming --temporal-weight. ``None``: the mode's default,
    with calibrated weights :data:`DEFAULT_TEMPORAL_WEIGHT` times the style weight ``beta`` (``None``:
    the default style weight)."""
    if value is None:
        if mode != "calibrated":
            return DEFAULT_TEMPORAL_WEIGHT[mode]
        from ..objective import DEFAULT_BETA
        return DEFAULT_TEMPORAL_WEIGHT[mode] * (DEFAULT_BETA if beta is None else float(beta))
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if isinstance(value, bool) or not (0.0 <= v <= MAX_TEMPORAL_WEIGHT):
        raise OptionError(f"--temporal-weight must be a number in [0, {MAX_TEMPORAL_WEIGHT:g}], got {value!r}")
    return v


# ----------------------------------------------------------------------------- paths
def plan_output(output: str | os.PathLike, source: Path, inputs: Sequence[tuple[str, Path]],
                overwrite: bool) -> Plan:
    """Check where a run writes, before anything runs: ``output`` a video file (then its frames go to
    ``OUT_frames/``) or a folder; none of it may be an input; an existing video needs ``overwrite``."""
    from ..files import check_writable, same_file
    from .io import output_kind
    out = Path(os.fspath(output)).expanduser()
    every = [("input", source), *inputs]
    kind = output_kind(out)
    if kind == "video":
        for what, p in every:
            if same_file(p, out):
                raise OptionError(f"--output {short_path(out)} is the {what} {short_path(p)}: refusing to overwrite an input")
        check_writable(out, "--output", overwrite=overwrite)
        frames_dir = out.with_name(out.stem + "_frames")
        partial = out.with_name(out.stem + ".partial" + out.suffix)
        if os.path.lexists(partial) and not os.path.isfile(partial):
            raise OptionError(f"--output: {partial} (the partial video's name) exists and is not a file")
    else:
        frames_dir, partial = out, None
    what = "--output" if kind == "frames" else "--output: frames folder"
    for label, p in every:
        if same_file(p, frames_dir):
            raise OptionError(f"{what} {short_path(frames_dir)} is the {label} {short_path(p)}: refusing to write into an input")
        if same_file(p.parent, frames_dir) and FRAME_NAME.fullmatch(p.name):
            raise OptionError(f"{what} {short_path(frames_dir)} holds the {label} {short_path(p)} under a frame's name: "
                              f"refusing to overwrite an input")
    if os.path.lexists(frames_dir):
        if not frames_dir.is_dir() or frames_dir.is_symlink():
            raise OptionError(f"{what} {short_path(frames_dir)} exists and is not a folder")
        if not os.access(frames_dir, os.W_OK | os.X_OK):
            raise OptionError(f"{what} {short_path(frames_dir)}: permission denied")
    else:
        check_writable(frames_dir, what)
    return Plan(frames_dir, out if kind == "video" else None, partial)


# ----------------------------------------------------------------------------- identity
def _sha(a: np.ndarray | None) -> str | None:
    if a is None:
        return None
    h = hashlib.sha256(str(a.shape).encode())
    h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def config_digest(opts: StylizeOptions, styles: Sequence[Any], gamma: float, flow: str,
                  independent: bool) -> str:
    """SHA-256 of everything that makes every frame: options (defaults filled in), the style and
    weights files' bytes (or the style arrays' pixels), the temporal settings."""
    from ..batch.jobs import file_sha256
    from ..weights import default_weights_path
    values = {k: v for k, v in dataclasses.asdict(opts).items() if k not in ("backend", "max_memory")}
    values["weights"] = file_sha256(opts.weights or default_weights_path())
    if not isinstance(values["init"], str):
        values["init"] = _sha(np.asarray(values["init"]))
    elif values["init"] not in ("content", "noise", "style"):
        values["init"] = file_sha256(values["init"])
    doc = {"v": DIGEST_VERSION, "options": values, "gamma": gamma, "flow": flow, "independent": independent,
           "styles": [file_sha256(s) if isinstance(s, (str, os.PathLike)) else _sha(np.asarray(s)) for s in styles]}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def frame_digest(config: str, frame: np.ndarray, prev_frame: np.ndarray | None,
                 prev_result: np.ndarray | None) -> str:
    doc = [config, _sha(frame), _sha(prev_frame), _sha(prev_result)]
    return hashlib.sha256(json.dumps(doc).encode()).hexdigest()


def frame_record(path: Path) -> tuple[str, str] | None:
    """``(config digest, frame digest)`` written in a frame's PNG text, or ``None`` (not ours, unreadable)."""
    from PIL import Image
    try:
        with Image.open(path) as im:
            text = getattr(im, "text", {}).get("Description", "")
    except (OSError, ValueError, SyntaxError):
        return None
    m = re.fullmatch(_TAG + r" config=([0-9a-f]{64}) frame=([0-9a-f]{64})", text or "")
    return (m.group(1), m.group(2)) if m else None


def foreign_frames(frames_dir: Path, indices: range, config: str) -> list[str]:
    """Names of existing frames in ``indices`` that another configuration (or another program) wrote."""
    if not frames_dir.is_dir():
        return []
    bad = []
    for i in indices:
        p = frames_dir / f"{i:05d}.png"
        if os.path.lexists(p):
            rec = frame_record(p) if p.is_file() and not p.is_symlink() else None
            if rec is None or rec[0] != config:
                bad.append(p.name)
    return bad


# ----------------------------------------------------------------------------- the loop
class _Clock:
    """Per-frame and overall progress lines: ``frame 12 (5/40): 20 it, 3.1 s | 5/40 done, ~1.8 min left``."""

    def __init__(self, total: int, log: Callable[[str], Any] | None):
        self.total, self.log, self.done, self.times = total, log, 0, []

    def frame(self, t: int, text: str, seconds: float | None) -> None:
        self.done += 1
        if seconds is not None:
            self.times.append(seconds)
        left = self.total - self.done
        eta = "" if not self.times or not left else f", ~{left * float(np.mean(self.times)) / 60:.1f} min left"
        if self.log is not None:
            self.log(f"frame {t} ({self.done}/{self.total}): {text} | {100 * self.done / self.total:.0f}% done{eta}")


def _resize_weights(w: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    from ..image import resize_to
    return w if w.shape == tuple(hw) else (resize_to(w.astype(np.float32), hw) >= 0.5).astype(np.float32)


def temporal_error(out: np.ndarray, prev_out: np.ndarray, backward: np.ndarray, weights: np.ndarray) -> float:
    """Mean ``|out_t - warp(out_{t-1}, backward)|`` over pixels of weight 1 and channels (grey levels)."""
    from .warp import warp
    diff = np.abs(out.astype(np.float64) - warp(prev_out.astype(np.float64), backward.astype(np.float64)))
    m = weights > 0.5
    return float(diff[m].mean()) if m.any() else float("nan")


def stylize_video(source: str | os.PathLike, style: Any, output: str | os.PathLike,
                  options: StylizeOptions | None = None, *, frames: str | tuple | None = None,
                  independent: bool = False, temporal_weight: float | None = None, flow: str = "dis",
                  fps: float | None = None, overwrite: bool = False, model=None, progress: bool = False,
                  log: Callable[[str], Any] | None = print, client: Any = None, workers: int | None = None,
                  scheduler: str | None = None, chunk: int | None = None, overlap: int | None = None,
                  task: Callable[[dict], dict] | None = None, **keywords: Any) -> VideoResult:
    """Stylize a clip (a video file or a folder of numbered frames) into ``output`` (a video file, or a
    folder of numbered PNGs), as the module describes.

    Args:
        source, style: the clip; a style image path (or RGB array) or a list of them.
        output: ``.mp4``/``.mov``/``.mkv``/``.m4v``/``.webm``/``.avi``, or a folder.
        options / keywords: the per-frame options (:class:`~numpynst.options.StylizeOptions`:
            ``size``, ``iterations``, the weights, layers, ...).
        frames: ``"A:B"`` or ``(A, B)``: frames A..B-1 only (0-based). independent: no temporal terms.
        temporal_weight: gamma (default: :data:`DEFAULT_TEMPORAL_WEIGHT` of the weights mode, times the
            style weight with calibrated weights).
        flow: ``"dis"`` or ``"farneback"``. fps: frame rate of a folder input (default 25).
        overwrite: replace an existing video and frames of another configuration in the frames folder.
        model: a loaded :class:`~numpynst.vgg.VGG` (default: from ``weights``).
        progress: per-iteration bars; log: where the per-frame lines go (``None``: nowhere).
        client / workers / scheduler: run the frames in chunks on Dask (:mod:`numpynst.video.chunks`):
            an existing ``distributed.Client``, a local cluster of ``workers`` processes, or a
            scheduler's address. chunk, overlap: frames per chunk and warm-up frames before each
            seam (defaults there); task: the function run per chunk (tests).
    Returns:
        :class:`VideoResult`. Bad input raises a one-line :class:`~numpynst.errors.NumpynstError`
        before anything is written.
    """
    from .flow import FLOW_METHODS
    from .io import open_source, parse_range
    styles = list(style) if isinstance(style, (list, tuple)) else [style]
    opts = resolve(options, len(styles) or None, **keywords)
    if opts.scales is None:     # each frame starts from the last one's result, warped: at full size only
        opts = dataclasses.replace(opts, scales=[1.0])
    gamma = check_temporal_weight(temporal_weight, opts.weights_mode, opts.beta)
    if flow not in FLOW_METHODS:
        raise OptionError(f"--flow must be one of {', '.join(FLOW_METHODS)}, got {flow!r}")
    dask = client is not None or workers is not None or scheduler is not None
    from ..checks import integer
    if chunk is not None:
        integer("--chunk", chunk, minimum=1)
    if overlap is not None:
        integer("--overlap", overlap, minimum=0, maximum=chunk)
    if dask:
        from ..tiled_dask import check_cluster_options
        check_cluster_options(workers, scheduler)
    a, b = frames if isinstance(frames, tuple) else parse_range(frames)
    src = open_source(source, (a, b), fps)
    a, b = parse_range(f"{a}:{'' if b is None else b}", src.n_frames)
    inputs = [(f"style image #{i + 1}", Path(s)) for i, s in enumerate(styles) if isinstance(s, (str, os.PathLike))]
    if opts.weights is not None:
        inputs.append(("--weights", Path(opts.weights)))
    if isinstance(opts.init, (str, os.PathLike)) and str(opts.init) not in ("content", "noise", "style"):
        inputs.append(("--init", Path(opts.init)))
    plan = plan_output(output, src.path, inputs, overwrite)
    if not independent:
        from .flow import require_cv2
        require_cv2()
    config = config_digest(opts, styles, gamma, flow, independent)
    foreign = foreign_frames(plan.frames_dir, range(a, b), config)
    if foreign and not overwrite:
        raise OptionError(f"--output: {plan.frames_dir} holds {len(foreign)} frame(s) of another run "
                          f"({foreign[0]}, ...); pass --overwrite to replace them or choose another --output")
    plan.frames_dir.mkdir(exist_ok=True)
    if dask:
        from .chunks import DEFAULT_OVERLAP, run_chunked
        return run_chunked(src, styles, opts, plan, a, b, config, gamma, flow, independent, client=client,
                           workers=workers, scheduler=scheduler, chunk=chunk,
                           overlap=DEFAULT_OVERLAP if overlap is None else overlap, task=task, log=log)
    if model is None:
        from ..vgg import VGG
        model = VGG.from_h5(opts.weights, backend=opts.backend, pooling=opts.pooling)
    return _loop(src, styles, opts, model, plan, a, b, config, gamma, flow, independent, progress, log)


def frame_path(frames_dir: Path, t: int, warm: bool = False) -> Path:
    """``NNNNN.png``, or ``NNNNN.w.png`` for a chunk's warm-up frame (:mod:`numpynst.video.chunks`)."""
    return frames_dir / (f"{t:05d}.w.png" if warm else f"{t:05d}.png")


def _loop(src, styles, opts, model, plan: Plan, a: int, b: int, config: str, gamma: float, flow: str,
          independent: bool, progress: bool, log, main_from: int | None = None) -> VideoResult:
    """Frames ``a..b-1`` in order; those before ``main_from`` are warm-up frames (written, not in ``done``)."""
    from .. import transfer
    from ..image import ImageInfo, load_image, resize_image, save_image
    from .io import iter_frames
    t0 = time.perf_counter()
    main_from = a if main_from is None else main_from
    clock = _Clock(b - main_from, log)
    done: list[int] = []
    errors: dict[int, float] = {}
    stylized = kept = 0
    stopped, error = "done", ""
    prev_frame = prev_out = None
    try:
        for t, rgb in iter_frames(src, a, b):
            frame = resize_image(rgb, opts.size) if opts.size else rgb
            del rgb
            temporal = prev_out is not None and not independent
            digest = frame_digest(config, frame, prev_frame if temporal else None, prev_out if temporal else None)
            warm = t < main_from
            path = frame_path(plan.frames_dir, t, warm)
            flows = None if prev_frame is None else _flows(frame, prev_frame, flow)
            if frame_record(path) == (config, digest):
                out = load_image(path, max_pixels=None)
                was_kept = True
                seconds, text = None, "kept (its digest matches)"
            else:
                start = wrap = None
                if temporal:
                    start, wrap = _temporal_terms(prev_out, frame, flows, gamma, opts, model)
                prepared = transfer.prepare(frame, styles, opts, model=model, max_pixels=None)
                res = transfer.run(prepared, progress=progress, start=start, wrap=wrap)
                if res.stopped == "interrupted":
                    raise KeyboardInterrupt
                if res.stopped == "non-finite loss":
                    raise NumpynstError(f"frame {t}: the loss became NaN/inf; lower --lr or the weights")
                out = res.image
                try:
                    save_image(path, out, info=ImageInfo(description=f"{_TAG} config={config} frame={digest}"))
                except ImageError as exc:
                    raise _WriteFailed(f"frame {t} not saved: {exc}; the {len(done)} frame(s) before it "
                                       f"are kept in {plan.frames_dir}/ and a re-run resumes") from None
                was_kept = False
                seconds, text = res.seconds, f"{res.iterations} it, {res.seconds:.1f} s, J {res.J_final:.4g}"
            prev_frame, prev_out_before = frame, prev_out
            prev_out = out
            if warm:                    # a chunk's warm-up: written for a resume, not counted
                continue
            kept, stylized = kept + was_kept, stylized + (not was_kept)
            if flows is not None:
                errors[t] = temporal_error(out, prev_out_before, flows[0], flows[2])
                text += f", temporal error {errors[t]:.2f}"
            done.append(t)
            clock.frame(t, text, seconds)
    except KeyboardInterrupt:
        stopped = "interrupted"
    except _WriteFailed as exc:
        stopped, error = "write failed", str(exc)
    except NumpynstError as exc:
        stopped, error = "failed", str(exc)
    video, partial, stopped, error = finish_video(plan, src, main_from, done, stopped, error)
    return VideoResult(plan.frames_dir, video, partial, done, stylized, kept, stopped, error, errors,
                       time.perf_counter() - t0)


def finish_video(plan: Plan, src, first: int, done: list, stopped: str, error: str):
    """Encode the frames ``done`` (consecutive from ``first``) into the video when the run finished, or
    into the partial video when it stopped early. Returns ``(video, partial, stopped, error)``."""
    video = partial = None
    if not done or plan.video is None:
        return video, partial, stopped, error
    from .io import write_video
    files = [frame_path(plan.frames_dir, t) for t in done]
    if stopped == "done":
        try:
            video = write_video(plan.video, files, src.fps, audio_from=src, first_frame=first, overwrite=True)
        except VideoError as exc:
            stopped, error = "write failed", f"{exc}; the frames are kept and a re-run writes it"
        if video is not None and plan.partial is not None and plan.partial.is_file():
            plan.partial.unlink()           # a finished run supersedes its partial video
    else:
        try:
            partial = write_video(plan.partial, files, src.fps, audio_from=src, first_frame=first, overwrite=True)
        except (NumpynstError, KeyboardInterrupt) as exc:        # the frames are what counts
            print(f"numpynst: warning: partial video not written ({exc})", file=sys.stderr)
    return video, partial, stopped, error


def _flows(frame: np.ndarray, prev_frame: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(backward flow t -> t-1, forward flow t-1 -> t, consistency weights)``, float32 on the host."""
    from .flow import compute_flow, consistency_weights
    back = compute_flow(frame, prev_frame, method)
    fwd = compute_flow(prev_frame, frame, method)
    return back, fwd, consistency_weights(back, fwd)


def _temporal_terms(prev_out: np.ndarray, frame: np.ndarray, flows, gamma: float, opts: StylizeOptions, model):
    """The start (the previous result warped) and the ``wrap`` that adds the temporal cost per scale."""
    from ..image import resize_to
    from ..vgg import preprocess
    from .temporal import TemporalObjective, temporal_scale
    from .warp import warp
    back, _, weights = flows
    warped = np.clip(warp(prev_out.astype(np.float32), back), 0, 255)
    xp, dtype = model.xp, model.dtype

    def wrap(obj, hw):
        target = preprocess(resize_to(warped, hw), dtype=dtype, xp=xp)
        w = xp.asarray(_resize_weights(weights, hw), dtype=dtype)
        scale = temporal_scale(resize_to(frame, hw).astype(np.float64)) if opts.weights_mode == "calibrated" else 1.0
        return TemporalObjective(obj, target, w, gamma, scale)
    return warped, wrap
