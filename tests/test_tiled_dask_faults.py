"""Tiles on Dask under faults, on a real local cluster (2 worker processes with nannies):

* a worker SIGKILLed while it runs a tile's pass 1 or pass 2: the tile runs again on a living
  worker and ``J``, ``dJ/dx`` are bit for bit those of an evaluation without the fault;
* a worker with another numpynst version or other weights is refused up front, in one line;
* the scheduler lost (a real ``dask scheduler`` process SIGKILLed mid-run): the run stops with
  ``stopped == "cluster lost"``, its best image, and its checkpoint kept.

The kill is the worker's own: a wrapper around the pass (pickled by value, so the workers can run
a function of this test module) SIGKILLs its process when it wins the removal of a marker file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
import cloudpickle  # noqa: E402  (comes with distributed)

from numpynst import tiled_dask  # noqa: E402
from numpynst.errors import BackendError  # noqa: E402
from numpynst.testing import write_tiny_vgg_h5  # noqa: E402
from numpynst.tiled import TiledObjective  # noqa: E402
from numpynst.tiled_dask import DaskTileRunner  # noqa: E402
from numpynst.vgg import VGG  # noqa: E402

cloudpickle.register_pickle_by_value(sys.modules[__name__])

LAYERS = dict(content_layer="block2_conv2", style_layers={"block1_conv1": 0.5, "block2_conv1": 0.5})


def _die_once(marker: str) -> None:
    """SIGKILL this process if it is the first to remove ``marker`` (only one worker can)."""
    try:
        os.unlink(marker)
    except FileNotFoundError:
        return
    os.kill(os.getpid(), signal.SIGKILL)


def _dying(task, marker: str, victim):
    def run(spec, x_crop, tile, *args):
        if tuple(tile) == tuple(victim):
            _die_once(marker)
        return task(spec, x_crop, tile, *args)
    return run


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    return write_tiny_vgg_h5(tmp_path_factory.mktemp("w") / "tiny.h5")


@pytest.fixture(scope="module")
def client():
    from numpynst.batch.cluster import local_cluster
    cluster = local_cluster(2, 1, dashboard=False)
    c = distributed.Client(cluster)
    c.wait_for_workers(2, timeout=60)
    yield c
    c.close()
    cluster.close()


def _images(hw=(40, 44)):
    rng = np.random.default_rng(1)
    content = rng.normal(0, 50, (1, *hw, 3)).astype(np.float32)
    style = rng.normal(0, 50, (1, 30, 26, 3)).astype(np.float32)
    return content, style, (content + rng.normal(0, 10, content.shape)).astype(np.float32)


@pytest.mark.parametrize("which", ["pass1", "pass2"])
def test_a_worker_killed_during_a_pass_changes_nothing(which, client, weights_file, tmp_path):
    model = VGG.from_h5(weights_file)
    content, style, x = _images()
    steady = TiledObjective(model, content, style, tile=16, runner=DaskTileRunner(client), **LAYERS)
    assert len(steady.tiles) >= 6
    want = steady.evaluate(x)
    runner = DaskTileRunner(client)
    faulty = TiledObjective(model, content, style, tile=16, runner=runner, **LAYERS)
    marker = tmp_path / "die"
    marker.touch()
    victim = faulty.tiles[3]                        # a tile in the middle of the pass
    setattr(runner, which, _dying(getattr(DaskTileRunner, which), str(marker), victim))
    client.wait_for_workers(2, timeout=60)
    got = faulty.evaluate(x)
    assert not marker.exists(), "no worker ran the dying pass"
    assert runner.recovered >= 1                    # the lost tile(s) ran again
    assert got.J.tobytes() == want.J.tobytes()
    assert got.grad.tobytes() == want.grad.tobytes()
    for part in ("content", "style", "tv"):
        assert got.parts[part].tobytes() == want.parts[part].tobytes()
    local = TiledObjective(model, content, style, tile=16, **LAYERS).evaluate(x)
    assert abs(float(got.J) - float(local.J)) <= 1e-5 * abs(float(local.J))
    # and the next evaluation, with the dead worker's tiles placed elsewhere, is the same too
    assert faulty.evaluate(x).grad.tobytes() == want.grad.tobytes()


def _set_on_one_worker(client, fn):
    w = sorted(client.scheduler_info()["workers"])[0]
    client.run(fn, workers=[w])
    return w


def _other_version():
    import numpynst
    numpynst.__version__, numpynst._saved_version = "0.0.0-other", numpynst.__version__


def _own_version():
    import numpynst
    numpynst.__version__ = getattr(numpynst, "_saved_version", numpynst.__version__)


def _other_weights():
    from numpynst import model_cache
    for key in model_cache._DIGESTS:
        model_cache._DIGESTS[key] = "0" * 64          # as if the file at that path held other bytes


def _forget_weights():
    from numpynst import model_cache
    model_cache._DIGESTS.clear()


def test_a_worker_with_another_version_or_other_weights_is_refused_up_front(client, weights_file):
    model = VGG.from_h5(weights_file)
    content, style, _ = _images()
    TiledObjective(model, content, style, tile=16, runner=DaskTileRunner(client), **LAYERS)   # fills the caches
    w = _set_on_one_worker(client, _other_version)
    try:
        with pytest.raises(BackendError) as err:
            TiledObjective(model, content, style, tile=16, runner=DaskTileRunner(client), **LAYERS)
        text = str(err.value)
        assert "\n" not in text and w in text and "numpynst 0.0.0-other" in text, text
    finally:
        client.run(_own_version)
    w = _set_on_one_worker(client, _other_weights)
    try:
        with pytest.raises(BackendError) as err:
            TiledObjective(model, content, style, tile=16, runner=DaskTileRunner(client), **LAYERS)
        assert w in str(err.value) and "SHA-256 differs" in str(err.value), str(err.value)
    finally:
        client.run(_forget_weights)


def test_a_worker_without_the_weights_file_is_refused_naming_it(weights_file):
    import numpynst
    ident = tiled_dask.worker_identity(str(weights_file.with_name("nowhere.h5")))
    assert ident == {"numpynst": numpynst.__version__, "weights": "missing: No such file or directory"}

    class Client:                                   # what client.run answers for such a worker
        def run(self, fn, *args, workers):
            return {w: ident for w in workers}
    runner = DaskTileRunner(Client())
    runner.spec = (str(weights_file), "numpy", "max", "float32")
    runner._identity = tiled_dask.worker_identity(str(weights_file))
    with pytest.raises(BackendError) as err:
        runner._check_workers(["tcp://10.0.0.7:4000"])
    assert str(err.value) == (f"Dask worker tcp://10.0.0.7:4000: the weights {weights_file} there are missing: "
                              f"No such file or directory: tiles need the same weights everywhere")


def test_the_scheduler_lost_stops_the_run_with_its_best_image_and_checkpoint(weights_file, tmp_path):
    from numpynst import transfer
    from PIL import Image
    rng = np.random.default_rng(2)
    Image.fromarray(rng.integers(0, 256, (40, 44, 3), dtype=np.uint8)).save(tmp_path / "c.png")
    Image.fromarray(rng.integers(0, 256, (30, 26, 3), dtype=np.uint8)).save(tmp_path / "s.png")
    sf = tmp_path / "scheduler.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    sched = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--port", "0",
                              "--no-dashboard", "--scheduler-file", str(sf)], **quiet)
    worker = None
    try:
        deadline = time.monotonic() + 60
        while not sf.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file",
                                   str(sf), "--nthreads", "1", "--no-nanny", "--no-dashboard"], **quiet)
        import dask
        with dask.config.set({"distributed.comm.timeouts.connect": "3s"}):
            c = distributed.Client(scheduler_file=str(sf), timeout=5)     # also how long a lost one is awaited
        c.wait_for_workers(1, timeout=60)
        ck = tmp_path / "o.png.checkpoint.npz"

        def kill_scheduler(p):
            if p.iteration == 4:
                sched.send_signal(signal.SIGKILL)
                sched.wait()
        result = transfer.stylize(tmp_path / "c.png", tmp_path / "s.png", weights=weights_file, tile=16,
                                  iterations=12, tol=None, client=c, checkpoint=ck, checkpoint_every=0,
                                  callback=kill_scheduler, **LAYERS)
        assert result.stopped == "cluster lost" and "scheduler" in result.note and "\n" not in result.note
        assert result.iterations == 4 and result.image.shape == (40, 44, 3)
        assert np.isfinite(result.image_float).all()
        assert ck.exists()                            # kept: the same command continues it
        c.close(timeout=2)
    finally:
        for p in (worker, sched):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()


def test_the_cli_says_so_in_one_line_and_keeps_the_picture(weights_file, tmp_path, capsys, monkeypatch):
    """The command's side of a lost cluster: exit 1, one line, the best image written, the
    checkpoint kept and named (the loss itself is simulated: the test above makes it real)."""
    from PIL import Image
    from numpynst.cli import main
    from numpynst.errors import ClusterLost
    rng = np.random.default_rng(2)
    Image.fromarray(rng.integers(0, 256, (40, 44, 3), dtype=np.uint8)).save(tmp_path / "c.png")
    Image.fromarray(rng.integers(0, 256, (30, 26, 3), dtype=np.uint8)).save(tmp_path / "s.png")
    real = tiled_dask.TiledObjective.evaluate
    calls = []

    def evaluate(self, x):
        calls.append(1)
        if len(calls) == 6:
            raise ClusterLost("the Dask cluster was lost during an evaluation (scheduler tcp://x:1 unreachable)")
        return real(self, x)
    monkeypatch.setattr(tiled_dask.TiledObjective, "evaluate", evaluate)
    out = tmp_path / "o.png"
    code = main(["stylize", str(tmp_path / "c.png"), str(tmp_path / "s.png"), "-o", str(out), "--weights",
                 str(weights_file), "--tile", "16", "--content-layer", "block2_conv2", "--style-layers",
                 "block1_conv1,block2_conv1", "--iterations", "10", "--checkpoint-every", "0", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith("numpynst: error: the Dask cluster was lost") and "checkpoint" in err[0], err
    assert out.exists() and (tmp_path / "o.png.checkpoint.npz").exists()
