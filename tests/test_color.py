"""Colour matching (numpynst.image.color, --color match): the matched style has the photo's colour
mean and covariance, the map is the identity for equal images, the symmetric root treats the channels
alike (Cholesky does not), weights restrict the statistics to a region; and --color in the options."""

import numpy as np
import pytest

from numpynst.errors import ImageError, OptionError
from numpynst.image import color_statistics, color_transform, match_color
from numpynst.options import StylizeOptions


def _picture(rng, h, w, mix):
    """A random picture with correlated channels (a colour cast), inside 0..255."""
    base = rng.uniform(0, 1, size=(h, w, 3)) @ np.asarray(mix).T
    return 20 + 200 * (base - base.min()) / (base.max() - base.min())


@pytest.mark.parametrize("method", ["eig", "chol"])
def test_mapped_pixels_have_the_contents_mean_and_covariance(rng, method):
    style = _picture(rng, 30, 40, [[1, 0.2, 0], [0.5, 1, 0.1], [0, 0.3, 0.4]])
    content = _picture(rng, 25, 20, [[0.2, 1, 0.3], [0.1, 0.2, 1], [1, 0.1, 0.1]])
    A, b = color_transform(style, content, method)
    mapped = style.reshape(-1, 3) @ A.T + b
    mu_c, C_c = color_statistics(content)
    mu_m, C_m = color_statistics(mapped.reshape(style.shape))
    np.testing.assert_allclose(mu_m, mu_c, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(C_m, C_c, rtol=1e-9, atol=1e-8)
    # and the statistics are the textbook ones
    np.testing.assert_allclose(C_c, np.cov(content.reshape(-1, 3).T, bias=True), rtol=1e-12)


def test_uint8_result_is_close_to_the_contents_statistics(rng):
    """Rounding to uint8 moves the mean by < 0.5 level; nothing saturates here."""
    style = _picture(rng, 40, 40, [[1, 0.1, 0.1], [0.1, 1, 0.1], [0.1, 0.1, 1]])
    content = 90 + 0.3 * (_picture(rng, 40, 40, [[1, 0.5, 0], [0.5, 1, 0], [0, 0, 0.3]]) - 20)
    out = match_color(style.astype(np.uint8), content)
    assert out.dtype == np.uint8 and out.shape == style.shape
    mu_o, C_o = color_statistics(out)
    mu_c, C_c = color_statistics(content)
    assert np.abs(mu_o - mu_c).max() < 0.6
    assert np.abs(C_o - C_c).max() < 0.02 * np.abs(C_c).max() + 0.5


@pytest.mark.parametrize("method", ["eig", "chol"])
def test_identity_when_style_is_the_content(rng, method):
    img = _picture(rng, 20, 30, [[1, 0.3, 0], [0.2, 1, 0.2], [0, 0.3, 1]])
    A, b = color_transform(img, img, method)
    np.testing.assert_allclose(A, np.eye(3), atol=1e-10)
    np.testing.assert_allclose(b, 0, atol=1e-8)
    u8 = img.astype(np.uint8)
    np.testing.assert_array_equal(match_color(u8, u8, method), u8)


def test_symmetric_root_treats_the_channels_alike_cholesky_does_not(rng):
    """Permuting R, G, B in both images permutes the eig result; Cholesky's depends on the order."""
    style = _picture(rng, 20, 20, [[1, 0.6, 0], [0.2, 1, 0.5], [0.4, 0, 1]])
    content = _picture(rng, 20, 20, [[0.3, 1, 0.2], [1, 0.1, 0.6], [0.2, 0.5, 1]])
    perm = [2, 0, 1]
    for method, equivariant in (("eig", True), ("chol", False)):
        A, b = color_transform(style, content, method)
        Ap, bp = color_transform(style[..., perm], content[..., perm], method)
        P = np.eye(3)[perm]
        same = np.allclose(Ap, P @ A @ P.T, atol=1e-9) and np.allclose(bp, P @ b, atol=1e-7)
        assert same == equivariant, method


def test_weights_restrict_the_statistics_to_a_region(rng):
    img = _picture(rng, 10, 12, [[1, 0.2, 0], [0.1, 1, 0.2], [0, 0.1, 1]])
    w = np.zeros((10, 12))
    w[2:7, 3:9] = 1.0
    mu, C = color_statistics(img, w)
    mu2, C2 = color_statistics(img[2:7, 3:9])
    np.testing.assert_allclose(mu, mu2, rtol=1e-12)
    np.testing.assert_allclose(C, C2, rtol=1e-10, atol=1e-10)
    with pytest.raises(ImageError, match="weights must be 120 values >= 0 with a positive sum"):
        color_statistics(img, np.zeros((10, 12)))


def test_a_grey_painting_gives_a_finite_picture(rng):
    """A singular style covariance (one hue): the floored eigenvalues keep the map finite, and the
    grey levels' mean still lands on the photo's mean."""
    grey = np.repeat(rng.integers(40, 200, size=(16, 16, 1)), 3, axis=2).astype(np.uint8)
    content = _picture(rng, 16, 16, [[1, 0.2, 0], [0.1, 1, 0.3], [0.2, 0, 1]])
    A, b = color_transform(grey, content)
    assert np.all(np.isfinite(A)) and np.all(np.isfinite(b))
    out = match_color(grey, content)
    assert out.dtype == np.uint8


def test_bad_shapes_and_methods_are_one_line_errors():
    with pytest.raises(ImageError, match=r"the style image must have shape \(H, W, 3\)"):
        match_color(np.zeros((4, 4)), np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="method must be one of eig, chol"):
        color_transform(np.ones((2, 2, 3)), np.ones((2, 2, 3)), "svd")


def test_color_option_and_the_older_preserve_color_flag():
    assert StylizeOptions().validate().color == "style"
    assert StylizeOptions(color="match").validate().color == "match"
    old = StylizeOptions(preserve_color=True).validate()
    assert old.color == "keep" and old.preserve_color is False          # folded into --color
    assert StylizeOptions(preserve_color=True, color="keep").validate().color == "keep"
    with pytest.raises(OptionError, match="color must be one of style, keep, match, got 'sepia'"):
        StylizeOptions(color="sepia").validate()
    with pytest.raises(OptionError, match="--preserve-color .* and --color match contradict"):
        StylizeOptions(preserve_color=True, color="match").validate(cli=True)
