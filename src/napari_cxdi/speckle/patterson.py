"""Patterson-map speckle classifier: a small 2-D CNN on the autocorrelation of the object, joined with the
radial features (:mod:`.features`).

Why the Patterson map: the inverse Fourier transform of the intensity ``|F(k)|^2`` is the autocorrelation
of the object. For ``n`` disks of areas ``a_i`` at centres ``c_i`` it is the sum of the disks' own
autocorrelations at the origin (volume ``sum a_i^2``) and one cross peak per ordered pair at ``c_i - c_j``
(volume ``a_i a_j``, width ``~ 2 (r_i + r_j)``): ``n (n - 1)`` peaks, i.e. the number of disks is a peak
*count*, local in this map, whereas in the pattern every disk is spread over all pixels. For polydisperse
disks the radial features (ring ``I(q)``, speckle contrast, moments) only give size averages such as
``(sum a)^2 / sum a^2``, which scatter with the radius draw; the count of cross peaks does not.

Sampling (513 window binned 3 x 3 = 171 x 171 pixels, k spacing ``3 x 2 pi / 18001``): the map's period is
``18001 / 3 = 6000`` box units, its pixel ``18001 / 513 = 35.09`` units (the resolution the 513 window
allows). Pair vectors are at most ``1820 + r_i + r_j < 2100`` units per axis (centres in [90, 1910]), so
the central ``(2 half + 1)^2`` = 121 x 121 pixels hold everything (no wrap-around); the map is
centro-symmetric (``P(-x) = P(x)``, real object), so the model reads the upper half, ``61 x 121`` pixels.
The map is divided by its origin value (= the mean intensity): scale-free. Poisson noise in the pattern
becomes white noise in the map (relative level ``1/sqrt(photons)``, ~0.003 at 1e5 photons, against cross
peaks of ``~1/n`` >= 0.05), so the same model reads photon counts. The blocked centre of the pattern
subtracts a broad hump (~47 px wide) that the network learns to ignore.

Checkpoint (``torch.save`` of plain dicts/tensors, ``weights_only=True``)::

    {"format": "napari-cxdi-speckle-patterson-v1", "net": PattersonNet config, "state_dict", "classes",
     "features", "feature_mean", "feature_std", "temperature", "domain", "name", "provenance"}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DataValidationError, InputFileError
from .features import FeatureConfig, radial_features, to_feature_grid
from .radial import RadialClassifier

FORMAT = "napari-cxdi-speckle-patterson-v1"
#: half width of the Patterson crop in map pixels (35.09 box units each)
HALF = 60


def patterson_torch(grid: torch.Tensor, half: int = HALF) -> torch.Tensor:
    """Normalised Patterson maps ``(N, half + 1, 2 half + 1)`` of binned patterns ``(N, S, S)`` (k = 0 at the
    centre pixel, S odd): ``real(IFFT(I))`` centred, divided by its origin value, upper half (row ``half`` is
    the origin row, column ``half`` the origin column). Differentiable (saliency)."""
    if grid.ndim != 3 or grid.shape[-1] != grid.shape[-2] or grid.shape[-1] % 2 == 0:
        raise DataValidationError(f"expected binned patterns (N, S, S) with S odd, got {tuple(grid.shape)}")
    s = grid.shape[-1]
    c = s // 2
    if half > c:
        raise DataValidationError(f"Patterson half width {half} exceeds the {s} x {s} map")
    p = torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(grid, dim=(-2, -1))).real, dim=(-2, -1))
    origin = p[:, c:c + 1, c:c + 1]
    if torch.any(origin <= 0):
        raise DataValidationError("pattern has no intensity (Patterson origin <= 0)")
    return (p / origin)[:, c - half:c + 1, c - half:c + half + 1]


def patterson_maps(grid: np.ndarray, half: int = HALF) -> np.ndarray:
    """:func:`patterson_torch` for numpy ``(N, S, S)`` (or one ``(S, S)``) -> float32 ``(N, half+1, 2 half+1)``."""
    g = np.asarray(grid, dtype=np.float64)
    g = g[None] if g.ndim == 2 else g
    return patterson_torch(torch.from_numpy(g), half).numpy().astype(np.float32)


#: annuli of the map (pixels from the origin) for the peak statistics; thresholds relative to the origin
PEAK_ANNULI = (3, 8, 14, 20, 28, 36, 46, 60, 90)
PEAK_THRESHOLDS = tuple(np.geomspace(0.003, 0.3, 16))
VALUE_QUANTILES = (0.5, 0.75, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)
TOP_PEAKS = (0, 1, 2, 4, 8, 16, 32, 64, 128, 200, 300, 399)
N_PEAK_FEATURES = (len(PEAK_ANNULI) - 1) * (len(VALUE_QUANTILES) + len(PEAK_THRESHOLDS)) + len(PEAK_THRESHOLDS) + len(TOP_PEAKS)


def patterson_features(maps: np.ndarray) -> np.ndarray:
    """Peak statistics of half-maps ``(N, h+1, 2h+1)`` -> ``(N, N_PEAK_FEATURES)`` float32: per annulus of
    :data:`PEAK_ANNULI` the :data:`VALUE_QUANTILES` of the map values and ``log(1 + count)`` of local maxima
    (3 x 3) above each of :data:`PEAK_THRESHOLDS`; the same counts over the whole map (origin excluded); and
    ``log`` of the heights of the 1st, 2nd, 3rd, 5th, ... 400th highest peak. Each map pixel is counted
    once (the map is centro-symmetric: the origin row's left half repeats its right half). For ``n`` disks
    there are ``n (n - 1) / 2`` distinct cross peaks of heights ``~ a_i a_j / sum a^2``: their count above a
    threshold and their height distribution read the number of disks and their size spread."""
    from scipy import ndimage

    p = np.asarray(maps, dtype=np.float32)
    p = p[None] if p.ndim == 2 else p
    h = p.shape[-2] - 1
    yy, xx = np.mgrid[0:h + 1, 0:2 * h + 1]
    rr = np.hypot(yy - h, xx - h)
    once = (yy < h) | (xx > h)
    mx = ndimage.maximum_filter(p, size=(1, 3, 3), mode="nearest")
    peak = (p >= mx) & once[None] & (rr[None] > 2.5)
    thr = np.asarray(PEAK_THRESHOLDS, np.float32)
    out = []
    for a, b in zip(PEAK_ANNULI[:-1], PEAK_ANNULI[1:]):
        m = (rr >= a) & (rr < b) & once
        if not m.any():
            raise DataValidationError(f"Patterson map {h + 1} x {2 * h + 1} is too small for the peak annuli "
                                      f"(up to {PEAK_ANNULI[-1]} px; half width >= 43 needed)")
        out.append(np.quantile(p[:, m], VALUE_QUANTILES, axis=1).T)
        pv = np.where(peak & m[None], p, -1.0).reshape(len(p), -1)
        out.append(np.log1p((pv[:, :, None] > thr).sum(1)))
    pv = np.where(peak, p, -1.0).reshape(len(p), -1)
    out.append(np.log1p((pv[:, :, None] > thr).sum(1)))
    top = -np.sort(-pv, axis=1)   # a map that reaches the outer annulus holds > 3800 pixels: >= 400 heights
    out.append(np.log(np.clip(top[:, list(TOP_PEAKS)], 1e-4, None)))
    return np.concatenate(out, 1).astype(np.float32)


def full_map(upper: np.ndarray) -> np.ndarray:
    """The full centro-symmetric ``(2 half + 1)^2`` map from its upper half ``(half + 1, 2 half + 1)``."""
    upper = np.asarray(upper)
    lower = upper[:-1][::-1, ::-1]
    return np.concatenate([upper, lower], axis=0)


def dihedral_views(maps: torch.Tensor) -> list[torch.Tensor]:
    """The 4 distinct symmetric copies of half-maps ``(N, h+1, 2h+1)``: identity, mirror ``x -> -x``,
    transpose and both. Mirroring or transposing the pattern mirrors or transposes the disk system (same
    number of disks); the half-turn is already the identity of a Patterson map."""
    h = maps.shape[-2] - 1
    full = torch.cat([maps, torch.flip(maps[:, :-1], dims=(1, 2))], 1)       # (N, 2h+1, 2h+1)
    views = []
    for f in (full, full.transpose(1, 2)):
        views.append(f[:, :h + 1])
        views.append(torch.flip(f, dims=(2,))[:, :h + 1])
    return views


def _inputs(maps: torch.Tensor) -> torch.Tensor:
    """Two channels: the map (x 10) and a compressed copy ``asinh(300 P) / 3`` (small cross peaks of large n)."""
    x = maps[:, None].float()
    return torch.cat([x * 10.0, torch.asinh(x * 300.0) / 3.0], 1)


def _block(c_in: int, c_out: int, k: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False), nn.BatchNorm2d(c_out), nn.GELU())


class PattersonNet(nn.Module):
    """Six conv blocks (16-32-64-64-128-128 channels, three stride-2) over the half Patterson map, mean- and
    max-pooled (a count of peak detectors and the strongest one), joined with the standardised radial
    features, one hidden layer -> logits."""

    def __init__(self, n_features: int, num_classes: int, width: int = 16, hidden: int = 256,
                 dropout: float = 0.1, half: int = HALF):
        super().__init__()
        self.n_features, self.num_classes, self.width = n_features, num_classes, width
        self.hidden, self.dropout, self.half = hidden, dropout, half
        w = width
        self.features = nn.Sequential(_block(2, w, 5, 2), _block(w, 2 * w, 3, 1), _block(2 * w, 4 * w, 3, 2),
                                      _block(4 * w, 4 * w, 3, 1), _block(4 * w, 8 * w, 3, 2),
                                      _block(8 * w, 8 * w, 3, 1))
        self.head = nn.Sequential(nn.Linear(16 * w + n_features, hidden), nn.GELU(), nn.Dropout(dropout),
                                  nn.Linear(hidden, num_classes))

    def config(self) -> dict:
        return {"n_features": self.n_features, "num_classes": self.num_classes, "width": self.width,
                "hidden": self.hidden, "dropout": self.dropout, "half": self.half}

    def pooled(self, h: torch.Tensor) -> torch.Tensor:
        return torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1)

    def forward(self, maps: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        h = self.features(_inputs(maps))
        return self.head(torch.cat([self.pooled(h), feats], 1))


@dataclass
class PattersonClassifier(RadialClassifier):
    """A trained Patterson + radial-feature model with calibration and the radial models' domain check.
    ``net`` is a :class:`PattersonNet`; features, scaling, temperature and domain statistics as for
    :class:`~.radial.RadialClassifier` (whose out-of-domain check it reuses)."""

    #: average the logits over the 4 symmetric copies of the map (:func:`dihedral_views`)
    tta: bool = False
    family = "patterson"

    # --- inputs ----------------------------------------------------------------------------------
    def inputs(self, patterns: np.ndarray, input_bin: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Raw patterns -> (Patterson half-maps ``(N, h+1, 2h+1)``, features ``(N, F)``: the radial features
        (:func:`.features.radial_features`, first, so the radial domain check reads them) then
        :func:`patterson_features`)."""
        grid = to_feature_grid(patterns, self.features, input_bin)
        maps = patterson_maps(grid, self.net.half)
        return maps, np.concatenate([radial_features(grid, self.features, self.features.bin),
                                     patterson_features(maps)], 1)

    @torch.no_grad()
    def logits_maps(self, maps: np.ndarray, feats: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Uncalibrated logits ``(N, C)``."""
        self.net.eval()
        m = torch.from_numpy(np.asarray(maps, np.float32))
        z = torch.from_numpy(self.standardize(feats))
        if not len(z):
            return np.zeros((0, len(self.classes)), np.float32)
        out = []
        for i in range(0, len(z), batch_size):
            views = dihedral_views(m[i:i + batch_size]) if self.tta else [m[i:i + batch_size]]
            out.append(torch.stack([self.net(v, z[i:i + batch_size]) for v in views]).mean(0))
        return torch.cat(out).numpy()

    def logits(self, feats, batch_size: int = 256):  # noqa: D102 - the radial signature cannot carry the maps
        raise TypeError("PattersonClassifier needs the Patterson maps: use logits_maps(maps, feats)")

    def predict_inputs(self, maps: np.ndarray, feats: np.ndarray) -> dict:
        """Like :meth:`~.radial.RadialClassifier.predict_features`, from maps and features."""
        return self._result(self.logits_maps(maps, feats), feats)

    def predict_features(self, feats):  # noqa: D102
        raise TypeError("PattersonClassifier needs the Patterson maps: use predict_inputs(maps, feats) or predict")

    def predict(self, patterns: np.ndarray, input_bin: int = 1, batch_size: int = 64) -> dict:
        """Raw intensities or photon counts ``(H, W)`` / ``(N, H, W)`` (a 513 window or larger, binned by
        ``input_bin``) -> ``{"pred", "probs", "value", "ood", ...}`` as the radial models."""
        x = np.asarray(patterns)
        x = x[None] if x.ndim == 2 else x
        maps, feats = [], []
        for i in range(0, len(x), batch_size):
            m, f = self.inputs(x[i:i + batch_size], input_bin)
            maps.append(m)
            feats.append(f)
        return self.predict_inputs(np.concatenate(maps), np.concatenate(feats))

    # --- explanations ----------------------------------------------------------------------------
    def explain(self, pattern: np.ndarray, input_bin: int = 1, method: str = "saliency",
                target: int | None = None) -> dict:
        """Why the model decided, for one raw pattern ``(H, W)``.

        ``map`` ``(H, W)``: saliency ``|d logit / d I|`` on the pattern's own pixels (gradient through the
        Fourier transform into the Patterson branch; the radial features held fixed), scaled to [0, 1],
        zero outside the 513 window. ``patterson`` ``(2h+1, 2h+1)``: the full normalised Patterson map;
        ``patterson_cam``: Grad-CAM on the last conv block over that map (which pair vectors, i.e. which
        disk pairs, decided); ``patterson_pixel_units``: its pixel size in box units. ``method`` names the
        map the caller asked for; both are always returned."""
        pattern = np.asarray(pattern, dtype=np.float64)
        if pattern.ndim != 2:
            raise DataValidationError(f"explain takes one pattern (H, W), got shape {pattern.shape}")
        _, feats = self.inputs(pattern, input_bin)
        grid = to_feature_grid(pattern, self.features, input_bin)
        z = torch.from_numpy(self.standardize(feats))
        self.net.eval()
        g = torch.from_numpy(grid).requires_grad_(True)
        with torch.enable_grad():
            maps = patterson_torch(g, self.net.half)
            h = self.net.features(_inputs(maps))
            h.retain_grad()
            logits = self.net.head(torch.cat([self.net.pooled(h), z], 1))
            k = int(logits[0].argmax()) if target is None else int(np.searchsorted(self.classes, target))
            logits[0, k].backward()
        sal = g.grad[0].abs().numpy().astype(np.float32)
        cam = torch.relu((h.grad.mean((2, 3), keepdim=True) * h).sum(1, keepdim=True)).detach()
        cam = F.interpolate(cam, size=maps.shape[-2:], mode="bilinear", align_corners=False)[0, 0].numpy()
        cam[-1] = 0.5 * (cam[-1] + cam[-1, ::-1])   # the origin row holds each pair vector twice (x and -x)
        pmap = maps.detach()[0].numpy()
        return {"class": int(self.classes[k]), "method": method, "map_label": "Saliency",
                "map": _to_pattern(_unit(sal), self.features.bin // input_bin, pattern.shape),
                "patterson": full_map(pmap).astype(np.float32),
                "patterson_cam": _unit(full_map(cam)).astype(np.float32),
                "patterson_pixel_units": 18001 / self.features.window}

    # --- storage ---------------------------------------------------------------------------------
    def checkpoint(self) -> dict:
        ck = super().checkpoint()
        ck["format"] = FORMAT
        ck["tta"] = bool(self.tta)
        ck.pop("readout", None)
        return ck


def _unit(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, np.float32)
    span = float(m.max() - m.min())
    return (m - m.min()) / span if span > 0 else np.zeros_like(m)


def _to_pattern(m: np.ndarray, factor: int, shape: tuple[int, int]) -> np.ndarray:
    from .saliency import upsample_to_frame

    return upsample_to_frame(m, factor, shape)


def is_patterson_checkpoint(ckpt) -> bool:
    return isinstance(ckpt, dict) and ckpt.get("format") == FORMAT


def patterson_from_checkpoint(ckpt: dict, path: str | Path = "") -> PattersonClassifier:
    try:
        net = PattersonNet(**ckpt["net"])
        net.load_state_dict(ckpt["state_dict"])
        net.eval()
        from .radial import arrays_from_checkpoint as unpack

        return PattersonClassifier(net, np.asarray(ckpt["classes"]), FeatureConfig.from_dict(ckpt["features"]),
                                   ckpt["feature_mean"].numpy(), ckpt["feature_std"].numpy(),
                                   float(ckpt.get("temperature", 1.0)), unpack(ckpt.get("domain", {})), {},
                                   ckpt.get("name", ""), ckpt.get("provenance", {}), tta=bool(ckpt.get("tta", False)))
    except (KeyError, RuntimeError, TypeError) as exc:
        raise InputFileError(Path(path), f"broken Patterson speckle checkpoint: {exc}") from exc


def save_patterson(clf: PattersonClassifier, path: str | Path, overwrite: bool = True) -> Path:
    """Write ``clf`` through the one atomic write path."""
    from ..io.safe_write import torch_save

    return torch_save(clf.checkpoint(), path, overwrite=overwrite)


def load_patterson(path: str | Path) -> PattersonClassifier:
    from .classifier import read_checkpoint_file

    path = Path(path)
    ckpt = read_checkpoint_file(path)
    if not is_patterson_checkpoint(ckpt):
        raise InputFileError(path, f"not a Patterson speckle checkpoint (format {FORMAT})")
    return patterson_from_checkpoint(ckpt, path)
