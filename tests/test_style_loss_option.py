"""``--style-loss {gram,mean-cov,swd}`` (and ``--swd-directions``) through the three front ends the
options schema feeds: the CLI, a batch manifest's cell, the Python API; and its bad input (one line,
exit 2, nothing written)."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from numpynst.batch.options import parse_option
from numpynst.cli import main
from numpynst.errors import OptionError
from numpynst.options import StylizeOptions
from numpynst.testing import tiny_vgg, write_tiny_vgg_h5
from numpynst.transfer import prepare, stylize

FAST = ["--iterations", "3", "--quiet", "--style-layers", "block1_conv1,block2_conv1",
        "--content-layer", "block2_conv2", "--tol", "0"]


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    for name, (h, w) in {"photo.png": (24, 32), "art.png": (20, 24)}.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(tmp_path / name)
    return tmp_path, ["--weights", str(write_tiny_vgg_h5(tmp_path / "tiny.h5"))]


def _one_line(code, err, *fragments):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("numpynst: error: ") and "Traceback" not in err, err
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def test_unknown_style_loss_lists_the_choices_exit_2(files):
    d, w = files
    env = dict(os.environ, MPLBACKEND="Agg")
    p = subprocess.run([sys.executable, "-m", "numpynst", "stylize", str(d / "photo.png"), str(d / "art.png"),
                        "-o", str(d / "o.png"), "--style-loss", "wasserstein", *FAST, *w],
                       capture_output=True, text=True, env=env)
    _one_line(p.returncode, p.stderr, "--style-loss", "'gram', 'mean-cov', 'swd'")
    assert not (d / "o.png").exists()


@pytest.mark.parametrize("extra, fragments", [
    (["--style-loss", "swd", "--style-layers", "block4_conv1"],            # 24 x 32 px: 3 x 4 at block4
     ["swd needs at least 16 positions", "the generated image has 12 at block4_conv1"]),
    (["--style-loss", "swd", "--swd-directions", "5000"], ["--swd-directions must be an integer in 1..4096"]),
    (["--swd-directions", "8"], ["--swd-directions applies to --style-loss swd only"]),
    (["--style-loss", "swd", "--tile", "16"], ["swd cannot run over exact tiles", "mean-cov or gram"]),
])
def test_bad_swd_input_is_one_line_and_nothing_is_written(files, capsys, extra, fragments):
    d, w = files
    code = main(["stylize", str(d / "photo.png"), str(d / "art.png"), "-o", str(d / "o.png"),
                 "--save-every", "1", *FAST, *w, *extra])
    _one_line(code, capsys.readouterr().err, *fragments)
    assert sorted(p.name for p in d.iterdir()) == ["art.png", "photo.png", "tiny.h5"]


@pytest.mark.parametrize("loss", ["mean-cov", "swd"])
def test_cli_runs_each_loss(files, capsys, loss):
    d, w = files
    assert main(["stylize", str(d / "photo.png"), str(d / "art.png"), "-o", str(d / "o.png"),
                 "--style-loss", loss, *FAST, *w]) == 0
    assert np.asarray(Image.open(d / "o.png")).shape == (24, 32, 3)


def test_manifest_cell_and_python_api(rng):
    assert parse_option("style_loss", " mean-cov ") == "mean-cov"
    assert parse_option("swd_directions", "32") == 32
    with pytest.raises(ValueError, match="^expected one of gram, mean-cov, swd, got 'Gram'$"):
        parse_option("style_loss", "Gram")
    with pytest.raises(OptionError, match="^style_loss must be one of gram, mean-cov, swd, got 'l2'$"):
        StylizeOptions(style_loss="l2").validate()
    model = tiny_vgg(dtype=np.float32)
    content = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    style = rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)
    layers = {"block1_conv1": 0.5, "block2_conv1": 0.5}
    for loss in ("gram", "mean-cov", "swd"):
        r = stylize(content, style, model=model, style_loss=loss, iterations=4, tol=None, style_layers=layers,
                    content_layer="block2_conv2")
        assert r.image.shape == (32, 32, 3) and r.history["style"][-1] < r.history["style"][0], loss
    with pytest.raises(OptionError, match="the generated image has 4 at block4_conv1"):
        prepare(content[:16, :16], style, model=model, style_loss="swd", style_layers={"block4_conv1": 1.0})


def test_a_manifest_column_runs_the_loss_stylize_would(files, tmp_path):
    """The ``style_loss`` column reaches the job: J at the start equals stylize's with that loss;
    a bad cell is one line naming the row and column, before anything runs."""
    import json

    from numpynst import batch
    from numpynst.batch.worker import execute_job
    from numpynst.errors import ManifestError
    d, _ = files
    head = "content,style,weights,iterations,style_layers,style_loss,name"
    rows = [f"{d}/photo.png,{d}/art.png,{d}/tiny.h5,0,block1_conv1;block2_conv1,{loss},{loss}"
            for loss in ("gram", "mean-cov", "swd")]
    m = tmp_path / "m.csv"
    m.write_text("\n".join([head, *rows]) + "\n")
    out = tmp_path / "out"
    out.mkdir()
    for job in batch.read_manifest(m):
        assert execute_job(job.spec(), str(out))["status"] == "done"
        J0 = json.loads((out / job.sidecar).read_text())["J_start"]
        ref = stylize(str(d / "photo.png"), str(d / "art.png"), weights=str(d / "tiny.h5"), iterations=0,
                      style_layers={"block1_conv1": 1.0, "block2_conv1": 1.0}, style_loss=job.name)
        assert J0 == ref.history["J"][0], job.name
    bad = tmp_path / "bad.csv"
    bad.write_text(f"{head}\n{rows[0].replace(',gram,', ',l2,')}\n")
    with pytest.raises(ManifestError,
                       match=r"row 1 \(line 2\), column 'style_loss': expected one of gram, mean-cov, swd"):
        batch.read_manifest(bad)
