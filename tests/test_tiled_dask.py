"""Tiles on Dask workers: the same J and dJ/dx as the in-process tiled objective (and as the whole
image), on a real 2-process local cluster; models loaded once per worker; bad cluster options.

Float64 and a tiny VGG read from an HDF5 file (the workers load the same file), odd image sizes,
several tiles per worker.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("distributed")

from numpynst.cli import main
from numpynst.errors import OptionError
from numpynst.tiled import TiledObjective
from numpynst.tiled_dask import DaskTileRunner, DaskTiledObjective, check_cluster_options
from numpynst.testing import tiny_vgg, write_tiny_vgg_h5
from numpynst.transfer import Objective, stylize
from numpynst.vgg import VGG

LAYERS = dict(content_layer="block2_conv2",
              style_layers={"block1_conv1": 0.5, "block2_conv1": 0.3, "block3_conv1": 0.2})
WEIGHTS = dict(alpha=1.0, beta=1e-2, tv_weight=0.5)


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    return write_tiny_vgg_h5(tmp_path_factory.mktemp("w") / "tiny64.h5", dtype=np.float64)


@pytest.fixture(scope="module")
def client():
    from numpynst.batch.cluster import local_cluster
    from distributed import Client
    cluster = local_cluster(2, 1, dashboard=False)
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


def _images(seed=0, hw=(37, 45), style_hw=(30, 26)):
    rng = np.random.default_rng(seed)
    content = rng.normal(0, 50, (1, *hw, 3))
    style = rng.normal(0, 50, (1, *style_hw, 3))
    x = content + rng.normal(0, 10, content.shape)
    return content, style, x


def _rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("tile", [16, (20, 12)])
def test_dask_tiles_give_the_in_process_value_and_gradient(client, weights_file, tile):
    model = VGG.from_h5(weights_file, dtype=np.float64)
    content, style, x = _images()
    local = TiledObjective(model, content, style, tile=tile, **LAYERS, **WEIGHTS)
    remote = DaskTiledObjective(model, content, style, client=client, tile=tile, **LAYERS, **WEIGHTS)
    assert len(remote.tiles) >= 6 and len(set(remote.runner.placement)) == 2      # both workers have tiles
    whole = Objective(model, content, style, **LAYERS, **WEIGHTS)
    for k in range(2):                              # twice: the workers' cached models serve again
        xk = x + k * 3.0
        e_local, e_remote, e_whole = local.evaluate(xk), remote.evaluate(xk), whole.evaluate(xk)
        assert abs(float(e_remote.J) - float(e_local.J)) <= 1e-12 * abs(float(e_local.J))
        assert _rel(e_remote.grad, e_local.grad) <= 1e-12
        assert abs(float(e_remote.J) - float(e_whole.J)) <= 1e-10 * abs(float(e_whole.J))
        assert _rel(e_remote.grad, e_whole.grad) <= 1e-10
        for part in ("content", "style", "tv"):
            assert abs(float(e_remote.parts[part]) - float(e_local.parts[part])) \
                <= 1e-12 * abs(float(e_local.parts[part]))
    from numpynst.batch.worker import model_loads
    loads = client.run(model_loads)
    assert len(loads) == 2 and all(list(v.values()) == [1] for v in loads.values()), loads


def test_dask_float32_agrees_with_in_process_float32(client, tmp_path):
    path = write_tiny_vgg_h5(tmp_path / "tiny32.h5", dtype=np.float32)
    model = VGG.from_h5(path, dtype=np.float32)
    content, style, x = (a.astype(np.float32) for a in _images(seed=1))
    here = TiledObjective(model, content, style, tile=16, **LAYERS, **WEIGHTS)
    local = here.evaluate(x)
    remote = DaskTiledObjective(model, content, style, client=client, tile=16, **LAYERS,
                                **WEIGHTS).evaluate(x)
    moved = here.with_runner(DaskTileRunner(client)).evaluate(x)        # targets built once, here
    assert here.content_pieces is not None                               # the original is intact
    for e in (remote, moved):
        assert e.grad.dtype == np.float32 and e.J.dtype == np.float32
        assert abs(float(e.J) - float(local.J)) <= 1e-5 * abs(float(local.J))
        assert _rel(e.grad, local.grad) <= 1e-5


def test_stylize_with_a_client_follows_the_in_process_run(client, weights_file):
    model = VGG.from_h5(weights_file, dtype=np.float64)
    rng = np.random.default_rng(2)
    content = rng.integers(0, 256, (36, 44, 3), dtype=np.uint8)
    style = rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)
    kw = dict(iterations=3, model=model, tile=16, tol=None, weights_mode="raw", **LAYERS, **WEIGHTS)
    a = stylize(content, style, **kw)
    b = stylize(content, style, client=client, **kw)
    assert len(a.history["J"]) == len(b.history["J"]) == 4
    np.testing.assert_allclose(b.history["J"], a.history["J"], rtol=1e-9)
    assert np.abs(b.image_float - a.image_float).max() < 1e-6


def test_a_model_without_a_file_is_refused(client):
    content, style, _ = _images()
    with pytest.raises(OptionError, match="weights file"):
        DaskTiledObjective(tiny_vgg(), content, style, client=client, tile=16, **LAYERS)


@pytest.mark.parametrize("workers, scheduler, message", [
    (0, None, "--workers must be"),
    (-2, None, "--workers must be"),
    (None, "localhost", "not a scheduler address"),
    (None, "tcp://", "not a scheduler address"),
    (None, "tcp://head:8786 x", "not a scheduler address"),
    (2, "tcp://head:8786", "cannot be combined"),
])
def test_bad_cluster_options(workers, scheduler, message):
    with pytest.raises(OptionError, match=message):
        check_cluster_options(workers, scheduler)


def test_good_scheduler_addresses_pass():
    for address in ("tcp://head:8786", "tcp://10.0.0.5:8786", "tls://head.example.org:8786",
                    "tcp://[::1]:8786", "ws://head"):
        check_cluster_options(None, address)


def _one_line_error(capsys, code, *fragments):
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("numpynst: error: "), err
    for f in fragments:
        assert f in lines[0], (f, lines[0])


@pytest.fixture
def pair(tmp_path, weights_file):
    from PIL import Image
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (36, 44, 3), dtype=np.uint8)).save(tmp_path / "photo.png")
    Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(tmp_path / "art.png")
    return [str(tmp_path / "photo.png"), str(tmp_path / "art.png"), "-o", str(tmp_path / "out.png"),
            "--weights", str(weights_file), "--quiet", "--iterations", "2", "--tol", "0",
            "--content-layer", "block2_conv2", "--style-layers", "block1_conv1,block2_conv1"]


@pytest.mark.parametrize("extra, fragments", [
    (["--workers", "0"], ["--workers must be"]),
    (["--scheduler", "head:8786"], ["--scheduler", "tcp://host:8786"]),
    (["--workers", "2", "--scheduler", "tcp://head:8786"], ["cannot be combined"]),
])
def test_cli_bad_cluster_options_are_one_line_errors(pair, capsys, tmp_path, extra, fragments):
    _one_line_error(capsys, main(["stylize", *pair, *extra]), *fragments)
    assert not (tmp_path / "out.png").exists()


def test_cli_unreachable_scheduler_is_a_one_line_error(pair, capsys, tmp_path):
    import socket
    with socket.socket() as s:                     # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _one_line_error(capsys, main(["stylize", *pair, "--scheduler", f"tcp://127.0.0.1:{port}"]),
                    "--scheduler", "cannot connect")
    assert not (tmp_path / "out.png").exists()


def test_cli_workers_runs_the_tiles_on_a_local_cluster(pair, capsys, tmp_path):
    assert main(["stylize", *pair, "--workers", "1", "--tile", "16"]) == 0, capsys.readouterr()
    assert (tmp_path / "out.png").stat().st_size > 0


def test_dask_tiles_with_masks_equal_the_whole_image(client, weights_file):
    """Masks ride the statistics sent to the workers: the masked objective over Dask tiles equals
    the whole image's (issue 28)."""
    model = VGG.from_h5(weights_file, dtype=np.float64)
    content, style, x = _images()
    top = np.zeros(content.shape[1:3])
    top[:15] = 1.0
    kw = dict(masks=np.stack([top, 1 - top]), style_masks=[None, np.ones(style.shape[1:3])], **LAYERS, **WEIGHTS)
    remote = DaskTiledObjective(model, content, [style, style[:, ::-1]], client=client, tile=16, **kw)
    whole = Objective(model, content, [style, style[:, ::-1]], **kw)
    e_remote, e_whole = remote.evaluate(x), whole.evaluate(x)
    assert abs(float(e_remote.J) - float(e_whole.J)) <= 1e-10 * abs(float(e_whole.J))
    assert _rel(e_remote.grad, e_whole.grad) <= 1e-10
