"""SCANN / SCANN+ forward pass against a plain per-atom, per-neighbour reference written from the
thesis equations (4.2-4.14), on a padded batch of two small molecules; Gaussian expansion, masked
softmax, config errors and helpers by hand. Tiny models (width 8, 2 layers); seconds."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ase import Atoms
from ase.build import molecule

from napari_cxdi.errors import ConfigError
from napari_cxdi.scann import EnvironmentSet, ScannConfig, build_model, collate, local_environment
from napari_cxdi.scann.model import GaussianExpansion, config_dict, masked_softmax

TINY = dict(width=8, n_layers=2, n_heads=2, z_embedding=4, n_gaussians=5, readout=6, dropout=0.0,
            n_targets=2, target_names=["a", "b"])


def reference(model, env):
    """Prediction (T,), GA scores (N,), local attention per layer {(i, j): (H,)} of one structure."""
    cfg = model.config
    H, dh = cfg.n_heads, cfg.width // cfg.n_heads
    z = torch.as_tensor(env.numbers)
    c = F.silu(model.F_e(model.atom_embedding(z)))
    edges = list(zip(env.center.tolist(), env.neighbor.tolist()))
    d = torch.as_tensor(env.distance, dtype=torch.float32)
    om = torch.as_tensor(env.solid_angle, dtype=torch.float32)

    def gauss(x, stop):
        mu = torch.tensor([stop * k / (cfg.n_gaussians - 1) for k in range(cfg.n_gaussians)])
        return torch.exp(-((x[:, None] - mu) ** 2) / cfg.gaussian_width ** 2)

    de = F.silu(model.F_d(gauss(d, cfg.distance_max)))
    if cfg.variant == "scann+":
        g = de * F.silu(model.F_a(gauss(om, cfg.angle_max)))
    else:
        mx = {i: max(o for (ci, _), o in zip(edges, om.tolist()) if ci == i) for i, _ in edges}
        g = de * torch.tensor([o / mx[i] for (i, _), o in zip(edges, om.tolist())])[:, None]
    att = []
    for layer in model.layers:
        q = layer.W_q(c)
        new_c, new_g, a_layer = [], [None] * len(edges), {}
        for i in range(len(z)):
            mine = [e for e, (ci, _) in enumerate(edges) if ci == i]
            ctx = torch.zeros(H, dh)
            if mine:
                k = torch.stack([layer.W_k(c[edges[e][1]] * g[e]).view(H, dh) for e in mine])  # (n, H, dh)
                s = (q[i].view(H, dh)[None] * k).sum(-1) / math.sqrt(dh)
                a = torch.softmax(s, dim=0)
                ctx = (a[..., None] * k).sum(0)
                for e, ae in zip(mine, a):
                    a_layer[edges[e]] = ae
            ci_ = layer.norm_attention(q[i] + ctx.reshape(-1))
            new_c.append(layer.norm_feedforward(ci_ + F.silu(layer.F_n(ci_))))
        if layer.F_g is not None and edges:
            for e, (i, j) in enumerate(edges):
                new_g[e] = layer.norm_geometry(g[e] + F.silu(layer.F_g(torch.cat([c[i], g[e], c[j]]))))
            g = torch.stack(new_g)
        c = torch.stack(new_c)
        att.append(a_layer)
    Q, K = model.global_attention.W_Q(c), model.global_attention.W_K(c)
    s = torch.stack([sum((Q[j] * K[i]).sum() for j in range(len(z)) if j != i) for i in range(len(z))])
    s = s / (torch.sqrt((s ** 2).sum()) + 1e-8)
    alpha = torch.softmax(s, dim=0)
    x = (alpha[:, None] * K).sum(0)
    lin1, lin2 = model.F_S[0], model.F_S[-1]  # F_S = Linear -> swish -> Linear, written out
    y = model.target_mean + model.target_std * F.linear(F.silu(F.linear(x, lin1.weight, lin1.bias)), lin2.weight,
                                                        lin2.bias)
    return y, alpha, att, c


def structures():
    lone = Atoms("HF", positions=[[0, 0, 0], [5.0, 0, 0]])  # 5 Å apart: no neighbours within the cutoff
    return [molecule("H2O"), molecule("CH3OH"), lone]


@pytest.mark.parametrize("variant", ["scann", "scann+"])
def test_forward_matches_the_equations(variant):
    torch.manual_seed(1)
    model = build_model(ScannConfig(variant=variant, **TINY)).eval()
    with torch.no_grad():
        model.target_mean.copy_(torch.tensor([-6.0, 0.5]))
        model.target_std.copy_(torch.tensor([0.5, 2.0]))
        for p in model.parameters():  # non-zero biases too (they start at zero)
            p.add_(0.05 * torch.randn_like(p))
    envs = [local_environment(m) for m in structures()]
    assert len(envs[2].center) == 0
    es = EnvironmentSet.from_environments(envs, np.zeros((3, 2)), ["a", "b"], ["eV", "eV"])
    batch = collate(es, [1, 0, 2])  # padded: 6 atoms, H2O has 3, HF 2
    with torch.no_grad():
        out = model(batch, return_local_attention=True)
        for b, s in enumerate([1, 0, 2]):
            env = es.environment(s)
            y, alpha, att, c = reference(model, env)
            n = env.n_atoms
            torch.testing.assert_close(out.prediction[b], y, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(out.ga_scores[b, :n], alpha, rtol=1e-4, atol=1e-6)
            assert torch.all(out.ga_scores[b, n:] == 0)
            torch.testing.assert_close(out.atom_features[b, :n], c, rtol=1e-4, atol=1e-5)
            assert torch.all(out.atom_features[b, n:] == 0)
            nbrs = batch["neighbors"][b]
            mask = batch["neighbor_mask"][b]
            for layer, ref in zip(out.local_attention, att):
                for i in range(batch["neighbors"].shape[1]):
                    for kk in range(batch["neighbors"].shape[2]):
                        got = layer[b, i, kk]
                        if mask[i, kk]:
                            torch.testing.assert_close(got, ref[(i, int(nbrs[i, kk]))], rtol=1e-4, atol=1e-6)
                        else:
                            assert torch.all(got == 0)
    assert out.local_attention[0].shape == (3, 6, batch["neighbors"].shape[2], 2)
    assert model(batch).local_attention is None
    # the layers update the geometry in SCANN+ except in the last layer; never in SCANN
    has_fg = [layer.F_g is not None for layer in model.layers]
    assert has_fg == ([True, False] if variant == "scann+" else [False, False])
    assert [layer.norm_geometry is not None for layer in model.layers] == has_fg
    assert model.plus == (variant == "scann+") and hasattr(model, "F_a") == (variant == "scann+")


def test_gaussian_expansion_and_masked_softmax():
    ge = GaussianExpansion(4.0, 5, 0.5)
    np.testing.assert_allclose(ge.mu, [0, 1, 2, 3, 4])
    x = torch.tensor([1.0, 2.25])
    expect = np.exp(-((np.array([1.0, 2.25])[:, None] - np.arange(5.0)) ** 2) / 0.25)
    np.testing.assert_allclose(ge(x), expect, rtol=1e-6)
    wide = GaussianExpansion(4.0, 5, 0.7)  # width 0.7: exp(-d^2 / 0.49)
    np.testing.assert_allclose(wide(torch.tensor([1.5])), [np.exp(-np.array([1.5, 0.5, 0.5, 1.5, 2.5]) ** 2 / 0.49)],
                               rtol=1e-6)
    assert ge(torch.zeros(2, 3)).shape == (2, 3, 5)
    s = torch.tensor([[1.0, 2.0, 3.0], [0.0, 5.0, 1.0]])
    m = torch.tensor([[True, True, False], [False, False, False]])
    out = masked_softmax(s, m, dim=1)
    e = np.exp([1.0, 2.0])
    np.testing.assert_allclose(out[0], [e[0] / e.sum(), e[1] / e.sum(), 0.0], rtol=1e-6)
    assert torch.all(out[1] == 0)
    out = masked_softmax(s.T, m.T, dim=0)
    np.testing.assert_allclose(out[:, 0], [e[0] / e.sum(), e[1] / e.sum(), 0.0], rtol=1e-6)


def test_init_standardized_and_parameter_count():
    torch.manual_seed(0)
    m = build_model(ScannConfig(variant="scann", **TINY))
    for mod in m.modules():
        if isinstance(mod, torch.nn.Linear) and mod.bias is not None:
            assert torch.all(mod.bias == 0)
    fan = m.F_e.weight.shape
    bound = math.sqrt(6.0 / (fan[0] + fan[1]))
    assert m.F_e.weight.abs().max() <= bound and m.F_e.weight.abs().max() > 0.5 * bound  # Glorot uniform
    assert torch.all(m.atom_embedding.weight[0] == 0)  # padding index
    assert m.atom_embedding.num_embeddings == 101
    h, v, k, r, T = 8, 4, 5, 6, 2
    layer = 3 * (h * h + h) + 2 * 2 * h
    expected = 101 * v + (v * h + h) + (k * h + h) + 2 * layer + 2 * h * h + (h * r + r) + (r * T + T)
    assert m.n_parameters() == expected
    m.F_e.weight.requires_grad_(False)
    assert m.n_parameters() == expected - v * h
    with torch.no_grad():
        m.target_mean.copy_(torch.tensor([1.0, -2.0]))
        m.target_std.copy_(torch.tensor([2.0, 4.0]))
    np.testing.assert_allclose(m.standardized(torch.tensor([[3.0, 2.0]])), [[1.0, 1.0]])
    plus = build_model(ScannConfig(variant="scann+", **TINY))
    assert plus.n_parameters() == expected + (k * h + h) + (3 * h * h + h) + 2 * h


def test_config_errors_and_dicts():
    with pytest.raises(ConfigError, match=r"variant must be 'scann' or 'scann\+', got 'cgcnn'"):
        ScannConfig(variant="cgcnn")
    with pytest.raises(ConfigError, match="width 10 is not divisible by n_heads 4"):
        ScannConfig(width=10, n_heads=4)
    with pytest.raises(ConfigError, match="^n_layers must be >= 1$"):
        ScannConfig(n_layers=0)
    ScannConfig(n_layers=1)
    d = config_dict(ScannConfig(**TINY))
    assert d["width"] == 8 and d["target_names"] == ["a", "b"] and d["variant"] == "scann+"
    m = build_model({**d, "not_a_field": 3})
    assert m.config == ScannConfig(**TINY)
    assert build_model(ScannConfig(**TINY)).config.width == 8
    assert ScannConfig().target_names == ["y"] and ScannConfig().target_names is not ScannConfig().target_names


def test_global_attention_normalisation_at_tiny_scores():
    """s_i = sum_{j != i} q_j . k_i, divided by ||s|| + 1e-8: for scores of order 1e-8 the epsilon matters."""
    from napari_cxdi.scann.model import GlobalAttention

    ga = GlobalAttention(2)
    assert ga.W_Q.bias is None and ga.W_K.bias is None and ga.eps == 1e-8
    ga = ga.double()
    w = 1e-4
    with torch.no_grad():
        ga.W_Q.weight.copy_(torch.eye(2, dtype=torch.float64) * w)
        ga.W_K.weight.copy_(torch.eye(2, dtype=torch.float64) * w)
    c = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]], dtype=torch.float64)
    mask = torch.tensor([[True, True, True, False]])
    with torch.no_grad():
        x, alpha = ga(c, mask)
    s = np.array([1.0, 1.0, 0.0]) * w * w  # q_1.k_0 + q_2.k_0 = w^2, the same for atom 1, 0 for atom 2
    s = s / (np.sqrt(2) * w * w + 1e-8)
    e = np.exp(s)
    expect = e / e.sum()
    np.testing.assert_allclose(alpha[0, :3], expect, rtol=1e-10)
    assert alpha[0, 3] == 0
    np.testing.assert_allclose(x[0], w * (expect[0] + expect[1]) * np.array([1.0, 0.0]) + w * expect[2] * np.array(
        [0.0, 1.0]), rtol=1e-10)


def _batch():
    envs = [local_environment(m) for m in structures()]
    es = EnvironmentSet.from_environments(envs, np.zeros((3, 2)), ["a", "b"], ["eV", "eV"])
    return collate(es, [1, 0, 2])


@pytest.mark.parametrize("variant", ["scann", "scann+"])
def test_forward_keeps_the_dtype_and_device_of_its_input(variant):
    """float64 weights and inputs give float64 results equal to float32 ones; a model on another device
    (PyTorch's shape-only "meta" device) never mixes in CPU tensors."""
    torch.manual_seed(2)
    model = build_model(ScannConfig(variant=variant, **TINY)).eval()
    batch = _batch()
    with torch.no_grad():
        ref = model(batch, return_local_attention=True)
        double = build_model(ScannConfig(variant=variant, **TINY)).eval()
        double.load_state_dict(model.state_dict())
        double = double.double()
        b64 = {k: v.double() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in batch.items()}
        out = double(b64, return_local_attention=True)
        assert out.prediction.dtype == torch.float64 and out.atom_features.dtype == torch.float64
        torch.testing.assert_close(out.prediction.float(), ref.prediction, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(out.ga_scores.float(), ref.ga_scores, rtol=1e-4, atol=1e-6)
        meta = model.to("meta")
        bm = {k: v.to("meta") if torch.is_tensor(v) else v for k, v in batch.items()}
        out = meta(bm, return_local_attention=True)
        assert out.prediction.device.type == "meta" and out.prediction.shape == (3, 2)
        assert out.local_attention[1].device.type == "meta"
