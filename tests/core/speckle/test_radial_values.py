"""Radial-feature classifier: networks, standardisation, read-out, calibration, domain check, occlusion
explanations and checkpoints, checked against hand computations on a small feature configuration."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from napari_cxdi.errors import ConfigError, DataValidationError, InputFileError
from napari_cxdi.speckle.features import FeatureConfig, radial_features
from napari_cxdi.speckle.radial import (
    ARCHS,
    FORMAT,
    RadialClassifier,
    RadialNet,
    arrays_from_checkpoint,
    domain_statistics,
    fit_readout,
    is_radial_checkpoint,
    load_radial,
    radial_from_checkpoint,
    replace,
    save_radial,
)

FC = FeatureConfig(window=45, bin=3, block=3, r_min=2, r_max=9)   # 8 rings, 24 features
R, NF = FC.n_rings, FC.n_features
CLASSES = np.array([2, 5, 9])


class _Lin(nn.Module):
    """logits = x @ W (a net whose occlusion answers are computable by hand)."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(torch.as_tensor(w, dtype=torch.float32))

    def forward(self, x):
        return x @ self.w


def _w():
    w = np.zeros((NF, 3))
    w[0:3, 0] = 1.0        # rings 0..2 (log I) vote for class 0
    w[R + 3, 1] = 2.0      # contrast of ring 3 votes for class 1
    w[2 * R, 2] = 0.5      # first global feature for class 2
    return w


def _clf(net=None, **kw):
    rng = np.random.default_rng(0)
    args = dict(temperature=1.0, domain={}, readout={}, name="t", provenance={})
    args.update(kw)
    return RadialClassifier(net if net is not None else _Lin(_w()), CLASSES, FC,
                            rng.normal(size=NF).astype(np.float32), rng.uniform(0.5, 2.0, NF).astype(np.float32),
                            **args)


def test_constants_and_net_errors():
    assert FORMAT == "napari-cxdi-speckle-radial-v1" and ARCHS == ("mlp", "cnn1d")
    with pytest.raises(ConfigError, match=r"^unknown architecture 'rnn'; choose one of mlp, cnn1d$"):
        RadialNet("rnn", NF, R, 3)
    d = RadialNet("mlp", NF, R, 3)
    assert d.hidden == 256 and d.dropout == 0.1 and d.body[0].out_features == 256


def test_mlp_and_cnn_nets_compute_what_they_say():
    torch.manual_seed(0)
    mlp = RadialNet("mlp", NF, R, 3, hidden=16, dropout=0.3)
    assert mlp.config() == {"arch": "mlp", "n_features": NF, "n_rings": R, "num_classes": 3, "hidden": 16,
                            "dropout": 0.3}
    lin = [m for m in mlp.body if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in lin] == [(NF, 16), (16, 16), (16, 3)]
    assert [m.p for m in mlp.body if isinstance(m, nn.Dropout)] == [0.3, 0.3]
    assert sum(isinstance(m, nn.GELU) for m in mlp.body) == 2
    x = torch.randn(4, NF)
    mlp.eval()
    np.testing.assert_allclose(mlp(x).detach(), mlp.body(x).detach())
    cnn = RadialNet("cnn1d", NF, R, 3, hidden=16, dropout=0.2)
    cnn.eval()
    convs = [m for m in cnn.conv if isinstance(m, nn.Conv1d)]
    assert [(m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0], m.padding[0]) for m in convs] == [
        (2, 32, 5, 1, 2), (32, 32, 5, 2, 2), (32, 32, 5, 2, 2)]
    assert cnn.conv[-1].output_size == 8 and sum(isinstance(m, nn.GELU) for m in cnn.conv) == 3
    assert cnn.head[0].in_features == 32 * 8 + NF - 2 * R and cnn.head[0].out_features == 16
    assert cnn.head[2].p == 0.2 and cnn.head[-1].out_features == 3 and isinstance(cnn.head[1], nn.GELU)
    prof = torch.stack([x[:, :R], x[:, R:2 * R]], 1)
    ref = cnn.head(torch.cat([cnn.conv(prof).flatten(1), x[:, 2 * R:]], 1))
    np.testing.assert_allclose(cnn(x).detach(), ref.detach(), rtol=1e-6)
    # the ring profiles and the global features each reach the output
    for cols in (slice(0, R), slice(R, 2 * R), slice(2 * R, NF)):
        y = x.clone()
        y[:, cols] += 1.0
        assert (cnn(y) - cnn(x)).abs().max() > 1e-4


def test_standardize_logits_and_readout():
    clf = _clf()
    f = np.random.default_rng(1).normal(size=(5, NF))
    z = (f.astype(np.float32) - clf.feature_mean) / clf.feature_std
    np.testing.assert_allclose(clf.standardize(f), z, rtol=1e-6)
    assert clf.standardize(f).dtype == np.float32
    with pytest.raises(DataValidationError, match=rf"^expected features \(N, {NF}\), got \(5, 3\)$"):
        clf.standardize(f[:, :3])
    with pytest.raises(DataValidationError, match="expected features"):
        clf.standardize(f[0])
    np.testing.assert_allclose(clf.logits(f), z @ _w(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(clf.logits(f, batch_size=2), z @ _w(), rtol=1e-5, atol=1e-6)
    assert clf.logits(f[:0]).shape == (0, 3)
    np.testing.assert_array_equal(clf.readout_loglik(f), np.zeros((5, 3)))
    assert clf.readout_loglik(f).dtype == np.float32
    ro = {"index": NF - 2, "mean": [3.0, 3.5, 4.0], "std": [0.1, 0.2, 0.4], "weight": 2.0}
    rc = _clf(readout=ro)
    x = f[:, NF - 2][:, None]
    ll = 2.0 * (-0.5 * ((x - np.array([3.0, 3.5, 4.0])) / np.array([0.1, 0.2, 0.4])) ** 2
                - np.log([0.1, 0.2, 0.4]))
    np.testing.assert_allclose(rc.readout_loglik(f), ll, rtol=1e-5)
    np.testing.assert_allclose(rc.logits(f), z @ _w() + ll, rtol=1e-5, atol=1e-4)


def test_prediction_probabilities_value_and_domain_flags():
    dom = {"class_mean": np.zeros((3, R)), "class_std": np.ones((3, R)), "threshold": 2.0, "residual_threshold": 0.5}
    clf = _clf(temperature=2.0, domain=dom)
    f = np.random.default_rng(2).normal(size=(6, NF)).astype(np.float32)
    f[0, NF - 1] = 0.7      # fit residual above its threshold
    f[1, NF - 1] = 0.1
    out = clf.predict_features(f)
    lg = clf.logits(f)
    probs = torch.softmax(torch.from_numpy(lg / 2.0), 1).numpy()
    np.testing.assert_allclose(out["probs"], probs, rtol=1e-6)
    np.testing.assert_array_equal(out["pred"], CLASSES[probs.argmax(1)])
    np.testing.assert_allclose(out["value"], probs @ CLASSES, rtol=1e-6)
    z = clf.standardize(f)[:, :R].astype(float)
    score = (z**2).mean(1)
    np.testing.assert_allclose(out["ood_score"], score, rtol=1e-6)
    np.testing.assert_array_equal(out["ood"], (score > 2.0) | (f[:, NF - 1] > 0.5))
    assert out["ood"][0] and out["ood_threshold"] == 2.0 and out["fit_residual_threshold"] == 0.5
    np.testing.assert_allclose(out["fit_residual"], f[:, NF - 1])
    assert out["fit_residual"].dtype == np.float64
    # a residual exactly at its threshold is in the domain
    f_at = f.copy()
    f_at[:, NF - 1] = 0.5
    assert not _clf(domain={**dom, "threshold": np.inf}).predict_features(f_at)["ood"].any()
    # the smallest score over the classes
    dom2 = {"class_mean": np.stack([np.zeros(R), np.full(R, 3.0), z[2]]), "class_std": np.full((3, R), 2.0)}
    s2 = _clf(domain=dom2).domain_score(f)
    ref = np.min([(((z - m) / 2.0) ** 2).mean(1) for m in dom2["class_mean"]], axis=0)
    np.testing.assert_allclose(s2, ref, rtol=1e-6)
    assert s2[2] == pytest.approx(0.0, abs=1e-9)
    # no domain statistics: no check (scores 0, thresholds inf)
    plain = _clf().predict_features(f)
    assert np.all(plain["ood_score"] == 0) and not plain["ood"].any() and plain["ood_threshold"] == np.inf
    assert plain["fit_residual_threshold"] == np.inf
    # boundary: exactly at the threshold is in the domain
    at = _clf(domain={**dom, "threshold": float(score[3]), "residual_threshold": 10.0}).predict_features(f)
    assert not at["ood"][3]


def _pattern(seed, size=45):
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(size, size)) + 1j * rng.normal(size=(size, size))
    k = np.fft.fftfreq(size)
    f *= np.exp(-(k[:, None] ** 2 + k[None, :] ** 2) / (2 * 0.08**2))
    return np.abs(np.fft.ifft2(f)) ** 2


def test_predict_from_patterns_in_batches():
    clf = _clf(temperature=1.5)
    pats = np.stack([_pattern(s) for s in range(5)])
    feats = radial_features(pats, FC)
    np.testing.assert_allclose(clf.featurize(pats), feats)
    ref = clf.predict_features(feats)["probs"]
    np.testing.assert_allclose(clf.predict(pats, batch_size=2)["probs"], ref, rtol=1e-6)
    np.testing.assert_allclose(clf.predict(pats[0])["probs"], ref[:1], rtol=1e-6)
    # one pattern (H, W) taller than a batch is still one pattern
    np.testing.assert_allclose(clf.predict(pats[0], batch_size=16)["probs"], ref[:1], rtol=1e-6)
    binned = pats.reshape(5, 15, 3, 15, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(clf.predict(binned, input_bin=3)["probs"], ref, rtol=1e-4, atol=1e-6)
    assert clf.to("cuda") is clf


def test_occlusion_importance_by_hand():
    clf = _clf(temperature=2.0)
    f = np.random.default_rng(3).normal(size=NF).astype(np.float32)
    ex = clf.explain_features(f, group=3, target=2)
    z = clf.standardize(f[None])[0]
    w = _w()

    def logodds(zz, k):
        lg = (zz @ w) / 2.0
        others = np.delete(lg, k)
        return lg[k] - np.log(np.exp(others).sum())

    ref = []
    for s in (0, 3, 6):
        zz = z.copy()
        zz[s:s + 3] = 0
        zz[R + s:R + s + 3] = 0
        ref.append(logodds(z, 0) - logodds(zz, 0))
    assert ex["class"] == 2
    np.testing.assert_allclose(ex["importance"], ref, rtol=1e-5, atol=1e-6)
    assert ex["importance"].dtype == np.float32
    np.testing.assert_allclose(ex["q_inner_px"], [4.5, 13.5, 22.5])
    np.testing.assert_allclose(ex["q_outer_px"], [13.5, 22.5, 28.5])
    # the default target is the predicted class; group 5: the last group is cut at the last ring
    k = int(np.argmax(z @ w))
    d = clf.explain_features(f, group=5)
    assert d["class"] == CLASSES[k]
    np.testing.assert_allclose(d["q_outer_px"], [19.5, 28.5])
    ref5 = []
    for s in (0, 5):
        zz = z.copy()
        zz[s:s + 5] = 0
        zz[R + s:R + s + 5] = 0
        ref5.append(logodds(z, k) - logodds(zz, k))
    np.testing.assert_allclose(d["importance"], ref5, rtol=1e-5, atol=1e-6)
    # with a read-out its log-likelihood enters every copy (the same), so importances stay the same
    ro = {"index": NF - 2, "mean": [3.0, 3.5, 4.0], "std": [0.1, 0.2, 0.4], "weight": 1.0}
    rc = _clf(temperature=2.0, readout=ro)
    f2 = f.copy()
    f2[NF - 2] = 3.5
    e2 = rc.explain_features(f2, group=3, target=5)
    ll = rc.readout_loglik(f2[None])[0]

    def logodds2(zz, kk):
        lg = (zz @ w + ll) / 2.0
        return lg[kk] - np.log(np.exp(np.delete(lg, kk)).sum())

    z2 = clf.standardize(f2[None])[0]
    ref2 = []
    for s in (0, 3, 6):
        zz = z2.copy()
        zz[s:s + 3] = 0
        zz[R + s:R + s + 3] = 0
        ref2.append(logodds2(z2, 1) - logodds2(zz, 1))
    np.testing.assert_allclose(e2["importance"], ref2, rtol=1e-5, atol=1e-5)
    assert rc.explain_features(f2)["class"] == CLASSES[int(np.argmax(z2 @ w + ll))]


def test_default_class_is_the_unoccluded_prediction():
    """Occluding rings 0..2 takes class 0's evidence away: the default class must still be the prediction
    of the whole profile (class 0), not of an occluded copy."""
    clf = _clf()
    z = np.zeros(NF, np.float32)
    z[0:3] = 2.0          # class 0: 6
    z[R + 3] = 1.0        # class 1: 2
    f = z * clf.feature_std + clf.feature_mean
    ex = clf.explain_features(f)
    assert ex["class"] == 2 and ex["importance"][0] > 0


def test_explain_pattern():
    clf = _clf()
    p = _pattern(4)
    ex = clf.explain(p)
    ref = clf.explain_features(clf.featurize(p)[0])
    np.testing.assert_allclose(ex["importance"], ref["importance"])
    np.testing.assert_allclose(ex["q_inner_input_px"], ex["q_inner_px"])
    b = clf.explain(p.reshape(15, 3, 15, 3).mean(axis=(1, 3)), input_bin=3, group=4, target=9)
    assert b["class"] == 9
    assert [clf.explain(p, target=c)["class"] for c in (2, 5, 9)] == [2, 5, 9]
    np.testing.assert_allclose(b["q_inner_input_px"], b["q_inner_px"] / 3)
    np.testing.assert_allclose(b["q_outer_input_px"], b["q_outer_px"] / 3)
    with pytest.raises(DataValidationError, match=r"^explain takes one pattern \(H, W\), got shape \(1, 45, 45\)$"):
        clf.explain(p[None])


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    net = RadialNet("cnn1d", NF, R, 3, hidden=8)
    dom = {"class_mean": np.ones((3, R)), "class_std": np.full((3, R), 2.0), "threshold": 3.0, "quantile": 0.99}
    ro = {"index": NF - 2, "mean": [3.0, 3.5, 4.0], "std": [0.1, 0.2, 0.4], "weight": 0.5}
    clf = _clf(net, temperature=1.3, domain=dom, readout=ro, name="r", provenance={"p": Path_like()})
    # float64 scaling arrays are stored as float32 tensors
    clf.feature_mean, clf.feature_std = clf.feature_mean.astype(np.float64), clf.feature_std.astype(np.float64)
    ck = clf.checkpoint()
    assert ck["format"] == FORMAT and ck["classes"] == [2, 5, 9] and ck["features"] == FC.to_dict()
    assert ck["net"] == net.config() and ck["temperature"] == 1.3 and ck["name"] == "r"
    assert ck["provenance"] == {"p": "P"}
    assert ck["readout"]["weight"] == 0.5 and ck["readout"]["index"] == float(NF - 2)
    assert isinstance(ck["readout"]["weight"], float) and isinstance(ck["readout"]["index"], float)
    assert isinstance(ck["domain"]["threshold"], float) and isinstance(ck["domain"]["quantile"], float)
    for t_ in (ck["feature_mean"], ck["feature_std"], ck["readout"]["mean"], ck["readout"]["std"],
               ck["domain"]["class_mean"], ck["domain"]["class_std"]):
        assert t_.dtype == torch.float32
    assert isinstance(ck["readout"]["mean"], torch.Tensor) and isinstance(ck["domain"]["class_std"], torch.Tensor)
    assert ck["domain"]["threshold"] == 3.0 and ck["domain"]["quantile"] == 0.99
    assert is_radial_checkpoint(ck) and not is_radial_checkpoint({"format": "x"}) and not is_radial_checkpoint(1)
    path = save_radial(clf, tmp_path / "r.pt")
    back = load_radial(path)
    assert back.temperature == pytest.approx(1.3) and back.name == "r" and back.features == FC
    assert back.readout["weight"] == 0.5 and back.domain["threshold"] == 3.0
    assert back.provenance == {"p": "P"}
    save_radial(clf, path)      # replaces by default
    np.testing.assert_array_equal(back.classes, CLASSES)
    f = np.random.default_rng(5).normal(size=(4, NF))
    np.testing.assert_allclose(back.predict_features(f)["probs"], clf.predict_features(f)["probs"], rtol=1e-5)
    np.testing.assert_allclose(back.predict_features(f)["ood_score"], clf.predict_features(f)["ood_score"], rtol=1e-5)
    assert not back.net.training
    for k in ("temperature", "domain", "readout", "name", "provenance"):
        ck.pop(k)
    old = radial_from_checkpoint(ck)
    assert (old.temperature, old.domain, old.readout, old.name, old.provenance) == (1.0, {}, {}, "", {})
    with pytest.raises(InputFileError, match="broken radial speckle checkpoint") as err:
        radial_from_checkpoint({"format": FORMAT}, tmp_path / "x.pt")
    assert err.value.path == str(tmp_path / "x.pt")
    with pytest.raises(InputFileError) as err:
        radial_from_checkpoint({"format": FORMAT})
    assert err.value.path == "."
    torch.save({"format": FORMAT}, tmp_path / "broken.pt")
    with pytest.raises(InputFileError, match="broken radial") as err:
        load_radial(tmp_path / "broken.pt")
    assert err.value.path == str(tmp_path / "broken.pt")
    with pytest.raises(InputFileError, match="broken radial"):
        radial_from_checkpoint({**ck, "net": {**ck["net"], "hidden": 9}}, tmp_path / "x.pt")
    torch.save({"format": "other"}, tmp_path / "o.pt")
    with pytest.raises(InputFileError, match=r"not a radial speckle checkpoint \(format napari-cxdi-speckle-radial-v1\)") as err:
        load_radial(tmp_path / "o.pt")
    assert err.value.path == str(tmp_path / "o.pt")
    a = arrays_from_checkpoint({"t": torch.tensor([1.0, 2.0]), "v": 3})
    assert isinstance(a["t"], np.ndarray) and a["t"].tolist() == [1.0, 2.0] and a["v"] == 3
    r2 = replace(clf, temperature=4.0)
    assert r2.temperature == 4.0 and clf.temperature == 1.3 and r2.net is clf.net


class Path_like:
    def __str__(self):
        return "P"


def test_domain_statistics_by_hand():
    clf = _clf()
    rng = np.random.default_rng(6)
    f = rng.normal(size=(40, NF)).astype(np.float32)
    labels = np.repeat(CLASSES, [10, 14, 16])
    dom = domain_statistics(clf, f, labels, quantile=0.9, margin=1.5)
    z = clf.standardize(f)[:, :R].astype(float)
    for i, c in enumerate(CLASSES):
        np.testing.assert_allclose(dom["class_mean"][i], z[labels == c].mean(0), rtol=1e-6)
        np.testing.assert_allclose(dom["class_std"][i], z[labels == c].std(0) + 0.05, rtol=1e-6)
    scores = np.min([(((z - dom["class_mean"][i]) / dom["class_std"][i]) ** 2).mean(1) for i in range(3)], axis=0)
    assert dom["threshold"] == pytest.approx(1.5 * np.quantile(scores, 0.9))
    assert dom["residual_threshold"] == pytest.approx(1.5 * np.quantile(f[:, NF - 1], 0.9))
    assert dom["quantile"] == 0.9 and clf.domain is dom
    assert set(dom) == {"class_mean", "class_std", "threshold", "quantile", "residual_threshold"}
    d2 = domain_statistics(_clf(), f, labels)
    assert d2["quantile"] == 0.995 and d2["threshold"] == pytest.approx(1.25 * np.quantile(scores, 0.995))


def test_fit_readout_picks_the_weight_by_validation_nll():
    from napari_cxdi.speckle.calibration import fit_temperature, nll

    class _Zero(nn.Module):
        def forward(self, x):
            return torch.zeros(len(x), 3)

    rng = np.random.default_rng(7)
    centres = np.log([60.0, 40.0, 25.0])

    def feats(n):
        y = np.repeat(CLASSES, n)
        f = rng.normal(size=(3 * n, NF))
        f[:, NF - 2] = centres[np.searchsorted(CLASSES, y)] + rng.normal(0, 0.05, 3 * n)
        return f, y

    xt, yt = feats(20)
    xv, yv = feats(10)
    clf = _clf(_Zero())
    best = fit_readout(clf, xt, yt, xv, yv, weights=(0.0, 0.5, 1.0))
    x = xt[:, NF - 2]
    np.testing.assert_allclose(clf.readout["mean"], [x[yt == c].mean() for c in CLASSES])
    np.testing.assert_allclose(clf.readout["std"], [x[yt == c].std() + 1e-3 for c in CLASSES])
    assert clf.readout["index"] == NF - 2
    # the network alone knows nothing: a read-out wins; its NLL and accuracy are those of the chosen weight
    assert best["weight"] in (0.5, 1.0) and clf.readout["weight"] == best["weight"]
    assert best["val_accuracy"] == 1.0 and clf.temperature == best["temperature"]
    lg = clf.logits(xv)
    yi = np.searchsorted(CLASSES, yv)
    assert best["val_nll"] == pytest.approx(nll(lg, yi, best["temperature"]))
    assert best["temperature"] == pytest.approx(fit_temperature(lg, yi))
    for w in (0.5, 1.0):
        c2 = _clf(_Zero(), readout={**clf.readout, "weight": w})
        l2 = c2.logits(xv)
        assert best["val_nll"] <= nll(l2, yi, fit_temperature(l2, yi)) + 1e-9
    # only weight 0 on offer: no read-out at all, the network's (uniform) answer
    b0 = fit_readout(clf, xt, yt, xv, yv, weights=(0.0,))
    assert b0["weight"] == 0.0 and clf.readout == {} and b0["val_nll"] == pytest.approx(np.log(3), rel=1e-4)
    # a tie keeps the first (smaller) weight: when the fit radius does not depend on the class, the read-out
    # adds the same log-likelihood to every class and changes no probability
    flat_t, flat_v = xt.copy(), xv.copy()
    flat_t[:, NF - 2] = np.tile([3.0, 3.2, 3.4, 3.6], 15)
    flat_v[:, NF - 2] = 3.3
    c3 = _clf(_Zero())
    b3 = fit_readout(c3, flat_t, np.repeat(CLASSES, 20), flat_v, yv, weights=(0.0, 1.0))
    assert b3["weight"] == 0.0 and c3.readout == {}
    # a small improvement (less than one nat) is taken
    noisy_t, noisy_v = xt.copy(), xv.copy()
    for arr, y in ((noisy_t, yt), (noisy_v, yv)):
        arr[:, NF - 2] = centres[np.searchsorted(CLASSES, y)] + rng.normal(0, 0.5, len(y))
    c4 = _clf(_Zero())
    b4 = fit_readout(c4, noisy_t, yt, noisy_v, yv, weights=(0.0, 0.25))
    assert b4["weight"] == 0.25 and 0 < np.log(3) - b4["val_nll"] < 1.0
