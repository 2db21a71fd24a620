"""Clips with known motion: a photo panned and zoomed with subpixel steps, and an object moving over it.

Measuring flicker needs the true motion, so that the temporal error
``mean |out_t - warp(out_{t-1}, w_t)|`` over the visible pixels is not itself a product of a flow
estimate. :func:`known_motion_clip` renders such a clip and returns, for every frame ``t >= 1``, the
true backward flow ``w_t`` (frame ``t``'s pixel ``p`` was at ``p + w_t(p)`` in frame ``t-1``) and
the mask of pixels that were visible in both frames.

**The camera.** Frame ``t`` shows the photo through an affine camera: the frame point ``x`` (pixel
centres, continuous coordinates) sees the photo point ``A_t(x) = c_t + (x - m) / z_t`` with ``m``
the frame's centre, ``c_t = c_0 + t * pan`` and ``z_t = z_0 (1 + t * zoom)``. The point seen at
``p`` in frame ``t`` was at ``q = A_{t-1}^{-1}(A_t(p)) = m + z_{t-1} (c_t - c_{t-1} + (p - m) / z_t)``
in frame ``t-1``, so the background's backward flow is ``q - p``.

**The object.** A disc cut from a second photo moves by ``velocity`` pixels per frame over the
background; its flow is ``-velocity``. Background pixels that it covered in frame ``t-1``
(disocclusions), its own anti-aliased rim, and pixels whose ``q`` lies outside the frame are not
visible in both frames: the mask is False there.

Rendering is Pillow's bicubic affine transform (``Image.transform``), which uses the same
pixel-centre convention for every frame, so the flows above are exact up to interpolation.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from PIL import Image


class KnownMotionClip(NamedTuple):
    """``frames``: uint8 ``(T, H, W, 3)``; ``flows``: float64 ``(T, H, W, 2)`` true backward flows
    (``flows[0]`` is zero: frame 0 has no predecessor); ``visible``: bool ``(T, H, W)``, the pixels
    seen in frames ``t-1`` and ``t`` (all False for ``t = 0``)."""

    frames: np.ndarray
    flows: np.ndarray
    visible: np.ndarray


def _affine(img: Image.Image, size: tuple[int, int], a: float, c: float, e: float, f: float,
            resample=Image.Resampling.BICUBIC) -> np.ndarray:
    """Pillow's ``out(x, y) = img(a x + c, e y + f)`` at ``size`` (W, H), as float32."""
    return np.asarray(img.transform(size, Image.Transform.AFFINE, (a, 0.0, c, 0.0, e, f), resample=resample),
                      dtype=np.float32)


def known_motion_clip(photo: np.ndarray, thing: np.ndarray, n_frames: int = 10, size: tuple[int, int] = (96, 128),
                      pan: tuple[float, float] = (1.3, 0.45), zoom: float = 0.006, zoom0: float = 1.0,
                      radius: float = 18.0, start: tuple[float, float] = (30.0, 40.0),
                      velocity: tuple[float, float] = (3.7, 1.15)) -> KnownMotionClip:
    """Render the clip the module describes.

    Args:
        photo: RGB uint8 background, larger than ``size / zoom0`` plus the pan (it is cropped, not tiled).
        thing: RGB uint8 picture from which the moving disc is cut (its centre, ``2 radius`` across).
        size: ``(H, W)`` of the frames. pan: ``(dx, dy)`` photo pixels per frame; zoom: relative zoom
            per frame; zoom0: the first frame's zoom (frame pixels per photo pixel).
        radius: the disc's radius; start, velocity: its centre in frame 0 ``(x, y)`` and its motion
            per frame, frame pixels.
    """
    H, W = size
    bg = Image.fromarray(photo)
    m = np.array([W / 2.0, H / 2.0])
    c0 = np.array([photo.shape[1] / 2.0, photo.shape[0] / 2.0]) - np.array(pan) * (n_frames - 1) / 2.0
    cam = [(c0 + t * np.array(pan), zoom0 * (1.0 + t * zoom)) for t in range(n_frames)]

    d = int(np.ceil(2 * radius)) + 4
    th, tw = thing.shape[:2]
    tex = Image.fromarray(np.ascontiguousarray(thing[th // 2 - d // 2:th // 2 - d // 2 + d,
                                                     tw // 2 - d // 2:tw // 2 - d // 2 + d]))
    yy, xx = np.mgrid[0:4 * d, 0:4 * d] / 4.0 + 0.125 - d / 2.0          # 4x supersampled disc
    disc = (np.hypot(xx, yy) <= radius).astype(np.float32).reshape(d, 4, d, 4).mean(axis=(1, 3))
    disc_img = Image.fromarray(disc, mode="F")

    frames = np.empty((n_frames, H, W, 3), np.uint8)
    masks = np.empty((n_frames, H, W), np.float32)
    for t, (c, z) in enumerate(cam):
        # frame pixel centre x + 0.5 sees photo point c + (x + 0.5 - m) / z; Pillow samples input
        # point (a x' + c') at output x' = x + 0.5, in the same centre convention
        back = _affine(bg, (W, H), 1 / z, c[0] - m[0] / z, 1 / z, c[1] - m[1] / z)
        o = np.array(start) + t * np.array(velocity)
        off = o - d / 2.0
        obj = _affine(tex, (W, H), 1.0, -off[0], 1.0, -off[1])
        mk = _affine(disc_img, (W, H), 1.0, -off[0], 1.0, -off[1], Image.Resampling.BILINEAR)
        mk = np.clip(mk, 0, 1)
        frames[t] = np.clip(np.rint(back * (1 - mk[..., None]) + obj * mk[..., None]), 0, 255).astype(np.uint8)
        masks[t] = mk

    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64) + 0.5
    flows = np.zeros((n_frames, H, W, 2))
    visible = np.zeros((n_frames, H, W), bool)
    for t in range(1, n_frames):
        (c1, z1), (c0_, z0_) = cam[t], cam[t - 1]
        qx = m[0] + z0_ * (c1[0] - c0_[0] + (xs - m[0]) / z1)
        qy = m[1] + z0_ * (c1[1] - c0_[1] + (ys - m[1]) / z1)
        f = np.stack([qx - xs, qy - ys], axis=-1)
        on = masks[t] > 0.5
        f[on] = -np.array(velocity)
        flows[t] = f
        qxi = np.clip(np.rint(xs + f[..., 0] - 0.5).astype(int), 0, W - 1)
        qyi = np.clip(np.rint(ys + f[..., 1] - 0.5).astype(int), 0, H - 1)
        inside = (xs + f[..., 0] >= 1) & (xs + f[..., 0] <= W - 1) & (ys + f[..., 1] >= 1) & (ys + f[..., 1] <= H - 1)
        rim = (masks[t] > 0.01) & (masks[t] < 0.99)
        was_covered = masks[t - 1][qyi, qxi] > 0.01
        # the object's own pixels are visible in both frames; the background where the object was is not
        visible[t] = inside & ~rim & (on | ~was_covered)
        # an object pixel whose predecessor was on the object's rim is mixed with background
        visible[t] &= ~(on & ((masks[t - 1][qyi, qxi] < 0.99)))
    return KnownMotionClip(frames, flows, visible)
