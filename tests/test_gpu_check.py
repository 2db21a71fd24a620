"""benchmarks/gpu_check.sh and its helper benchmarks/gpu_figures.py, without a GPU.

The device run has one try: a typo in the script or a parser that no longer matches what the CLI
prints would cost it. Here: the script parses, and ``collect`` reads the outputs of the real tools
(the stylize CLI's summary line, pytest's JUnit XML, vgg_step's JSON) into the figures it reports.
The whole script in CPU mode (``NUMPYNST_GPU_CHECK_CPU=1``) is run by hand, see benchmarks/README.md.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from numpynst.cli import main
from numpynst.testing import write_tiny_vgg_h5

ROOT = Path(__file__).resolve().parents[1]


def _figures():
    spec = importlib.util.spec_from_file_location("gpu_figures", ROOT / "benchmarks" / "gpu_figures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_gpu_check_script_parses():
    for name in ("gpu_check.sh", "gpu_wheels.sh"):
        r = subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / name)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr


def test_collect_reads_what_the_tools_write(tmp_path, capsys):
    work = tmp_path / "work"
    work.mkdir()
    # the stylize CLI's own summary line, from a real run with a tiny model
    rng = np.random.default_rng(0)
    for name in ("photo.png", "art.png"):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / name)
    weights = write_tiny_vgg_h5(tmp_path / "tiny.h5")
    out = tmp_path / "out.jpg"
    assert main(["stylize", str(tmp_path / "photo.png"), str(tmp_path / "art.png"), "-o", str(out),
                 "--size", "32", "--iterations", "2", "--tol", "0", "--quiet", "--weights", str(weights)]) == 0
    (work / "stylize.log").write_text(capsys.readouterr().out)
    (work / "smi_stylize.csv").write_text("812\n4100\n5230\n4800\n")
    (work / "steps.tsv").write_text("env\t0\t3.5\nstylize\t0\t41.2\nbatch\t124\t0\n")
    (work / "env.json").write_text(json.dumps({"gpu": "NVIDIA H200", "cupy": "14.2.0"}))
    (work / "pytest_gpu.xml").write_text(
        '<?xml version="1.0"?><testsuites><testsuite name="pytest" tests="4" failures="1" errors="0" skipped="1">'
        '<testcase classname="tests.test_gpu" name="test_no_host_transfer_inside_the_optimization_loop[lbfgs]"/>'
        '<testcase classname="tests.test_gpu" name="test_no_host_transfer_inside_the_optimization_loop[gd]">'
        '<failure message="HostTransfer: __float__">trace</failure></testcase>'
        '<testcase classname="tests.test_layers" name="test_relu[cupy]"><skipped message="no GPU"/></testcase>'
        '<testcase classname="tests.test_layers" name="test_conv[cupy]"/></testsuite></testsuites>')
    (work / "vgg_step.json").write_text(json.dumps({"sizes": [{
        "size": 512, "flops": 3.79e11, "times": {"numpynst": [0.04, 0.05, 0.06], "torch": [0.03, 0.03, 0.04]},
        "median": {"numpynst": 0.05, "torch": 0.03}, "ratio_to_torch": {"numpynst": 0.05 / 0.03},
        "info": {"numpynst": {"gpu_peak_bytes": 2 ** 30, "kept_bytes": 2 ** 28}, "torch": {"gpu_peak_bytes": 2 ** 29}}}]}))
    target = tmp_path / "gpu_figures.json"
    assert _figures().main(["collect", "--work", str(work), "--out", str(target), "--mode", "cpu"]) == 0
    fig = json.loads(target.read_text())
    st = fig["stylize"]
    assert st["size"] == [32, 32] and st["iterations"] == 2 and st["stopped"] == "iterations"
    assert st["J_best"] <= st["J_start"] and st["wall_seconds"] == 41.2
    assert st["gpu_memory_nvidia_smi"] == {"samples": 4, "first_mib": 812.0, "peak_mib": 5230.0,
                                           "peak_above_first_mib": 4418.0}
    pt = fig["pytest_gpu"]
    assert (pt["passed"], pt["failures"], pt["skipped"]) == (2, 1, 1)
    assert pt["no_host_transfer_tests"] == {"passed": 1, "failed": 1, "skipped": 0}
    assert pt["failed"] == ["tests.test_gpu::test_no_host_transfer_inside_the_optimization_loop[gd]: "
                            "HostTransfer: __float__"]
    assert pt["skip_reasons"] == {"no GPU": 1}
    assert fig["vgg_step"][0]["min_s"] == {"numpynst": 0.04, "torch": 0.03}
    assert fig["vgg_step"][0]["kept_activation_bytes"] == 2 ** 28
    assert [s["step"] for s in fig["steps"]] == ["env", "stylize", "batch"] and fig["steps"][2]["exit_code"] == 124
    assert fig["agree"] is None and fig["batch"] is None          # steps that did not run: null, not made up
    assert "numpynst/torch 1.67" in capsys.readouterr().out


def test_errors_are_relative_to_the_reference():
    e = _figures()._errors(np.array([1.0, 2.0, 3.5]), np.array([1.0, 2.0, 3.0]))
    assert e["rel_norm"] == pytest.approx(0.5 / np.sqrt(14.0)) and e["rel_max"] == pytest.approx(0.5 / 3.0)


def test_print_step_times_each_scale_and_collect_reads_it(tmp_path, capsys):
    """The ``print`` step on NumPy at 64 px (the device runs it at 8192 px): one row per scale with
    its J falling and its time per iteration, the preview | crop sheet, and ``collect``'s summary."""
    work = tmp_path / "work"
    work.mkdir()
    sheet = tmp_path / "sheet.jpg"
    assert _figures().main(["print", "--json", str(work / "print.json"), "--backend", "numpy", "--size", "64",
                            "--scales", "0.5", "1", "--iterations", "12", "--max-memory", "1GB",
                            "--full", str(work / "full.jpg"), "--sheet", str(sheet), "--crop", "32"]) == 0
    pr = json.loads((work / "print.json").read_text())
    assert pr["size"] == [64, 64] and pr["iterations"] == 24 and pr["stopped"] == "iterations"
    assert [r["scale"] for r in pr["per_scale"]] == [0.5, 1.0]
    for r in pr["per_scale"]:
        assert r["iterations"] == 12 and r["J_end"] < r["J_start"]
        assert 0 < r["seconds_per_iteration"] * 12 < r["seconds"] <= pr["seconds"]
        # the planner's estimate beside a measured peak (the process's resident set on NumPy)
        assert r["plan"] == "whole" and 0 < r["planned_peak_bytes"] < pr["budget_bytes"]
        assert r["measured_peak_bytes"] > 0 and r["hw"] == [32 * int(r["scale"] * 2), 32 * int(r["scale"] * 2)]
    assert pr["memory_measured_by"] == "process RSS" and pr["precision"] == "fp32"
    assert Image.open(sheet).size == (64, 32)              # 32 px preview beside a 32 px crop
    assert Image.open(work / "full.jpg").size == (64, 64) and pr["pool_bytes_at_end"] is None
    (work / "smi_print.csv").write_text("900\n70000\n")
    target = tmp_path / "gpu_figures.json"
    assert _figures().main(["collect", "--work", str(work), "--out", str(target), "--mode", "cpu"]) == 0
    fig = json.loads(target.read_text())
    assert fig["print"]["per_scale"] == pr["per_scale"]
    assert fig["print"]["gpu_memory_nvidia_smi"]["peak_mib"] == 70000.0
    printed = capsys.readouterr().out
    assert "print 64x64: 24 iterations" in printed
    assert "scale 1.0 64x64 (whole): planned" in printed


def test_features_step_runs_what_the_tree_has_and_says_why_it_skips_the_rest(tmp_path, capsys):
    """Each of this round's features is either run (NumPy here: J finite, one value per iteration, no
    trap hits) or skipped with its reason; collect prints one line per feature."""
    work = tmp_path / "work"
    work.mkdir()
    assert _figures().main(["features", "--json", str(work / "features.json"), "--work", str(tmp_path / "in"),
                            "--backend", "numpy", "--size", "32", "--iterations", "2"]) == 0
    feats = json.loads((work / "features.json").read_text())["features"]
    assert {k.split("=")[0] for k in feats} == {"style_loss", "masks", "checkpoints", "video"}
    for name, r in feats.items():
        if "skipped" in r:
            assert len(r["skipped"]) > 20, name
        else:
            assert r["numpy"]["trap_hits"] == [] and len(r["numpy"]["J"]) == 3
            assert np.all(np.isfinite(r["numpy"]["J"]))
    assert _figures().main(["collect", "--work", str(work), "--out", str(tmp_path / "f.json"), "--mode", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert all(f"feature {name}:" in printed for name in feats)


def test_compare_runs_runs_an_option_on_each_backend(tmp_path):
    """The comparison the features step makes, with an option every tree has (average pooling)."""
    from types import SimpleNamespace
    r = _figures()._compare_runs(SimpleNamespace(backend="numpy", size=32, iterations=2), {"pooling": "avg"})
    assert r["options"] == {"pooling": "avg"} and r["numpy"]["trap_hits"] == []
    assert len(r["numpy"]["J"]) == 3 and r["numpy"]["J"][-1] < r["numpy"]["J"][0]
