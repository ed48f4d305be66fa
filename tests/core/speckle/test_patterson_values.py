"""The Patterson map, its peak features and the Patterson classifier's plumbing, checked by value.

A 297 window binned 3 x 3 (99 x 99 pixels, half width 45) keeps it fast; the peak features are recomputed
pixel by pixel from their definition (3 x 3 local maxima, each pixel once, annuli, thresholds, top peaks).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_cxdi.errors import DataValidationError, InputFileError
from napari_cxdi.speckle.features import FeatureConfig, radial_features, to_feature_grid
from napari_cxdi.speckle.patterson import (
    FORMAT,
    HALF,
    N_PEAK_FEATURES,
    PEAK_ANNULI,
    PEAK_THRESHOLDS,
    TOP_PEAKS,
    VALUE_QUANTILES,
    PattersonClassifier,
    PattersonNet,
    _inputs,
    dihedral_views,
    full_map,
    is_patterson_checkpoint,
    load_patterson,
    patterson_features,
    patterson_from_checkpoint,
    patterson_maps,
    patterson_torch,
    save_patterson,
)

FC = FeatureConfig(window=297, bin=3, block=11, r_min=4, r_max=60)
H = 45


def test_constants():
    assert HALF == 60 and FORMAT == "napari-cxdi-speckle-patterson-v1"
    assert PEAK_ANNULI == (3, 8, 14, 20, 28, 36, 46, 60, 90)
    assert len(PEAK_THRESHOLDS) == 16
    assert PEAK_THRESHOLDS[0] == pytest.approx(0.003) and PEAK_THRESHOLDS[-1] == pytest.approx(0.3)
    assert N_PEAK_FEATURES == 8 * (8 + 16) + 16 + 12


def test_patterson_of_a_cosine_is_two_half_peaks():
    """I(k) = 7 (1 + cos(2 pi k.d / S)) -> P = delta(0) + (delta(d) + delta(-d)) / 2, divided by the origin."""
    s, c, half = 15, 7, 5
    k = np.arange(s) - c
    d = (2, 3)
    grid = 7.0 * (1 + np.cos(2 * np.pi * (k[:, None] * d[0] + k[None, :] * d[1]) / s))
    p = patterson_maps(grid, half)
    assert p.shape == (1, half + 1, 2 * half + 1) and p.dtype == np.float32
    ref = np.zeros((half + 1, 2 * half + 1))
    ref[half, half] = 1.0
    ref[half - d[0], half - d[1]] = 0.5       # -d lies in the upper half; +d in the lower (not returned)
    np.testing.assert_allclose(p[0], ref, atol=1e-6)
    # a stack, the default half width on a 121 map (the crop keeps the centre), torch gives the same
    big = np.ones((2, 121, 121))
    assert patterson_maps(big).shape == (2, HALF + 1, 2 * HALF + 1)
    np.testing.assert_allclose(patterson_maps(big)[:, HALF, HALF], 1.0)
    t = patterson_torch(torch.from_numpy(np.stack([grid, 2 * grid])), half)
    np.testing.assert_allclose(t.numpy(), np.stack([ref, ref]), atol=1e-6)
    # half width up to the map's half side
    assert patterson_maps(grid, 7).shape == (1, 8, 15)


def test_patterson_errors():
    with pytest.raises(DataValidationError, match=r"expected binned patterns \(N, S, S\) with S odd, got \(1, 14, 14\)"):
        patterson_torch(torch.ones(1, 14, 14), 5)
    with pytest.raises(DataValidationError, match="with S odd"):
        patterson_torch(torch.ones(15, 15), 5)
    with pytest.raises(DataValidationError, match="with S odd"):
        patterson_torch(torch.ones(1, 15, 13), 5)
    with pytest.raises(DataValidationError, match="^Patterson half width 8 exceeds the 15 x 15 map$"):
        patterson_torch(torch.ones(1, 15, 15), 8)
    with pytest.raises(DataValidationError, match=r"^pattern has no intensity \(Patterson origin <= 0\)$"):
        patterson_torch(torch.zeros(2, 15, 15), 5)
    one = torch.ones(2, 15, 15, dtype=torch.float64)
    one[1] = 0.0
    with pytest.raises(DataValidationError, match="no intensity"):
        patterson_torch(one, 5)


def _ref_peak_features(p: np.ndarray) -> np.ndarray:
    rows, cols = p.shape
    h = rows - 1
    thr = np.asarray(PEAK_THRESHOLDS, np.float32)
    rr = np.zeros(p.shape)
    once = np.zeros(p.shape, bool)
    peak = np.zeros(p.shape, bool)
    for y in range(rows):
        for x in range(cols):
            nb = max(p[min(max(y + dy, 0), rows - 1), min(max(x + dx, 0), cols - 1)]
                     for dy in (-1, 0, 1) for dx in (-1, 0, 1))
            rr[y, x] = np.hypot(y - h, x - h)
            once[y, x] = y < h or x > h       # the origin row's left half repeats its right half
            peak[y, x] = p[y, x] >= nb and once[y, x] and rr[y, x] > 2.5
    out = []
    for a, b in zip(PEAK_ANNULI[:-1], PEAK_ANNULI[1:]):
        m = (rr >= a) & (rr < b) & once
        out += list(np.quantile(p[m], VALUE_QUANTILES))
        pk = p[peak & m]
        out += [np.log1p(np.sum(pk > t)) for t in thr]
    pk = p[peak]
    out += [np.log1p(np.sum(pk > t)) for t in thr]
    top = np.sort(pk)[::-1]
    top = np.concatenate([top, -np.ones(max(0, 400 - len(top)))])
    out += [np.log(max(top[i], 1e-4)) for i in TOP_PEAKS]
    return np.array(out)


def test_peak_features_match_their_definition():
    rng = np.random.default_rng(0)
    a = rng.exponential(0.03, size=(H + 1, 2 * H + 1)).astype(np.float32)
    a[H, H] = 1.0
    a[H, H - 20] = 0.9           # origin row, left half: a repeat, never counted
    a[H - 1, H + 1] = 0.8        # inside r = 2.5: the origin's own peak
    a[10:12, 30:32] = 0.6        # a plateau: all four pixels are (equal) maxima
    b = np.zeros_like(a)         # flat: no peak above any threshold, heights clipped at 1e-4
    b[H, H] = 1.0
    b[5, 5] = 0.05
    f = patterson_features(np.stack([a, b]))
    assert f.shape == (2, N_PEAK_FEATURES) and f.dtype == np.float32
    np.testing.assert_allclose(f[0], _ref_peak_features(a), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(f[1], _ref_peak_features(b), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(patterson_features(a)[0], f[0])
    # the strongest peak is the plateau's 0.6 (the 0.9 repeat and the 0.8 origin shoulder do not count)
    assert f[0, -12] == pytest.approx(np.log(0.6)) and f[0, -11] == pytest.approx(np.log(0.6))
    assert f[1, -12] == pytest.approx(np.log(0.05)) and f[1, -11] == pytest.approx(np.log(1e-4))


def test_full_map_and_dihedral_views_h2():
    up = np.arange(15, dtype=float).reshape(3, 5)     # h = 2: rows -2, -1, 0
    full = full_map(up)
    ref = np.concatenate([up, up[:2][::-1, ::-1]])
    np.testing.assert_array_equal(full, ref)
    assert full.shape == (5, 5) and full[3].tolist() == [9, 8, 7, 6, 5] and full[4].tolist() == [4, 3, 2, 1, 0]
    v = dihedral_views(torch.from_numpy(up[None]))
    np.testing.assert_array_equal(v[0][0], up)
    np.testing.assert_array_equal(v[2][0], full.T[:3])
    np.testing.assert_array_equal(v[3][0], full.T[:, ::-1][:3])


def test_full_map_and_dihedral_views():
    up = np.arange(6, dtype=float).reshape(2, 3)      # h = 1
    np.testing.assert_array_equal(full_map(up), [[0, 1, 2], [3, 4, 5], [2, 1, 0]])
    m = torch.arange(6, dtype=torch.float32).reshape(1, 2, 3)
    v = dihedral_views(m)
    assert len(v) == 4
    full = torch.tensor([[0, 1, 2], [3, 4, 5], [2, 1, 0]], dtype=torch.float32)
    np.testing.assert_array_equal(v[0][0], full[:2])
    np.testing.assert_array_equal(v[1][0], torch.flip(full, (1,))[:2])
    np.testing.assert_array_equal(v[2][0], full.T[:2])
    np.testing.assert_array_equal(v[3][0], torch.flip(full.T, (1,))[:2])


def test_peak_counts_are_strictly_above_the_float32_thresholds():
    """A peak exactly at a threshold (as float32) is not above it; one float32 step higher is."""
    thr = np.asarray(PEAK_THRESHOLDS, np.float32)
    i = next(j for j, v in enumerate(PEAK_THRESHOLDS) if float(np.float32(v)) > v)   # rounds up in float32
    at = np.zeros((H + 1, 2 * H + 1), np.float32)
    at[H, H] = 1.0
    at[H - 10, H] = thr[i]            # rr = 10: the (8, 14) annulus
    up = at.copy()
    up[H - 10, H] = np.nextafter(thr[i], np.float32(1))
    f_at, f_up = patterson_features(np.stack([at, up]))
    counts = slice(8 + 24, 8 + 24 + 16)           # annulus 1: its 16 counts after its 8 quantiles
    np.testing.assert_allclose(f_at[counts], np.log1p((thr[i] > thr).astype(float)))
    np.testing.assert_allclose(f_up[counts], np.log1p((np.nextafter(thr[i], np.float32(1)) > thr).astype(float)))
    assert f_up[counts][i] == pytest.approx(np.log(2)) and f_at[counts][i] == 0.0
    whole = slice(8 * 24, 8 * 24 + 16)             # the counts over the whole map
    np.testing.assert_allclose(f_at[whole], f_at[counts])
    np.testing.assert_allclose(f_up[whole], f_up[counts])


def test_small_maps_are_a_typed_error():
    with pytest.raises(DataValidationError, match=r"^Patterson map 43 x 85 is too small for the peak annuli \(up to 90 px; half width >= 43 needed\)$"):
        patterson_features(np.ones((43, 85), np.float32))
    assert patterson_features(np.ones((44, 87), np.float32)).shape == (1, N_PEAK_FEATURES)


def test_unit_scaling():
    from napari_cxdi.speckle.patterson import _unit

    np.testing.assert_array_equal(_unit(np.full((2, 3), 4.0)), np.zeros((2, 3)))
    assert _unit(np.full((2, 3), 4.0)).shape == (2, 3)
    np.testing.assert_allclose(_unit(np.array([[1.0, 3.0], [2.0, 5.0]])), [[0, 0.5], [0.25, 1]])
    assert _unit(np.array([1.0, 2.0])).dtype == np.float32


def test_network_architecture():
    net = PattersonNet(5, 3)
    assert (net.width, net.hidden, net.dropout, net.half) == (16, 256, 0.1, 60)
    spec = []
    for blk in net.features:
        conv, bn, act = blk
        assert isinstance(bn, torch.nn.BatchNorm2d) and bn.num_features == conv.out_channels
        assert isinstance(act, torch.nn.GELU) and conv.bias is None
        spec.append((conv.in_channels, conv.out_channels, conv.kernel_size[0], conv.stride[0], conv.padding[0]))
    assert spec == [(2, 16, 5, 2, 2), (16, 32, 3, 1, 1), (32, 64, 3, 2, 1), (64, 64, 3, 1, 1), (64, 128, 3, 2, 1),
                    (128, 128, 3, 1, 1)]
    # a 61 x 121 half map -> 8 x 16 after three stride-2 blocks
    assert net.features(torch.zeros(1, 2, 61, 121)).shape == (1, 128, 8, 16)


def test_network_inputs_and_pooling():
    m = torch.tensor([[[0.0, 0.01], [0.1, 1.0]]])
    x = _inputs(m)
    assert x.shape == (1, 2, 2, 2) and x.dtype == torch.float32
    np.testing.assert_allclose(x[0, 0], m[0] * 10)
    np.testing.assert_allclose(x[0, 1], np.arcsinh(m[0].numpy() * 300) / 3, rtol=1e-6)
    net = PattersonNet(5, 3, width=4, hidden=8, dropout=0.2, half=7)
    assert net.config() == {"n_features": 5, "num_classes": 3, "width": 4, "hidden": 8, "dropout": 0.2, "half": 7}
    h = torch.arange(8, dtype=torch.float32).reshape(1, 2, 2, 2)
    np.testing.assert_array_equal(net.pooled(h), [[1.5, 5.5, 3.0, 7.0]])
    assert net.head[0].in_features == 16 * 4 + 5 and net.head[-1].out_features == 3
    assert net.head[2].p == 0.2


def _clf(tta=False, temperature=1.0):
    torch.manual_seed(0)
    n_f = FC.n_features + N_PEAK_FEATURES
    net = PattersonNet(n_f, 3, width=4, hidden=8, half=H)
    with torch.no_grad():   # a head that reads the maps' branch strongly
        for p in net.parameters():
            p.mul_(3.0)
    net.eval()
    rng = np.random.default_rng(1)
    return PattersonClassifier(net, np.array([2, 5, 9]), FC, rng.normal(size=n_f).astype(np.float32),
                               rng.uniform(0.5, 2, n_f).astype(np.float32), temperature, {}, {}, "tiny",
                               {"note": 1}, tta=tta)


def _patterns(n=3):
    from napari_cxdi.speckle.disks import random_disk_system
    from napari_cxdi.speckle.patterns import block_center, speckle_analytic

    return np.stack([block_center(speckle_analytic(random_disk_system(k, k)), 11)[108:405, 108:405]
                     for k in (2, 5, 9)[:n]]).astype(np.float64)


def test_classifier_inputs_logits_and_prediction(tmp_path):
    clf = _clf()
    pats = _patterns()
    maps, feats = clf.inputs(pats)
    grid = to_feature_grid(pats, FC)
    np.testing.assert_allclose(maps, patterson_maps(grid, H))
    np.testing.assert_allclose(feats[:, :FC.n_features], radial_features(grid, FC, 3))
    np.testing.assert_allclose(feats[:, FC.n_features:], patterson_features(maps))
    # logits: the net on the maps and the standardised features, the same in any batch size
    z = torch.from_numpy((feats - clf.feature_mean) / clf.feature_std)
    ref = clf.net(torch.from_numpy(maps), z).detach().numpy()
    lg = clf.logits_maps(maps, feats)
    np.testing.assert_allclose(lg, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(clf.logits_maps(maps, feats, batch_size=1), ref, rtol=1e-5, atol=1e-5)
    assert clf.logits_maps(maps[:0], feats[:0]).shape == (0, 3)
    # test-time augmentation: the mean of the four views' logits
    tta = _clf(tta=True)
    views = dihedral_views(torch.from_numpy(maps))
    ref_tta = torch.stack([tta.net(v, z) for v in views]).mean(0).detach().numpy()
    np.testing.assert_allclose(tta.logits_maps(maps, feats, batch_size=2), ref_tta, rtol=1e-5, atol=1e-5)
    assert np.abs(ref_tta - ref).max() > 1e-3
    # prediction: calibrated probabilities of those logits, in batches
    hot = _clf(temperature=2.0)
    out = hot.predict(pats, batch_size=2)
    probs = torch.softmax(torch.from_numpy(lg / 2.0), 1).numpy()
    np.testing.assert_allclose(out["probs"], probs, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out["pred"], np.array([2, 5, 9])[probs.argmax(1)])
    np.testing.assert_allclose(hot.predict(pats[0])["probs"], probs[:1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(hot.predict_inputs(maps, feats)["probs"], probs, rtol=1e-5, atol=1e-6)
    # binned input: the same maps
    binned = pats.reshape(3, 99, 3, 99, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(clf.inputs(binned, 3)[0], maps, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(hot.predict(binned, input_bin=3, batch_size=2)["probs"], probs, rtol=1e-4, atol=1e-5)
    with pytest.raises(TypeError, match=r"^PattersonClassifier needs the Patterson maps: use logits_maps\(maps, feats\)$"):
        clf.logits(feats)
    with pytest.raises(TypeError, match=r"^PattersonClassifier needs the Patterson maps: use predict_inputs\(maps, feats\) or predict$"):
        clf.predict_features(feats)


def test_explanations_are_the_gradients_of_the_logit():
    clf = _clf()
    pat = np.pad(_patterns(1)[0], 3)                   # 303 x 303: a 3-pixel frame outside the window
    ex = clf.explain(pat, method="Grad-CAM")
    _, feats = clf.inputs(pat)
    z = torch.from_numpy(((feats - clf.feature_mean) / clf.feature_std).astype(np.float32))
    g = torch.from_numpy(to_feature_grid(pat, FC)).requires_grad_(True)
    maps = patterson_torch(g, H)
    logits = clf.net(maps, z)
    k = int(logits[0].argmax())
    logits[0, k].backward()
    sal = g.grad[0].abs().numpy()
    sal = (sal - sal.min()) / (sal.max() - sal.min())
    assert ex["class"] == [2, 5, 9][k] and ex["method"] == "Grad-CAM" and ex["map_label"] == "Saliency"
    assert ex["map"].shape == (303, 303) and ex["map"].dtype == np.float32
    np.testing.assert_allclose(ex["map"][3:-3, 3:-3], np.kron(sal, np.ones((3, 3))), rtol=1e-4, atol=1e-5)
    assert ex["map"][:3].max() == 0 and ex["map"][:, -3:].max() == 0
    np.testing.assert_allclose(ex["patterson"], full_map(maps.detach()[0].numpy()), rtol=1e-5, atol=1e-6)
    assert ex["patterson"].dtype == np.float32 and ex["patterson_pixel_units"] == pytest.approx(18001 / 297)
    # Grad-CAM over the map, the origin row's two halves averaged (each pair vector appears as x and -x)
    h = clf.net.features(_inputs(maps.detach()))
    lg = clf.net.head(torch.cat([clf.net.pooled(h), z], 1))
    (gh,) = torch.autograd.grad(lg[0, k], h)
    cam = torch.relu((gh.mean((2, 3), keepdim=True) * h).sum(1, keepdim=True)).detach()
    cam = F.interpolate(cam, size=maps.shape[-2:], mode="bilinear", align_corners=False)[0, 0].numpy()
    cam[-1] = 0.5 * (cam[-1] + cam[-1, ::-1])
    cam = full_map(cam)
    cam = (cam - cam.min()) / (cam.max() - cam.min())
    np.testing.assert_allclose(ex["patterson_cam"], cam, rtol=1e-4, atol=1e-5)
    assert ex["patterson_cam"].dtype == np.float32
    # a chosen class (by its value, not its index); input binned by 3: the map is on that grid
    ex5 = clf.explain(pat.reshape(101, 3, 101, 3).mean(axis=(1, 3)), input_bin=3, target=5)
    assert ex5["class"] == 5 and ex5["map"].shape == (101, 101) and ex5["method"] == "saliency"
    other = clf.explain(pat, target=9)
    assert other["class"] == 9 and not np.allclose(other["map"], ex["map"])
    with pytest.raises(DataValidationError, match=r"explain takes one pattern \(H, W\), got shape \(1, 303, 303\)"):
        clf.explain(pat[None])


def test_checkpoint_round_trip(tmp_path):
    clf = _clf(tta=True, temperature=1.7)
    clf.domain = {"class_mean": np.zeros((3, FC.n_rings)), "class_std": np.ones((3, FC.n_rings)), "threshold": 4.0}
    ck = clf.checkpoint()
    assert ck["format"] == FORMAT and ck["tta"] is True and "readout" not in ck
    assert is_patterson_checkpoint(ck) and not is_patterson_checkpoint({"format": "x"})
    assert not is_patterson_checkpoint([FORMAT])
    path = save_patterson(clf, tmp_path / "p.pt")
    back = load_patterson(path)
    assert back.tta is True and back.temperature == pytest.approx(1.7) and back.name == "tiny"
    assert back.provenance == {"note": 1} and back.features == FC
    np.testing.assert_array_equal(back.classes, [2, 5, 9])
    assert back.domain["threshold"] == 4.0 and isinstance(back.domain["class_mean"], np.ndarray)
    assert not back.net.training
    maps, feats = clf.inputs(_patterns(2))
    np.testing.assert_allclose(back.logits_maps(maps, feats), clf.logits_maps(maps, feats), rtol=1e-6)
    # defaults for an older checkpoint without temperature, domain, name, provenance or tta
    for k in ("temperature", "domain", "name", "provenance", "tta"):
        ck.pop(k)
    old = patterson_from_checkpoint(ck)
    assert old.temperature == 1.0 and old.domain == {} and old.name == "" and old.provenance == {}
    assert old.tta is False
    with pytest.raises(InputFileError, match="broken Patterson speckle checkpoint") as err:
        patterson_from_checkpoint({"format": FORMAT}, tmp_path / "b.pt")
    assert err.value.path == str(tmp_path / "b.pt")
    with pytest.raises(InputFileError) as err:
        patterson_from_checkpoint({"format": FORMAT})
    assert err.value.path == "."
    # a loaded model can be saved again (its empty read-out is a dict)
    assert back.readout == {}
    save_patterson(back, tmp_path / "again.pt")
    # saving replaces an existing file by default
    save_patterson(clf, path)
    with pytest.raises(InputFileError, match="broken Patterson"):
        patterson_from_checkpoint({**ck, "state_dict": {}}, tmp_path / "b.pt")
    torch.save({"format": "napari-cxdi-speckle-radial-v1"}, tmp_path / "r.pt")
    with pytest.raises(InputFileError, match=r"not a Patterson speckle checkpoint \(format napari-cxdi-speckle-patterson-v1\)") as err:
        load_patterson(tmp_path / "r.pt")
    assert err.value.path == str(tmp_path / "r.pt")
    torch.save({"format": FORMAT}, tmp_path / "broken.pt")
    with pytest.raises(InputFileError, match="broken Patterson") as err:
        load_patterson(tmp_path / "broken.pt")
    assert err.value.path == str(tmp_path / "broken.pt")
    # overwrite=False refuses an existing file
    from napari_cxdi.errors import CXDIError

    with pytest.raises(CXDIError):
        save_patterson(clf, path, overwrite=False)
