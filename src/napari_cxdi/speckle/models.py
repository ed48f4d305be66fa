"""Shipped speckle models by name, one loader for both model families, and the classify / explain API.

    from napari_cxdi.speckle import classify_patterns, explain_pattern, load_model
    out = classify_patterns(patterns, "speckle-poly", input_bin=3)   # pred, probs, ood, warnings
    rings = explain_pattern(patterns[0], "speckle-poly", input_bin=3)  # which q-ranges decided

Names: ``speckle-mono`` (default; monodisperse disks, radial features), ``speckle-poly`` (polydisperse disks:
2-D CNN on the Patterson map + radial and Patterson-peak features), ``speckle-poly-mixed`` (the same
design trained on both size laws: the previous ``speckle-poly``), ``speckle-poly-radial`` (the first
polydisperse model, radial features only), ``speckle-resnet18-mono`` (the 2-D ResNet-18 of the first
version). A path to a checkpoint of any family works wherever a name does.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, InputFileError


@dataclass(frozen=True)
class ModelInfo:
    name: str
    file: str
    family: str          # "radial", "patterson" or "resnet"
    description: str


MODELS = {m.name: m for m in (
    ModelInfo("speckle-mono", "speckle_radial_mono.pt", "radial",
              "monodisperse disks, n = 2..20; radial I(q) + speckle contrast network, noise-robust"),
    ModelInfo("speckle-poly", "speckle_patterson_poly.pt", "patterson",
              "polydisperse disks of the seed's size law (its code: area coefficients ~ N(3, 1)), n = 2..20; 2-D CNN "
              "on the Patterson map (autocorrelation) + radial and peak features"),
    ModelInfo("speckle-poly-mixed", "speckle_patterson_poly_mixed.pt", "patterson",
              "polydisperse disks, trained on both size laws (radius sd = mean/3 and the seed code's area law), "
              "n = 2..20; the same 2-D Patterson design (the previous speckle-poly; better on the radius law)"),
    ModelInfo("speckle-poly-radial", "speckle_radial_poly.pt", "radial",
              "polydisperse disks (radius sd = mean/3), n = 2..20; radial network (previous speckle-poly)"),
    ModelInfo("speckle-resnet18-mono", "speckle_resnet18_mono.pt", "resnet",
              "monodisperse disks, 2-D ResNet-18 on the 513 window binned 3x3 (first version)"),
)}
DEFAULT_MODEL = "speckle-mono"


class OutOfDomainWarning(UserWarning):
    """A pattern looks unlike the patterns the model was trained on; its prediction is unreliable."""


def model_names() -> list[str]:
    return list(MODELS)


def model_path(name_or_path: str | Path) -> Path:
    """The file of a shipped model name, or ``name_or_path`` itself when it is a file."""
    from ..resources import sample_file

    key = str(name_or_path)
    if key in MODELS:
        return sample_file("models", MODELS[key].file)
    p = Path(key)
    if p.is_file():
        return p
    if p.suffix in (".pt", ".pth") or "/" in key or "\\" in key:
        raise InputFileError(p, "checkpoint not found")
    raise ConfigError(f"unknown speckle model {key!r}; choose one of {', '.join(MODELS)} or give a checkpoint file")


_CACHE: dict = {}
_LOCK = threading.Lock()


def load_model(name_or_path: str | Path = DEFAULT_MODEL, device: str = "auto"):
    """A :class:`~.radial.RadialClassifier` or :class:`~.classifier.SpeckleClassifier` (cached per file and
    modification time; safe from worker threads)."""
    import torch

    from .classifier import FORMAT as RESNET_FORMAT
    from .classifier import load_checkpoint
    from .patterson import FORMAT as PATTERSON_FORMAT
    from .patterson import patterson_from_checkpoint
    from .radial import FORMAT as RADIAL_FORMAT
    from .radial import radial_from_checkpoint

    path = model_path(name_or_path)
    key = (str(path.resolve()), path.stat().st_mtime, str(device))
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt / foreign files
        raise InputFileError(path, f"cannot read checkpoint: {exc}") from exc
    fmt = ckpt.get("format") if isinstance(ckpt, dict) else None
    if fmt == RADIAL_FORMAT:
        model = radial_from_checkpoint(ckpt, path)
    elif fmt == PATTERSON_FORMAT:
        model = patterson_from_checkpoint(ckpt, path)
    elif fmt == RESNET_FORMAT:
        model = load_checkpoint(path, device)
    else:
        raise InputFileError(path, f"not a napari-cxdi speckle checkpoint ({RADIAL_FORMAT}, {PATTERSON_FORMAT} or "
                                   f"{RESNET_FORMAT})")
    if not getattr(model, "name", None) and str(name_or_path) in MODELS:
        model.name = str(name_or_path)
    with _LOCK:
        _CACHE.clear()
        _CACHE[key] = model
    return model


def model_label(model, name_or_path: str | Path | None = None) -> str:
    return getattr(model, "name", "") or (Path(str(name_or_path)).stem if name_or_path else "model")


def classify_patterns(patterns: np.ndarray, model: str | Path | object = DEFAULT_MODEL, input_bin: int = 1,
                      warn: bool = True) -> dict:
    """Disk number of raw patterns ``(H, W)`` / ``(N, H, W)`` (k = 0 at the centre, binned by ``input_bin``).

    Returns ``{"pred" (N,), "probs" (N, C) calibrated or None, "value" (N,), "classes", "ood" (N,) bool,
    "warnings" [str], "model"}``; radial models add ``ood_score`` / ``fit_residual`` and thresholds. Each
    out-of-domain frame also raises an :class:`OutOfDomainWarning` (``warn=False``: only listed)."""
    clf = load_model(model) if isinstance(model, (str, Path)) else model
    label = model_label(clf, model if isinstance(model, (str, Path)) else None)
    out = dict(clf.predict(patterns, input_bin))
    n = len(np.atleast_1d(out["pred"]))
    out.setdefault("ood", np.zeros(n, dtype=bool))
    out["classes"] = np.asarray(clf.classes)
    out["model"] = label
    out["warnings"] = domain_warnings(out, label)
    if warn:
        for msg in out["warnings"]:
            warnings.warn(msg, OutOfDomainWarning, stacklevel=2)
    return out


def domain_warnings(out: dict, label: str) -> list[str]:
    """One message per out-of-domain frame, saying why."""
    msgs = []
    for i in np.flatnonzero(np.asarray(out.get("ood", []))):
        why = []
        if "fit_residual" in out and out["fit_residual"][i] > out["fit_residual_threshold"]:
            why.append(f"the form-factor rings are washed out (one-disk fit residual {out['fit_residual'][i]:.3f} > "
                       f"{out['fit_residual_threshold']:.3f}: polydisperse disks?)")
        if "ood_score" in out and out["ood_score"][i] > out["ood_threshold"]:
            why.append(f"its I(q) profile is unlike every class's (score {out['ood_score'][i]:.2f} > "
                       f"{out['ood_threshold']:.2f})")
        msgs.append(f"frame {i}: looks outside the training domain of {label} ({'; '.join(why) or 'see ood'}); "
                    "the disk number is unreliable" + (" - try speckle-poly" if label == "speckle-mono" else ""))
    return msgs


def explain_pattern(pattern: np.ndarray, model: str | Path | object = DEFAULT_MODEL, input_bin: int = 1,
                    method: str = "auto") -> dict:
    """Why the model decided. Radial models: ``{"kind": "rings", "class", "q_inner_px", "q_outer_px",
    "importance", "q_inner_input_px", "q_outer_input_px"}`` (occlusion importance per q-range, full-res
    pixels of the 513 window and the pattern's own pixels). ResNet models: ``{"kind": "map", "map" (H, W)}``
    (``method`` ``"Grad-CAM"`` or ``"saliency"``, default Grad-CAM). Patterson models (2-D):
    ``{"kind": "map", "map" (H, W)}`` the saliency on the pattern, plus ``"patterson"`` (the map) and
    ``"patterson_cam"`` (Grad-CAM over it: which pair vectors decided), ``"class"``."""
    clf = load_model(model) if isinstance(model, (str, Path)) else model
    pattern = np.asarray(pattern, dtype=np.float32)
    if getattr(clf, "family", "") == "patterson":
        return {"kind": "map", **clf.explain(pattern, input_bin, method)}
    if hasattr(clf, "explain"):
        return {"kind": "rings", **clf.explain(pattern, input_bin)}
    from .patterns import prepare
    from .saliency import grad_cam, saliency_map, to_pattern_frame

    fn = saliency_map if method.lower() == "saliency" else grad_cam
    m = fn(clf.model, prepare(pattern, clf.preprocess, input_bin))
    return {"kind": "map", "map": to_pattern_frame(m, clf.preprocess, pattern.shape, input_bin)}


def ring_shapes(explanation: dict, center: tuple[float, float], top: int = 6) -> list[dict]:
    """Circles for the ``top`` most important q-ranges of a ring explanation, in the pattern's pixels:
    ``[{"center" (y, x), "radius", "width", "importance"}]`` (mid radius, ring width) - what the dock
    draws as a Shapes layer."""
    imp = np.asarray(explanation["importance"], float)
    order = np.argsort(imp)[::-1][:top]
    inner, outer = np.asarray(explanation["q_inner_input_px"]), np.asarray(explanation["q_outer_input_px"])
    return [{"center": (float(center[0]), float(center[1])), "radius": float(0.5 * (inner[i] + outer[i])),
             "width": float(outer[i] - inner[i]), "importance": float(imp[i])} for i in order if imp[i] > 0]
