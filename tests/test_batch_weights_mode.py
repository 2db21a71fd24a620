"""numpynst batch ``weights_mode``: the same choice as ``stylize --weights-mode``, checked up front.

No Dask cluster here: the jobs go through :func:`numpynst.batch.worker.execute_job` in this process
(what a worker runs), with a tiny random VGG on 24x24 images.
"""

import json
import re

import numpy as np
import pytest
from PIL import Image

from numpynst import batch, cli
from numpynst.batch.jobs import job_digest
from numpynst.batch.worker import execute_job
from numpynst.errors import ManifestError
from numpynst.testing import write_tiny_vgg_h5
from numpynst.transfer import stylize
from test_batch_safety import _one_line_exit_2 as _exit_2_one_line   # the suite's one-line-error check


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("wm")
    rng = np.random.default_rng(11)
    write_tiny_vgg_h5(d / "tiny.h5")
    for name in ("c1", "s1"):
        Image.fromarray(rng.integers(0, 256, size=(24, 24, 3), dtype=np.uint8)).save(d / f"{name}.png")
    return d


def _csv(path, header, *rows):
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_a_bad_weights_mode_cell_or_flag_is_one_line_naming_it_exit_2(files, tmp_path, capsys):
    m = _csv(tmp_path / "m.csv", "content,style,weights,weights_mode",
             f"{files}/c1.png,{files}/s1.png,{files}/tiny.h5,raw",
             f"{files}/c1.png,{files}/s1.png,{files}/tiny.h5,Calibrated!")
    out = tmp_path / "out"
    _exit_2_one_line(["batch", str(m), "-o", str(out), "--quiet"], capsys,
                     f"{m}: row 2 (line 3), column 'weights_mode': ", "expected one of calibrated, raw",
                     "'Calibrated!'")
    ok = _csv(tmp_path / "ok.csv", "content,style,weights", f"{files}/c1.png,{files}/s1.png,{files}/tiny.h5")
    _exit_2_one_line(["batch", str(ok), "-o", str(out), "--quiet", "--weights-mode", "scaled"], capsys,
                     "--weights-mode: expected one of calibrated, raw, got 'scaled'")
    _exit_2_one_line(["batch", "--grid", str(files), str(files), "-o", str(out), "--quiet",
                      "--weights-mode", "raw", "none"], capsys, "--weights-mode: expected one of")
    assert not out.exists()                                   # nothing ran, nothing was created


def test_calibrated_ranges_apply_unless_the_row_is_raw(files, tmp_path, capsys):
    m = _csv(tmp_path / "m.csv", "content,style,weights,beta,weights_mode,name",
             f"{files}/c1.png,{files}/s1.png,{files}/tiny.h5,200,raw,a",        # raw: any finite weight >= 0
             f"{files}/c1.png,{files}/s1.png,{files}/tiny.h5,200,,b")          # calibrated: 0..100
    with pytest.raises(ManifestError, match=r"row 2 \(line 3\), column 'beta': expected a number in "
                                            r"\[0, 100\] with calibrated weights"):
        batch.read_manifest(m)
    out = tmp_path / "out"
    _exit_2_one_line(["batch", str(m), "-o", str(out), "--quiet"], capsys, "column 'beta': ", "[0, 100]")
    # the flag sets the default mode of every row that leaves it empty: then both rows are raw
    jobs = batch.read_manifest(m, defaults={"weights_mode": "raw"})
    assert [j.options["weights_mode"] for j in jobs] == ["raw", "raw"]
    assert [j.options["beta"] for j in jobs] == [200.0, 200.0]
    t = _csv(tmp_path / "t.csv", "content,style,weights,tv_weight", f"{files}/c1.png,{files}/s1.png,{files}/tiny.h5,2")
    with pytest.raises(ManifestError, match=r"column 'tv_weight': expected a number in \[0, 1\]"):
        batch.read_manifest(t)


def test_the_mode_is_part_of_the_identity_with_stylizes_default_filled_in(files):
    c, s = str(files / "c1.png"), str(files / "s1.png")
    unset = job_digest(c, [s], {})
    assert job_digest(c, [s], {"weights_mode": "calibrated"}) == unset      # stylize's default
    assert job_digest(c, [s], {"weights_mode": "raw"}) != unset


def _cli_J0(files, tmp_path, capsys, mode):
    """J at the start as ``numpynst stylize --weights-mode MODE`` prints it (4 significant digits)."""
    capsys.readouterr()
    assert cli.main(["stylize", str(files / "c1.png"), str(files / "s1.png"), "-o", str(tmp_path / f"{mode}.png"),
                     "--weights", str(files / "tiny.h5"), "--iterations", "0", "--quiet",
                     "--weights-mode", mode]) == 0
    found = re.search(r"J ([0-9.e+-]+) -> ", capsys.readouterr().out)
    assert found is not None
    return float(found.group(1))


def test_raw_and_calibrated_jobs_minimise_the_objective_stylize_would(files, tmp_path, capsys):
    m = _csv(tmp_path / "m.csv", "content,style,weights,iterations,weights_mode,name",
             f"{files}/c1.png,{files}/s1.png,{files}/tiny.h5,0,raw,raw",
             f"{files}/c1.png,{files}/s1.png,{files}/tiny.h5,0,calibrated,cal",
             f"{files}/c1.png,{files}/s1.png,{files}/tiny.h5,0,,unset")
    out = tmp_path / "out"
    out.mkdir()
    J0 = {}
    for job in batch.read_manifest(m):
        assert execute_job(job.spec(), str(out))["status"] == "done"
        J0[job.name] = json.loads((out / job.sidecar).read_text())["J_start"]
    for mode, name in (("raw", "raw"), ("calibrated", "cal")):
        ref = stylize(str(files / "c1.png"), str(files / "s1.png"), weights=str(files / "tiny.h5"),
                      iterations=0, weights_mode=mode)
        assert J0[name] == ref.history["J"][0]
        assert J0[name] == pytest.approx(_cli_J0(files, tmp_path, capsys, mode), rel=1e-3)
        if mode == "calibrated":
            # from the photo: content term 0, TV term TV(photo)/TV(photo) = 1 -- the calibration is on
            assert ref.history["content"][0] == 0 and ref.history["tv"][0] == pytest.approx(1, rel=1e-5)
        else:
            assert ref.history["tv"][0] > 1                   # raw TV of a random photo: grey levels^2
    assert J0["unset"] == J0["cal"]                           # calibrated is the default, as for stylize
    assert abs(J0["raw"] - J0["cal"]) > 0.01 * max(J0["raw"], J0["cal"])    # the mode reached the worker
