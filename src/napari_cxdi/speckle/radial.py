"""Radial-feature speckle classifiers: a small network on ``log I(q)``, ring speckle contrast and moments
(:mod:`.features`), with temperature-calibrated probabilities, an out-of-domain check and per-q-ring
explanations.

Checkpoint (``torch.save`` of plain dicts/tensors, loadable with ``weights_only=True``)::

    {"format": "napari-cxdi-speckle-radial-v1", "net": {arch, n_features, n_rings, num_classes, hidden},
     "state_dict", "classes", "features": FeatureConfig dict, "feature_mean", "feature_std",
     "temperature", "domain": {"class_mean", "class_std", "threshold", "quantile"}, "name", "provenance"}
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, DataValidationError, InputFileError
from .features import FeatureConfig, radial_features

FORMAT = "napari-cxdi-speckle-radial-v1"
ARCHS = ("mlp", "cnn1d")


class RadialNet(nn.Module):
    """``mlp``: standardised features -> 2 hidden layers -> logits. ``cnn1d``: the two ring profiles
    (log I, contrast) as a 2-channel 1-D signal through three convolutions (q-local filters), pooled,
    joined with the global features, then a hidden layer -> logits."""

    def __init__(self, arch: str, n_features: int, n_rings: int, num_classes: int, hidden: int = 256,
                 dropout: float = 0.1):
        super().__init__()
        if arch not in ARCHS:
            raise ConfigError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
        self.arch, self.n_features, self.n_rings = arch, n_features, n_rings
        self.num_classes, self.hidden, self.dropout = num_classes, hidden, dropout
        if arch == "mlp":
            self.body = nn.Sequential(nn.Linear(n_features, hidden), nn.GELU(), nn.Dropout(dropout),
                                      nn.Linear(hidden, hidden), nn.GELU(), nn.Dropout(dropout),
                                      nn.Linear(hidden, num_classes))
        else:
            c = 32
            self.conv = nn.Sequential(nn.Conv1d(2, c, 5, padding=2), nn.GELU(),
                                      nn.Conv1d(c, c, 5, padding=2, stride=2), nn.GELU(),
                                      nn.Conv1d(c, c, 5, padding=2, stride=2), nn.GELU(),
                                      nn.AdaptiveAvgPool1d(8))
            n_glob = n_features - 2 * n_rings
            self.head = nn.Sequential(nn.Linear(c * 8 + n_glob, hidden), nn.GELU(), nn.Dropout(dropout),
                                      nn.Linear(hidden, num_classes))

    def config(self) -> dict:
        return {"arch": self.arch, "n_features": self.n_features, "n_rings": self.n_rings,
                "num_classes": self.num_classes, "hidden": self.hidden, "dropout": self.dropout}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.arch == "mlp":
            return self.body(x)
        r = self.n_rings
        prof = torch.stack([x[:, :r], x[:, r:2 * r]], 1)
        return self.head(torch.cat([self.conv(prof).flatten(1), x[:, 2 * r:]], 1))


@dataclass
class RadialClassifier:
    """A trained radial model with its feature settings, calibration and domain statistics."""

    net: RadialNet
    classes: np.ndarray
    features: FeatureConfig
    feature_mean: np.ndarray
    feature_std: np.ndarray
    temperature: float = 1.0
    domain: dict = field(default_factory=dict)
    readout: dict = field(default_factory=dict)
    name: str = ""
    provenance: dict = field(default_factory=dict)

    task = "classification"

    # --- features and logits -------------------------------------------------------------------
    def featurize(self, patterns: np.ndarray, input_bin: int = 1) -> np.ndarray:
        """Raw patterns -> feature vectors ``(N, F)`` (see :func:`radial_features`)."""
        return radial_features(patterns, self.features, input_bin)

    def standardize(self, feats: np.ndarray) -> np.ndarray:
        f = np.asarray(feats, dtype=np.float32)
        if f.ndim != 2 or f.shape[1] != self.feature_mean.size:
            raise DataValidationError(f"expected features (N, {self.feature_mean.size}), got {f.shape}")
        return ((f - self.feature_mean) / self.feature_std).astype(np.float32)

    @torch.no_grad()
    def logits(self, feats: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Uncalibrated logits ``(N, C)`` of raw (unstandardised) features: the network's, plus, with a
        read-out (:func:`fit_readout`), ``weight x`` the Gaussian log-likelihood of the one-disk-fit radius
        under each class."""
        self.net.eval()
        z = torch.from_numpy(self.standardize(feats))
        if not len(z):
            return np.zeros((0, len(self.classes)), np.float32)
        out = torch.cat([self.net(z[i:i + batch_size]) for i in range(0, len(z), batch_size)]).numpy()
        return out + self.readout_loglik(feats) if self.readout else out

    def readout_loglik(self, feats: np.ndarray) -> np.ndarray:
        """``weight * log N(log r_fit | mean_c, std_c)`` ``(N, C)`` (zeros without a read-out)."""
        if not self.readout:
            return np.zeros((len(feats), len(self.classes)), np.float32)
        x = np.asarray(feats, np.float64)[:, int(self.readout["index"])][:, None]
        mu, sd = np.asarray(self.readout["mean"], float), np.asarray(self.readout["std"], float)
        ll = -0.5 * ((x - mu[None]) / sd[None]) ** 2 - np.log(sd)[None]
        return (float(self.readout["weight"]) * ll).astype(np.float32)

    # --- prediction ------------------------------------------------------------------------------
    def predict_features(self, feats: np.ndarray) -> dict:
        """Features ``(N, F)`` -> ``{"pred", "probs" (calibrated), "value" (expected n), "ood" (bool),
        "ood_score", "ood_threshold", "fit_residual", "fit_residual_threshold"}``. A pattern is out of the
        training domain (``ood``) when its ring profile is far from every class's (``ood_score``) or the
        one-disk fit leaves more residual than in-domain patterns do (e.g. polydisperse data given to the
        monodisperse model: the form-factor minima are filled in)."""
        return self._result(self.logits(feats), feats)

    def _result(self, logits: np.ndarray, feats: np.ndarray) -> dict:
        """Calibrated probabilities, prediction and domain flags from a model's logits and the features."""
        probs = torch.softmax(torch.from_numpy(logits / self.temperature), 1).numpy()
        classes = np.asarray(self.classes)
        score = self.domain_score(feats)
        thr = float(self.domain.get("threshold", np.inf))
        resid = np.asarray(feats, float)[:, self.features.n_features - 1]
        resid_thr = float(self.domain.get("residual_threshold", np.inf))
        return {"pred": classes[probs.argmax(1)], "probs": probs, "value": probs @ classes,
                "ood": (score > thr) | (resid > resid_thr), "ood_score": score, "ood_threshold": thr,
                "fit_residual": resid, "fit_residual_threshold": resid_thr}

    def predict(self, patterns: np.ndarray, input_bin: int = 1, batch_size: int = 64) -> dict:
        """Raw intensities or photon counts ``(H, W)`` / ``(N, H, W)`` (k = 0 at the centre, a 513 window
        or larger, binned by ``input_bin``) -> see :meth:`predict_features`."""
        x = np.asarray(patterns)
        x = x[None] if x.ndim == 2 else x
        feats = np.concatenate([self.featurize(x[i:i + batch_size], input_bin) for i in range(0, len(x), batch_size)])
        return self.predict_features(feats)

    # --- out-of-domain check ---------------------------------------------------------------------
    def domain_score(self, feats: np.ndarray) -> np.ndarray:
        """Distance of each pattern to the training domain: the smallest, over the classes, mean squared
        z-score of its ``log I(q)`` ring profile against that class's profile (mean and spread measured on
        held-out in-domain patterns). ``inf`` thresholds mean no check."""
        if not self.domain:
            return np.zeros(len(feats))
        r = self.features.n_rings
        z = self.standardize(feats)[:, :r].astype(np.float64)
        mu = np.asarray(self.domain["class_mean"], float)   # (C, r)
        sd = np.asarray(self.domain["class_std"], float)
        d = (((z[:, None, :] - mu[None]) / sd[None]) ** 2).mean(-1)
        return d.min(1)

    # --- explanations ----------------------------------------------------------------------------
    def explain_features(self, feats: np.ndarray, group: int = 3, target: int | None = None) -> dict:
        """Occlusion importance per q-range for one pattern's features ``(F,)``: the rings are taken
        ``group`` at a time and both their ``log I`` and contrast values are replaced by the training
        mean; the importance is the drop of the log-odds ``log p / (1 - p)`` of ``target`` (default: the
        predicted class). Returns ``{"class", "q_inner_px", "q_outer_px", "importance"}`` (full-resolution pixels
        of the 513 window; positive = this q-range supported the class)."""
        f = np.asarray(feats, np.float32).reshape(1, -1)
        z = self.standardize(f)
        r = self.features.n_rings
        starts = np.arange(0, r, group)
        batch = np.repeat(z, len(starts) + 1, 0)
        for i, s in enumerate(starts):
            batch[i + 1, s:s + group] = 0.0
            batch[i + 1, r + s:r + s + group] = 0.0
        with torch.no_grad():
            self.net.eval()
            logits = self.net(torch.from_numpy(batch)).double()
        if self.readout:  # the fit radius is a global feature: the same for every occluded copy
            logits = logits + torch.from_numpy(self.readout_loglik(f).astype(np.float64))
        logits = logits / self.temperature
        k = int(logits[0].argmax()) if target is None else int(np.searchsorted(self.classes, target))
        # log-odds of the class, log p / (1 - p): unlike log p it does not saturate for confident models
        others = torch.cat([logits[:, :k], logits[:, k + 1:]], 1)
        logodds = (logits[:, k] - torch.logsumexp(others, 1)).numpy()
        radii = self.features.ring_radii_px()
        half = self.features.bin / 2
        return {"class": int(self.classes[k]),
                "q_inner_px": np.array([radii[s] - half for s in starts]),
                "q_outer_px": np.array([radii[min(s + group, r) - 1] + half for s in starts]),
                "importance": (logodds[0] - logodds[1:]).astype(np.float32)}

    def explain(self, pattern: np.ndarray, input_bin: int = 1, group: int = 3, target: int | None = None) -> dict:
        """:meth:`explain_features` of one raw pattern ``(H, W)``; radii also given in the pattern's own
        pixels (``q_*_input_px``, divided by ``input_bin``)."""
        pattern = np.asarray(pattern)
        if pattern.ndim != 2:
            raise DataValidationError(f"explain takes one pattern (H, W), got shape {pattern.shape}")
        out = self.explain_features(self.featurize(pattern, input_bin)[0], group, target)
        out["q_inner_input_px"] = out["q_inner_px"] / input_bin
        out["q_outer_input_px"] = out["q_outer_px"] / input_bin
        return out

    # --- storage ---------------------------------------------------------------------------------
    def checkpoint(self) -> dict:
        return {"format": FORMAT, "net": self.net.config(),
                "state_dict": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
                "classes": [int(c) for c in self.classes], "features": self.features.to_dict(),
                "feature_mean": torch.from_numpy(np.asarray(self.feature_mean, np.float32)),
                "feature_std": torch.from_numpy(np.asarray(self.feature_std, np.float32)),
                "temperature": float(self.temperature),
                "readout": {k: (torch.as_tensor(np.asarray(v, np.float32)) if k in ("mean", "std") else float(v))
                            for k, v in self.readout.items()},
                "domain": {k: (torch.as_tensor(np.asarray(v, np.float32)) if k.startswith("class_") else float(v))
                           for k, v in self.domain.items()},
                "name": self.name,
                "provenance": json.loads(json.dumps(self.provenance, default=str))}

    def to(self, device) -> RadialClassifier:
        return self  # features are computed with numpy; the net is tiny and stays on the CPU


def save_radial(clf: RadialClassifier, path: str | Path, overwrite: bool = True) -> Path:
    """Write ``clf`` through the one atomic write path (a full disk is a typed OutputWriteError)."""
    from ..io.safe_write import torch_save

    return torch_save(clf.checkpoint(), path, overwrite=overwrite)


def arrays_from_checkpoint(d: dict) -> dict:
    """A checkpoint's dict of tensors as numpy arrays (other values unchanged)."""
    return {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in d.items()}


def is_radial_checkpoint(ckpt) -> bool:
    return isinstance(ckpt, dict) and ckpt.get("format") == FORMAT


def radial_from_checkpoint(ckpt: dict, path: str | Path = "") -> RadialClassifier:
    try:
        net = RadialNet(**ckpt["net"])
        net.load_state_dict(ckpt["state_dict"])
        net.eval()
        unpack = arrays_from_checkpoint
        return RadialClassifier(net, np.asarray(ckpt["classes"]), FeatureConfig.from_dict(ckpt["features"]),
                                ckpt["feature_mean"].numpy(), ckpt["feature_std"].numpy(),
                                float(ckpt.get("temperature", 1.0)), unpack(ckpt.get("domain", {})),
                                unpack(ckpt.get("readout", {})), ckpt.get("name", ""), ckpt.get("provenance", {}))
    except (KeyError, RuntimeError, TypeError) as exc:
        raise InputFileError(Path(path), f"broken radial speckle checkpoint: {exc}") from exc


def load_radial(path: str | Path) -> RadialClassifier:
    from .classifier import read_checkpoint_file

    path = Path(path)
    ckpt = read_checkpoint_file(path)
    if not is_radial_checkpoint(ckpt):
        raise InputFileError(path, f"not a radial speckle checkpoint (format {FORMAT})")
    return radial_from_checkpoint(ckpt, path)


def domain_statistics(clf: RadialClassifier, feats: np.ndarray, labels: np.ndarray, quantile: float = 0.995,
                      margin: float = 1.25) -> dict:
    """Per-class mean and spread of the standardised ``log I(q)`` profile on in-domain held-out features,
    and the thresholds: ``margin`` x the ``quantile`` of their own profile scores and one-disk-fit
    residuals (so ~0.5 % of in-domain patterns or fewer are flagged)."""
    r = clf.features.n_rings
    z = clf.standardize(feats)[:, :r].astype(np.float64)
    classes = np.asarray(clf.classes)
    mu = np.stack([z[labels == c].mean(0) for c in classes])
    sd = np.stack([z[labels == c].std(0) for c in classes]) + 0.05
    clf.domain = {"class_mean": mu, "class_std": sd, "threshold": np.inf, "quantile": quantile}
    scores = clf.domain_score(feats)
    clf.domain["threshold"] = float(margin * np.quantile(scores, quantile))
    resid = np.asarray(feats, float)[:, clf.features.n_features - 1]
    clf.domain["residual_threshold"] = float(margin * np.quantile(resid, quantile))
    return clf.domain


def fit_readout(clf: RadialClassifier, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray,
                y_val: np.ndarray, weights=(0.0, 0.25, 0.5, 1.0, 2.0, 4.0)) -> dict:
    """The physics read-out combined with the network: per-class mean and spread of the one-disk-fit
    ``log r`` on training features (for monodisperse disks ``n = A / (pi r^2)`` with the fixed total area
    ``A``), and the weight of its log-likelihood in the logits, chosen (with the temperature) by the
    validation negative log-likelihood; weight 0 means the network alone was best. Sets ``clf.readout``
    and ``clf.temperature``; returns ``{"weight", "temperature", "val_nll", "val_accuracy"}``."""
    from .calibration import fit_temperature, nll

    index = clf.features.n_features - 2
    classes = np.asarray(clf.classes)
    x = np.asarray(x_train, float)[:, index]
    mean = np.array([x[y_train == c].mean() for c in classes])
    std = np.array([x[y_train == c].std() for c in classes]) + 1e-3
    yv = np.searchsorted(classes, y_val)
    best = None
    for w in weights:
        clf.readout = {"index": index, "mean": mean, "std": std, "weight": float(w)} if w > 0 else {}
        logits = clf.logits(x_val)
        t = fit_temperature(logits, yv)
        score = nll(logits, yv, t)
        if best is None or score < best["val_nll"] - 1e-9:
            best = {"weight": float(w), "temperature": t, "val_nll": score,
                    "val_accuracy": float((logits.argmax(1) == yv).mean())}
    w = best["weight"]
    clf.readout = {"index": index, "mean": mean, "std": std, "weight": w} if w > 0 else {}
    clf.temperature = best["temperature"]
    return best


def replace(clf: RadialClassifier, **changes) -> RadialClassifier:
    return dataclasses.replace(clf, **changes)
