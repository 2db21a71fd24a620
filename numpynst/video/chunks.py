"""Long clips on a Dask cluster: the frame range cut into chunks, each chunk a task, resumable.

With temporal terms frame ``t`` needs the result of frame ``t-1``, so a clip is sequential. It is
cut into chunks of consecutive frames that run side by side on the workers of a Dask cluster
(:mod:`numpynst.batch.cluster`: a local cluster sized to the machine, or ``--scheduler``). Chunk
``k`` covers frames ``[s_k, e_k)``; every chunk but the first starts ``overlap`` frames earlier,
on **warm-up** frames ``[s_k - overlap, s_k)``, stylized like the others (the first of them on its
own, the rest with the temporal terms) and written as ``NNNNN.w.png`` beside the frames, never into
the video. Frame ``s_k`` thus starts from a warped predecessor like every other frame; what remains
at the seam is the difference between chunk ``k``'s warm-up chain and chunk ``k-1``'s last frames,
measured (with the estimated flow) and returned in ``temporal_error`` for the frames ``s_k``.

**Resume.** Each task runs :func:`numpynst.video.run` 's frame loop over its range, which keeps
every frame whose digest matches. A worker that dies mid-chunk (killed, out of memory) loses the
frame in progress only: Dask runs the task again on another worker (``retries``), and it continues
from the frames on disk. A re-run of the command after an interrupt does the same for every chunk.

Tasks get plain data (paths, the options as a dict), so any worker with numpynst, the weights
file and the clip at the same paths can run them; each worker keeps its model loaded between
chunks (:mod:`numpynst.model_cache`).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Callable, NamedTuple

DEFAULT_CHUNK = 24
DEFAULT_OVERLAP = 2


class Chunk(NamedTuple):
    """Frames ``[start, stop)`` written as the result, after warm-up frames ``[warm, start)``."""

    warm: int
    start: int
    stop: int


def plan_chunks(a: int, b: int, chunk: int, overlap: int) -> list[Chunk]:
    """Cut ``[a, b)`` into chunks of ``chunk`` frames (the last may be shorter), each after the first
    preceded by up to ``overlap`` warm-up frames."""
    starts = range(a, b, chunk)
    return [Chunk(max(a, s - overlap) if s > a else s, s, min(s + chunk, b)) for s in starts]


def chunk_task(spec: dict) -> dict:
    """Run one chunk (on a worker); ``spec`` from :func:`_spec`. Returns plain data."""
    from ..model_cache import acquire_model, release_model
    from ..options import StylizeOptions
    from .io import open_source
    from .run import Plan, _loop
    opts = StylizeOptions(**spec["options"])
    src = open_source(spec["source"], (spec["warm"], spec["stop"]), spec["fps"])
    key, model = acquire_model(opts.weights, opts.backend, opts.pooling)
    try:
        r = _loop(src, spec["styles"], opts, model, Plan(Path(spec["frames_dir"]), None, None), spec["warm"],
                  spec["stop"], spec["config"], spec["gamma"], spec["flow"], spec["independent"], False, None,
                  main_from=spec["start"])
    finally:
        release_model(key, model)
    return {"done": r.done, "stylized": r.stylized, "kept": r.kept, "stopped": r.stopped, "error": r.error,
            "temporal_error": {int(k): v for k, v in r.temporal_error.items()}}


def _spec(c: Chunk, src, styles, opts, frames_dir: Path, config: str, gamma: float, flow: str,
          independent: bool) -> dict:
    return {"source": str(src.path), "fps": float(src.fps), "styles": [str(s) for s in styles],
            "options": dataclasses.asdict(opts), "frames_dir": str(frames_dir), "config": config,
            "gamma": gamma, "flow": flow, "independent": independent,
            "warm": c.warm, "start": c.start, "stop": c.stop}


def run_chunked(src, styles, opts, plan, a: int, b: int, config: str, gamma: float, flow: str,
                independent: bool, *, client=None, workers: int | None = None, scheduler: str | None = None,
                chunk: int | None = None, overlap: int = DEFAULT_OVERLAP, retries: int = 2,
                task: Callable[[dict], dict] | None = None, log: Callable[[str], Any] | None = print):
    """Run ``[a, b)`` as chunks on Dask and assemble the result like the sequential loop
    (:class:`numpynst.video.run.VideoResult`). ``client``: an existing ``distributed.Client`` (left
    open); otherwise one is made from ``scheduler`` or a local cluster of ``workers`` processes."""
    import time

    from ..batch.cluster import connect
    from .run import VideoResult, finish_video
    t0 = time.perf_counter()
    own = client is None
    cluster = None
    if own:
        client, cluster = connect(workers=workers, scheduler=scheduler, retries=retries, dashboard=False)
    try:
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        size = chunk or max(overlap + 1, min(DEFAULT_CHUNK, math.ceil((b - a) / n_workers)))
        chunks = plan_chunks(a, b, size, overlap)
        if log is not None:
            log(f"dask: {len(chunks)} chunk(s) of up to {size} frames ({overlap} warm-up frame(s) before "
                f"each seam) on {n_workers} worker(s)")
        futures = {client.submit(task or chunk_task, _spec(c, src, styles, opts, plan.frames_dir, config, gamma,
                                                            flow, independent),
                                 key=f"numpynst-video-{config[:12]}-{c.start}", retries=retries, pure=False): c
                   for c in chunks}
        rows, stopped, error = [], "done", ""
        try:
            from distributed import as_completed
            for fut in as_completed(list(futures)):
                c = futures[fut]
                try:
                    row = fut.result()
                except Exception as exc:            # a task that failed for good (its worker kept dying)
                    from ..checks import first_line
                    row = {"done": [], "stylized": 0, "kept": 0, "stopped": "failed", "temporal_error": {},
                           "error": f"frames {c.start}..{c.stop - 1}: {first_line(exc, with_type=True)}"}
                rows.append(row)
                if row["stopped"] != "done" and stopped == "done":
                    stopped, error = row["stopped"], row["error"]
                if log is not None:
                    log(f"chunk {c.start}..{c.stop - 1}: {row['stylized']} stylized, {row['kept']} kept "
                        f"({len(rows)}/{len(chunks)} chunks)")
        except KeyboardInterrupt:
            client.cancel(list(futures))
            stopped = "interrupted"
    finally:
        if own:
            client.close()
            if cluster is not None:
                cluster.close()
    done = sorted(t for r in rows for t in r["done"])
    errors = {t: e for r in rows for t, e in r["temporal_error"].items()}
    errors.update(seam_errors(src, opts.size, plan.frames_dir,
                              [c.start for c in chunks[1:] if c.start in done and c.start - 1 in done], flow))
    # the video holds the frames from a on without a gap (an interrupt may leave holes further on)
    prefix = []
    for t in range(a, b):
        if t not in done:
            break
        prefix.append(t)
    video, partial, stopped, error = finish_video(plan, src, a, prefix, stopped, error)
    return VideoResult(plan.frames_dir, video, partial, done, sum(r["stylized"] for r in rows),
                       sum(r["kept"] for r in rows), stopped, error, errors, time.perf_counter() - t0)


def seam_errors(src, size: int | None, frames_dir: Path, seams: list[int], flow: str) -> dict[int, float]:
    """Temporal error of each seam frame ``s`` against the final frame ``s-1``: the flow estimated
    between the source frames (at the working ``size``), as the loop measures every other frame."""
    from ..image import load_image, resize_image
    from .io import iter_frames
    from .run import _flows, temporal_error
    out = {}
    for s in seams:
        prev_src, cur_src = (resize_image(f, size) if size else f for _, f in iter_frames(src, s - 1, s + 1))
        back, _, w = _flows(cur_src, prev_src, flow)
        cur, prev = (load_image(frames_dir / f"{t:05d}.png", max_pixels=None) for t in (s, s - 1))
        out[s] = temporal_error(cur, prev, back, w)
    return out
