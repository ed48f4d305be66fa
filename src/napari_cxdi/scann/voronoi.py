"""Local structures by Voronoi tessellation (O'Keeffe neighbours), SPEC §6.

Atom ``j`` is a neighbour of atom ``i`` when their Voronoi cells share a face. Each neighbour
carries the distance ``d_ij`` (Å) and the solid angle ``Omega_ij`` (sr) that the shared face
subtends at atom ``i`` (triangle fan, Van Oosterom–Strackee formula). Cut-offs as in the
official code: ``d <= 4.0 Å``, ``Omega >= 0.4 sr`` and ``Omega / max_k Omega_ik >= 0.2``.

Molecules are put in a periodic cubic box whose edge is the molecule's largest extent plus
``box_padding`` (4.5 Å): every periodic image is then at least 4.5 Å from every atom, so no
image can pass the 4 Å cut-off and become a false neighbour. The box is aligned with the
molecule's principal axes, so the features (and hence predictions) do not depend on how the
molecule is oriented or numbered. ``legacy_box=True`` reproduces the official fixed 10 Å box
(axis-aligned), where images do become neighbours of large molecules.

Periodic crystals (``atoms.pbc`` all true with a cell) are tessellated with their own lattice.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy.spatial import QhullError, Voronoi

from ..errors import ConfigError, DataValidationError

#: Largest atomic number the models embed (ase knows up to 118; QM9 uses 1, 6, 7, 8, 9).
MAX_Z = 100
#: Atoms closer than this (Å) are treated as overlapping, which Voronoi cannot separate.
MIN_DISTANCE = 0.1


@dataclass(frozen=True)
class VoronoiConfig:
    """Cut-offs and box of the local-structure definition (Å, sr)."""

    cutoff: float = 4.0
    min_solid_angle: float = 0.4
    min_solid_angle_ratio: float = 0.2
    box_padding: float = 4.5
    legacy_box: bool = False
    legacy_box_size: float = 10.0

    def __post_init__(self):
        from ..checks import NON_NEGATIVE, POSITIVE, UNIT_INTERVAL, check_fields

        check_fields(self, {"cutoff": POSITIVE, "min_solid_angle": NON_NEGATIVE, "min_solid_angle_ratio": UNIT_INTERVAL,
                            "box_padding": NON_NEGATIVE, "legacy_box_size": POSITIVE}, where="Voronoi config")
        if self.cutoff <= 0:
            raise ConfigError(f"Voronoi cutoff must be positive, got {self.cutoff}")
        if not self.legacy_box and self.box_padding <= self.cutoff:
            raise ConfigError(
                f"box_padding ({self.box_padding} Å) must exceed the cutoff ({self.cutoff} Å), "
                "otherwise periodic images of a molecule can become false neighbours"
            )


@dataclass
class LocalEnvironment:
    """Voronoi neighbours of every atom of one structure.

    ``center[e]``/``neighbor[e]`` index atoms of the structure (0..n_atoms-1), sorted by center;
    ``distance[e]`` in Å, ``solid_angle[e]`` in sr, ``offset[e]`` the integer lattice image of the
    neighbour (crystal cell vectors; for molecules the box, so non-zero means a periodic image
    became a neighbour, which happens only with ``legacy_box``).
    """

    numbers: np.ndarray  # (N,) int
    positions: np.ndarray  # (N, 3) Å
    center: np.ndarray  # (E,) int
    neighbor: np.ndarray  # (E,) int
    distance: np.ndarray  # (E,) float, Å
    solid_angle: np.ndarray  # (E,) float, sr
    offset: np.ndarray  # (E, 3) int

    @property
    def n_atoms(self) -> int:
        return int(self.numbers.shape[0])

    def neighbors_of(self, i: int) -> np.ndarray:
        """Neighbour indices of atom ``i``."""
        return self.neighbor[self.center == i]

    def solid_angle_ratio(self) -> np.ndarray:
        """``Omega_ij / max_k Omega_ik`` per neighbour (E,)."""
        mx = np.zeros(self.n_atoms)
        np.maximum.at(mx, self.center, self.solid_angle)
        return self.solid_angle / np.maximum(mx[self.center], 1e-12)


def _triangle_solid_angles(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Solid angle (sr) of triangles with vertices ``a, b, c`` (T, 3) seen from the origin."""
    la, lb, lc = (np.linalg.norm(v, axis=1) for v in (a, b, c))
    num = np.abs(np.einsum("ij,ij->i", a, np.cross(b, c)))
    den = (la * lb * lc + np.einsum("ij,ij->i", a, b) * lc
           + np.einsum("ij,ij->i", a, c) * lb + np.einsum("ij,ij->i", b, c) * la)
    return 2.0 * np.arctan2(num, den)


def validate_structure(numbers, positions, periodic: bool = False) -> None:
    """Raise :class:`DataValidationError` for structures SCANN cannot describe."""
    numbers = np.asarray(numbers)
    positions = np.asarray(positions, dtype=float)
    n = numbers.shape[0]
    if n < (1 if periodic else 2):
        raise DataValidationError(
            f"a molecule needs at least 2 atoms for Voronoi neighbours, got {n}" if not periodic
            else "a crystal needs at least 1 atom")
    if positions.shape != (n, 3) or not np.all(np.isfinite(positions)):
        raise DataValidationError("atomic positions must be a finite (N, 3) array")
    bad = (numbers < 1) | (numbers > MAX_Z)
    if np.any(bad):
        raise DataValidationError(
            f"unknown element (atomic number {int(numbers[bad][0])}) at atom {int(np.flatnonzero(bad)[0])}; "
            f"supported atomic numbers are 1..{MAX_Z}"
        )


def _check_overlaps(points: np.ndarray, n: int) -> None:
    from scipy.spatial import cKDTree

    pairs = cKDTree(points).query_pairs(MIN_DISTANCE, output_type="ndarray")
    pairs = pairs[(pairs[:, 0] < n) | (pairs[:, 1] < n)]
    if len(pairs):
        i, j = pairs[0]
        raise DataValidationError(
            f"atoms {i % n} and {j % n} overlap (closer than {MIN_DISTANCE} Å); "
            "Voronoi neighbours are undefined for overlapping atoms"
        )


def _principal_frame(positions: np.ndarray) -> np.ndarray:
    """Coordinates in the principal-axes frame of the atom cloud (rotation-invariant box)."""
    x = positions - positions.mean(axis=0)
    _, vecs = np.linalg.eigh(x.T @ x)
    return x @ vecs


def _periodic_points(positions: np.ndarray, cell: np.ndarray, reach: float):
    """Atoms plus lattice images whose cells can touch the central ones.

    Returns points (P, 3), the atom index (P,) and lattice offset (P, 3) of each point (relative
    to the wrapped atom), and the integer shift that wrapped each input atom into the cell; the
    first N points are the wrapped atoms themselves.
    """
    n = positions.shape[0]
    inv = np.linalg.inv(cell)
    frac = positions @ inv
    wrapped = frac - np.floor(frac)
    base = wrapped @ cell
    shift0 = np.rint(frac - wrapped).astype(int)  # so offsets refer to the input positions
    vol = abs(np.linalg.det(cell))
    widths = vol / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)
    reps = np.maximum(1, np.ceil(reach / widths).astype(int))
    grid = np.array(list(itertools.product(*(range(-r, r + 1) for r in reps))))
    grid = grid[np.argsort(np.abs(grid).sum(axis=1), kind="stable")]  # (0,0,0) first
    pts = (base[None, :, :] + (grid @ cell)[:, None, :]).reshape(-1, 3)
    idx = np.tile(np.arange(n), len(grid))
    off = np.repeat(grid, n, axis=0)
    if len(grid) > 27:  # keep images within `reach` of some atom of the central cell
        from scipy.spatial import cKDTree

        dmin, _ = cKDTree(base).query(pts, k=1)
        keep = dmin <= reach
        keep[:n] = True
        pts, idx, off = pts[keep], idx[keep], off[keep]
    return pts, idx, off, shift0


def local_environment(atoms, config: VoronoiConfig | None = None, *, cutoffs: bool = True) -> LocalEnvironment:
    """Voronoi neighbours of one structure.

    ``atoms``: an :class:`ase.Atoms` or a tuple ``(numbers, positions[, cell, pbc])``.
    Crystals (all ``pbc`` true and a non-zero cell) use their lattice; anything else is a
    molecule and is boxed (see module docstring). ``cutoffs=False`` keeps every face.
    """
    cfg = config or VoronoiConfig()
    if hasattr(atoms, "get_atomic_numbers"):
        numbers = atoms.get_atomic_numbers()
        positions = atoms.get_positions()
        cell = np.asarray(atoms.cell[:], dtype=float)
        pbc = np.asarray(atoms.pbc, dtype=bool)
    else:
        numbers, positions = atoms[0], atoms[1]
        cell = np.asarray(atoms[2], dtype=float) if len(atoms) > 2 else np.zeros((3, 3))
        pbc = np.asarray(atoms[3], dtype=bool) if len(atoms) > 3 else np.zeros(3, bool)
    numbers = np.asarray(numbers, dtype=np.int64)
    positions = np.asarray(positions, dtype=float)
    periodic = bool(np.all(pbc)) and cell.shape == (3, 3) and abs(np.linalg.det(cell)) > 1e-6
    validate_structure(numbers, positions, periodic)
    n = len(numbers)
    if periodic:
        frame = positions
        lattice = cell
        reach = max(2.0 * cfg.cutoff, 8.0)
    elif cfg.legacy_box:
        frame = positions - positions.mean(axis=0)  # large molecules meet their images: the flaw kept for comparison
        lattice = np.eye(3) * cfg.legacy_box_size
        reach = cfg.legacy_box_size
    else:
        frame = _principal_frame(positions)
        side = float((frame.max(axis=0) - frame.min(axis=0)).max()) + cfg.box_padding
        lattice = np.eye(3) * side
        reach = side
    pts, idx, off, shift0 = _periodic_points(frame, lattice, reach)
    _check_overlaps(pts, n)

    try:
        vor = Voronoi(pts)
    except QhullError as exc:  # degenerate input, e.g. all atoms on a line in a crystal
        raise DataValidationError(f"Voronoi tessellation failed: {str(exc).splitlines()[0]}") from exc

    rp = vor.ridge_points
    # faces seen from a central atom: (i, other) with i < n; a face between two central atoms counts twice
    a_side = rp[:, 0] < n
    b_side = rp[:, 1] < n
    ridge_ids = np.concatenate([np.flatnonzero(a_side), np.flatnonzero(b_side)])
    ci = np.concatenate([rp[a_side, 0], rp[b_side, 1]])
    oj = np.concatenate([rp[a_side, 1], rp[b_side, 0]])

    # unique faces to evaluate (solid angle is symmetric across the bisector plane)
    uniq, inv = np.unique(ridge_ids, return_inverse=True)
    faces = [vor.ridge_vertices[r] for r in uniq]
    lens = np.fromiter((len(f) for f in faces), dtype=np.int64, count=len(faces))
    flat = np.fromiter(itertools.chain.from_iterable(faces), dtype=np.int64, count=int(lens.sum()))
    if np.any(flat < 0):
        raise DataValidationError("a Voronoi cell is not closed (internal error: box too small)")
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
    ntri = lens - 2
    face_of_tri = np.repeat(np.arange(len(faces)), ntri)
    k = np.arange(int(ntri.sum())) - np.repeat(np.cumsum(ntri) - ntri, ntri)
    v0 = flat[starts[face_of_tri]]
    v1 = flat[starts[face_of_tri] + k + 1]
    v2 = flat[starts[face_of_tri] + k + 2]
    origin = pts[rp[uniq, 0]][face_of_tri]  # either end gives the same solid angle
    verts = vor.vertices
    tri = _triangle_solid_angles(verts[v0] - origin, verts[v1] - origin, verts[v2] - origin)
    omega_face = np.bincount(face_of_tri, weights=tri, minlength=len(faces))
    omega = omega_face[inv]

    dist = np.linalg.norm(pts[oj] - pts[ci], axis=1)
    nb = idx[oj]
    noff = off[oj]
    noff = noff - shift0[nb] + shift0[ci]  # image offset relative to the input (unwrapped) atoms

    if cutoffs:
        keep = dist <= cfg.cutoff
        ci, nb, dist, omega, noff = ci[keep], nb[keep], dist[keep], omega[keep], noff[keep]
        mx = np.zeros(n)
        np.maximum.at(mx, ci, omega)
        keep = (omega >= cfg.min_solid_angle) & (omega / np.maximum(mx[ci], 1e-12) >= cfg.min_solid_angle_ratio)
        ci, nb, dist, omega, noff = ci[keep], nb[keep], dist[keep], omega[keep], noff[keep]
    order = np.lexsort((nb, ci))
    return LocalEnvironment(
        numbers=numbers, positions=positions, center=ci[order].astype(np.int64),
        neighbor=nb[order].astype(np.int64), distance=dist[order], solid_angle=omega[order],
        offset=noff[order].astype(np.int64),
    )


def all_faces(atoms, config: VoronoiConfig | None = None) -> LocalEnvironment:
    """Every Voronoi face of every atom, without cut-offs (for checks: the Omega of a cell sum to 4 pi)."""
    return local_environment(atoms, config, cutoffs=False)
