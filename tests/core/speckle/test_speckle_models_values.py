"""Model names, the one loader (families, cache, errors), classify / explain and ring shapes
(speckle/models.py), with tiny classifiers written to temporary files."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch

from napari_cxdi.errors import ConfigError, InputFileError
from napari_cxdi.speckle import models as M
from napari_cxdi.speckle.classifier import SpeckleClassifier, save_checkpoint
from napari_cxdi.speckle.features import FeatureConfig
from napari_cxdi.speckle.patterns import PreprocessConfig, prepare
from napari_cxdi.speckle.radial import RadialClassifier, RadialNet, save_radial
from napari_cxdi.speckle.resnet import SpeckleResNet
from napari_cxdi.speckle.saliency import grad_cam, saliency_map, to_pattern_frame

FC = FeatureConfig(window=45, bin=3, block=3, r_min=2, r_max=9)
PRE = PreprocessConfig(window=33, bin=3, block=3)


def _radial(name="", domain=None):
    torch.manual_seed(0)
    net = RadialNet("mlp", FC.n_features, FC.n_rings, 3, hidden=8)
    return RadialClassifier(net, np.array([2, 5, 9]), FC, np.zeros(FC.n_features, np.float32),
                            np.ones(FC.n_features, np.float32), 1.0, domain or {}, {}, name, {})


def _resnet():
    torch.manual_seed(0)
    m = SpeckleResNet(18, 3, width=4)
    m.eval()
    return SpeckleClassifier(m, np.array([2, 5, 9]), PRE)


def _pattern(seed=0, size=45):
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(size, size)) + 1j * rng.normal(size=(size, size))
    k = np.fft.fftfreq(size)
    f *= np.exp(-(k[:, None] ** 2 + k[None, :] ** 2) / (2 * 0.08**2))
    return (np.abs(np.fft.ifft2(f)) ** 2).astype(np.float32)


def test_names_and_paths(tmp_path):
    assert M.model_names() == ["speckle-mono", "speckle-poly", "speckle-poly-mixed", "speckle-poly-radial",
                               "speckle-resnet18-mono"]
    assert M.DEFAULT_MODEL == "speckle-mono"
    fam = {n: (m.file, m.family) for n, m in M.MODELS.items()}
    assert fam == {"speckle-mono": ("speckle_radial_mono.pt", "radial"),
                   "speckle-poly": ("speckle_patterson_poly.pt", "patterson"),
                   "speckle-poly-mixed": ("speckle_patterson_poly_mixed.pt", "patterson"),
                   "speckle-poly-radial": ("speckle_radial_poly.pt", "radial"),
                   "speckle-resnet18-mono": ("speckle_resnet18_mono.pt", "resnet")}
    assert all(M.MODELS[n].description for n in M.MODELS)
    import napari_cxdi.resources as res

    real = res.sample_file
    try:   # the scratch copies of mutation runs ship no models: look up the names only
        res.sample_file = lambda *parts: parts
        assert M.model_path("speckle-mono") == ("models", "speckle_radial_mono.pt")
        assert M.model_path("speckle-poly") == ("models", "speckle_patterson_poly.pt")
    finally:
        res.sample_file = real
    f = tmp_path / "mine.bin"
    f.write_bytes(b"x")
    assert M.model_path(f) == f and M.model_path(str(f)) == f
    with pytest.raises(InputFileError, match=": checkpoint not found$") as err:
        M.model_path("missing.pt")
    assert err.value.path == "missing.pt"
    with pytest.raises(InputFileError, match="checkpoint not found"):
        M.model_path("missing.pth")
    with pytest.raises(InputFileError, match="checkpoint not found"):
        M.model_path("dir/missing")
    with pytest.raises(InputFileError, match="checkpoint not found"):
        M.model_path("dir\\missing")
    with pytest.raises(ConfigError, match=r"^unknown speckle model 'speckle-big'; choose one of speckle-mono, "
                                          r"speckle-poly, .* or give a checkpoint file$"):
        M.model_path("speckle-big")


class _NotWeights:
    """Pickled as a class instance: refused by a weights-only load."""

    format = "napari-cxdi-speckle-radial-v1"


def test_loader_details(tmp_path, monkeypatch):
    rp = save_radial(_radial(""), tmp_path / "r.pt")
    cp = save_checkpoint(_resnet(), tmp_path / "c.pt")
    # files with the same modification time are still different models
    st = rp.stat()
    os.utime(cp, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert isinstance(M.load_model(rp), RadialClassifier) and isinstance(M.load_model(cp), SpeckleClassifier)
    # the default device ("auto") and the device is part of the cache key; an unknown device is refused
    c_auto = M.load_model(cp)
    assert M.load_model(cp, device="cpu") is not c_auto
    with pytest.raises(ConfigError, match="unknown device 'tpu'"):
        M.load_model(cp, device="tpu")
    # weights-only loading: a pickled object is not read
    torch.save(_NotWeights(), tmp_path / "evil.pt")
    with pytest.raises(InputFileError, match="cannot read checkpoint") as err:
        M.load_model(tmp_path / "evil.pt")
    assert err.value.path == str(tmp_path / "evil.pt")
    torch.save({"format": "x"}, tmp_path / "x.pt")
    with pytest.raises(InputFileError) as err:
        M.load_model(tmp_path / "x.pt")
    assert err.value.path == str(tmp_path / "x.pt")
    # broken checkpoints of each family name their file
    from napari_cxdi.speckle.patterson import FORMAT as PF
    from napari_cxdi.speckle.radial import FORMAT as RF

    for fmt in (RF, PF):
        torch.save({"format": fmt}, tmp_path / "b.pt")
        with pytest.raises(InputFileError, match="broken") as err:
            M.load_model(tmp_path / "b.pt")
        assert err.value.path == str(tmp_path / "b.pt")
    # a shipped name names only an unnamed model
    import napari_cxdi.resources as res

    named = save_radial(_radial("own"), tmp_path / "named.pt")
    monkeypatch.setitem(M.MODELS, "tiny-named", M.ModelInfo("tiny-named", "named.pt", "radial", "test"))
    monkeypatch.setattr(res, "sample_file", lambda *parts: tmp_path / parts[-1])
    assert M.load_model("tiny-named").name == "own"
    assert M.load_model(named).name == "own"


def test_loader_families_cache_and_errors(tmp_path):
    rp = save_radial(_radial("r"), tmp_path / "r.pt")
    cp = save_checkpoint(_resnet(), tmp_path / "c.pt")
    r = M.load_model(rp)
    assert isinstance(r, RadialClassifier) and r.name == "r"
    assert M.load_model(str(rp)) is r                          # cached by file and time
    c = M.load_model(cp, device="cpu")
    assert isinstance(c, SpeckleClassifier)
    assert M.load_model(cp, device="cpu") is c
    assert M.load_model(rp) is not r                            # one model kept: the radial one was dropped
    # a newer file is read again
    r2 = M.load_model(rp)
    st = rp.stat()
    os.utime(rp, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert M.load_model(rp) is not r2
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(InputFileError, match="cannot read checkpoint"):
        M.load_model(tmp_path / "junk.pt")
    torch.save({"format": "x"}, tmp_path / "x.pt")
    with pytest.raises(InputFileError, match=r"not a napari-cxdi speckle checkpoint \(napari-cxdi-speckle-radial-v1, "
                                             r"napari-cxdi-speckle-patterson-v1 or napari-cxdi-speckle-v1\)"):
        M.load_model(tmp_path / "x.pt")
    torch.save([1], tmp_path / "l.pt")
    with pytest.raises(InputFileError, match="not a napari-cxdi speckle checkpoint"):
        M.load_model(tmp_path / "l.pt")


def test_loader_names_unnamed_shipped_models(tmp_path, monkeypatch):
    from napari_cxdi.speckle.patterson import PattersonClassifier, PattersonNet, save_patterson
    from napari_cxdi.speckle.patterson import N_PEAK_FEATURES

    net = PattersonNet(FC.n_features + N_PEAK_FEATURES, 3, width=4, hidden=8, half=7)
    pc = PattersonClassifier(net, np.array([2, 5, 9]), FC, np.zeros(net.n_features, np.float32),
                             np.ones(net.n_features, np.float32))
    pp = save_patterson(pc, tmp_path / "p.pt")
    monkeypatch.setitem(M.MODELS, "tiny-p", M.ModelInfo("tiny-p", "p.pt", "patterson", "test"))
    import napari_cxdi.resources as res

    monkeypatch.setattr(res, "sample_file", lambda *parts: tmp_path / parts[-1])
    m = M.load_model("tiny-p")
    assert isinstance(m, PattersonClassifier) and m.name == "tiny-p"
    assert M.load_model(pp) is m      # the same file: the cached (named) model


def test_labels_and_domain_warnings():
    class _N:
        name = "named"

    assert M.model_label(_N()) == "named" and M.model_label(_N(), "x/y.pt") == "named"
    assert M.model_label(object(), "some/dir/model_a.pt") == "model_a"
    assert M.model_label(object()) == "model" and M.model_label(object(), None) == "model"
    out = {"ood": np.array([False, True, True, True]), "fit_residual": np.array([0.1, 0.9, 0.1, 0.1]),
           "fit_residual_threshold": 0.5, "ood_score": np.array([1.0, 1.0, 7.25, 1.0]), "ood_threshold": 3.0}
    msgs = M.domain_warnings(out, "speckle-mono")
    assert msgs == [
        "frame 1: looks outside the training domain of speckle-mono (the form-factor rings are washed out "
        "(one-disk fit residual 0.900 > 0.500: polydisperse disks?)); the disk number is unreliable - try speckle-poly",
        "frame 2: looks outside the training domain of speckle-mono (its I(q) profile is unlike every class's "
        "(score 7.25 > 3.00)); the disk number is unreliable - try speckle-poly",
        "frame 3: looks outside the training domain of speckle-mono (see ood); the disk number is unreliable"
        " - try speckle-poly"]
    both = M.domain_warnings({**out, "ood_score": np.array([1.0, 9.0, 1.0, 1.0])}, "other")
    assert both[0] == ("frame 1: looks outside the training domain of other (the form-factor rings are washed out "
                       "(one-disk fit residual 0.900 > 0.500: polydisperse disks?); its I(q) profile is unlike every "
                       "class's (score 9.00 > 3.00)); the disk number is unreliable")
    # at the threshold: not a reason
    at = M.domain_warnings({"ood": np.array([True]), "fit_residual": np.array([0.5]), "fit_residual_threshold": 0.5,
                            "ood_score": np.array([3.0]), "ood_threshold": 3.0}, "m")
    assert "(see ood)" in at[0]
    assert M.domain_warnings({"ood": np.array([True])}, "m")[0].startswith("frame 0: looks outside the training "
                                                                           "domain of m (see ood)")
    assert M.domain_warnings({}, "m") == []


def test_classify_patterns_with_objects_and_warnings():
    dom = {"class_mean": np.zeros((3, FC.n_rings)), "class_std": np.full((3, FC.n_rings), 1e-3), "threshold": 0.5}
    clf = _radial("rad", dom)
    pats = np.stack([_pattern(0), _pattern(1)])
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out = M.classify_patterns(pats, clf)
    assert out["model"] == "rad" and out["classes"].tolist() == [2, 5, 9]
    ref = clf.predict(pats)
    np.testing.assert_allclose(out["probs"], ref["probs"])
    assert out["ood"].tolist() == [True, True] and len(out["warnings"]) == 2
    assert [str(x.message) for x in w if issubclass(x.category, M.OutOfDomainWarning)] == out["warnings"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet = M.classify_patterns(pats, clf, warn=False)
    assert quiet["warnings"] == out["warnings"]
    assert all(msg.startswith(f"frame {i}: looks outside the training domain of rad (") for i, msg in enumerate(out["warnings"]))
    # the warning points at the caller's line (under mutmut its trampoline is the caller)
    where = {x.filename for x in w if issubclass(x.category, M.OutOfDomainWarning)}
    assert where == {__file__} or (len(where) == 1 and where.pop().endswith("mutmut/mutation/trampoline.py"))
    # a ResNet model has no domain check: nothing is out of domain; one pattern -> one frame
    res = _resnet()
    raw = np.random.default_rng(2).uniform(1, 2, (33, 33)).astype(np.float32)
    o = M.classify_patterns(raw, res)
    assert o["ood"].tolist() == [False] and o["warnings"] == [] and o["model"] == "model"
    assert o["ood"].dtype == bool
    np.testing.assert_allclose(o["probs"], res.predict(raw)["probs"])
    b = M.classify_patterns(raw.reshape(11, 3, 11, 3).mean(axis=(1, 3)), res, input_bin=3)
    np.testing.assert_allclose(b["probs"], o["probs"], rtol=1e-4, atol=1e-6)


def test_classify_by_path(tmp_path):
    rad = _radial("")
    path = save_radial(rad, tmp_path / "my_model.pt")
    pats = np.stack([_pattern(0), _pattern(1)])
    out = M.classify_patterns(pats, path, warn=False)
    assert out["model"] == "my_model"
    np.testing.assert_allclose(out["probs"], rad.predict(pats)["probs"], rtol=1e-5)
    assert M.classify_patterns(pats, str(path), warn=False)["model"] == "my_model"


def test_explain_patterson_and_binned_inputs():
    from napari_cxdi.speckle.patterson import N_PEAK_FEATURES, PattersonClassifier, PattersonNet

    fc = FeatureConfig(window=297, bin=3, block=11, r_min=4, r_max=60)
    torch.manual_seed(0)
    net = PattersonNet(fc.n_features + N_PEAK_FEATURES, 3, width=4, hidden=8, half=45)
    net.eval()
    pc = PattersonClassifier(net, np.array([2, 5, 9]), fc, np.zeros(net.n_features, np.float32),
                             np.ones(net.n_features, np.float32))
    pat = np.kron(_pattern(5, 99), np.ones((3, 3), np.float32))
    e = M.explain_pattern(pat, pc)
    ref = pc.explain(pat, 1, "auto")
    assert e["kind"] == "map" and e["method"] == "auto" and e["class"] == ref["class"]
    np.testing.assert_allclose(e["map"], ref["map"])
    np.testing.assert_allclose(e["patterson_cam"], ref["patterson_cam"])
    b = M.explain_pattern(_pattern(5, 99), pc, input_bin=3, method="Grad-CAM")
    assert b["method"] == "Grad-CAM" and b["map"].shape == (99, 99)
    # radial: the binning is passed on
    rad = _radial()
    p = _pattern(3)
    binned = p.reshape(15, 3, 15, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(M.explain_pattern(binned, rad, input_bin=3)["q_inner_input_px"],
                               rad.explain(binned, 3)["q_inner_input_px"])


def test_explain_by_family(tmp_path):
    rad = _radial()
    p = _pattern(3)
    e = M.explain_pattern(p, rad)
    ref = rad.explain(p, 1)
    assert e["kind"] == "rings"
    np.testing.assert_allclose(e["importance"], ref["importance"])
    res = _resnet()
    raw = np.random.default_rng(4).uniform(1, 2, (39, 39)).astype(np.float32)
    x = prepare(raw, PRE, 1)
    g = M.explain_pattern(raw, res)
    assert g["kind"] == "map" and g["map"].shape == (39, 39)
    np.testing.assert_allclose(g["map"], to_pattern_frame(grad_cam(res.model, x), PRE, (39, 39), 1), atol=1e-6)
    s = M.explain_pattern(raw, res, method="Saliency")
    np.testing.assert_allclose(s["map"], to_pattern_frame(saliency_map(res.model, x), PRE, (39, 39), 1), atol=1e-6)
    assert M.explain_pattern(raw, res, method="Grad-CAM")["map"].tolist() == g["map"].tolist()
    rb = raw[:39, :39].reshape(13, 3, 13, 3).mean(axis=(1, 3))
    eb = M.explain_pattern(rb, res, input_bin=3)
    np.testing.assert_allclose(eb["map"], to_pattern_frame(grad_cam(res.model, prepare(rb, PRE, 3)), PRE, (13, 13), 3),
                               atol=1e-6)
    # by file path too
    path = save_radial(rad, tmp_path / "r.pt")
    np.testing.assert_allclose(M.explain_pattern(p, path)["importance"], ref["importance"], rtol=1e-5)


def test_ring_shapes():
    ex = {"importance": np.array([0.5, -1.0, 2.0, 0.0, 1.0]), "q_inner_input_px": np.array([1.0, 3, 5, 7, 9]),
          "q_outer_input_px": np.array([3.0, 5, 7, 9, 12])}
    shapes = M.ring_shapes(ex, (10.5, 20), top=3)
    assert shapes == [{"center": (10.5, 20.0), "radius": 6.0, "width": 2.0, "importance": 2.0},
                      {"center": (10.5, 20.0), "radius": 10.5, "width": 3.0, "importance": 1.0},
                      {"center": (10.5, 20.0), "radius": 2.0, "width": 2.0, "importance": 0.5}]
    assert len(M.ring_shapes(ex, (0, 0))) == 3      # default top 6: only positive importances
    assert M.ring_shapes(ex, (0, 0), top=1)[0]["importance"] == 2.0
    many = {"importance": np.arange(1.0, 9.0), "q_inner_input_px": np.arange(8.0), "q_outer_input_px": np.arange(8.0) + 1}
    assert [s["importance"] for s in M.ring_shapes(many, (0, 0))] == [8.0, 7.0, 6.0, 5.0, 4.0, 3.0]
