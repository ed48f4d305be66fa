"""Radial speckle features against a plain re-statement of their definitions, pixel by pixel.

A small window (45 x 45, binned 3 x 3 -> 15 x 15, rings 2..9 binned pixels) keeps the loops cheap: every ring
mean, ring contrast (factorial moment for counts), moment of |q|, autocorrelation lag, photon count and the
one-disk fit is recomputed here from the module docstring's formulas and compared number by number.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_cxdi.errors import ConfigError, DataValidationError
from napari_cxdi.speckle.features import (
    FIT_RADII,
    GLOBAL_NAMES,
    NOISE_FREE_LOG_PHOTONS,
    FeatureConfig,
    _acf,
    _fit_disk,
    add_counts_noise,
    airy_templates,
    disk_first_minimum_px,
    looks_like_counts,
    radial_features,
    to_feature_grid,
)

CFG = FeatureConfig(window=45, bin=3, block=3, r_min=2, r_max=9)
S = 15


def _pixels(cfg=CFG):
    c = cfg.size // 2
    y, x = np.mgrid[:cfg.size, :cfg.size] - c
    r = np.hypot(y, x)
    bb = (cfg.block / 2) / cfg.bin
    valid = ((np.abs(y) > bb) | (np.abs(x) > bb)) & (r >= cfg.r_min - 0.5)
    return r, valid


def _reference(full: np.ndarray, counts: bool, cfg=CFG) -> np.ndarray:
    """One pattern (full resolution, at least ``cfg.window`` wide) -> its feature vector, by loops."""
    h, w = full.shape
    y0, x0 = h // 2 - cfg.window // 2, w // 2 - cfg.window // 2
    crop = full[y0:y0 + cfg.window, x0:x0 + cfg.window].astype(float)
    b = cfg.bin
    grid = crop.reshape(cfg.size, b, cfg.size, b).mean(axis=(1, 3))
    r, valid = _pixels(cfg)
    s = grid * (b * b if counts else 1.0)
    total = s[valid].sum()
    nvalid = valid.sum()
    mean_all = total / nvalid
    log_i, contrast, weight = [], [], []
    floor = 1e-3 / mean_all if counts else 1e-7
    for k in range(cfg.r_min, cfg.r_max + 1):
        pix = valid & (np.rint(r) == k)
        m1 = s[pix].mean()
        m2 = (s[pix] ** 2).mean() - (m1 if counts else 0.0)
        contrast.append(np.clip(m2 / m1**2 - 1.0, -1, 5) if m1 > 0 else 0.0)
        log_i.append(np.log10(m1 / mean_all + floor))
        weight.append(pix.sum() * (min(max(m1 * pix.sum() / 50.0, 0.0), 1.0) if counts else 1.0))
    q = r * b
    first = (s[valid] * q[valid]).sum() / total
    second = np.sqrt((s[valid] * q[valid] ** 2).sum() / total)
    g2 = ((s[valid] ** 2).sum() - (total if counts else 0.0)) / nvalid
    contrast_all = np.clip(g2 / mean_all**2 - 1.0, -1, 5)
    # autocorrelation of the standardised log pattern over valid pixel pairs
    z = np.log1p(grid / grid.mean())
    mu = z[valid].mean()
    zc = np.where(valid, z - mu, 0.0)
    var = (zc[valid] ** 2).mean()
    acf = []
    for lag in (1, 2):
        num_y = sum(zc[i + lag, j] * zc[i, j] for i in range(cfg.size - lag) for j in range(cfg.size))
        n_y = sum(valid[i + lag, j] and valid[i, j] for i in range(cfg.size - lag) for j in range(cfg.size))
        num_x = sum(zc[i, j + lag] * zc[i, j] for i in range(cfg.size) for j in range(cfg.size - lag))
        n_x = sum(valid[i, j + lag] and valid[i, j] for i in range(cfg.size) for j in range(cfg.size - lag))
        acf.append(0.5 * (num_y / n_y + num_x / n_x) / var)
    log_ph = np.log10(max(total, 1.0)) if counts else NOISE_FREE_LOG_PHOTONS
    # one-disk fit: weighted least squares with a free offset against every template, parabola on log r
    t = airy_templates(cfg)
    wn = np.array(weight) / max(sum(weight), 1e-12)   # no ring with photons: every weight 0
    li = np.array(log_i)
    res = []
    for tg in t:
        d = li - tg
        c = (d * wn).sum()
        res.append((((d - c) ** 2) * wn).sum())
    res = np.array(res)
    g = int(np.argmin(res))
    gi = min(max(g, 1), len(FIT_RADII) - 2)
    y0_, y1_, y2_ = res[gi - 1], res[gi], res[gi + 1]
    den = y0_ - 2 * y1_ + y2_
    shift = 0.5 * (y0_ - y2_) / den if den > 0 else 0.0
    lr = np.log(FIT_RADII)
    fit_r = np.exp(lr[gi] + np.clip(shift, -1, 1) * (lr[1] - lr[0]))
    glob = [first, second, contrast_all, acf[0], acf[1], log_ph, np.log(fit_r), np.sqrt(res[g])]
    return np.array(log_i + contrast + glob)


def _speckle(seed: int, size: int = 45) -> np.ndarray:
    """A smooth-ish random intensity (exponential statistics, correlated over a few pixels)."""
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(size, size)) + 1j * rng.normal(size=(size, size))
    k = np.fft.fftfreq(size)
    f *= np.exp(-(k[:, None] ** 2 + k[None, :] ** 2) / (2 * 0.08**2))
    return np.abs(np.fft.ifft2(f)) ** 2 * 1e3


def test_config_derived_numbers_and_names():
    assert (CFG.size, CFG.n_rings, CFG.n_features) == (15, 8, 2 * 8 + len(GLOBAL_NAMES))
    np.testing.assert_array_equal(CFG.ring_radii_px(), [6, 9, 12, 15, 18, 21, 24, 27])
    assert CFG.ring_radii_px().dtype == np.float64
    names = CFG.feature_names()
    assert names[:2] == ["logI_q6", "logI_q9"] and names[7] == "logI_q27"
    assert names[8] == "contrast_q6" and names[15] == "contrast_q27"
    assert names[16:] == list(GLOBAL_NAMES)
    assert CFG.validate() is CFG
    assert FeatureConfig.from_dict({**CFG.to_dict(), "extra": 1}) == CFG
    one = FeatureConfig(window=45, bin=1, block=3, r_min=2, r_max=30)
    assert FeatureConfig.from_dict(one.to_dict()) == one
    assert CFG.to_dict() == {"window": 45, "bin": 3, "block": 3, "r_min": 2, "r_max": 9}
    assert CFG.with_(r_max=8).r_max == 8 and CFG.r_max == 9
    assert FeatureConfig.from_dict({"r_max": 100}) == FeatureConfig(r_max=100)
    d = FeatureConfig()
    assert (d.window, d.bin, d.block, d.r_min, d.r_max, d.size) == (513, 3, 11, 4, 120, 171)


def test_config_bounds():
    # r_min * bin may equal block / 2 (the block edge), not fall below it
    FeatureConfig(window=45, bin=3, block=6, r_min=1, r_max=9)
    with pytest.raises(ConfigError, match="clear the central block"):
        FeatureConfig(window=45, bin=3, block=7, r_min=1, r_max=9)
    FeatureConfig(window=45, bin=3, block=3, r_min=1, r_max=2)
    with pytest.raises(ConfigError, match="increasing"):
        FeatureConfig(window=45, bin=3, block=3, r_min=3, r_max=3)
    with pytest.raises(ConfigError, match="r_min 0"):
        FeatureConfig(window=45, bin=1, block=0, r_min=0, r_max=9)
    # r_max up to ceil(sqrt(2) * 7) = 10 binned pixels (the corners of a 15 x 15 window)
    FeatureConfig(window=45, bin=3, block=3, r_min=2, r_max=10)
    with pytest.raises(ConfigError, match="r_max 11 lies outside the 15 x 15"):
        FeatureConfig(window=45, bin=3, block=3, r_min=2, r_max=11)
    with pytest.raises(ConfigError, match="window 44 must be odd"):
        FeatureConfig(window=44, bin=1, block=3, r_min=2, r_max=9)
    with pytest.raises(ConfigError, match="odd multiple of bin 3"):
        FeatureConfig(window=47, bin=3, block=3, r_min=2, r_max=9)
    FeatureConfig(window=47, bin=1, block=3, r_min=2, r_max=30)
    # an even window stays even when binned by 4 (44 / 4 = 11 is odd): still refused
    with pytest.raises(ConfigError, match="window 44 must be odd"):
        FeatureConfig(window=44, bin=4, block=3, r_min=2, r_max=7)


@pytest.mark.parametrize("counts", [False, True])
def test_features_match_the_definitions(counts):
    pats = np.stack([_speckle(1), _speckle(2, 51)[3:48, 3:48]])
    pats[1, 17:28, 17:28] = 0.0  # the block of the second one empty
    if counts:
        pats = np.rint(pats * 100)
        pats[0, ::2] = 0.0  # sparse rings: some with fewer than 50 photons
        # one ring (binned radius 8) without any photon -> contrast 0, log at the floor
    else:
        pats[0] *= 1e-6
    r, _ = _pixels()
    ring8 = np.kron(np.rint(r) == 8, np.ones((3, 3), bool))
    pats[0][ring8] = 0.0
    f = radial_features(pats, CFG, counts=counts)
    assert f.dtype == np.float32 and f.shape == (2, CFG.n_features)
    for i in range(2):
        np.testing.assert_allclose(f[i], _reference(pats[i], counts), rtol=2e-5, atol=2e-6)
    assert f[0, 6 + CFG.n_rings] == 0.0
    # forced the other way, the same patterns follow the other definition
    np.testing.assert_allclose(radial_features(pats, CFG, counts=not counts)[0], _reference(pats[0], not counts),
                               rtol=2e-5, atol=2e-6)
    # decided per pattern: counts stored as averages over the 3 x 3 bin are recognised as counts
    grid = pats.reshape(2, 15, 3, 15, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(radial_features(grid, CFG, input_bin=3), f, rtol=1e-5, atol=1e-6)


def test_bigger_inputs_are_cropped_about_the_centre_and_binned_inputs_agree():
    big = _speckle(5, 61)
    f = radial_features(big, CFG, counts=False)[0]
    np.testing.assert_allclose(f, _reference(big, False), rtol=2e-5, atol=2e-6)
    crop = big[8:53, 8:53]
    binned = crop.reshape(15, 3, 15, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(radial_features(binned, CFG, input_bin=3, counts=False)[0], f, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(to_feature_grid(big, CFG)[0], binned, rtol=1e-12)
    assert to_feature_grid(big, CFG).dtype == np.float64
    # an integer pattern is read as numbers, a 2-D one as a stack of one
    ints = np.arange(45 * 45).reshape(45, 45)
    g = to_feature_grid(ints, CFG)
    assert g.shape == (1, 15, 15) and g[0, 0, 0] == pytest.approx((0 + 1 + 2 + 45 + 46 + 47 + 90 + 91 + 92) / 9)


def test_feature_grid_errors():
    with pytest.raises(DataValidationError, match=r"expected a pattern \(H, W\) or a stack"):
        to_feature_grid(np.ones((1, 1, 45, 45)), CFG)
    with pytest.raises(DataValidationError, match="of numbers"):
        to_feature_grid(np.full((45, 45), "a"), CFG)
    with pytest.raises(ConfigError, match="binned by 0 cannot be re-binned to 3"):
        to_feature_grid(np.ones((45, 45)), CFG, input_bin=0)
    with pytest.raises(ConfigError, match="divisor of 3"):
        to_feature_grid(np.ones((45, 45)), CFG, input_bin=2)
    # 15 binned pixels are the whole window at input_bin 3; 14 are not
    assert to_feature_grid(np.ones((15, 15)), CFG, input_bin=3).shape == (1, 15, 15)
    with pytest.raises(DataValidationError, match=r"pattern 14 x 15 \(binned by 3\) is smaller than the 45 x 45"):
        to_feature_grid(np.ones((14, 15)), CFG, input_bin=3)
    with pytest.raises(DataValidationError, match=r"\(15 x 15 at this binning\); use the ResNet models for 257 windows$"):
        to_feature_grid(np.ones((15, 14)), CFG, input_bin=3)
    bad = np.ones((45, 45))
    bad[0, 0] = np.inf  # outside? no: the corner is inside the 45 window
    with pytest.raises(DataValidationError, match="^pattern contains NaN or infinite values$"):
        to_feature_grid(bad, CFG)
    outside = np.ones((47, 47))
    outside[0, 0] = np.nan  # outside the centred 45 crop: ignored
    assert np.all(to_feature_grid(outside, CFG) == 1.0)
    neg = np.ones((45, 45))
    neg[3, 3] = -1e-9
    with pytest.raises(DataValidationError, match="^pattern has negative intensities; give raw intensities or photon counts$"):
        to_feature_grid(neg, CFG)
    zero = np.zeros((45, 45))
    zero[22, 22] = 5.0  # light only in the central block
    with pytest.raises(DataValidationError, match="^pattern has no intensity outside the central block$"):
        radial_features(zero, CFG)


def test_looks_like_counts_tolerance_and_total():
    g = np.full((1, 15, 15), 2.0 / 9.0)           # 2 photons per bin
    assert looks_like_counts(g, CFG).tolist() == [True]
    g2 = g.copy()
    g2[0, 3, 3] += 0.9e-3 / 9                      # within 1e-3 of a whole number
    assert looks_like_counts(g2, CFG).tolist() == [True]
    g2[0, 3, 3] += 0.2e-3 / 9
    assert looks_like_counts(g2, CFG).tolist() == [False]
    g3 = np.full((2, 15, 15), 1.0)                 # 9 photons per bin
    g3[1, 0, 0] = 1e9 / 9 - 224                    # 1e9 photons in all: too many to be counts
    assert looks_like_counts(g3, CFG).tolist() == [True, False]
    g3[1, 0, 0] -= 1.0 / 9
    assert looks_like_counts(g3, CFG).tolist() == [True, True]
    # one photon in one pixel is counts; intensities far below one photon everywhere are not
    one = np.zeros((1, 15, 15))
    one[0, 2, 2] = 1.0 / 9
    assert looks_like_counts(one, CFG).tolist() == [True]
    assert looks_like_counts(one * 1e-4, CFG).tolist() == [False]
    # decided per pattern, not for the stack
    assert looks_like_counts(np.concatenate([one, one + 0.3]), CFG).tolist() == [True, False]
    # the tolerance is strictly below 1e-3 photons (bin 1: the grid is the photon sum itself)
    cfg1 = FeatureConfig(window=45, bin=1, block=3, r_min=2, r_max=30)
    edge = np.zeros((1, 45, 45))
    edge[0, 0, 0], edge[0, 1, 1] = 1.0, 1e-3
    assert looks_like_counts(edge, cfg1).tolist() == [False]
    edge[0, 1, 1] = 0.999e-3
    assert looks_like_counts(edge, cfg1).tolist() == [True]


def test_normalised_intensities_are_not_read_as_counts():
    """A noise-free pattern normalised to unit sum (every pixel ~1e-4) has the same features as the pattern
    itself: it must not be taken for photon counts (which would put every ring at the count floor)."""
    p = _speckle(7)
    f = radial_features(p, CFG)
    np.testing.assert_allclose(radial_features(p / p.sum(), CFG), f, rtol=1e-4, atol=1e-5)
    assert f[0, CFG.n_features - 3] == NOISE_FREE_LOG_PHOTONS


def test_photon_count_feature_and_noise():
    rng = np.random.default_rng(3)
    grid = to_feature_grid(_speckle(4), CFG)
    grid[0, 6:9, 6:9] = 0.0
    noisy = add_counts_noise(grid[0], 2e5, rng, CFG)
    assert noisy.shape == (1, 15, 15) and noisy.dtype == np.float64
    s = noisy * 9
    np.testing.assert_allclose(s, np.rint(s), atol=1e-9)
    assert s.sum() == pytest.approx(2e5, rel=0.01)
    assert np.all(noisy[0, 6:9, 6:9] == 0)
    # the same draws as Poisson sampling of the scaled pattern
    lam = grid * (2e5 / grid.sum())
    np.testing.assert_array_equal(noisy, np.random.default_rng(3).poisson(lam) / 9.0)
    two = add_counts_noise(np.concatenate([grid, grid]), np.array([1e3, 1e5]), np.random.default_rng(0), CFG)
    assert (two[0] * 9).sum() == pytest.approx(1e3, rel=0.1) and (two[1] * 9).sum() == pytest.approx(1e5, rel=0.01)
    f = radial_features(np.kron(noisy[0], np.ones((3, 3))), CFG)[0]
    assert f[CFG.n_features - 3] == pytest.approx(np.log10(s[0][_pixels()[1]].sum()), rel=1e-6)
    assert add_counts_noise(grid, 0.5, rng, CFG).sum() * 9 < 20   # half a photon expected: fine
    for bad in (0.0, -1.0):
        with pytest.raises(ConfigError, match="^photon counts must be > 0$"):
            add_counts_noise(grid, bad, rng, CFG)


def test_fit_disk_recovers_a_template_and_handles_the_grid_edges():
    t = airy_templates(CFG)
    assert t.shape == (len(FIT_RADII), CFG.n_rings)
    w = np.ones((3, CFG.n_rings))
    # exact templates (+ any offset): the residual is 0 and the radius is that template's (parabola symmetric
    # only approximately, so within half a grid step)
    log_i = np.stack([t[100] + 3.0, t[0] - 1.0, t[-1]])
    best, res = _fit_disk(log_i, w, CFG)
    step = np.log(FIT_RADII[1] / FIT_RADII[0])
    assert abs(np.log(best[0] / FIT_RADII[100])) < 0.5 * step
    np.testing.assert_allclose(res, 0.0, atol=1e-7)
    # at the ends of the grid the parabola uses the neighbours of the end point and moves at most one step
    assert abs(np.log(best[1] / FIT_RADII[1])) <= step + 1e-12
    assert abs(np.log(best[2] / FIT_RADII[-2])) <= step + 1e-12
    # a zero weight on a ring ignores it
    bad = t[100].copy()
    bad[3] += 5.0
    w0 = np.ones((1, CFG.n_rings))
    w0[0, 3] = 0.0
    b0, r0 = _fit_disk(bad[None], w0, CFG)
    assert r0[0] == pytest.approx(0.0, abs=1e-7) and abs(np.log(b0[0] / FIT_RADII[100])) < 0.5 * step
    _, r1 = _fit_disk(bad[None], np.ones((1, CFG.n_rings)), CFG)
    # one ring off by 5 (weight 1/8): residual sqrt(5^2 * 1/8 * 7/8) once the offset takes its share
    assert r1[0] <= np.sqrt(25 * 7 / 64) + 1e-9 and r1[0] > 1.0


def test_templates_are_the_airy_ring_profiles():
    from napari_cxdi.speckle.patterns import airy_pattern, block_center

    i = 57
    p = block_center(airy_pattern(FIT_RADII[i], 45), 3).astype(float)
    ref = _reference(p, False)[:CFG.n_rings]
    np.testing.assert_allclose(airy_templates(CFG)[i], ref, rtol=1e-5, atol=1e-6)


def test_acf_of_known_patterns():
    valid = np.ones((15, 15), bool)
    # a checkerboard of the log pattern: neighbours anti-correlated, next neighbours correlated
    yy, xx = np.mgrid[:15, :15]
    board = np.where((yy + xx) % 2, 3.0, 1.0)[None]
    a = _acf(board, valid)
    assert a.shape == (1, 2)
    assert a[0, 0] == pytest.approx(-1.0, abs=0.01) and a[0, 1] == pytest.approx(1.0, abs=0.01)
    # stripes along x: lag along y anti-correlated (-1), along x perfectly correlated (+1): mean 0
    stripes = np.where(yy % 2, 3.0, 1.0)[None]
    s = _acf(stripes, valid)
    assert s[0, 0] == pytest.approx(0.0, abs=0.02) and s[0, 1] == pytest.approx(1.0, abs=0.01)


def test_disk_first_minimum():
    assert disk_first_minimum_px(60.0) == pytest.approx(3.831705970 * 18001 / (2 * np.pi * 60.0), rel=1e-8)
    assert disk_first_minimum_px(10.0, pad=1000) == pytest.approx(3.831705970 * 1000 / (2 * np.pi * 10.0), rel=1e-8)


CFG_BLOCK = FeatureConfig(window=45, bin=3, block=15, r_min=3, r_max=9)


def test_a_wide_block_is_left_out():
    """Block 15 px = 2.5 binned pixels each side of the centre: pixels at |y|, |x| <= 2 are left out, so
    the ring at 3 binned pixels keeps only its pixels outside that square."""
    p = _speckle(9)
    np.testing.assert_allclose(radial_features(p, CFG_BLOCK, counts=False)[0], _reference(p, False, CFG_BLOCK),
                               rtol=2e-5, atol=2e-6)


def test_auto_counts_use_the_configured_binning():
    """At bin 1 the grid itself must hold whole photon numbers: ninths of photons are intensities."""
    cfg1 = FeatureConfig(window=45, bin=1, block=3, r_min=2, r_max=30)
    p = np.rint(_speckle(3) * 200) / 9.0
    np.testing.assert_allclose(radial_features(p, cfg1), radial_features(p, cfg1, counts=False), rtol=1e-6)
    assert radial_features(p, cfg1)[0, cfg1.n_features - 3] == NOISE_FREE_LOG_PHOTONS


def test_sparse_counts_extreme_contrasts_and_no_warnings():
    """Counts below one photon per pixel (the floor of the log profile, rings with < 50 photons weigh
    less), a single photon (log10 photons = 0), contrasts clipped to [-1, 5], without numpy warnings."""
    import warnings

    sparse = np.rint(_speckle(6) * 8.0)
    sparse[20:25] = 0.0
    assert 0 < sparse.sum() / 225 < 1.0   # under one photon per binned pixel
    single = np.zeros((45, 45))
    single[30, 40] = 1.0
    # one bright pixel per ring: ring contrast = pixels - 1 > 5, clipped; overall contrast clipped too
    spikes = np.full((45, 45), 1e-3)
    r, _ = _pixels()
    for k in range(2, 10):
        yx = np.argwhere(np.rint(r) == k)[0]
        spikes[3 * yx[0] + 1, 3 * yx[1] + 1] = 1e3 * k
    # forced counts on half photons: the factorial moment <s (s - 1)> < 0, contrast -2 clipped to -1
    halves = np.full((45, 45), 0.5 / 9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # rings from 20 to 87 photons: some below the 50 that weigh fully, some above
        medium = np.rint(_speckle(6) * 16.0)
        medium[20:25] = 0.0
        for p, counts in ((sparse, True), (medium, True), (single, True), (spikes, False), (halves, True)):
            f = radial_features(p, CFG, counts=counts)[0]
            np.testing.assert_allclose(f, _reference(p, counts), rtol=2e-5, atol=2e-6)
        tiny = np.zeros((45, 45))
        tiny[:3, :3] = 1.0     # light in a corner (beyond the last ring) and ...
        y8, x8 = np.argwhere(np.rint(r) == 8)[0]
        tiny[3 * y8:3 * y8 + 3, 3 * x8:3 * x8 + 3] = 3e-161   # ring 8: its squared mean underflows to 0
        radial_features(tiny, CFG, counts=False)
        # photons only in a corner, beyond the last ring: every ring weight is 0 and so every fit residual
        corner = np.zeros((45, 45))
        corner[0, 0] = 1.0
        fc = radial_features(corner, CFG, counts=True)[0]
        np.testing.assert_allclose(fc, _reference(corner, True), rtol=2e-5, atol=2e-6)
    f = radial_features(single, CFG, counts=True)[0]
    assert f[CFG.n_features - 3] == 0.0
    s = radial_features(spikes, CFG, counts=False)[0]
    assert np.all(s[CFG.n_rings:2 * CFG.n_rings] == 5.0) and s[16 + 2] == 5.0
    h = radial_features(halves, CFG, counts=True)[0]
    assert np.all(h[CFG.n_rings:2 * CFG.n_rings] == -1.0) and h[16 + 2] == -1.0
