"""Exact tiles on Dask workers: one big picture computed by several processes or machines.

:class:`numpynst.tiled.TiledObjective` evaluates ``J(x)`` and ``dJ/dx`` in two passes over tiles
(its docstring derives why that is exact). Within a pass the tiles are independent: pass 1 needs
only a crop's pixels, pass 2 the crop and the global ``M^l = dJ/dG^l``. So they can run anywhere
the model is loaded. :class:`DaskTileRunner` is the tile runner that runs both passes on Dask
workers::

    TiledObjective(model, content, style, tile=..., runner=DaskTileRunner(client), **options)

(:func:`DaskTiledObjective` spells the same; ``objective.with_runner(DaskTileRunner(client))``
moves an objective whose targets are already built). The driver keeps ``x``, sums, and runs the
optimizer::

    driver                                    worker of tile i (keeps VGG loaded)
    crop_i = x[tile i + halo]  ── scatter ──►  crop_i
                                              pass 1: P_i^l = sum_{p in tile i} a_p a_p^T
    G^l = sum_i P_i^l          ◄── C x C ───
    M^l = dJ/dG^l  ─── broadcast, once per worker ──►
                                              pass 2: dJ/d(crop_i), J_content part
    dJ/dx += dJ/d(crop_i)      ◄── crop ────
    + TV (1-pixel halo, on the driver: O(pixels), no network)

Each tile is pinned to one worker (round robin over the workers' sorted addresses), so its crop
is sent once per evaluation and used by both passes there, and its piece of the content target
(constant) is sent once for the whole run. The driver collects results in tile order, so the sums
are the same from run to run (floating-point addition is not associative).

**Models on workers.** A task takes a model from the worker's pool
(:func:`numpynst.model_cache.acquire_model`, keyed by weights file, backend, pooling, dtype) and
gives it back, so each worker process reads the weights once for the whole run. The driver's model
must therefore come from a file (``model.path``) that every worker can open at the same path.

**When it pays.** Per tile and evaluation a worker runs two forwards and one backward of VGG over
the crop: ~10 s on one core of this project's 2-core CPU for a 512^2 tile with its halo. The network carries, in float32, the crop out and
its gradient back (``2 x 3 x 4`` bytes per crop pixel: 8 MiB for a 592^2 crop), the tile's Gram
pieces back (``4 sum_l C_l^2`` bytes: 2.3 MiB for the five default style layers) and ``M`` out (the
same, once per worker). Through a local cluster on a machine at load 15-30 the round trips took
0.2-1 s per tile against 18-46 s of the tile's compute; between machines at 1 Gbit/s the bytes
alone take ~0.1 s per tile: small against a CPU tile's compute, not against a GPU's. The fixed
latency of each evaluation's chain of messages (scatter, tasks, broadcast, tasks) is what a small
picture pays for going through Dask.
Measured figures: benchmarks/README.md, "Print size".

Shapes and types: as :mod:`numpynst.tiled`; the driver may use NumPy or CuPy (its arrays are
copied to the host for the network, the one place numpynst moves an image between devices inside
the loop, since that is what sending it to another machine means).
"""

from __future__ import annotations

import contextlib
import re
from typing import Any, Iterator, Mapping

import numpy as np

from .backend import backend_name, to_host
from .model_cache import acquire_model, release_model
from .checks import integer
from .errors import BackendError, OptionError
from .tiled import TiledObjective, crop, sum_pieces, tile_gradient, tile_statistics

__all__ = ["DaskTileRunner", "DaskTiledObjective", "check_cluster_options", "cluster_client"]

Array = Any

# scheme://host[:port], the form distributed.Client accepts for a scheduler (tcp, tls, ws, ...)
_ADDRESS = re.compile(r"[a-z][a-z0-9+.-]*://(\[[0-9a-fA-F:.]+\]|[^\s/:\[\]]+)(:[0-9]{1,5})?/?")


# --------------------------------------------------------------------------------------------
# what runs on a worker
# --------------------------------------------------------------------------------------------

def pass1_task(spec: tuple, x_crop: np.ndarray, tile, style_layers: Any) -> dict[str, tuple]:
    """Pass 1 of one tile on a worker: ``{layer: interior pieces}`` (tuples of arrays, ``(G,)`` for
    the Gram statistic) on the host. ``style_layers``: ``{layer: style statistic}`` or names (Gram).

    ``spec = (weights file, backend, pooling, dtype name)`` picks the worker's cached model.
    """
    key, model = acquire_model(*spec)
    try:
        pieces, _ = tile_statistics(model, model.xp.asarray(x_crop), tile, style_layers)
        return {n: tuple(to_host(g) for g in p) for n, p in pieces.items()}
    finally:
        release_model(key, model)


def pass2_task(spec: tuple, x_crop: np.ndarray, tile, style_grads: Mapping[str, tuple],
               content_layer: str, content_piece: np.ndarray, content_weight: float,
               content_size: int, statistics: Any = None) -> tuple[np.ndarray, float]:
    """Pass 2 of one tile on a worker: ``(dJ/d(crop) (1, ch, cw, 3), J_content part)`` on the host
    (:func:`numpynst.tiled.tile_gradient`; ``style_grads`` ``{layer: dJ/d(pieces)}``)."""
    key, model = acquire_model(*spec)
    try:
        xp = model.xp
        g, j = tile_gradient(model, xp.asarray(x_crop), tile,
                             {n: tuple(xp.asarray(m) for m in d) for n, d in style_grads.items()},
                             content_layer, xp.asarray(content_piece), content_weight, content_size,
                             statistics=statistics)
        return to_host(g), float(j)         # the crop's tape was the task's own: gone with it
    finally:
        release_model(key, model)


# --------------------------------------------------------------------------------------------
# the driver
# --------------------------------------------------------------------------------------------

class DaskTileRunner:
    """Tile runner (:class:`numpynst.tiled.LocalTileRunner` describes the protocol) with both
    passes on the workers of ``client``, a ``distributed.Client`` with at least one worker.

    The model must be read from a file (``model.path``): the workers load the same file, backend,
    pooling and dtype. The driver's model builds the targets, in process. A runner serves one
    objective (it holds that objective's placement and the futures of its content pieces); give
    each objective its own. ``evaluate`` then returns what the in-process objective returns.
    """

    def __init__(self, client):
        self.client = client
        self.placement: list[str] = []      # tile i -> address of the worker that runs it
        self._pieces: list = []             # tile i -> future of its content piece, on that worker
        self._crops: list = []              # tile i -> future of this evaluation's crop

    def check(self, model) -> None:
        _check_model(model)

    def start(self, objective: TiledObjective) -> None:
        """Place the tiles on the workers (round robin over their sorted addresses) and send each
        its piece of the content target, once for the run; the driver keeps none (``None``)."""
        if self.placement:
            raise RuntimeError("this DaskTileRunner already serves an objective; make one per objective")
        workers = sorted(self.client.scheduler_info().get("workers", {}))
        if not workers:
            raise BackendError("the Dask cluster has no workers")
        model = objective.model
        self.spec = (str(model.path), backend_name(model.xp), model.pooling, np.dtype(model.dtype).name)
        self.placement = [workers[i % len(workers)] for i in range(len(objective.tiles))]
        # the content target's pieces are constant: each goes to its tile's worker once
        self._pieces = self._scatter([to_host(p) for p in objective.content_pieces])
        return None

    def _scatter(self, arrays: list) -> list:
        """Futures of ``arrays[i]`` held on tile ``i``'s worker (one scatter call per worker)."""
        out: list = [None] * len(arrays)
        for w in dict.fromkeys(self.placement):
            idx = [i for i, p in enumerate(self.placement) if p == w]
            for i, f in zip(idx, self.client.scatter([arrays[i] for i in idx], workers=[w], hash=False)):
                out[i] = f
        return out

    def _submit(self, fn, objective: TiledObjective, i: int, *args) -> Any:
        return self.client.submit(fn, self.spec, self._crops[i], objective.tiles[i], *args,
                                  workers=[self.placement[i]], allow_other_workers=True, pure=False)

    def statistics(self, objective: TiledObjective, x: Array) -> tuple[dict[str, Array], list]:
        """Pass 1 on the workers: the global Grams (nothing kept for pass 2 here: ``[]``). Each
        crop is sent once, to its tile's worker, for both passes."""
        xp, host = objective.xp, to_host(x)
        self._crops = self._scatter([np.ascontiguousarray(crop(host, t)) for t in objective.tiles])
        futures = [self._submit(pass1_task, objective, i, objective.statistics)
                   for i in range(len(objective.tiles))]
        with _cancel_on_error(self.client, futures):
            # tile order: the same sums every run
            grams = sum_pieces({n: tuple(xp.asarray(g) for g in p) for n, p in f.result().items()}
                               for f in futures)
        return grams, []

    def gradients(self, objective: TiledObjective, x: Array, M: Mapping[str, Array],
                  last: list) -> Iterator[tuple]:
        """Pass 2 on the workers: ``(tile index, dJ/d(crop), J_content part)`` in tile order."""
        xp, o = objective.xp, objective
        m_host = self.client.scatter([{n: tuple(to_host(m) for m in d) for n, d in M.items()}],
                                     broadcast=True, hash=False)[0]
        weight = o.alpha / o.scales.content
        futures = [self._submit(pass2_task, o, i, m_host, o.content_layer, self._pieces[i],
                                weight, o.content_size, o.statistics) for i in range(len(o.tiles))]
        try:
            with _cancel_on_error(self.client, futures):
                for i, f in enumerate(futures):
                    g, j = f.result()
                    futures[i] = None                   # its result is in hand: let the worker free it
                    yield i, xp.asarray(g), xp.asarray(j, dtype=x.dtype)
        finally:
            self._crops = []                            # this evaluation's crops can go


def DaskTiledObjective(model, content: Array, style: Any, *, client, tile, **options: Any) -> TiledObjective:
    """``TiledObjective(model, content, style, tile=tile, runner=DaskTileRunner(client), **options)``:
    :class:`~numpynst.tiled.TiledObjective` with both passes on the workers of ``client``."""
    return TiledObjective(model, content, style, tile=tile, runner=DaskTileRunner(client), **options)


def _check_model(model) -> None:
    if getattr(model, "path", None) is None:
        raise OptionError("tiles on Dask workers need a model read from a weights file "
                          "(VGG.from_h5): the workers load the same file")


@contextlib.contextmanager
def _cancel_on_error(client, futures: list):
    """Cancel the tasks still running when the driver stops waiting (an error, Ctrl-C)."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            client.cancel([f for f in futures if f is not None])
        raise


# --------------------------------------------------------------------------------------------
# the command line: --workers N | --scheduler URL
# --------------------------------------------------------------------------------------------

def check_cluster_options(workers: Any, scheduler: Any) -> None:
    """One-line :class:`OptionError` for ``--workers``/``--scheduler`` values, before any work."""
    if workers is not None and scheduler is not None:
        raise OptionError("--workers cannot be combined with --scheduler (the cluster has its own workers)")
    if workers is not None:
        integer("--workers", workers, minimum=1)
    if scheduler is not None and not (isinstance(scheduler, str) and _ADDRESS.fullmatch(scheduler)):
        raise OptionError(f"--scheduler {scheduler!r} is not a scheduler address such as "
                          f"tcp://host:8786")
    if workers is not None or scheduler is not None:
        from .batch.cluster import require_dask
        require_dask()


@contextlib.contextmanager
def cluster_client(workers: int | None, scheduler: str | None):
    """``None`` without either option; else a Dask client on a local cluster of ``workers``
    processes or on ``scheduler`` (:func:`numpynst.batch.cluster.connect`), closed on exit."""
    if workers is None and scheduler is None:
        yield None
        return
    from .batch.cluster import connect
    client, cluster = connect(workers=workers, scheduler=scheduler, dashboard=False)
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            client.close()
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close()
