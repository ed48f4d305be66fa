"""Detection values: the trackpy detector is trackpy.locate with the documented parameters and units;
the adaptive detector's contrast, centroids and masks on frames built by hand (issue 20)."""

from __future__ import annotations

import importlib
import math
import warnings

import numpy as np
import pandas as pd
import pytest

from napari_cxdi.errors import ConfigError, DataValidationError

detect = importlib.import_module("napari_cxdi.tracking.detect")


def _discs(n=64, centres=((20, 20), (40, 44), (14, 48)), depths=(1.0, 1.0, 0.7), radius=5, offset=0.0):
    yy, xx = np.mgrid[0:n, 0:n]
    frame = np.full((n, n), offset)
    for (cy, cx), dep in zip(centres, depths):
        frame[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] -= dep
    return frame


def _locate(s, diameter, minmass, separation, noise):
    import trackpy as tp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tp.locate(s, diameter, minmass=minmass, separation=separation, noise_size=noise, preprocess=True,
                         characterize=True, engine="python")


def _rows(f, px):
    f = f.sort_values("y").reset_index(drop=True)
    d = 2 * np.sqrt(2) * f["size"].to_numpy() * px
    return f, d


def test_trackpy_detector_is_locate_with_the_documented_parameters():
    frame = _discs(offset=0.7)  # a phase offset: the detector works on the frame minus its minimum
    cfg = detect.DetectionConfig(method="trackpy", diameter_nm=130.0, separation_nm=95.0, minmass=3.0, smooth_px=1.5,
                                 min_diameter_nm=20.0, max_diameter_nm=300.0)
    got = detect.detect_frame(frame, cfg, pixel_size_nm=10.0, frame_index=3).sort_values("y").reset_index(drop=True)
    s = -frame
    s = s - s.min()
    ref, d = _rows(_locate(s, 13, 3.0, 9.5, 1.5), 10.0)
    assert len(got) == len(ref) == 3
    assert got["frame"].tolist() == [3, 3, 3]
    np.testing.assert_allclose(got["y"], ref["y"]) and np.testing.assert_allclose(got["x"], ref["x"])
    np.testing.assert_allclose(got["y_nm"], ref["y"] * 10.0) and np.testing.assert_allclose(got["x_nm"], ref["x"] * 10.0)
    np.testing.assert_allclose(got["diameter_nm"], d)
    np.testing.assert_allclose(got["area_px"], np.pi * (d / 10.0 / 2) ** 2)
    np.testing.assert_allclose(got["contrast"], ref["signal"]) and np.testing.assert_allclose(got["mass"], ref["mass"])
    assert got.columns.tolist() == detect.FEATURE_COLUMNS and got["frame"].dtype.kind == "i"


def test_trackpy_default_minmass_separation_and_noise():
    frame = _discs()
    base = dict(method="trackpy", diameter_nm=130.0, min_diameter_nm=20.0, max_diameter_nm=300.0)
    for threshold in (0.15, 2.0):
        cfg = detect.DetectionConfig(threshold=threshold, **base)
        got = detect.detect_frame(frame, cfg, pixel_size_nm=10.0).sort_values("y")
        # default minmass: threshold x the area of a disc of the feature diameter / 2; separation = diameter; noise 1
        ref, _ = _rows(_locate(-frame - (-frame).min(), 13, threshold * np.pi * 6.5**2 / 2, 13, 1.0), 10.0)
        np.testing.assert_allclose(got["mass"], ref["mass"])
        np.testing.assert_allclose(got["y"], ref["y"])
    assert len(detect.detect_frame(frame, detect.DetectionConfig(threshold=0.15, **base), 10.0)) == 2
    assert len(detect.detect_frame(frame, detect.DetectionConfig(threshold=20.0, **base), 10.0)) == 0
    # smoothing below 0.5 px is raised to 0.5 for trackpy's noise filter
    cfg = detect.DetectionConfig(smooth_px=0.0, **base)
    ref, _ = _rows(_locate(-frame - (-frame).min(), 13, 0.15 * np.pi * 6.5**2 / 2, 13, 0.5), 10.0)
    np.testing.assert_allclose(detect.detect_frame(frame, cfg, 10.0).sort_values("y")["mass"], ref["mass"])
    # the diameter in pixels is odd: 120 nm at 10 nm/px -> 13, 100 nm -> 11
    cfg = detect.DetectionConfig(diameter_nm=100.0, **{k: v for k, v in base.items() if k != "diameter_nm"})
    ref, _ = _rows(_locate(-frame - (-frame).min(), 11, 0.15 * np.pi * 5.5**2 / 2, 11, 1.0), 10.0)
    np.testing.assert_allclose(detect.detect_frame(frame, cfg, 10.0).sort_values("y")["x"], ref["x"])


def test_trackpy_size_limits_and_mask_edges():
    frame = _discs(offset=0.7)
    base = dict(method="trackpy", diameter_nm=130.0, minmass=3.0, smooth_px=1.5, separation_nm=95.0)
    all3 = detect.detect_frame(frame, detect.DetectionConfig(min_diameter_nm=20.0, max_diameter_nm=300.0, **base), 10.0)
    d = np.sort(all3["diameter_nm"].to_numpy())
    # limits are inclusive: a limit equal to a diameter keeps it
    lo = detect.detect_frame(frame, detect.DetectionConfig(min_diameter_nm=float(d[0]), max_diameter_nm=300.0, **base), 10.0)
    hi = detect.detect_frame(frame, detect.DetectionConfig(min_diameter_nm=20.0, max_diameter_nm=float(d[-1]), **base), 10.0)
    assert len(lo) == 3 and len(hi) == 3
    above = detect.detect_frame(frame, detect.DetectionConfig(min_diameter_nm=float(d[0]) + 1e-6, max_diameter_nm=300.0, **base), 10.0)
    assert len(above) == int(np.sum(d > d[0])) and len(above) < 3
    below = detect.detect_frame(frame, detect.DetectionConfig(min_diameter_nm=20.0, max_diameter_nm=float(d[-1]) - 1e-6, **base), 10.0)
    assert len(below) == int(np.sum(d < d[-1])) and len(below) < 3
    # a non-square mask: rows and columns are clipped separately
    mask = np.zeros((64, 64), bool)
    mask[10:30, 40:64] = True  # only the particle at (14, 48)
    got = detect.detect_frame(frame, detect.DetectionConfig(min_diameter_nm=20.0, max_diameter_nm=300.0, **base), 10.0, mask=mask)
    assert got["y"].tolist() == pytest.approx([14.0], abs=0.5)
    # a mask smaller than the frame (the lookup clips): particles beyond it map to its last row / column
    small = np.zeros((30, 50), bool)
    small[29, 44] = True  # (40, 44) -> row 29
    small[20, 20] = True
    got = detect.detect_frame(frame, detect.DetectionConfig(min_diameter_nm=20.0, max_diameter_nm=300.0, **base), 10.0, mask=small)
    assert sorted(np.round(got["y"]).tolist()) == [20.0, 40.0]
    nothing = detect.detect_frame(np.zeros((64, 64)), detect.DetectionConfig(**base), 10.0, mask=mask)
    assert nothing.empty and nothing.columns.tolist() == detect.FEATURE_COLUMNS


def test_adaptive_contrast_centroid_and_signal():
    # one disc on a slope: the ring contrast is the median inside minus the median of a 3-px ring around it
    n = 48
    yy, xx = np.mgrid[0:n, 0:n]
    frame = 0.01 * xx.astype(float)
    disc = (yy - 24) ** 2 + (xx - 20) ** 2 <= 16
    frame[disc] -= 1.0
    cfg = detect.DetectionConfig(block_nm=300.0, min_diameter_nm=10.0, max_diameter_nm=500.0, smooth_px=0.0, threshold=0.3)
    f = detect.detect_frame(frame, cfg, pixel_size_nm=10.0)
    assert len(f) == 1
    s, bg = detect.signal_and_background(frame, cfg, 10.0)
    assert np.array_equal(s, -frame)
    labels = detect.label_particles(frame, cfg, 10.0)
    own = labels == labels.max()
    ring = np.zeros_like(own)
    from scipy import ndimage

    ring = ndimage.binary_dilation(own, iterations=3) & ~own
    assert f["contrast"].iloc[0] == pytest.approx(np.median(s[own]) - np.median(s[ring]), rel=1e-6)
    excess = np.clip(s - bg, 0, None)
    w = excess[own]
    ys, xs = np.nonzero(own)
    assert f["y"].iloc[0] == pytest.approx(np.sum(w * ys) / w.sum(), rel=1e-9)
    assert f["x"].iloc[0] == pytest.approx(np.sum(w * xs) / w.sum(), rel=1e-9)
    assert f["mass"].iloc[0] == pytest.approx(w.sum(), rel=1e-9)
    assert f["area_px"].iloc[0] == own.sum()
    # smoothing is a Gaussian of smooth_px pixels on the sign-corrected frame
    sm, _ = detect.signal_and_background(frame, cfg.with_(smooth_px=1.5), 10.0)
    np.testing.assert_allclose(sm, ndimage.gaussian_filter(-frame, 1.5))
    # the background is skimage's Gaussian local threshold over an odd block of block_nm / pixel size
    from skimage import filters

    _, bg2 = detect.signal_and_background(frame, cfg.with_(block_nm=200.0), 10.0)
    np.testing.assert_allclose(bg2, filters.threshold_local(-frame, 21, method="gaussian", mode="reflect"))
    _, bright_bg = detect.signal_and_background(-frame, cfg.with_(polarity="bright"), 10.0)
    np.testing.assert_allclose(bright_bg, bg)


def test_ring_contrast_without_a_ring():
    labels = np.ones((5, 5), int)  # the particle fills the image: no solution around it
    signal = np.arange(25.0).reshape(5, 5)
    from skimage import measure

    region = measure.regionprops(labels)[0]
    assert detect._ring_contrast(signal, labels, region) == 12.0  # the median inside
    labels = np.zeros((9, 9), int)
    labels[4, 4] = 1
    signal = np.zeros((9, 9))
    signal[4, 4] = 5.0
    signal[0, :] = 100.0  # outside a 3-px ring: ignored
    region = measure.regionprops(labels)[0]
    assert detect._ring_contrast(signal, labels, region) == 5.0
    assert detect._ring_contrast(signal, labels, region, width=4) == 5.0 - 0.0
    signal[1, 4] = 100.0  # inside the 3-px ring, outside the 2-px one
    assert detect._ring_contrast(signal, labels, region, width=2) == 5.0


def test_min_contrast_drops_weak_particles():
    frame = _discs()
    cfg = detect.DetectionConfig(block_nm=400.0, min_diameter_nm=20.0, max_diameter_nm=300.0, smooth_px=0.0, threshold=0.2)
    f = detect.detect_frame(frame, cfg, 10.0)
    c = f.sort_values("contrast")["contrast"].to_numpy()
    assert len(f) == 3 and c.tolist() == pytest.approx([0.7, 1.0, 1.0], abs=0.02)
    assert len(detect.detect_frame(frame, cfg.with_(min_contrast=0.75), 10.0)) == 2
    assert len(detect.detect_frame(frame, cfg.with_(min_contrast=0.65), 10.0)) == 3


def test_config_block_and_smoothing_errors_and_detect_defaults():
    with pytest.raises(ConfigError, match=r"^detection config: smooth_px must be in \[0, inf\), got -1$"):
        detect.DetectionConfig(smooth_px=-1).validate()
    with pytest.raises(ConfigError, match=r"^detection config: diameter_nm must be in \(0, inf\), got 0$"):
        detect.DetectionConfig(diameter_nm=0).validate()
    with pytest.raises(ConfigError, match=r"^detection config: min_diameter_nm must be in \(0, inf\), got 0$"):
        detect.DetectionConfig(min_diameter_nm=0).validate()
    with pytest.raises(ConfigError, match=r"^detection config: separation_nm must be in \(0, inf\), got 0$"):
        detect.DetectionConfig(separation_nm=0).validate()
    with pytest.raises(ConfigError, match=r"^detection config: minmass must be in \[0, inf\), got -1$"):
        detect.DetectionConfig(minmass=-1).validate()
    with pytest.raises(ConfigError, match=r"^detection config: min_contrast must be in \[0, inf\), got -1$"):
        detect.DetectionConfig(min_contrast=-1).validate()
    with pytest.raises(ConfigError, match=r"^detection config: max_diameter_nm must be in \(0, inf\), got 0$"):
        detect.DetectionConfig(max_diameter_nm=0).validate()
    detect.DetectionConfig(minmass=0, separation_nm=1e-3).validate()
    d = detect.DetectionConfig()
    assert (d.method, d.polarity, d.threshold, d.block_nm, d.smooth_px, d.min_diameter_nm, d.max_diameter_nm,
            d.diameter_nm, d.separation_nm, d.minmass, d.min_contrast, d.exclude_border) == (
        "adaptive", "dark", 0.15, 1200.0, 1.0, 100.0, 1000.0, 300.0, None, None, None, True)
    # detect() with the default config and pixel size: a 1 nm/px movie of ~300 px particles finds nothing in 64 px
    out = detect.detect(np.zeros((2, 16, 16)))
    assert out.empty and out.columns.tolist() == detect.FEATURE_COLUMNS
    frames = np.stack([_discs(), _discs()])
    cfg = detect.DetectionConfig(block_nm=400.0, min_diameter_nm=20.0, max_diameter_nm=300.0, smooth_px=0.0)
    out = detect.detect(frames, cfg, pixel_size_nm=10.0)
    assert out["frame"].tolist() == [0, 0, 0, 1, 1, 1] and out.index.tolist() == list(range(6))
    mask = np.zeros((64, 64), bool)
    mask[5:35, 5:35] = True
    assert len(detect.detect(frames, cfg, 10.0, mask=mask)) == 2
    # a dask movie is computed first
    import dask.array as da

    assert len(detect.detect(da.from_array(frames, chunks=(1, 64, 64)), cfg, 10.0)) == 6
    with pytest.raises(DataValidationError, match="mask shape"):
        detect.detect(frames, cfg, 10.0, mask=np.ones((64, 63), bool))


def test_label_particles_keeps_only_accepted_particles():
    frame = _discs()
    cfg = detect.DetectionConfig(block_nm=400.0, min_diameter_nm=20.0, max_diameter_nm=300.0, smooth_px=0.0)
    labels = detect.label_particles(frame, cfg, 10.0)
    assert labels.dtype == np.int32 and len(np.unique(labels)) == 4
    strict = detect.label_particles(frame, cfg.with_(min_contrast=0.8), 10.0)  # the weak disc is dropped
    assert len(np.unique(strict)) == 3 and strict[14, 48] == 0 and strict[20, 20] > 0
    with pytest.raises(ConfigError):
        detect.label_particles(frame, cfg.with_(method="x"), 10.0)
    mask = np.zeros((64, 64), bool)
    mask[5:35, 5:35] = True
    masked = detect.label_particles(frame, cfg, 10.0, mask=mask)
    assert len(np.unique(masked)) == 2 and masked[20, 20] > 0 and masked[40, 44] == 0


ADAPT = detect.DetectionConfig(block_nm=400.0, min_diameter_nm=20.0, max_diameter_nm=300.0, smooth_px=0.0)


def test_trackpy_minmass_and_separation_matter():
    frame = _discs()
    base = dict(method="trackpy", diameter_nm=130.0, min_diameter_nm=20.0, max_diameter_nm=300.0)
    s = -frame - (-frame).min()
    for threshold in (0.5, 0.7, 1.0):  # the default minmass against masses of ~35 per disc
        got = detect.detect_frame(frame, detect.DetectionConfig(threshold=threshold, **base), 10.0)
        ref = _locate(s, 13, threshold * np.pi * 6.5**2 / 2, 13, 1.0)
        assert len(got) == len(ref)
    assert len(detect.detect_frame(frame, detect.DetectionConfig(threshold=0.5, **base), 10.0)) == 2
    assert len(detect.detect_frame(frame, detect.DetectionConfig(threshold=0.7, **base), 10.0)) == 0
    # a given minmass replaces the default
    assert len(detect.detect_frame(frame, detect.DetectionConfig(threshold=0.01, minmass=60.0, **base), 10.0)) == 0
    # two discs 12 px apart: one feature with the default separation (13 px), two with 100 nm
    close = _discs(centres=((30, 20), (30, 32)), depths=(1.0, 1.0))
    cfg = detect.DetectionConfig(minmass=3.0, **base)
    n_default = len(detect.detect_frame(close, cfg, 10.0))
    n_close = len(detect.detect_frame(close, cfg.with_(separation_nm=100.0), 10.0))
    sc = -close - (-close).min()
    assert n_default == len(_locate(sc, 13, 3.0, 13, 1.0)) and n_close == len(_locate(sc, 13, 3.0, 10.0, 1.0))
    assert n_default < n_close


def test_integer_masks_and_mask_edges():
    frame = _discs()
    mask = np.zeros((64, 64), np.uint8)  # a 0/1 label image
    mask[5:35, 5:35] = 1
    assert detect.detect_frame(frame, ADAPT, 10.0, mask=mask)["y"].round().tolist() == [20.0]
    tp_cfg = detect.DetectionConfig(method="trackpy", diameter_nm=130.0, min_diameter_nm=20.0, max_diameter_nm=300.0)
    assert detect.detect_frame(frame, tp_cfg, 10.0, mask=mask)["y"].round().tolist() == [20.0]
    # a mask edge through a particle: it touches the mask border and is excluded (unless exclude_border=False)
    cut = np.zeros((64, 64), bool)
    cut[:22, :] = True
    assert len(detect.detect_frame(frame, ADAPT, 10.0, mask=cut)) == 1  # only (14, 48) lies inside
    assert len(detect.detect_frame(frame, ADAPT.with_(exclude_border=False), 10.0, mask=cut)) == 2
    # trackpy with a mask narrower than the frame: columns beyond it map to its last column
    narrow = np.zeros((30, 40), bool)
    narrow[20, 20] = narrow[29, 39] = True
    got = detect.detect_frame(frame, tp_cfg.with_(minmass=3.0, smooth_px=1.5, separation_nm=95.0),
                              10.0, mask=narrow)
    assert sorted(np.round(got["y"]).tolist()) == [20.0, 40.0]


def test_image_border_rows_and_columns():
    n = 40
    yy, xx = np.mgrid[0:n, 0:n]

    def disc(cy, cx):
        f = np.zeros((n, n))
        f[(yy - cy) ** 2 + (xx - cx) ** 2 <= 9] = -1.0
        return f

    cfg = ADAPT.with_(block_nm=200.0)
    # touching row 0 / row n-1 / column 0 / column n-1: excluded; one pixel further in: kept
    for cy, cx, kept in ((4, 20, 1), (n - 5, 20, 1), (20, 4, 1), (20, n - 5, 1),
                         (3, 20, 0), (n - 4, 20, 0), (20, 3, 0), (20, n - 4, 0)):
        assert len(detect.detect_frame(disc(cy, cx), cfg, 10.0)) == kept, (cy, cx)


def test_size_limits_are_inclusive_and_complex_frames_use_the_phase():
    frame = _discs()
    d = float(detect.detect_frame(frame, ADAPT, 10.0)["diameter_nm"].iloc[0])  # all three discs alike
    assert len(detect.detect_frame(frame, ADAPT.with_(min_diameter_nm=d, max_diameter_nm=300.0), 10.0)) == 3
    assert len(detect.detect_frame(frame, ADAPT.with_(min_diameter_nm=20.0, max_diameter_nm=d), 10.0)) == 3
    phase = np.exp(1j * frame)
    np.testing.assert_allclose(detect.detect_frame(phase, ADAPT, 10.0)["y"], detect.detect_frame(frame, ADAPT, 10.0)["y"])
    # defaults: pixel size 1 nm (positions in nm equal pixels), frame index 0
    f = detect.detect_frame(frame, detect.DetectionConfig(block_nm=40.0, min_diameter_nm=2.0, max_diameter_nm=30.0,
                                                          smooth_px=0.0))
    assert f["frame"].tolist() == [0, 0, 0] and f["y_nm"].tolist() == f["y"].tolist()
    assert f["x_nm"].tolist() == pytest.approx(f["x"].tolist())
    f10 = detect.detect_frame(frame, ADAPT, 10.0)
    assert f10["x_nm"].tolist() == pytest.approx((f10["x"] * 10).tolist())
    small = detect.DetectionConfig(block_nm=40.0, min_diameter_nm=2.0, max_diameter_nm=30.0, smooth_px=0.0)
    g = detect.detect(np.stack([frame]), small)
    assert g["y_nm"].tolist() == g["y"].tolist()
    gen = detect.iter_detect(np.stack([frame]), small)
    assert drain_table(gen)["x_nm"].tolist() == pytest.approx(g["x"].tolist())
    # detect() passes the configuration on
    assert len(detect.detect(np.stack([frame]), ADAPT.with_(min_contrast=5.0), 10.0)) == 0
    # edges of the configuration: 1 nm blocks and diameters, sub-nm minimum diameter are valid
    detect.DetectionConfig(block_nm=1.0, diameter_nm=1.0, min_diameter_nm=0.5).validate()


def drain_table(gen):
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def test_threshold_contrast_smoothing_and_mass():
    frame = _discs()
    # default min_contrast = threshold / 2: at threshold 0.5 the 0.7 disc passes (not at 2 x threshold)
    assert len(detect.detect_frame(frame, ADAPT.with_(threshold=0.5), 10.0)) == 3
    # threshold 0 on a flat frame: no particle pixel (strictly above the threshold)
    assert not detect.particle_mask(np.zeros((32, 32)), ADAPT.with_(threshold=0.0), 10.0).any()
    from scipy import ndimage

    sm, _ = detect.signal_and_background(frame, ADAPT.with_(smooth_px=0.5), 10.0)
    np.testing.assert_allclose(sm, ndimage.gaussian_filter(-frame, 0.5))
    # a disc with an off-centre hole (filled as part of the particle): the mass counts only positive excess
    n = 48
    yy, xx = np.mgrid[0:n, 0:n]
    f = np.zeros((n, n))
    f[(yy - 24) ** 2 + (xx - 24) ** 2 <= 49] = -1.0
    f[(yy - 24) ** 2 + (xx - 25) ** 2 <= 4] = 0.0
    cfg = ADAPT.with_(block_nm=300.0, threshold=0.3)
    out = detect.detect_frame(f, cfg, 10.0)
    s, bg = detect.signal_and_background(f, cfg, 10.0)
    lab = detect.label_particles(f, cfg, 10.0)
    own = lab == lab.max()
    assert (s - bg)[own].min() < 0  # the hole is below the local background
    assert out["mass"].iloc[0] == pytest.approx(np.clip(s - bg, 0, None)[own].sum(), rel=1e-9)
    w = np.clip(s - bg, 0, None)[own]
    ys, xs = np.nonzero(own)
    assert out["x"].iloc[0] == pytest.approx(np.sum(w * xs) / w.sum(), rel=1e-9)


def test_faint_particle_centroid_is_weighted():
    # excess summing to less than 1: the centroid is still intensity-weighted
    n = 32
    yy, xx = np.mgrid[0:n, 0:n]
    f = np.zeros((n, n))
    inside = (yy - 16) ** 2 + (xx - 16) ** 2 <= 9
    f[inside] = -(0.02 + 0.004 * (xx[inside] - 13))
    cfg = detect.DetectionConfig(block_nm=200.0, min_diameter_nm=5.0, max_diameter_nm=300.0, smooth_px=0.0,
                                 threshold=0.005, min_contrast=0.0)
    out = detect.detect_frame(f, cfg, 10.0)
    s, bg = detect.signal_and_background(f, cfg, 10.0)
    lab = detect.label_particles(f, cfg, 10.0)
    own = lab == lab.max()
    w = np.clip(s - bg, 0, None)[own]
    assert 0 < w.sum() < 1
    ys, xs = np.nonzero(own)
    assert out["x"].iloc[0] == pytest.approx(np.sum(w * xs) / w.sum(), rel=1e-9)
    assert out["x"].iloc[0] != pytest.approx(xs.mean(), abs=1e-3)


def test_ring_width_default_is_three_pixels():
    labels = np.zeros((11, 11), int)
    labels[5, 5] = 1
    yy, xx = np.mgrid[0:11, 0:11]
    dist = np.abs(yy - 5) + np.abs(xx - 5)
    signal = np.where(dist >= 3, 100.0, 0.0)
    signal[5, 5] = 5.0
    from skimage import measure

    region = measure.regionprops(labels)[0]
    # 3-px ring: 24 pixels, 12 at distance 3 (100) -> median 50; a 4-px ring would give 100
    assert detect._ring_contrast(signal, labels, region) == 5.0 - 50.0
    assert detect._ring_contrast(signal, labels, region, width=4) == 5.0 - 100.0


def test_trackpy_on_a_small_frame():
    # frames under 4096 pixels use trackpy's python engine explicitly
    frame = _discs(n=48, centres=((20, 20),), depths=(1.0,))
    cfg = detect.DetectionConfig(method="trackpy", diameter_nm=130.0, min_diameter_nm=20.0, max_diameter_nm=300.0)
    f = detect.detect_frame(frame, cfg, 10.0)
    assert f["y"].tolist() == pytest.approx([20.0], abs=0.3) and f["x"].tolist() == pytest.approx([20.0], abs=0.3)
