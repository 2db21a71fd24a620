"""numpynst.metrics and ``numpynst evaluate``: the distances against their definitions.

The one-dimensional Wasserstein distance is checked against the optimal-transport definition by
brute force (every permutation of equally weighted atoms), the weighted statistics against
replicated rows, the masks against statistics of the region's rows alone, and the figures at their
fixed points (C = 0 and S = 0 at the photo, S = 1 at the painting).
"""

import itertools
import json
import math

import numpy as np
import pytest
from PIL import Image

from numpynst import metrics as M
from numpynst.cli import main
from numpynst.image import save_image
from numpynst.testing import tiny_vgg, write_tiny_vgg_h5


def brute_w2(a, b, ka=None, kb=None):
    """W_2^2 between two weighted 1-D samples by its definition: the cheapest coupling. With
    integer weights ``ka``, ``kb`` (atom counts, the same total L on both sides after scaling to
    the least common multiple) every coupling of L equal atoms is a permutation, and the optimal
    one among all couplings is one of them (the monotone coupling moves multiples of 1/L)."""
    ka = np.ones(len(a), int) if ka is None else np.asarray(ka)
    kb = np.ones(len(b), int) if kb is None else np.asarray(kb)
    L = math.lcm(int(ka.sum()), int(kb.sum()))
    ra = np.repeat(a, ka * (L // ka.sum()))
    rb = np.repeat(b, kb * (L // kb.sum()))
    return min(np.mean((ra - rb[list(p)]) ** 2) for p in itertools.permutations(range(L)))


def q1(values, weights=None):
    """Quantiles of one 1-D sample (a single direction)."""
    v = np.asarray(values, dtype=np.float64)[:, None]
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    return M.quantiles(v, np.ones((1, 1)), w)


@pytest.mark.parametrize("n, m", [(5, 5), (2, 3), (4, 2), (1, 5), (3, 2)])
def test_w2_uniform_matches_brute_force(rng, n, m):
    for _ in range(3):
        a, b = rng.normal(size=n), rng.normal(2.0, 3.0, size=m)
        got = float(M.wasserstein2(q1(a), q1(b))[0])
        assert got == pytest.approx(brute_w2(a, b), rel=1e-12, abs=1e-15)


def test_w2_equal_sizes_is_mean_squared_sorted_difference(rng):
    a, b = rng.normal(size=(3, 50)), rng.normal(size=(3, 50))
    got = M.wasserstein2(M.Quantiles(np.sort(a, 1), None), M.Quantiles(np.sort(b, 1), None))
    np.testing.assert_allclose(got, ((np.sort(a, 1) - np.sort(b, 1)) ** 2).mean(1), rtol=1e-14)


@pytest.mark.parametrize("ka, kb", [([1, 2, 1], [2, 2]), ([3, 1, 1], [1, 1, 1, 1, 1]), ([1, 0, 2], [1, 2])])
def test_w2_weighted_matches_brute_force(rng, ka, kb):
    for _ in range(3):
        a, b = rng.normal(size=len(ka)), rng.normal(1.0, 2.0, size=len(kb))
        want = brute_w2(a, b, ka, kb)
        assert float(M.wasserstein2(q1(a, ka), q1(b, kb))[0]) == pytest.approx(want, rel=1e-12)
        # one side weighted, the other uniform: the mixed path
        if len(set(kb)) == 1:
            assert float(M.wasserstein2(q1(a, ka), q1(b))[0]) == pytest.approx(want, rel=1e-12)


def test_w2_weights_all_equal_give_the_uniform_figure(rng):
    a, b, theta = rng.normal(size=(300, 4)), rng.normal(size=(170, 4)), M.directions(4, 8)
    uniform = M.wasserstein2(M.quantiles(a, theta), M.quantiles(b, theta))
    weighted = M.wasserstein2(M.quantiles(a, theta, np.full(300, 7.0)), M.quantiles(b, theta, np.ones(170)))
    np.testing.assert_allclose(weighted, uniform, rtol=1e-10)


def test_w2_is_zero_only_for_the_same_distribution(rng):
    a = rng.normal(size=40)
    shuffled = rng.permutation(a)
    assert float(M.wasserstein2(q1(a), q1(shuffled))[0]) == 0.0
    # the same distribution written with twice the atoms
    assert float(M.wasserstein2(q1(a), q1(np.repeat(a, 2)))[0]) == pytest.approx(0.0, abs=1e-15)
    assert float(M.wasserstein2(q1(a), q1(a + 0.5))[0]) == pytest.approx(0.25, rel=1e-12)   # a shift by d: d^2


def test_sliced_wasserstein_is_the_mean_over_directions_of_brute_force(rng):
    a, b = rng.normal(size=(3, 5)), rng.normal(size=(2, 5))
    theta = M.directions(5, 7, seed=3)
    naive = np.mean([brute_w2(a @ theta[:, p], b @ theta[:, p]) for p in range(7)])
    assert M.sliced_wasserstein(a, b, theta) == pytest.approx(naive, rel=1e-12)
    wa = np.array([1.0, 2.0, 1.0])
    naive_w = np.mean([brute_w2(a @ theta[:, p], b @ theta[:, p], [1, 2, 1]) for p in range(7)])
    assert M.sliced_wasserstein(a, b, theta, wa) == pytest.approx(naive_w, rel=1e-12)


def test_directions_are_seeded_unit_vectors():
    t = M.directions(12, 40, seed=5, layer=2)
    np.testing.assert_allclose(np.linalg.norm(t, axis=0), 1.0, rtol=1e-14)
    assert np.array_equal(t, M.directions(12, 40, seed=5, layer=2))
    assert not np.allclose(t, M.directions(12, 40, seed=6, layer=2))
    assert not np.allclose(t, M.directions(12, 40, seed=5, layer=3))
    # the mean direction of many draws is near 0 (no preferred direction)
    assert np.abs(M.directions(3, 20000).mean(axis=1)).max() < 0.02


def test_weighted_statistics_are_those_of_replicated_rows(rng):
    a, c = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    k = np.array([1, 3, 0, 2, 1, 1])
    ra, rc = np.repeat(a, k, axis=0), np.repeat(c, k, axis=0)
    np.testing.assert_allclose(M.gram(a, k), M.gram(ra), rtol=1e-13)
    np.testing.assert_allclose(M.gram(ra), ra.T @ ra / len(ra), rtol=1e-13)
    assert M.content_distance(a, c, k) == pytest.approx(M.content_distance(ra, rc), rel=1e-13)
    b, theta = rng.normal(size=(5, 4)), M.directions(4, 6)
    assert M.sliced_wasserstein(a, b, theta, k) == pytest.approx(M.sliced_wasserstein(ra, b, theta), rel=1e-12)


def test_statistics_forget_where_features_are(rng):
    a, b, w = rng.normal(size=(30, 5)), rng.normal(size=(20, 5)), rng.uniform(0.1, 2.0, 30)
    perm = rng.permutation(30)
    theta = M.directions(5, 9)
    np.testing.assert_allclose(M.gram(a[perm]), M.gram(a), rtol=1e-13)
    np.testing.assert_allclose(M.gram(a[perm], w[perm]), M.gram(a, w), rtol=1e-13)
    assert M.sliced_wasserstein(a[perm], b, theta) == pytest.approx(M.sliced_wasserstein(a, b, theta), rel=1e-12)
    assert M.sliced_wasserstein(a[perm], b, theta, w[perm]) == pytest.approx(
        M.sliced_wasserstein(a, b, theta, w), rel=1e-12)
    # ... while the content distance is about where: moving the features changes it
    assert M.content_distance(a[perm], a) > 0.1


def test_relative_distances_are_one_at_a_blank_image(rng):
    s = np.abs(rng.normal(size=(40, 3)))
    assert M.gram_distance(M.gram(np.zeros((10, 3))), M.gram(s)) == 1.0
    q = M.quantiles(s, M.directions(3, 5))
    blank = M.quantiles(np.zeros((10, 3)), M.directions(3, 5))
    np.testing.assert_allclose(M.wasserstein2(blank, q), q.second_moment(), rtol=1e-13)
    assert M.content_distance(np.zeros((40, 3)), s) == 1.0


def test_layer_weights_are_block_means_of_the_mask():
    mask = np.zeros((36, 52))
    mask[:, :16] = 1.0
    w = M.layer_weights(mask, 8, (1, 4, 6, 3))          # 36 // 8 = 4 rows, 52 // 8 = 6 columns
    np.testing.assert_array_equal(w.reshape(4, 6), np.repeat([[1.0, 1.0, 0, 0, 0, 0]], 4, axis=0))
    mask[0, 20] = 64.0                                   # one pixel in cell (0, 2): its mean is 1
    assert M.layer_weights(mask, 8, (1, 4, 6, 3)).reshape(4, 6)[0, 2] == 1.0
    assert M.layer_weights(None, 8, (1, 4, 6, 3)) is None


# ---------------------------------------------------------------------------- the judge
@pytest.fixture(scope="module")
def tiny():
    return tiny_vgg(dtype=np.float64)


@pytest.fixture(scope="module")
def pictures():
    r = np.random.default_rng(7)
    yy, xx = np.mgrid[0:32, 0:48]
    photo = np.stack([120 + 80 * np.sin(xx / 5.0), 100 + 60 * np.cos(yy / 4.0), 90 + 0 * xx], -1)
    photo = np.clip(photo + r.normal(0, 10, photo.shape), 0, 255).astype(np.uint8)
    painting = r.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    between = np.clip(0.5 * photo + 0.5 * painting, 0, 255).astype(np.uint8)
    return photo, painting, between


def test_fixed_points_photo_and_painting(tiny, pictures):
    photo, painting, between = pictures
    judge = M.Judge(photo, painting, tiny, projections=8)
    at_photo = judge(photo)
    assert at_photo.content == 0.0 and at_photo.style_gram == 0.0 and at_photo.style_swd == 0.0
    assert at_photo.gram == at_photo.gram_photo > 0 and at_photo.swd == at_photo.swd_photo > 0
    at_painting = M.measure(painting, photo, painting, model=tiny, projections=8)
    assert at_painting.style_gram == 1.0 and at_painting.style_swd == 1.0
    assert at_painting.content > 0.05
    m = judge(between)
    assert 0 < m.content < at_painting.content and 0 < m.style_swd < 1 and 0 < m.style_gram < 1


def test_deterministic_and_seeded(tiny, pictures):
    photo, painting, between = pictures
    a = M.measure(between, photo, painting, model=tiny, projections=8)
    b = M.measure(between, photo, painting, model=tiny, projections=8)
    assert a == b
    c = M.measure(between, photo, painting, model=tiny, projections=8, seed=1)
    assert (c.content, c.style_gram) == (a.content, a.style_gram) and c.style_swd != a.style_swd


def test_masks_all_ones_or_scaled_change_nothing(tiny, pictures):
    photo, painting, between = pictures
    plain = M.Judge(photo, painting, tiny, projections=8)(between)
    ones = M.Judge(photo, painting, tiny, projections=8, mask=np.ones((32, 48)),
                   style_mask=np.full((32, 48), 3.0))(between)
    assert ones == pytest.approx(plain, rel=1e-10)
    region = np.zeros((32, 48))
    region[:, :16] = 1.0
    a = M.Judge(photo, painting, tiny, projections=8, mask=region)(between)
    b = M.Judge(photo, painting, tiny, projections=8, mask=5 * region)(between)
    assert a == pytest.approx(b, rel=1e-10) and a != pytest.approx(plain, rel=1e-3)


def test_region_figures_are_those_of_the_region_rows(tiny, pictures):
    """A mask aligned with every layer's grid (16-px cells) selects rows: the masked distances
    are the plain statistics of the region's rows, computed here by hand."""
    photo, painting, between = pictures
    region = np.zeros((32, 48))
    region[:, 16:48] = 1.0
    sregion = np.zeros((32, 48))
    sregion[:16, :] = 1.0
    judge = M.Judge(photo, painting, tiny, projections=8, mask=region, style_mask=sregion)
    names = [M.CONTENT_LAYER, *M.STYLE_LAYERS]
    fx, _ = tiny.forward_tape(tiny.preprocess(between), names, keep=False)
    fc, _ = tiny.forward_tape(tiny.preprocess(photo), names, keep=False)
    fs, _ = tiny.forward_tape(tiny.preprocess(painting), names, keep=False)

    def rows(a, name, cols=None, top=None):
        j = tiny.layer(name).spacing
        a = a[0]
        a = a[:, 16 // j:] if cols else a[:16 // j] if top else a
        return a.reshape(-1, a.shape[-1])

    c = M.content_distance(rows(fx[M.CONTENT_LAYER], M.CONTENT_LAYER, True),
                           rows(fc[M.CONTENT_LAYER], M.CONTENT_LAYER, True))
    d_gram, d_swd = [], []
    for k, n in enumerate(M.STYLE_LAYERS):
        x, s = rows(fx[n], n, True), rows(fs[n], n, top=True)
        d_gram.append(M.gram_distance(M.gram(x), M.gram(s)))
        theta = M.directions(tiny.channels(n), 8, 0, k)
        blank = float(M.quantiles(s, theta).second_moment().mean())
        d_swd.append(M.sliced_wasserstein(x, s, theta) / blank)
    got = judge.distances(between)
    assert got == pytest.approx((c, np.mean(d_gram), np.mean(d_swd)), rel=1e-10)


def test_painting_is_sized_as_stylize_sizes_it(tiny, pictures):
    from numpynst.transfer import prepare
    photo = pictures[0]
    painting = np.random.default_rng(3).integers(0, 256, (50, 30, 3), dtype=np.uint8)
    for scale in (1.0, 0.5):
        prepared = prepare(photo, painting, model=tiny, style_scale=scale)
        _, c, s = M.sized_inputs(prepared.content, photo, painting, style_scale=scale)
        assert np.array_equal(s, prepared.styles[0]) and np.array_equal(c, photo)


def test_photo_sized_to_the_result_with_one_pixel_of_rounding(tmp_path):
    photo = np.random.default_rng(4).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    result = np.zeros((95, 128, 3), np.uint8)      # 400 -> 128 gives 96 rows here, 95 by flooring
    x, c, _ = M.sized_inputs(result, photo, photo)
    assert c.shape == x.shape
    with pytest.raises(Exception, match=r"^content: .* 128x96 px but the result is 128x90"):
        M.sized_inputs(np.zeros((90, 128, 3), np.uint8), photo, photo)


def test_bad_masks_and_results_are_refused(tiny, pictures):
    photo, painting, _ = pictures
    from numpynst.errors import OptionError
    with pytest.raises(OptionError, match="mask must have the picture's shape"):
        M.Judge(photo, painting, tiny, mask=np.ones((5, 5)))
    with pytest.raises(OptionError, match="mask must hold finite weights >= 0"):
        M.Judge(photo, painting, tiny, mask=-np.ones((32, 48)))
    with pytest.raises(OptionError, match="result is 40x32 px but the photo is 48x32"):
        M.Judge(photo, painting, tiny, projections=2)(np.zeros((32, 40, 3), np.uint8))


# ---------------------------------------------------------------------------- the command
@pytest.fixture(scope="module")
def files(tmp_path_factory, pictures):
    d = tmp_path_factory.mktemp("evaluate")
    photo, painting, between = pictures
    paths = {"photo": d / "photo.png", "painting": d / "painting.png", "result": d / "result.png"}
    for key, arr in zip(paths, (photo, painting, between)):
        save_image(paths[key], arr)
    paths["weights"] = write_tiny_vgg_h5(d / "tiny.h5")
    Image.fromarray(between[:, :, 0]).save(d / "grey.png")
    Image.fromarray(np.dstack([between, np.full((32, 48), 255, np.uint8)])).save(d / "rgba.png")
    save_image(d / "narrow.png", between[:, :40])
    (d / "notes.txt").write_text("not an image\n")
    paths["dir"] = d
    return paths


def cli(files, *args):
    return main(["evaluate", *map(str, args), "--weights", str(files["weights"]), "--projections", "8"])


def test_evaluate_prints_the_measured_figures(files, capsys):
    from numpynst.vgg import VGG
    assert cli(files, files["result"], "--content", files["photo"], "--style", files["painting"], "--json") == 0
    out = json.loads(capsys.readouterr().out)
    want = M.measure(files["result"], files["photo"], files["painting"], projections=8,
                     model=VGG.from_h5(files["weights"]))
    assert {k: out[k] for k in want.as_dict()} == want.as_dict()
    assert out["size"] == [48, 32]
    assert cli(files, files["result"], "--content", files["photo"], "--style", files["painting"]) == 0
    text = capsys.readouterr().out
    assert f"{want.content:7.4f}" in text and f"{want.style_swd:7.4f}" in text and "S_gram" in text


@pytest.mark.parametrize("which, path, message", [
    ("result", "missing.png", r"RESULT .*missing.png: no such file"),
    ("content", "missing.png", r"--content .*missing.png: no such file"),
    ("style", "notes.txt", r"--style: cannot read image .*notes.txt: not an image file"),
    ("result", "notes.txt", r"RESULT: cannot read image .*notes.txt: not an image file"),
    ("result", "grey.png", r"RESULT .*grey.png: pixel mode L \(grey\), not RGB"),
    ("result", "rgba.png", r"RESULT .*rgba.png: pixel mode RGBA \(RGB with alpha\), not RGB"),
    ("result", "narrow.png", (r"--content: at the result's longest side \(40 px\) the photo is 40x27 px "
                              r"but the result is 40x32 px")),
    ("style", ".", r"--style .*: it is a directory, not a file"),
])
def test_evaluate_bad_input_is_one_line_exit_2(files, capsys, which, path, message):
    args = {"result": files["result"], "content": files["photo"], "style": files["painting"]}
    args[which] = files["dir"] / path
    code = cli(files, args["result"], "--content", args["content"], "--style", args["style"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("numpynst: error: ")
    import re
    assert re.search(message, err), err


def test_evaluate_bad_numbers_name_the_option(files, capsys):
    base = [files["result"], "--content", files["photo"], "--style", files["painting"]]
    assert cli(files, *base, "--style-scale", "0") == 2
    assert "--style-scale must be a number in [0.05, 8]" in capsys.readouterr().err
    assert main(["evaluate", *map(str, base), "--projections", "0"]) == 2
    assert "--projections must be an integer in 1..4096" in capsys.readouterr().err
