"""n-disk systems, speckle patterns, pre-processing, datasets, metrics and the first-moment baseline."""

import json

import h5py
import numpy as np
import pytest

from napari_cxdi.errors import ConfigError, DataValidationError, InputFileError, OutputExistsError
from napari_cxdi.speckle.baseline import FirstMomentBaseline, first_moment
from napari_cxdi.speckle.dataset import (
    SpeckleDatasetConfig, load_dataset, load_patterns, make_dataset, simulate_pattern, split_indices, write_dataset,
)
from napari_cxdi.speckle.disks import (
    BOX, TOTAL_AREA, DiskSystem, object_function, random_disk_system, thickness_map,
)
from napari_cxdi.speckle.evaluate import classification_report, confusion_matrix
from napari_cxdi.speckle.patterns import (
    PreprocessConfig, add_poisson_noise, airy_pattern, bin_pattern, block_center, center_crop, prepare,
    speckle_analytic, speckle_dft, standardize,
)


@pytest.mark.parametrize("polydisperse", [False, True])
@pytest.mark.parametrize("n", [2, 7, 20])
def test_disks_never_overlap_and_keep_total_area(n, polydisperse):
    rel = []
    for seed in range(5):
        s = random_disk_system(n, seed, polydisperse=polydisperse)
        rel.extend(s.radii / s.radii.mean())
        assert s.n == n
        assert s.min_gap() >= 2.0 - 1e-9
        assert s.total_area == pytest.approx(TOTAL_AREA, rel=1e-12)
        assert np.all(s.centers - s.radii[:, None] >= 0) and np.all(s.centers + s.radii[:, None] <= BOX)
    if polydisperse:
        if n >= 7:
            assert 0.2 < np.std(rel) < 0.45  # Gaussian radii, sd = mean / 3
    else:
        assert np.allclose(s.radii, np.sqrt(16200 / n))


def test_disk_placement_is_seedable():
    a, b = random_disk_system(9, 3), random_disk_system(9, 3)
    assert np.array_equal(a.centers, b.centers)
    assert not np.array_equal(a.centers, random_disk_system(9, 4).centers)


def test_rasterised_area_matches_disk_area():
    s = random_disk_system(5, 1)
    assert thickness_map(s).sum() == pytest.approx(s.total_area, rel=2e-3)


def test_windowed_dft_matches_padded_fft():
    rng = np.random.default_rng(0)
    obj = rng.random((41, 41)) * (rng.random((41, 41)) < 0.2)
    pad, window = 181, 21
    full = np.abs(np.fft.fftshift(np.fft.fft2(obj, s=(pad, pad)))) ** 2
    assert np.allclose(speckle_dft(obj, window, pad), center_crop(full, window), rtol=1e-4, atol=1e-4 * full.max())


def test_single_centred_disk_matches_airy():
    s = DiskSystem(np.array([[1000.0, 1000.0]]), np.array([90.0]))
    intensity = speckle_dft(object_function(s))
    airy = airy_pattern(90.0)
    assert intensity.shape == (513, 513)
    assert np.abs(intensity - airy).max() < 1e-3 * airy.max()
    # first dark ring at k r = 3.8317: q = 3.8317 * 18001 / (2 pi 90) = 122.0 px from the centre
    profile = intensity[256, 256:]
    assert abs(int(np.argmin(profile[100:140])) + 100 - 122) <= 1


def test_dft_and_analytic_agree_for_many_disks():
    s = random_disk_system(12, 5, polydisperse=True)
    a, b = speckle_dft(thickness_map(s)), speckle_analytic(s)
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9999


def test_phase_contrast():
    s = random_disk_system(4, 2)
    amp = standardize(speckle_dft(object_function(s)))
    flat_phase = standardize(speckle_dft(object_function(s, "phase", "flat", phase=1.0)))
    assert np.allclose(amp, flat_phase, atol=1e-3)  # a uniform phase disk only rescales |F|^2
    sphere = standardize(speckle_dft(object_function(s, "phase", "sphere", phase=2.5)))
    assert not np.allclose(amp, sphere, atol=1e-2)
    with pytest.raises(ConfigError):
        object_function(s, "phase", phase=0.0)


def test_standardize_and_block():
    rng = np.random.default_rng(1)
    x = rng.gamma(1.0, 5.0, size=(3, 65, 65)).astype(np.float32)
    z = standardize(x)
    assert np.allclose(z.mean(axis=(-2, -1)), 0, atol=1e-5)
    assert np.allclose(z.std(axis=(-2, -1)), 1, atol=1e-5)
    b = block_center(x, 11)
    assert np.all(b[:, 27:38, 27:38] == 0) and b[:, 26, 32].all() and b[:, 38, 32].all()
    with pytest.raises(DataValidationError):
        standardize(np.ones((5, 5)))


def test_prepare_is_consistent_for_prebinned_input():
    s = random_disk_system(6, 0)
    raw = block_center(speckle_analytic(s), 11)
    cfg = PreprocessConfig(window=257, bin=3)
    a = prepare(raw, cfg)
    b = prepare(bin_pattern(raw, 3), cfg, input_bin=3)
    assert a.shape == b.shape == (85, 85)
    assert np.allclose(a, b, atol=1e-4)
    assert abs(float(a.mean())) < 1e-5 and float(a.std()) == pytest.approx(1, abs=1e-4)
    with pytest.raises(DataValidationError):
        prepare(raw[:100, :100], cfg)


def test_poisson_noise_photon_count():
    s = random_disk_system(5, 0)
    counts = add_poisson_noise(speckle_analytic(s), 1e6, rng=0)
    assert counts.sum() == pytest.approx(1e6, rel=0.01)
    assert np.all(counts[251:262, 251:262] == 0)
    assert np.array_equal(counts, np.round(counts))


def test_dataset_parallel_matches_serial_and_roundtrips(tmp_path):
    cfg = SpeckleDatasetConfig(n_values=(2, 5), per_class=2, window=65, method="analytic", seed=3, photons=1e5)
    serial = make_dataset(cfg, workers=1)
    parallel = make_dataset(cfg, workers=2)
    assert np.array_equal(serial.patterns, parallel.patterns)
    assert serial.labels.tolist() == [2, 2, 5, 5]
    one, system = simulate_pattern(5, 1, cfg)
    assert np.array_equal(one, serial.patterns[3]) and system.n == 5

    path = tmp_path / "d.h5"
    progress = list(write_dataset(path, cfg))
    assert progress[-1] == {"done": 4, "total": 4}
    data = load_dataset(path)
    assert np.array_equal(data.patterns, serial.patterns) and data.config["seed"] == 3
    assert np.allclose(data.radii[2, :5], np.sqrt(16200 / 5))
    with h5py.File(path) as f:
        prov = json.loads(f.attrs["provenance"])
    assert prov["config"]["per_class"] == 2 and prov["version"]
    with pytest.raises(OutputExistsError):
        list(write_dataset(path, cfg))
    pats, b = load_patterns(path)
    assert pats.shape == (4, 65, 65) and b == 1
    with pytest.raises(InputFileError):
        load_dataset(tmp_path / "missing.h5")


def test_dataset_config_validation():
    with pytest.raises(ConfigError):
        SpeckleDatasetConfig(window=64)
    with pytest.raises(ConfigError):
        SpeckleDatasetConfig(method="analytic", contrast="phase")
    with pytest.raises(ConfigError):
        SpeckleDatasetConfig(bin=2)


def test_split_is_balanced_and_disjoint():
    labels = np.repeat(np.arange(2, 8), 20)
    tr, va, te = split_indices(labels, test_per_class=5, val_fraction=0.1, seed=1)
    assert np.all(np.bincount(labels[te])[2:] == 5)
    assert len(set(tr) | set(va) | set(te)) == labels.size
    assert not (set(tr) & set(va) or set(tr) & set(te) or set(va) & set(te))
    tr2, va2, te2 = split_indices(labels, test_per_class=5, val_fraction=0.1, seed=1)
    assert np.array_equal(te, te2) and np.array_equal(va, va2)


def test_metrics():
    y = np.array([2, 2, 3, 3, 4, 4])
    p = np.array([2, 3, 3, 3, 4, 2])
    cm = confusion_matrix(y, p, [2, 3, 4])
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    r = classification_report(y, p, [2, 3, 4])
    assert r["accuracy"] == pytest.approx(4 / 6)
    assert r["per_class"][1]["precision"] == pytest.approx(2 / 3) and r["per_class"][1]["recall"] == 1
    assert r["errors_gt1"] == 1 and r["mae"] == pytest.approx(3 / 6)


def test_first_moment_baseline_separates_disk_numbers():
    cfg = SpeckleDatasetConfig(n_values=(2, 8, 20), per_class=6, method="analytic", seed=0)
    data = make_dataset(cfg)
    m = first_moment(data.patterns)
    means = [m[data.labels == n].mean() for n in (2, 8, 20)]
    assert means[0] < means[1] < means[2]  # smaller disks scatter wider
    train = np.arange(len(m)) % 2 == 0
    for readout in ("nearest", "regression"):
        base = FirstMomentBaseline(readout).fit(m[train], data.labels[train])
        assert np.mean(base.predict(m[~train]) == data.labels[~train]) >= 0.8
    for mode in ("absolute", "shifted", "normalized"):
        assert np.all(np.isfinite(first_moment(data.patterns[:2], mode)))
