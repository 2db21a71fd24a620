"""First contact with a real photo: the default size (at most 512 px, ``--size original`` for the
photo's own), the plan line said before the first iteration and corrected by the clock, the progress
bar's ETA from the plan, and Ctrl-C before the first iteration (nothing saved, and why)."""

import logging
import re

import numpy as np
import pytest
from PIL import Image

from numpynst import plan, transfer
from numpynst.cli import main
from numpynst.errors import OptionError
from numpynst.options import DEFAULT_SIZE, ORIGINAL, StylizeOptions, parse_value, result_size
from numpynst.testing import tiny_vgg, write_tiny_vgg_h5

FAST = ["--quiet", "--style-layers", "block1_conv1,block2_conv1", "--content-layer", "block2_conv2", "--tol", "0"]
LAYERS = {"block1_conv1": 0.5, "block2_conv1": 0.5}


@pytest.fixture
def files(tmp_path):
    """A 1200x900 'phone photo' (bigger than the default size), a small photo and a painting."""
    rng = np.random.default_rng(0)
    for name, (h, w) in {"big.png": (900, 1200), "small.png": (30, 40), "art.png": (20, 20)}.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(tmp_path / name)
    return tmp_path, ["--weights", str(write_tiny_vgg_h5(tmp_path / "tiny.h5"))]


@pytest.fixture
def tiny():
    return tiny_vgg(dtype=np.float32)


def _prepare(content, model, **kw):
    rng = np.random.default_rng(1)
    style = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
    kw = {"style_layers": LAYERS, "content_layer": "block2_conv2", **kw}
    return transfer.prepare(content, style, model=model, **kw)


# ------------------------------------------------------------------------------------------ size
def test_result_size_rule():
    assert result_size(None, (3024, 4032)) == DEFAULT_SIZE        # capped
    assert result_size(None, (300, 400)) is None                  # never enlarged by default
    assert result_size(None, (DEFAULT_SIZE, 10)) is None          # exactly the cap: kept as is
    assert result_size(ORIGINAL, (3024, 4032)) is None            # the photo's own
    assert result_size(64, (300, 400)) == 64                      # a number: that, up or down


def test_the_cli_default_caps_a_big_photo_at_512_and_says_so(files, capsys):
    d, w = files
    out = d / "out.png"
    assert main(["stylize", str(d / "big.png"), str(d / "art.png"), "-o", str(out), "--iterations", "1",
                 *FAST, *w]) == 0
    assert Image.open(out).size == (DEFAULT_SIZE, DEFAULT_SIZE * 900 // 1200)
    text = capsys.readouterr().out
    first = text.splitlines()[0]
    assert first.startswith("plan: 128x96 px -> 256x192 px -> 512x384 px, whole image (the default size: "
                            "longest side 512 px; "
                            "the content is 1200x900, --size N or --size original for more)"), first
    assert "plan corrected: an iteration takes" in text


def test_size_original_and_a_number_and_a_small_photo(files):
    d, w = files
    for args, size in ((["--size", "original"], (1200, 900)), (["--size", "64"], (64, 48)), ([], (1200, 900))):
        content = d / ("small.png" if not args else "big.png")
        code = main(["stylize", str(content), str(d / "art.png"), "-o", str(d / "o.png"), "--dry-run", *args,
                     *FAST, *w])
        assert code == 0
    model = tiny_vgg(dtype=np.float32)
    big = np.asarray(Image.open(d / "big.png"))
    assert _prepare(big, model, size=ORIGINAL).content.shape == (900, 1200, 3)
    assert _prepare(big, model).content.shape == (384, 512, 3)                  # the Python API's default too
    assert _prepare(d / "big.png", model, size=64).content.shape == (48, 64, 3)
    small = _prepare(d / "small.png", model)
    assert small.content.shape == (30, 40, 3) and small.content_hw == (30, 40)
    assert "the content's own size: the default caps the longest side at 512 px" in small.plan_line()
    assert "(the content's own size, --size original)" in _prepare(big, model, size=ORIGINAL).plan_line()


def test_size_original_in_every_front_end(files, capsys):
    d, w = files
    assert parse_value("size", "original") == ORIGINAL and parse_value("size", " Original ") == ORIGINAL
    with pytest.raises(ValueError, match=r"^expected an integer or 'original', got 'huge'$"):
        parse_value("size", "huge")
    with pytest.raises(OptionError, match=r"^size must be an integer in 16\.\.16384 or 'original', got 8$"):
        StylizeOptions(size=8).validate()
    with pytest.raises(SystemExit) as exc:               # argparse's exit: one line, status 2
        main(["stylize", str(d / "big.png"), str(d / "art.png"), "-o", str(d / "o.png"), "--size", "huge", *FAST, *w])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "expected a number of pixels or 'original', got 'huge'" in err and len(err.strip().splitlines()) == 1
    assert not (d / "o.png").exists()


def test_the_help_says_the_default():
    import argparse
    from numpynst.commands.stylize import add_stylize_options
    p = argparse.ArgumentParser()
    add_stylize_options(p)
    text = " ".join(p.format_help().split())
    assert f"(default: {DEFAULT_SIZE}, or the content's size when smaller)" in text and "'original'" in text


# ------------------------------------------------------------------------------------------ estimate
@pytest.mark.parametrize("seconds, text", [(0.2, "1 s"), (40, "40 s"), (89, "89 s"), (540, "9 min"),
                                           (89 * 60, "89 min"), (9000, "2.5 h"), (36000, "10.0 h")])
def test_format_duration(seconds, text):
    assert plan.format_duration(seconds) == text


def test_the_estimate_counts_targets_and_one_evaluation_per_iteration(tiny):
    """A scale's seconds are affine in the iterations, with slope the plan's seconds per evaluation,
    and the targets cost one forward over the content and each style."""
    c = np.zeros((48, 64, 3), np.uint8)
    p = [_prepare(c, tiny, iterations=n) for n in (0, 10, 30)]
    s = [q.scale_seconds()[0] for q in p]
    e = p[0].plans[1.0].seconds
    assert s[1] - s[0] == pytest.approx(10 * e) and s[2] - s[0] == pytest.approx(30 * e)
    names = p[0].names()
    assert p[0].styles[0].shape[:2] == (64, 64)           # the style at the content's longest side
    forwards = sum(plan.forward_flops(tiny, names, hw) for hw in [(48, 64), (64, 64)]) / plan.THROUGHPUT["numpy"]
    assert s[0] == pytest.approx(forwards + e)           # targets, then the start's evaluation
    assert plan.forward_flops(tiny, names, (48, 64)) > 0


def test_the_line_says_what_would_be_faster_only_when_slow(tiny, monkeypatch):
    c = np.zeros((240, 320, 3), np.uint8)
    fast = _prepare(c, tiny, iterations=5, scales=[1.0])     # full size only: the coarse-to-fine tip applies
    line = fast.plan_line()
    assert sum(fast.scale_seconds()) < plan.SLOW_SECONDS
    assert re.fullmatch(r"plan: 320x240 px, whole image \(the content's own size: the default caps the longest "
                        r"side at 512 px\); up to 5 lbfgs iterations: about \d+ s at 150 GFLOP/s \(this "
                        r"project's 2-core CPU; corrected after the first iteration\)", line), line
    assert "faster" not in line
    monkeypatch.setitem(plan.THROUGHPUT, "numpy", 1e6)      # a machine 150 000 times slower
    slow = _prepare(c, tiny, iterations=200, scales=[1.0])
    line = slow.plan_line()
    total = sum(slow.scale_seconds())
    assert total > plan.SLOW_SECONDS and f"about {plan.format_duration(total)} at" in line
    tips = line.split("; faster: ")[1]
    assert "--size 256 (about" in tips                       # the one size below 320 offered
    assert "--scales 0.5 1 --iterations 60 (coarse to fine" in tips and "--backend cupy on an NVIDIA GPU" in tips
    # each tip's estimate is smaller than the run's
    for m in re.finditer(r"about ([\d.]+) (s|min|h)", tips):
        assert float(m.group(1)) * {"s": 1, "min": 60, "h": 3600}[m.group(2)] < total


def test_dry_run_ends_with_the_plan_line(files, capsys):
    d, w = files
    assert main(["stylize", str(d / "big.png"), str(d / "art.png"), "-o", str(d / "o.png"), "--dry-run",
                 "--scales", "0.5", "1", *FAST, *w]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith("plan: 256x192 px -> 512x384 px, whole image (the default size")
    assert "iterations per scale: about" in lines[-1]
    assert not (d / "o.png").exists()


# ------------------------------------------------------------------------------------------ the clock
class _FakeTime:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_the_clock_eta_is_the_plan_then_the_plan_corrected_by_the_measured_ratio(tiny, monkeypatch):
    fake = _FakeTime()
    monkeypatch.setattr(transfer.time, "perf_counter", fake)
    monkeypatch.setitem(plan.THROUGHPUT, "numpy", 1e6)      # seconds, not microseconds, to count down
    p = _prepare(np.zeros((48, 64, 3), np.uint8), tiny, iterations=10, scales=[0.5, 1.0])
    said = []
    clock = transfer._Clock(p, said.append)
    planned = p.scale_seconds()
    assert clock.eta() == pytest.approx(sum(planned))                 # before anything: the plan's
    assert sum(planned) > 10
    fake.now += 1.0
    assert clock.eta() == pytest.approx(sum(planned) - 1.0)           # counting down
    clock.start_scale()
    e0 = p.plans[0.5].seconds
    done = planned[0] - 8 * e0                                         # targets + 3 evaluations
    fake.now = 100.0 + 2 * done                                        # the machine is twice as slow
    clock.logged(2)
    assert clock.factor == pytest.approx(2.0)
    assert clock.eta() == pytest.approx(2 * (sum(planned) - done))
    fake.now += 1.0
    assert clock.eta() == pytest.approx(2 * (sum(planned) - done) - 1.0)
    assert len(said) == 1 and said[0].startswith(f"plan corrected: an iteration takes {2 * e0:.3g} s here "
                                                 f"(estimated {e0:.3g} s): about ")
    clock.logged(4)                                                    # said once only
    assert len(said) == 1
    clock.end_scale(5)                                                 # a tolerance stop: 5 left unused
    clock.start_scale()
    assert clock._left() == pytest.approx(11 * p.plans[1.0].seconds)     # the targets are built


def test_the_bar_shows_the_plans_eta_before_the_first_iteration(tiny):
    p = _prepare(np.zeros((48, 64, 3), np.uint8), tiny, iterations=10)
    clock = transfer._Clock(p)
    bar = transfer._bar(10, clock)
    try:
        text = str(bar)
    finally:
        bar.close()
    assert re.search(r"0/10 \[00:00<~\d\d:\d\d, \?it/s\]", text), text


def test_stylize_says_the_plan_then_its_correction(tiny):
    rng = np.random.default_rng(2)
    said = []
    res = transfer.stylize(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8),
                           rng.integers(0, 256, (20, 20, 3), dtype=np.uint8), model=tiny, iterations=3,
                           style_layers=LAYERS, content_layer="block2_conv2", tol=None, on_plan=said.append)
    assert res.iterations == 3
    assert len(said) == 2 and said[0].startswith("plan: 32x24 px, whole image") and \
        said[1].startswith("plan corrected: ") and "to go" in said[1]


# ------------------------------------------------------------------------------------------ Ctrl-C
def test_ctrl_c_before_the_first_iteration_saves_nothing_and_says_why(files, capsys, monkeypatch):
    d, w = files
    out = d / "out.png"

    class Stuck:
        accepted = True

        def step(self, *a):
            raise KeyboardInterrupt          # during the first iteration: minimize returns 0 iterations

    monkeypatch.setattr(transfer, "make_optimizer", lambda *a, **k: Stuck())
    code = main(["stylize", str(d / "small.png"), str(d / "art.png"), "-o", str(out), "--iterations", "5",
                 *FAST, *w])
    assert code == 130 and not out.exists()
    cap = capsys.readouterr()
    assert cap.out.startswith("plan: ")
    assert cap.err.strip() == ("numpynst: interrupted before the first iteration ended: nothing was saved (there "
                               "was no stylized picture yet, only the starting image)")

    def interrupted(*a, **k):                # while the targets are built: stylize itself is cut short
        raise KeyboardInterrupt
    monkeypatch.setattr(transfer, "make_objective", interrupted)
    assert main(["stylize", str(d / "small.png"), str(d / "art.png"), "-o", str(out), *FAST, *w]) == 130
    assert "nothing was saved" in capsys.readouterr().err and not out.exists()


def test_a_batch_job_logs_its_plan(files, caplog):
    from numpynst.batch.worker import execute_job
    d, _ = files
    spec = {"name": "j", "content": str(d / "small.png"), "styles": [str(d / "art.png")],
            "options": {"iterations": 1, "weights": str(d / "tiny.h5"), "style_layers": LAYERS,
                        "content_layer": "block2_conv2"},
            "digest": "0" * 64, "output": "j.png", "sidecar": "j.json"}
    (d / "out").mkdir()
    with caplog.at_level(logging.INFO, logger="numpynst.batch"):
        row = execute_job(spec, str(d / "out"))
    assert row["status"] == "done", row
    assert any(r.getMessage().startswith("numpynst batch job j: plan: 40x30 px, whole image") for r in caplog.records)


def test_the_docs_say_the_constants_the_code_uses():
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    options = " ".join((root / "docs" / "options.md").read_text(encoding="utf-8").split())
    readme = " ".join((root / "README.md").read_text(encoding="utf-8").split())
    assert f"The result's longest side is {DEFAULT_SIZE} px, or the photo's own when that is smaller" in options
    assert f"When the estimate passes {plan.SLOW_SECONDS / 60:g} minutes" in options
    assert f"--scales {' '.join(f'{x:g}' for x in transfer.QUICK_SCALES)} --iterations {transfer.QUICK_ITERATIONS}" \
        in options
    assert f"The result's longest side is {DEFAULT_SIZE} px (or the photo's own, if smaller)" in readme
    assert plan.SLOW_SECONDS == 600 and "more than ten minutes" in readme


def test_the_quick_schedule_offered_is_the_demos():
    from numpynst.commands.demo import DEMO_ITERATIONS, DEMO_SCALES
    assert transfer.QUICK_SCALES == DEMO_SCALES and transfer.QUICK_ITERATIONS == DEMO_ITERATIONS


@pytest.mark.parametrize("orientation", [1, 6])
def test_image_shape_reads_the_upright_size_from_the_header(tmp_path, orientation):
    from numpynst.image import image_shape, load_image
    exif = Image.Exif()
    exif[0x0112] = orientation                  # 6: the camera was turned, width and height swap
    path = tmp_path / "p.jpg"
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(path, exif=exif)
    assert image_shape(path) == load_image(path).shape[:2] == ((30, 40) if orientation == 1 else (40, 30))


def test_the_demo_points_at_no_result_when_it_wrote_none(tmp_path, capsys, monkeypatch):
    w = ["--weights", str(write_tiny_vgg_h5(tmp_path / "tiny.h5"))]
    assert main(["demo", "-o", str(tmp_path / "d"), "--dry-run", *FAST, *w]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1].startswith("plan: ") and "result:" not in out

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(transfer, "make_objective", interrupted)
    assert main(["demo", "-o", str(tmp_path / "d"), "--size", "32", *FAST, *w]) == 130
    cap = capsys.readouterr()
    assert "result:" not in cap.out and "nothing was saved" in cap.err
    assert not (tmp_path / "d" / "result.png").exists()
