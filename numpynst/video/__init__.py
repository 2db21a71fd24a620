"""Video: a clip stylized frame by frame without flicker (Ruder, Dosovitskiy and Brox, GCPR 2016).

>>> from numpynst.video import stylize_video                                    # doctest: +SKIP
>>> r = stylize_video("clip.mp4", "painting.jpg", "out.mp4", size=256, iterations=100)

One idea per module, low to high:

* :mod:`~numpynst.video.warp` -- bilinear warping by a flow field and its backward pass;
* :mod:`~numpynst.video.temporal` -- the temporal cost ``sum w (x - warp(x_prev))^2 / D``, its
  gradient, and the objective that adds it to style transfer's ``J``;
* :mod:`~numpynst.video.flow` -- optical flow (OpenCV's DIS or Farnebaeck) and the occlusion /
  motion-boundary weights;
* :mod:`~numpynst.video.io` -- reading a video or a folder of frames, checked up front; writing a
  video with the source's frame rate and audio (PyAV);
* :mod:`~numpynst.video.run` -- the frame loop: warped starts, the temporal term, streaming,
  per-frame resume by content digest, interrupts;
* :mod:`~numpynst.video.chunks` -- long clips in overlapping chunks on a Dask cluster;
* :mod:`~numpynst.video.synthetic` -- clips with known motion (true flows, visibility) to measure
  flicker against.

PyAV and OpenCV are the optional extra ``numpynst[video]``; warping and the temporal cost need
neither, and the others say in one line how to install them when missing.
"""

from .run import DEFAULT_TEMPORAL_WEIGHT, VideoResult, stylize_video  # noqa: F401

__all__ = ["stylize_video", "VideoResult", "DEFAULT_TEMPORAL_WEIGHT"]
