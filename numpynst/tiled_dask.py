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

**Faults.** A tile's data lives on its worker only, so a worker that dies (SIGKILL, out of memory,
a machine gone) takes its crops and content pieces with it, and Dask cancels the tasks that needed
them. The runner keeps host copies of what it sent (the content pieces for the run, the crops for
the evaluation: the memory the in-process runner uses anyway), so it places the dead worker's tiles
on the living ones, sends their data again and runs the lost tasks there; the sums are still taken
in tile order, so ``J`` and ``dJ/dx`` are the same, bit for bit, as without the fault (tested on
a real local cluster, a worker SIGKILLed in pass 1 and in pass 2). A tile that loses its worker
:data:`LOST_RETRIES` + 1 times, no worker for :data:`NO_WORKER_SECONDS`, or the scheduler gone
(the client no longer connected) raise :class:`numpynst.errors.ClusterLost`: the optimisation ends
with its best image (``stopped == "cluster lost"``) and the run's checkpoint stays, to be continued.

**The same program everywhere.** Before the first tile, every worker is asked for its numpynst
version and the SHA-256 of the weights file at the model's path (:func:`worker_identity`, cached
per process); a worker with another version, other weights or no such file is refused up front
with one line naming it (:class:`numpynst.errors.BackendError`), as is a worker that joins later
(checked when tiles are placed on it).

Shapes and types: as :mod:`numpynst.tiled`; the driver may use NumPy or CuPy (its arrays are
copied to the host for the network, the one place numpynst moves an image between devices inside
the loop, since that is what sending it to another machine means).
"""

from __future__ import annotations

import contextlib
import re
import time
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from .backend import backend_name, to_host
from .model_cache import acquire_model, release_model
from .checks import integer
from .errors import BackendError, ClusterLost, OptionError, short_path
from .tiled import TiledObjective, crop, sum_pieces, tile_gradient, tile_statistics

__all__ = ["DaskTileRunner", "DaskTiledObjective", "check_cluster_options", "cluster_client"]

Array = Any

#: How many times one tile's task may be lost with its worker in one evaluation before giving up.
LOST_RETRIES = 3
#: Seconds to wait for a worker when the cluster has none (a nanny restarting a killed one).
NO_WORKER_SECONDS = 60.0

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


def worker_identity(weights: str) -> dict[str, str]:
    """What a worker computes with: its numpynst version and the SHA-256 of ``weights`` there
    (``"missing: <reason>"`` when it cannot read it). Run on every worker by :class:`DaskTileRunner`."""
    from . import __version__
    from .files import describe
    from .model_cache import weights_digest
    try:
        digest = weights_digest(weights)
    except OSError as exc:
        digest = f"missing: {describe(exc)}"
    return {"numpynst": __version__, "weights": digest}


# --------------------------------------------------------------------------------------------
# the driver
# --------------------------------------------------------------------------------------------

class DaskTileRunner:
    """Tile runner (:class:`numpynst.tiled.LocalTileRunner` describes the protocol) with both
    passes on the workers of ``client``, a ``distributed.Client`` with at least one worker.

    The model must be read from a file (``model.path``): the workers load the same file, backend,
    pooling and dtype (checked: module docstring). The driver's model builds the targets, in
    process. A runner serves one objective (it holds that objective's placement and the futures of
    its content pieces); give each objective its own. ``evaluate`` then returns what the in-process
    objective returns, also when workers die on the way (module docstring, "Faults");
    ``recovered`` counts the tasks run again after their worker was lost.

    ``pass1`` and ``pass2`` are the functions the workers run (:func:`pass1_task`,
    :func:`pass2_task`); a test may put wrappers there (one that kills its worker, say).
    """

    pass1: Callable = staticmethod(pass1_task)
    pass2: Callable = staticmethod(pass2_task)

    def __init__(self, client):
        self.client = client
        self.placement: list[str] = []      # tile i -> address of the worker that runs it
        self._pieces: list = []             # tile i -> future of its content piece, on that worker
        self._pieces_host: list = []        # tile i -> its content piece (host), to send again
        self._crops: list = []              # tile i -> future of this evaluation's crop
        self._crops_host: list = []         # tile i -> this evaluation's crop (host)
        self._checked: set[str] = set()     # workers whose version and weights were checked
        self.recovered = 0

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
        from .model_cache import weights_digest
        self._identity = {"numpynst": worker_identity(self.spec[0])["numpynst"],
                          "weights": weights_digest(self.spec[0])}
        self._check_workers(workers)
        self.placement = [workers[i % len(workers)] for i in range(len(objective.tiles))]
        # the content target's pieces are constant: each goes to its tile's worker once (and again
        # to another worker if that one dies: the host copies stay here)
        self._pieces_host = [np.ascontiguousarray(to_host(p)) for p in objective.content_pieces]
        self._pieces = self._scatter(self._pieces_host)
        return None

    def _check_workers(self, workers) -> None:
        """Refuse (one line) a worker with another numpynst version or other weights at the path."""
        new = [w for w in workers if w not in self._checked]
        if not new:
            return
        found = self.client.run(worker_identity, self.spec[0], workers=new)
        for w, ident in sorted(found.items()):
            if ident["numpynst"] != self._identity["numpynst"]:
                raise BackendError(f"Dask worker {w} runs numpynst {ident['numpynst']}, this process "
                                   f"{self._identity['numpynst']}: tiles need the same program everywhere")
            if ident["weights"] != self._identity["weights"]:
                what = (ident["weights"] if ident["weights"].startswith("missing") else
                        "a different file (its SHA-256 differs)")
                raise BackendError(f"Dask worker {w}: the weights {short_path(self.spec[0])} there are "
                                   f"{what}: tiles need the same weights everywhere")
        self._checked.update(new)

    # ---------------------------------------------------------------- faults
    def _lost(self, why: str) -> ClusterLost:
        return ClusterLost(f"the Dask cluster was lost during an evaluation ({why})")

    def _live_workers(self) -> list[str]:
        """The workers now, waiting up to :data:`NO_WORKER_SECONDS` while there is none."""
        deadline = time.monotonic() + NO_WORKER_SECONDS
        while True:
            if self.client.status != "running":
                raise self._lost(f"scheduler {self.client.scheduler.address} unreachable")
            workers = sorted(self.client.scheduler_info().get("workers", {}))
            if workers:
                return workers
            if time.monotonic() > deadline:
                raise self._lost(f"no worker for {NO_WORKER_SECONDS:g} s")
            time.sleep(0.2)

    def _recover(self) -> None:
        """After a worker was lost: its tiles go to the living workers (round robin), and every
        tile whose crop or content piece is gone gets it again from the host copies."""
        with contextlib.suppress(Exception):
            self.client.scheduler_info()            # the cached view may predate the death
        workers = self._live_workers()
        self._check_workers(workers)
        live = set(workers)
        k = 0
        for i, w in enumerate(self.placement):
            if w not in live:
                self.placement[i] = workers[k % len(workers)]
                k += 1
        for futures, host in ((self._pieces, self._pieces_host), (self._crops, self._crops_host)):
            for i, fut in enumerate(futures):
                if fut is not None and (fut.status != "finished" or self.placement[i] not in live):
                    futures[i] = self.client.scatter([host[i]], workers=[self.placement[i]], hash=False)[0]

    def _result(self, futures: list, i: int, resubmit: Callable[[], Any]) -> Any:
        """``futures[i].result()``, running the task again elsewhere if its worker was lost."""
        import concurrent.futures
        from distributed import KilledWorker
        for attempt in range(LOST_RETRIES + 1):
            try:
                return futures[i].result()
            except (concurrent.futures.CancelledError, KilledWorker) as exc:
                if self.client.status != "running":
                    raise self._lost(f"scheduler {self.client.scheduler.address} unreachable") from None
                if attempt == LOST_RETRIES:
                    raise self._lost(f"tile {i} lost its worker {attempt + 1} times"
                                     + (" and killed it (out of memory?)" if isinstance(exc, KilledWorker) else "")) \
                        from None
                self._recover()
                futures[i] = resubmit()
                self.recovered += 1
            except (OSError, RuntimeError, TimeoutError) as exc:
                if self.client.status == "running":
                    raise
                raise self._lost(f"{type(exc).__name__}: scheduler unreachable") from None
        raise AssertionError("unreachable")

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

    def _guarded(self, step: Callable[[], Any]) -> Any:
        """``step()`` (a scatter), as :class:`ClusterLost` if the scheduler is gone."""
        try:
            return step()
        except (OSError, RuntimeError, TimeoutError) as exc:
            if self.client.status == "running":
                raise
            raise self._lost(f"{type(exc).__name__}: scheduler unreachable") from None

    def statistics(self, objective: TiledObjective, x: Array) -> tuple[dict[str, Array], list]:
        """Pass 1 on the workers: the global Grams (nothing kept for pass 2 here: ``[]``). Each
        crop is sent once, to its tile's worker, for both passes."""
        xp, host = objective.xp, to_host(x)
        self._crops_host = [np.ascontiguousarray(crop(host, t)) for t in objective.tiles]
        self._crops = self._guarded(lambda: self._scatter(self._crops_host))
        statistics = objective.statistics

        def submit(i: int):
            return self._submit(self.pass1, objective, i, statistics)
        futures = self._guarded(lambda: [submit(i) for i in range(len(objective.tiles))])
        with _cancel_on_error(self.client, futures):
            # tile order: the same sums every run
            grams = sum_pieces({n: tuple(xp.asarray(g) for g in p)
                                for n, p in self._result(futures, i, lambda: submit(i)).items()}
                               for i in range(len(futures)))
        return grams, []

    def gradients(self, objective: TiledObjective, x: Array, M: Mapping[str, Array],
                  last: list) -> Iterator[tuple]:
        """Pass 2 on the workers: ``(tile index, dJ/d(crop), J_content part)`` in tile order."""
        xp, o = objective.xp, objective
        m_values = {n: tuple(to_host(m) for m in d) for n, d in M.items()}
        m_host = [self._guarded(lambda: self.client.scatter([m_values], broadcast=True, hash=False)[0])]
        weight = o.alpha / o.scales.content

        def submit(i: int):
            if m_host[0].status != "finished":          # every copy was on workers that died
                m_host[0] = self.client.scatter([m_values], broadcast=True, hash=False)[0]
            return self._submit(self.pass2, o, i, m_host[0], o.content_layer, self._pieces[i],
                                weight, o.content_size, o.statistics)
        futures = self._guarded(lambda: [submit(i) for i in range(len(o.tiles))])
        try:
            with _cancel_on_error(self.client, futures):
                for i in range(len(futures)):
                    g, j = self._result(futures, i, lambda: submit(i))
                    futures[i] = None                   # its result is in hand: let the worker free it
                    yield i, xp.asarray(g), xp.asarray(j, dtype=x.dtype)
        finally:
            self._crops, self._crops_host = [], []      # this evaluation's crops can go


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
