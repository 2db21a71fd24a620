"""Frames in and out: a video file (PyAV) or a folder of numbered pictures, checked up front.

**Reading.** :func:`open_source` inspects the input once, before any work: a video file is opened
with PyAV (FFmpeg's libraries inside the wheel) and every frame of the selected range is decoded
once and thrown away, keeping only its timestamp, so a corrupt or truncated file, a clip with no
frames, or a variable frame rate is a one-line :class:`~numpynst.errors.VideoError` at the start,
not an hour in. A folder is read as numbered pictures (``frame_0001.png``, ``00002.jpg``, ...: one
name pattern, ordered by the number), each header checked for its size. Huge inputs are refused
before anything is decoded: more than :data:`MAX_FRAMES` frames selected, or a frame of more than
:data:`MAX_SOURCE_PIXELS`. :func:`iter_frames` then streams the frames one at a time as RGB
``uint8 (H, W, 3)``; nothing holds the clip.

**Writing.** :func:`write_video` encodes numbered PNG frames into a video of the same frame rate
(H.264 in ``.mp4``/``.mov``/``.mkv``, VP9 in ``.webm``, MPEG-4 part 2 in ``.avi``), copies the
audio stream of the source (the part that goes with the selected frames) when there is one and the
container takes it, and places the file atomically (:mod:`numpynst.files`) after decoding it back
and counting its frames.
"""

from __future__ import annotations

import os
import re
import statistics
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np

from ..checks import first_line
from ..errors import ImageError, VideoError, short_path
from ..files import atomic_path, describe

#: Containers written, and the video encoder used in each.
VIDEO_ENCODERS = {".mp4": "libx264", ".m4v": "libx264", ".mov": "libx264", ".mkv": "libx264",
                  ".webm": "libvpx-vp9", ".avi": "mpeg4"}
VIDEO_SUFFIXES = tuple(VIDEO_ENCODERS)
#: Suffixes of frames read from a folder.
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
#: Most frames one run takes (an hour at 25 fps): more is a typo or needs --frames, not a plan.
MAX_FRAMES = 90_000
#: Largest source frame decoded (8K UHD is 33 Mpx): a bigger frame is refused before decoding.
MAX_SOURCE_PIXELS = 8192 * 8192
#: Frame intervals that differ from their median by more than this fraction: variable frame rate.
VFR_TOLERANCE = 0.1
DEFAULT_FPS = Fraction(25)
INSTALL_HINT = 'pip install "numpynst[video]"'
_NUMBERED = re.compile(r"^(.*?)(\d+)$")


def require_av():
    """The ``av`` module (PyAV), or a one-line :class:`VideoError` saying how to install it."""
    try:
        import av
    except ImportError:
        raise VideoError(f"reading and writing video needs PyAV, which is not installed: {INSTALL_HINT}") from None
    return av


class Source(NamedTuple):
    """A checked input. ``kind``: ``"video"`` or ``"frames"``; ``n_frames`` in the file or folder;
    ``fps`` as a Fraction; ``width``, ``height`` of the frames; ``files``: the folder's frames in
    order (empty for a video); ``audio``: the video holds an audio stream; ``times``: each decoded
    frame's time in seconds (the audio is cut from the first chosen frame's)."""

    path: Path
    kind: str
    n_frames: int
    fps: Fraction
    width: int
    height: int
    files: tuple = ()
    audio: bool = False
    times: tuple = ()


def parse_range(text: Any, n: int | None = None) -> tuple[int, int | None]:
    """``"A:B"`` (either side may be empty) as ``(A, B)``: frames A..B-1, 0-based, B None = to the end.
    Checked against ``n`` frames when given; :class:`~numpynst.errors.OptionError` naming --frames."""
    from ..errors import OptionError
    if text is None:
        return 0, n
    m = re.fullmatch(r"\s*(\d*)\s*:\s*(\d*)\s*", str(text))
    if not m:
        raise OptionError(f"--frames must look like A:B (frames A to B-1, either side may be empty), got {text!r}")
    a = int(m.group(1)) if m.group(1) else 0
    b = int(m.group(2)) if m.group(2) else n
    if b is not None and b <= a:
        raise OptionError(f"--frames {text}: selects no frame (B must be greater than A)")
    if n is not None:
        if a >= n:
            raise OptionError(f"--frames {text}: the input has only {n} frame(s) (0..{n - 1})")
        b = min(b, n)
    return a, b


def _too_big(path: Path, w: int, h: int) -> None:
    if w * h > MAX_SOURCE_PIXELS:
        raise VideoError(f"{short_path(path)}: frames of {w}x{h} pixels are more than the {MAX_SOURCE_PIXELS} this "
                         f"command decodes; scale the clip down first (e.g. ffmpeg -vf scale=1920:-2)")


def _check_count(path: Path, n: int, a: int, b: int | None) -> None:
    selected = (n if b is None else min(b, n)) - a
    if selected > MAX_FRAMES:
        raise VideoError(f"{short_path(path)}: {selected} frames selected, more than {MAX_FRAMES}; choose a range "
                         f"with --frames A:B")


def open_source(path: str | os.PathLike, frames: tuple[int, int | None] = (0, None),
                fps: Fraction | float | None = None) -> Source:
    """Check the input ``path`` (a video file or a folder of numbered frames) as the module says.

    ``frames``: the ``(A, B)`` range to check (a video is decoded up to B only). ``fps``: the rate of
    a folder's frames (default 25); a video's own rate is used for a file.
    """
    p = Path(os.fspath(path)).expanduser()
    if p.is_dir():
        return _open_folder(p, frames, Fraction(fps).limit_denominator(1001) if fps else DEFAULT_FPS)
    if not p.exists():
        raise VideoError(f"input {short_path(p)}: no such file or folder")
    from ..files import regular_file
    regular_file(p, "input", error=VideoError)
    return _open_video(p, frames)


def _open_folder(p: Path, frames: tuple[int, int | None], fps: Fraction) -> Source:
    from PIL import Image, UnidentifiedImageError
    groups: dict[tuple[str, str], list[tuple[int, Path]]] = {}
    for f in p.iterdir():
        m = _NUMBERED.match(f.stem)
        if f.suffix.lower() in FRAME_SUFFIXES and m and f.is_file():
            groups.setdefault((m.group(1), f.suffix.lower()), []).append((int(m.group(2)), f))
    if not groups:
        raise VideoError(f"input folder {short_path(p)} holds no numbered frames (such as 00001.png); zero frames")
    if len(groups) > 1:
        names = ", ".join(sorted(f"{pre}N{suf}" for pre, suf in groups))
        raise VideoError(f"input folder {short_path(p)} mixes several frame name patterns ({names}); keep one")
    files = tuple(f for _, f in sorted(next(iter(groups.values()))))
    a, b = frames
    _check_count(p, len(files), a, b)
    if a >= len(files):
        from ..errors import OptionError
        raise OptionError(f"--frames {a}:{'' if b is None else b}: the input has only {len(files)} frame(s)")
    size = None
    for f in files[a:b]:
        try:
            with Image.open(f) as im:
                s = im.size
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise VideoError(f"frame {short_path(f)}: cannot read it ({first_line(exc)})") from None
        _too_big(f, *s)
        if size is None:
            size = s
        elif s != size:
            raise VideoError(f"frame {short_path(f)} is {s[0]}x{s[1]}, the frames before it {size[0]}x{size[1]}; "
                             f"all frames must have one size")
    return Source(p, "frames", len(files), fps, size[0], size[1], files)


def _av_error(av) -> tuple[type[BaseException], ...]:
    return (av.error.FFmpegError, OSError, ValueError, EOFError)


def _why(exc: BaseException) -> str:
    """FFmpeg's reason without PyAV's ``[Errno N]`` prefix and the repeated file name."""
    return getattr(exc, "strerror", None) or first_line(exc)


def _open_video(p: Path, frames: tuple[int, int | None]) -> Source:
    av = require_av()
    a, b = frames
    try:
        container = av.open(str(p))
    except _av_error(av) as exc:
        raise VideoError(f"input {short_path(p)}: not a video, or corrupt ({_why(exc)})") from None
    with container:
        if not container.streams.video:
            raise VideoError(f"input {short_path(p)}: holds no video stream; zero frames")
        stream = container.streams.video[0]
        w, h = stream.codec_context.width, stream.codec_context.height
        _too_big(p, w, h)
        declared = int(stream.frames or 0)
        if declared:
            _check_count(p, declared, a, b)
        stream.thread_type = "AUTO"
        times: list[float] = []
        try:
            for frame in container.decode(stream):
                if frame.time is not None:
                    times.append(float(frame.time))
                else:
                    times.append(float("nan"))
                if len(times) > MAX_FRAMES + a and b is None:
                    _check_count(p, len(times), a, b)
                if b is not None and len(times) >= b:
                    break
        except _av_error(av) as exc:
            raise VideoError(f"input {short_path(p)}: corrupt or truncated after frame {len(times)} "
                             f"({_why(exc)})") from None
        audio = bool(container.streams.audio)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        # the length the header promises for the video: its stream's, or the file's when video is all
        span = (float(stream.duration * stream.time_base) if stream.duration and stream.time_base else
                container.duration / 1e6 if container.duration and not audio else None)
    n = len(times)
    if n == 0:
        raise VideoError(f"input {short_path(p)}: holds no decodable frame; zero frames")
    if declared and n < declared and (b is None or n < b):
        raise VideoError(f"input {short_path(p)}: truncated or corrupt: the stream declares {declared} frames, "
                         f"only {n} decode")
    if a >= n:
        from ..errors import OptionError
        raise OptionError(f"--frames {a}:{'' if b is None else b}: the input has only {n} frame(s)")
    fps = _constant_rate(p, times, rate)
    ok = [t for t in times if np.isfinite(t)]
    if b is None and span and ok and max(ok) + 2.5 / float(fps) < span:
        raise VideoError(f"input {short_path(p)}: truncated or corrupt: its header promises {span:.2f} s of video, "
                         f"only {max(ok) + 1 / float(fps):.2f} s ({n} frames) decode")
    return Source(p, "video", n, fps, w, h, (), audio, tuple(times))


def _constant_rate(p: Path, times: Sequence[float], rate) -> Fraction:
    """The clip's frame rate, or :class:`VideoError` when its frame intervals vary (VFR)."""
    t = sorted(x for x in times if np.isfinite(x))
    gaps = np.diff(t)
    if len(gaps) >= 2:
        med = statistics.median(gaps)
        if med <= 0 or np.max(np.abs(gaps - med)) > VFR_TOLERANCE * med:
            raise VideoError(f"input {short_path(p)}: variable frame rate (frame intervals from {1000 * gaps.min():.1f} "
                             f"to {1000 * gaps.max():.1f} ms); convert it to a constant rate first, "
                             f"e.g. ffmpeg -i IN -fps_mode cfr -r 25 OUT.mp4")
        if not rate:
            rate = Fraction(1 / med).limit_denominator(1001)
    return Fraction(rate) if rate else DEFAULT_FPS


def iter_frames(src: Source, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """``(index, RGB uint8 (H, W, 3))`` for frames ``start..stop-1``, one at a time."""
    stop = src.n_frames if stop is None else min(stop, src.n_frames)
    if src.kind == "frames":
        from ..image import load_image
        for i in range(start, stop):
            try:
                yield i, load_image(src.files[i], max_pixels=MAX_SOURCE_PIXELS)
            except ImageError as exc:
                raise VideoError(str(exc)) from None
        return
    av = require_av()
    try:
        with av.open(str(src.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for i, frame in enumerate(container.decode(stream)):
                if i >= stop:
                    break
                if i >= start:
                    yield i, frame.to_ndarray(format="rgb24")
    except _av_error(av) as exc:
        raise VideoError(f"input {short_path(src.path)}: cannot decode ({_why(exc)})") from None


def output_kind(path: str | os.PathLike) -> str:
    """``"video"`` for a known video suffix, ``"frames"`` for a folder (a name with no such suffix);
    an image suffix is refused (one picture cannot hold a clip)."""
    from ..errors import OptionError
    from ..image import IMAGE_SUFFIXES
    suffix = Path(os.fspath(path)).suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return "video"
    if suffix in IMAGE_SUFFIXES:
        raise OptionError(f"--output {short_path(path)}: one picture cannot hold a clip; give a video "
                          f"({', '.join(VIDEO_SUFFIXES)}) or a folder for numbered PNG frames")
    return "frames"


def _even(rgb: np.ndarray) -> np.ndarray:
    """Pad to even width and height by repeating the last row/column (4:2:0 chroma needs even sizes)."""
    h, w = rgb.shape[:2]
    return np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge") if (h % 2 or w % 2) else rgb


def write_video(path: str | os.PathLike, frame_files: Sequence[Path], fps: Fraction, *,
                audio_from: Source | None = None, first_frame: int = 0, overwrite: bool = False) -> Path:
    """Encode ``frame_files`` (PNG, in order) into ``path`` at ``fps``, all or nothing.

    ``audio_from``: a video source whose audio is copied, from the time of frame ``first_frame``
    for as long as the frames last (no re-encoding; skipped with a warning where the container does
    not take that codec). The file is decoded back and its frames counted before it takes the name.
    """
    av = require_av()
    from ..image import load_image
    target = Path(os.fspath(path)).expanduser()
    encoder = VIDEO_ENCODERS[target.suffix.lower()]
    if not frame_files:
        raise VideoError(f"{target}: no frame to write")

    def writer(tmp: Path) -> None:
        first = _even(load_image(frame_files[0], max_pixels=None))
        with av.open(str(tmp), "w") as out:
            vs = out.add_stream(encoder, rate=fps)
            vs.width, vs.height = first.shape[1], first.shape[0]
            vs.pix_fmt = "yuv420p"
            if encoder == "libx264":
                vs.options = {"crf": "18", "preset": "medium"}
            elif encoder == "libvpx-vp9":
                vs.options = {"crf": "24", "b": "0"}
            else:
                vs.bit_rate = 8_000_000
            # streams are declared before the first packet (the header lists them)
            audio = _AudioCopy(av, out, audio_from, first_frame, len(frame_files), fps) \
                if audio_from is not None and audio_from.audio else None
            try:
                for f in frame_files:
                    rgb = first if f is frame_files[0] else _even(load_image(f, max_pixels=None))
                    for packet in vs.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                        out.mux(packet)
                for packet in vs.encode():
                    out.mux(packet)
                if audio is not None:
                    audio.copy()
            finally:
                if audio is not None:
                    audio.close()

    def verify(tmp: Path) -> None:
        with av.open(str(tmp)) as check:
            n = sum(1 for _ in check.decode(video=0))
        if n != len(frame_files):
            raise OSError(5, f"wrote {len(frame_files)} frames, {n} decode back")

    try:
        with atomic_path(target, overwrite=overwrite, verify=verify) as tmp:
            writer(tmp)
    except _av_error(av) as exc:
        raise VideoError(f"cannot write video {target}: {_why(exc) if isinstance(exc, av.error.FFmpegError) else describe(exc)}") from None
    return target


class _AudioCopy:
    """The source's first audio stream, muxed into ``out`` without re-encoding: cut to the frames'
    time span and shifted to start at 0. Where the container refuses the codec, a warning and no audio."""

    def __init__(self, av, out, src: Source, first_frame: int, n_frames: int, fps: Fraction):
        self.av, self.out, self.inp, self.a_out = av, out, None, None
        t = src.times[first_frame] if first_frame < len(src.times) else float("nan")
        self.t0 = t if np.isfinite(t) else first_frame / float(fps)
        self.t1 = self.t0 + n_frames / float(fps)
        try:
            self.inp = av.open(str(src.path))
            self.a_in = self.inp.streams.audio[0]
            self.a_out = out.add_stream_from_template(self.a_in)
        except (av.error.FFmpegError, ValueError) as exc:
            self._warn(exc)

    def _warn(self, exc: BaseException) -> None:
        import sys
        print(f"numpynst: warning: audio not copied ({first_line(exc)})", file=sys.stderr)
        self.a_out = None

    def copy(self) -> None:
        if self.a_out is None:
            return
        tb = self.a_in.time_base
        shift = int(round(self.t0 / tb)) if tb else 0
        try:
            for packet in self.inp.demux(self.a_in):
                if packet.pts is None or packet.dts is None:
                    continue
                t = float(packet.pts * tb)
                if t < self.t0 or t >= self.t1:
                    continue
                packet.pts -= shift
                packet.dts -= shift
                packet.stream = self.a_out
                self.out.mux(packet)
        except (self.av.error.FFmpegError, ValueError) as exc:
            self._warn(exc)

    def close(self) -> None:
        if self.inp is not None:
            self.inp.close()
