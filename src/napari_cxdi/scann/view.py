"""Qt-free view model for molecules coloured by SCANN global-attention (GA) scores.

(Formerly ``napari_cxdi.molecules``, which still imports as an alias of this module.)

Geometry (atom radii/colours, bonds from covalent radii, cylinders for sticks), GA colour scaling,
bundled example structures (generated with ase, nothing downloaded), screen-space atom picking and a
prediction generator that a GUI thread worker or a script can drive.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np

from ..errors import ConfigError

#: GA colour scalings. ``relative`` colours N·α (1 = average attention) with limits shared by all
#: frames of a trajectory; ``min-max`` stretches α of the shown frame over the colormap;
#: ``fixed`` colours N·α between user-given limits.
SCALINGS = ("per molecule (N·α)", "min–max", "fixed range")
COLORMAPS = ("viridis", "plasma", "inferno", "magma", "coolwarm", "turbo", "cividis")
#: Ball radius as a fraction of the covalent radius (ball-and-stick).
BALL_SCALE = 0.45
BOND_TOLERANCE = 1.2
BOND_RADIUS = 0.12


def atom_radii(numbers: np.ndarray, scale: float = BALL_SCALE) -> np.ndarray:
    """Ball radii (Å) from ase covalent radii."""
    from ase.data import covalent_radii

    return np.maximum(covalent_radii[np.asarray(numbers, int)] * scale, 0.15)


def element_colors(numbers: np.ndarray) -> np.ndarray:
    """Jmol element colours, RGBA (N, 4) float32."""
    from ase.data.colors import jmol_colors

    rgb = jmol_colors[np.asarray(numbers, int)]
    return np.concatenate([rgb, np.ones((len(rgb), 1))], axis=1).astype(np.float32)


def element_symbols(numbers: np.ndarray) -> list[str]:
    from ase.data import chemical_symbols

    return [chemical_symbols[int(z)] for z in numbers]


def detect_bonds(numbers: np.ndarray, positions: np.ndarray, tolerance: float = BOND_TOLERANCE) -> np.ndarray:
    """Bonds (B, 2), i < j, where d_ij < tolerance * (r_cov,i + r_cov,j) (periodic images ignored)."""
    from ase.data import covalent_radii
    from scipy.spatial import cKDTree

    positions = np.asarray(positions, float)
    if len(positions) < 2:
        return np.zeros((0, 2), int)
    r = covalent_radii[np.asarray(numbers, int)]
    pairs = cKDTree(positions).query_pairs(tolerance * 2 * float(r.max()), output_type="ndarray")
    if len(pairs) == 0:
        return np.zeros((0, 2), int)
    d = np.linalg.norm(positions[pairs[:, 0]] - positions[pairs[:, 1]], axis=1)
    keep = (d < tolerance * (r[pairs[:, 0]] + r[pairs[:, 1]])) & (d > 0.1)
    bonds = np.sort(pairs[keep], axis=1)
    return bonds[np.lexsort((bonds[:, 1], bonds[:, 0]))]


def bond_cylinders(positions: np.ndarray, bonds: np.ndarray, colors: np.ndarray, radius: float = BOND_RADIUS,
                   sides: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Triangle mesh of half-bond cylinders (each half takes its atom's colour):
    vertices (V, 3) float32, faces (F, 3) uint32, vertex colours (V, 4) float32."""
    positions = np.asarray(positions, float)
    if len(bonds) == 0:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint32), np.zeros((0, 4), np.float32)
    a, b = positions[bonds[:, 0]], positions[bonds[:, 1]]
    mid = 0.5 * (a + b)
    axis = b - a
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    ref = np.where(np.abs(axis[:, :1]) < 0.9, [[1.0, 0, 0]], [[0, 1.0, 0]])
    u = np.cross(axis, ref)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    v = np.cross(axis, u)
    ang = np.linspace(0, 2 * np.pi, sides, endpoint=False)
    ring = radius * (np.cos(ang)[None, :, None] * u[:, None] + np.sin(ang)[None, :, None] * v[:, None])  # (B, S, 3)
    verts, faces, cols = [], [], []
    k = np.arange(sides)
    quad = np.stack([np.stack([k, (k + 1) % sides, sides + k], 1),
                     np.stack([(k + 1) % sides, sides + (k + 1) % sides, sides + k], 1)], 0).reshape(-1, 3)
    n = 0
    for start, end, atom in ((a, mid, bonds[:, 0]), (mid, b, bonds[:, 1])):
        ring_v = np.concatenate([start[:, None] + ring, end[:, None] + ring], axis=1)  # (B, 2S, 3)
        verts.append(ring_v.reshape(-1, 3))
        offs = n + 2 * sides * np.arange(len(bonds))
        faces.append((quad[None] + offs[:, None, None]).reshape(-1, 3))
        cols.append(np.repeat(np.asarray(colors)[atom], 2 * sides, axis=0))
        n += ring_v.shape[0] * ring_v.shape[1]
    return (np.concatenate(verts).astype(np.float32), np.concatenate(faces).astype(np.uint32),
            np.concatenate(cols).astype(np.float32))


@dataclass
class ColorScale:
    """Per-atom values, their colour limits and a label for the colour bar."""

    values: np.ndarray
    limits: tuple[float, float]
    label: str


def scale_scores(ga: np.ndarray, mode: str = SCALINGS[0], all_frames: Sequence[np.ndarray] | None = None,
                 fixed: tuple[float, float] = (0.5, 1.5)) -> ColorScale:
    """GA scores ``ga`` (α, summing to 1) of one frame -> values and limits for colouring (see SCALINGS)."""
    ga = np.asarray(ga, float)
    if mode == SCALINGS[0]:
        rel = [np.asarray(g, float) * len(g) for g in (all_frames if all_frames else [ga])]
        lo, hi = float(min(r.min() for r in rel)), float(max(r.max() for r in rel))
        return ColorScale(ga * len(ga), _limits(lo, hi), "relative GA score N·α")
    if mode == SCALINGS[1]:
        return ColorScale(ga, _limits(float(ga.min()), float(ga.max())), "GA score α")
    if mode == SCALINGS[2]:
        if not fixed[1] > fixed[0]:
            raise ConfigError(f"fixed colour range needs min < max, got {fixed[0]} .. {fixed[1]}")
        return ColorScale(ga * len(ga), (float(fixed[0]), float(fixed[1])), "relative GA score N·α")
    raise ConfigError(f"unknown GA scaling {mode!r}; choose one of {', '.join(SCALINGS)}")


def _limits(lo: float, hi: float) -> tuple[float, float]:
    if hi - lo < 1e-12:
        return lo - 0.5 * max(abs(lo), 1e-6), hi + 0.5 * max(abs(hi), 1e-6)
    return lo, hi


def map_colors(values: np.ndarray, limits: tuple[float, float], cmap: str = "viridis") -> np.ndarray:
    """Values -> RGBA (N, 4) float32 through a matplotlib colormap, clipped to ``limits``."""
    import matplotlib

    try:
        cm = matplotlib.colormaps[cmap]
    except KeyError as exc:
        raise ConfigError(f"unknown colormap {cmap!r}") from exc
    t = np.clip((np.asarray(values, float) - limits[0]) / (limits[1] - limits[0]), 0.0, 1.0)
    return cm(t).astype(np.float32)


def colormap_samples(cmap: str, n: int = 256) -> np.ndarray:
    """RGBA samples (n, 4) of a matplotlib colormap (for napari / vispy colormaps)."""
    return map_colors(np.linspace(0, 1, n), (0.0, 1.0), cmap)


def pick_atom(screen_xy: np.ndarray, depth: np.ndarray, radius_px: np.ndarray, click: Sequence[float],
              slack_px: float = 3.0) -> int | None:
    """Index of the front-most atom whose projected disc (radius_px + slack) contains ``click``, else None.

    ``screen_xy`` (N, 2) and ``depth`` (N,) (smaller = nearer) are the projected atom centres."""
    if len(screen_xy) == 0:
        return None
    d = np.linalg.norm(np.asarray(screen_xy, float) - np.asarray(click, float)[None, :2], axis=1)
    hit = np.flatnonzero(d <= np.asarray(radius_px, float) + slack_px)
    if hit.size == 0:
        return None
    return int(hit[np.argmin(np.asarray(depth)[hit])])


def ray_pick(origin: np.ndarray, direction: np.ndarray, positions: np.ndarray, radii: np.ndarray) -> int | None:
    """First atom (sphere) hit by the ray ``origin + t * direction`` (t > 0), else None."""
    dvec = np.asarray(direction, float)
    dvec = dvec / np.linalg.norm(dvec)
    rel = np.asarray(positions, float) - np.asarray(origin, float)
    t = rel @ dvec
    miss2 = np.einsum("ij,ij->i", rel, rel) - t**2
    hit = np.flatnonzero((miss2 <= np.asarray(radii) ** 2) & (t > 0))
    return None if hit.size == 0 else int(hit[np.argmin(t[hit])])


def neighbours_of(prediction, i: int) -> np.ndarray:
    """Voronoi neighbours of atom ``i`` from a prediction made with ``local_attention=True``."""
    nb = getattr(prediction, "neighbors", None)
    if nb is None:
        return np.zeros(0, int)
    row = np.asarray(nb[i])
    return row[row >= 0].astype(int)


def atom_info(atoms, i: int, prediction=None) -> str:
    """One-line description of atom ``i``: element, index, GA score, Voronoi neighbours."""
    sym = atoms.get_chemical_symbols()
    text = f"atom {i}: {sym[i]}"
    if prediction is not None:
        ga = float(prediction.ga_scores[i])
        ga_sigma = getattr(prediction, "ga_sigma", None)
        spread = "" if ga_sigma is None else f" ± {float(ga_sigma[i]) * len(prediction.ga_scores):.2f}"
        text += f" | GA α = {ga:.4f} (N·α = {ga * len(prediction.ga_scores):.2f}{spread})"
        domain = getattr(prediction, "domain", None)
        if domain is not None and i in domain.flagged_atoms:
            text += " | outside the training domain"
        nb = neighbours_of(prediction, i)
        if nb.size:
            text += " | Voronoi neighbours: " + ", ".join(f"{sym[j]}{j}" for j in nb)
    return text


# -- bundled examples (generated with ase at run time) ------------------------------------------

def deformed_fullerene(n_frames: int = 12, amplitude: float = 0.12, rattle: float = 0.03,
                       seed: int = 0) -> list:
    """C60 stretched along z and squeezed in x/y (volume-preserving) over a cycle, plus a small
    seeded rattle: a small "MD-like" trajectory."""
    from ase.build import molecule

    base = molecule("C60")
    base.center()
    c = base.get_center_of_mass()
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n_frames):
        s = 1 + amplitude * np.sin(2 * np.pi * k / n_frames)
        f = np.array([s ** -0.5, s ** -0.5, s])
        a = base.copy()
        a.positions = c + (base.positions - c) * f + rng.normal(0, rattle, (len(base), 3))
        a.info["frame"] = k
        frames.append(a)
    return frames


def _g2(name: str) -> Callable[[], list]:
    def make():
        from ase.build import molecule

        return [molecule(name)]
    return make


#: name -> function returning a list of ase Atoms
def warm_imports() -> None:
    """Import what the examples and readers need (ase.build alone takes ~1 s cold): called from a background
    thread when the molecule dock opens, so that choosing an example never freezes the viewer."""
    import ase.build  # noqa: F401
    import ase.io  # noqa: F401


EXAMPLES: dict[str, Callable[[], list]] = {
    "C60 (fullerene)": _g2("C60"),
    "deformed C60 trajectory (12 frames)": deformed_fullerene,
    "benzene": _g2("C6H6"),
    "ethanol": _g2("CH3CH2OH"),
    "acetic acid": _g2("CH3COOH"),
    "pyridine": _g2("C5H5N"),
    "acetamide": _g2("CH3CONH2"),
    "trifluoroacetonitrile": _g2("CF3CN"),
}


def example(name: str) -> list:
    """A bundled example structure (list of frames)."""
    if name not in EXAMPLES:
        raise ConfigError(f"unknown example {name!r}; choose one of {', '.join(EXAMPLES)}")
    return EXAMPLES[name]()


def load_frames(source) -> list:
    """A path (any ase format, all frames), an example name, ase Atoms or a list of them -> frames."""
    from .datasets import read_atoms

    if isinstance(source, str) and source in EXAMPLES:
        return example(source)
    if isinstance(source, (str, os.PathLike)):
        return read_atoms(source)
    if hasattr(source, "get_atomic_numbers"):
        return [source]
    frames = list(source)
    if not frames or not all(hasattr(f, "get_atomic_numbers") for f in frames):
        raise ConfigError("expected ase Atoms, a list of them, a file path or an example name")
    return frames


def iter_predict(model, frames: Sequence, chunk: int = 8, device: str = "cpu") -> Iterator[dict]:
    """Predict frame chunks with a :class:`ScannPredictor` (or a model name / checkpoint path).

    Yields ``{"done", "total"}`` after each chunk (so a worker can stop between chunks) and
    returns ``(predictor, predictions)``; predictions carry Voronoi neighbours, sigma and the
    applicability domain (no warning is emitted here: see :func:`domain_summary`)."""
    from .predict import ScannPredictor

    predictor = model if isinstance(model, ScannPredictor) else ScannPredictor.load(model, device=device)
    results: list = []
    total = len(frames)
    yield {"done": 0, "total": total}
    for start in range(0, total, chunk):
        results.extend(predictor.predict(list(frames[start:start + chunk]), local_attention=True, warn=False))
        yield {"done": len(results), "total": total}
    return predictor, results


def format_property(prediction, name: str) -> str:
    """``"-6.123 ± 0.085 eV"`` (sigma omitted when the model has none), ``"(unreliable)"`` appended
    when the structure is outside the applicability domain."""
    value = prediction.properties[name]
    sigma = getattr(prediction, "sigma", {}).get(name, float("nan"))
    unit = prediction.units.get(name, "")
    text = f"{value:.3f}" + (f" ± {sigma:.3f}" if np.isfinite(sigma) else "") + (f" {unit}" if unit else "")
    if not getattr(prediction, "reliable", True):
        text += " (unreliable)"
    return text


def domain_summary(predictions: Sequence) -> str | None:
    """A one-paragraph warning for the out-of-domain frames of a prediction, or None if all are in."""
    bad = [k for k, p in enumerate(predictions) if not getattr(p, "reliable", True)]
    if not bad:
        return None
    first = predictions[bad[0]].domain.message()
    frames = "frame" if len(bad) == 1 else "frames"
    return (f"SCANN: {len(bad)} of {len(predictions)} {frames} outside the model's applicability domain "
            f"(predictions unreliable, shown greyed). Frame {bad[0]}: {first}")
