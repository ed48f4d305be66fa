"""Saliency maps (|d score / d input|, Simonyan et al. 2014) and Grad-CAM (Selvaraju et al. 2017).

Inputs are prepared patterns ``(S, S)``; outputs are ``(S, S)`` float32 maps scaled to [0, 1].
The target is a class index (default: the predicted class); for the regression head the predicted
value itself is differentiated.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataValidationError
from .patterns import PreprocessConfig
from .resnet import SpeckleResNet


def _input(x: np.ndarray, model: SpeckleResNet) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x, dtype=np.float32))
    if t.ndim != 2:
        raise DataValidationError(f"expected one prepared pattern (S, S), got {tuple(t.shape)}")
    return t[None, None].to(next(model.parameters()).device)


def _score(out: torch.Tensor, model: SpeckleResNet, target: int | None) -> tuple[torch.Tensor, int | None]:
    if model.task == "regression":
        return out[0], None
    target = int(out[0].argmax()) if target is None else int(target)
    return out[0, target], target


def _normalise(m: torch.Tensor) -> np.ndarray:
    m = m.detach().float().cpu()
    span = float(m.max() - m.min())
    return ((m - m.min()) / span if span > 0 else torch.zeros_like(m)).numpy().astype(np.float32)


def saliency_map(model: SpeckleResNet, x: np.ndarray, target: int | None = None) -> np.ndarray:
    """``|d score / d x|`` ``(S, S)`` of the target class (index into the model's classes)."""
    model.eval()
    inp = _input(x, model).requires_grad_(True)
    score, _ = _score(model(inp), model, target)
    (grad,) = torch.autograd.grad(score, inp)
    return _normalise(grad[0, 0].abs())


def grad_cam(model: SpeckleResNet, x: np.ndarray, target: int | None = None) -> np.ndarray:
    """Grad-CAM on the last conv stage, bilinearly upsampled to the input shape ``(S, S)``."""
    model.eval()
    inp = _input(x, model)
    with torch.enable_grad():
        feat = model.features(inp)
        score, _ = _score(model.head(feat), model, target)
        (grad,) = torch.autograd.grad(score, feat)
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * feat).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=inp.shape[-2:], mode="bilinear", align_corners=False)
    return _normalise(cam[0, 0])


def to_pattern_frame(m: np.ndarray, preprocess: PreprocessConfig, shape: tuple[int, int], input_bin: int = 1) -> np.ndarray:
    """Place a map of the prepared input back onto a raw pattern of ``shape`` (zeros outside the crop)."""
    return upsample_to_frame(m, preprocess.bin // input_bin, shape)


def upsample_to_frame(m: np.ndarray, factor: int, shape: tuple[int, int]) -> np.ndarray:
    """``m`` upsampled ``factor`` times (blocks) and centred on a zero frame of ``shape``."""
    up = np.kron(m, np.ones((factor, factor), dtype=np.float32))
    out = np.zeros(shape, dtype=np.float32)
    h, w = shape
    s = up.shape[0]
    y0, x0 = h // 2 - s // 2, w // 2 - s // 2
    out[y0:y0 + s, x0:x0 + s] = up
    return out
