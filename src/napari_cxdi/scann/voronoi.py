"""Local structures by Voronoi tessellation (O'Keeffe neighbours), SPEC §6.

Atom ``j`` is a neighbour of atom ``i`` when their Voronoi cells share a face. Each neighbour
carries the distance ``d_ij`` (Å) and the solid angle ``Omega_ij`` (sr) that the shared face
subtends at atom ``i``. Cut-offs as in the official code: ``d <= 4.0 Å``, ``Omega >= 0.4 sr`` and
``Omega / max_k Omega_ik >= 0.2`` (compared with a tolerance of ``TOLERANCE``).

**Molecules are isolated**: no box, no periodic images. Atom ``i``'s cell is the unbounded Voronoi
cell of the molecule's own atoms, ``{x : (x - x_i) . w_k <= 1 for all k}`` with
``w_k = 2 (x_k - x_i) / |x_k - x_i|^2``. This is the polar dual of ``P_i = conv({0} U {w_k})``:
``j`` is a face neighbour of ``i`` exactly when ``w_j`` is a vertex of ``P_i``, and the solid angle
of the (possibly unbounded) face is the solid angle of the normal cone of ``P_i`` at ``w_j``, i.e.
its angular defect ``2 pi - sum of the facet angles at w_j`` (Gauss-Bonnet). The vertex ``0`` of
``P_i``, if any, carries the solid angle through which the cell is open to infinity
(``open_solid_angle``); faces plus the open part sum to 4 pi. Everything is computed from
inter-atomic vectors only, so the features are exactly invariant (to rounding) under rotation,
translation and renumbering; there is no box, so nothing depends on a box size or orientation.
Flat ``P_i`` (all atoms in a plane through ``i``: planar molecules) use the 2-D hull, where the
normal cone of a vertex is a lune of solid angle ``2 x`` its exterior angle; collinear ones (linear
molecules) give half-spaces (2 pi). The flat/collinear test uses singular values with a relative
tolerance, and the solid angles are continuous across it.

``legacy_box=True`` reproduces the official fixed 10 Å periodic box (axis-aligned, not invariant),
where images become neighbours of large molecules; kept for comparison only.

Periodic crystals (``atoms.pbc`` all true with a cell) are tessellated with their own lattice
(qhull on the atoms plus the lattice images that can touch the central cells).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy.spatial import ConvexHull, QhullError, Voronoi

from ..errors import ConfigError, DataValidationError

#: Largest atomic number the models embed (ase knows up to 118; QM9 uses 1, 6, 7, 8, 9).
MAX_Z = 100
#: Atoms closer than this (Å) are treated as overlapping, which Voronoi cannot separate.
MIN_DISTANCE = 0.1
#: Absolute tolerance of float comparisons (cut-offs in Å and sr, lattice reach in Å).
TOLERANCE = 1e-9
#: Relative singular-value threshold below which the dual points of an atom count as flat/collinear.
FLAT_TOLERANCE = 1e-9
#: Faces with a smaller solid angle (sr) are degenerate (a Voronoi edge or vertex, not a face).
MIN_FACE_SOLID_ANGLE = 1e-9
MOLECULE_CELLS = ("isolated", "box")


@dataclass(frozen=True)
class VoronoiConfig:
    """Cut-offs (Å, sr) and how molecules are tessellated.

    ``molecule_cells``: ``"isolated"`` (default, exact, see the module docstring) or ``"box"``: the
    molecule in an axis-aligned periodic cubic box of edge ``extent + box_padding`` (only for checks:
    it converges to ``"isolated"`` as the padding grows). ``legacy_box``: the official 10 Å box.
    """

    cutoff: float = 4.0
    min_solid_angle: float = 0.4
    min_solid_angle_ratio: float = 0.2
    box_padding: float = 4.5
    legacy_box: bool = False
    legacy_box_size: float = 10.0
    molecule_cells: str = "isolated"

    def __post_init__(self):
        from ..checks import NON_NEGATIVE, POSITIVE, UNIT_INTERVAL, check_fields

        check_fields(self, {"cutoff": POSITIVE, "min_solid_angle": NON_NEGATIVE, "min_solid_angle_ratio": UNIT_INTERVAL,
                            "box_padding": NON_NEGATIVE, "legacy_box_size": POSITIVE}, where="Voronoi config")
        if self.cutoff <= 0:
            raise ConfigError(f"Voronoi cutoff must be positive, got {self.cutoff}")
        if self.molecule_cells not in MOLECULE_CELLS:
            raise ConfigError(f"molecule_cells must be one of {MOLECULE_CELLS}, got {self.molecule_cells!r}")
        if self.molecule_cells == "box" and not self.legacy_box and self.box_padding <= self.cutoff:
            raise ConfigError(
                f"box_padding ({self.box_padding} Å) must exceed the cutoff ({self.cutoff} Å), "
                "otherwise periodic images of a molecule can become false neighbours"
            )

    def validate(self) -> "VoronoiConfig":
        return self

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "VoronoiConfig":
        """From a stored dict; unknown keys are ignored. Dicts written before ``molecule_cells``
        existed described the padded box, so they map to ``"box"``."""
        known = {k: v for k, v in dict(d).items() if k in cls.__dataclass_fields__}
        known.setdefault("molecule_cells", "box")
        return cls(**known)

    def with_(self, **changes) -> "VoronoiConfig":
        from dataclasses import replace

        return replace(self, **changes)


@dataclass
class LocalEnvironment:
    """Voronoi neighbours of every atom of one structure.

    ``center[e]``/``neighbor[e]`` index atoms of the structure (0..n_atoms-1), sorted by center;
    ``distance[e]`` in Å, ``solid_angle[e]`` in sr, ``offset[e]`` the integer lattice image of the
    neighbour (crystal cell vectors; for molecules always 0 unless a box is asked for, where non-zero
    means a periodic image became a neighbour). ``open_solid_angle[i]``: for isolated molecules, the
    solid angle (sr) of directions in which atom i's cell is unbounded (faces + open part = 4 pi).
    """

    numbers: np.ndarray  # (N,) int
    positions: np.ndarray  # (N, 3) Å
    center: np.ndarray  # (E,) int
    neighbor: np.ndarray  # (E,) int
    distance: np.ndarray  # (E,) float, Å
    solid_angle: np.ndarray  # (E,) float, sr
    offset: np.ndarray  # (E, 3) int
    open_solid_angle: np.ndarray | None = None  # (N,) sr through which a molecule's cell is open

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


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.stack([u[:, 1] * v[:, 2] - u[:, 2] * v[:, 1], u[:, 2] * v[:, 0] - u[:, 0] * v[:, 2],
                     u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]], axis=1)


def _angles_at(p: np.ndarray, q: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Angle (rad) at ``p`` of triangles ``p, q, r`` (T, 3), robust (atan2)."""
    u, v = q - p, r - p
    return np.arctan2(np.linalg.norm(_cross(u, v), axis=1), np.einsum("ij,ij->i", u, v))


def _dual_points(positions: np.ndarray, atoms: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Dual points of the given ``atoms`` (see module docstring), batched: ``w`` (a, n, 3) with row
    ``i`` ``[0, w_k for k != i]``, the centred copies, principal directions (a, 3, 3) and the affine
    rank of each atom's points (relative singular-value tolerance ``FLAT_TOLERANCE``)."""
    n = len(positions)
    rel = positions[None, :, :] - positions[atoms, None, :]
    rel = rel[np.arange(n)[None, :] != atoms[:, None]].reshape(len(atoms), n - 1, 3)
    d2 = np.einsum("nkj,nkj->nk", rel, rel)
    w = np.concatenate([np.zeros((len(atoms), 1, 3)), 2.0 * rel / d2[..., None]], axis=1)  # point 0: the origin
    centred = w - w.mean(axis=1, keepdims=True)
    _, sv, vt = np.linalg.svd(centred, full_matrices=False)
    scale = np.where(sv[:, :1] > 0, sv[:, :1], 1.0)
    return w, centred, vt, np.sum(sv > FLAT_TOLERANCE * scale, axis=1)


def _flat_cell_solid_angles(centred: np.ndarray, vt: np.ndarray, rank: int) -> np.ndarray:
    """Normal-cone solid angles (sr) of the points of a flat (rank 2) or collinear (rank 1) dual."""
    omega = np.zeros(len(centred))
    if rank == 2:
        xy = np.c_[centred @ vt[:2].T, np.zeros(len(centred))]
        ring = ConvexHull(xy[:, :2]).vertices  # counter-clockwise
        interior = _angles_at(xy[ring], xy[np.roll(ring, 1)], xy[np.roll(ring, -1)])
        omega[ring] = 2.0 * (np.pi - interior)  # a lune: twice the exterior angle
    else:  # collinear: the two end points see half-spaces
        t = centred @ vt[0]
        omega[[int(np.argmin(t)), int(np.argmax(t))]] = 2.0 * np.pi
    return omega


def _isolated_molecule(positions: np.ndarray):
    """Every face of every atom of an isolated molecule: centre, neighbour, solid angle (sr) and the
    open solid angle (sr) of each cell. One convex hull of the dual points per atom; the facet
    angles of all hulls are summed per vertex in one vectorised pass (angular defect). Work and
    memory grow as N^2 (atoms are processed in blocks of ``chunk``)."""
    n = len(positions)
    others = np.arange(n)
    chunk = max(1, 2_000_000 // (3 * n))
    tris, flat, walls = [], {}, []
    for start in range(0, n, chunk):
        atoms = np.arange(start, min(n, start + chunk))
        wall, centred, vt, rank = _dual_points(positions, atoms)
        walls.append(wall)
        for a, i in enumerate(atoms):
            if rank[a] == 3:
                tris.append(ConvexHull(wall[a]).simplices + i * n)
            else:
                flat[i] = _flat_cell_solid_angles(centred[a], vt[a], int(rank[a]))
    w = np.concatenate(walls).reshape(n * n, 3)  # atom i's points: rows i*n .. i*n + n - 1 (origin first)
    omega = np.zeros(len(w))
    if tris:
        tri = np.concatenate(tris)
        a, b, c = w[tri[:, 0]], w[tri[:, 1]], w[tri[:, 2]]
        ang = np.concatenate([_angles_at(a, b, c), _angles_at(b, c, a), _angles_at(c, a, b)])
        total = np.bincount(tri.T.reshape(-1), weights=ang, minlength=len(w))
        verts = np.unique(tri)
        omega[verts] = 2.0 * np.pi - total[verts]
    for i, om in flat.items():
        omega[i * n:(i + 1) * n] = om
    omega = np.clip(omega, 0.0, 4.0 * np.pi).reshape(n, n)
    open_angle = omega[:, 0].copy()
    # column k >= 1 of row i is the k-th atom other than i
    nbr_index = np.array([others[others != i] for i in range(n)]).reshape(n, n - 1)
    face = omega[:, 1:] > MIN_FACE_SOLID_ANGLE
    ci = np.repeat(np.arange(n), face.sum(axis=1))
    return ci, nbr_index[face], omega[:, 1:][face], open_angle


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
    reps = np.maximum(1, np.ceil(reach / widths - TOLERANCE).astype(int))
    grid = np.array(list(itertools.product(*(range(-r, r + 1) for r in reps))))
    grid = grid[np.argsort(np.abs(grid).sum(axis=1), kind="stable")]  # (0,0,0) first
    pts = (base[None, :, :] + (grid @ cell)[:, None, :]).reshape(-1, 3)
    idx = np.tile(np.arange(n), len(grid))
    off = np.repeat(grid, n, axis=0)
    if len(grid) > 27:  # keep images within `reach` of some atom of the central cell
        from scipy.spatial import cKDTree

        dmin, _ = cKDTree(base).query(pts, k=1)
        keep = dmin <= reach + TOLERANCE
        keep[:n] = True
        pts, idx, off = pts[keep], idx[keep], off[keep]
    return pts, idx, off, shift0


def local_environment(atoms, config: VoronoiConfig | None = None, *, cutoffs: bool = True) -> LocalEnvironment:
    """Voronoi neighbours of one structure.

    ``atoms``: an :class:`ase.Atoms` or a tuple ``(numbers, positions[, cell, pbc])``.
    Crystals (all ``pbc`` true and a non-zero cell) use their lattice; anything else is a
    molecule, tessellated in isolation (see module docstring). ``cutoffs=False`` keeps every face.
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
    open_angle = None
    if not periodic and not cfg.legacy_box and cfg.molecule_cells == "isolated":
        _check_overlaps(positions, n)
        ci, nb, omega, open_angle = _isolated_molecule(positions)
        dist = np.linalg.norm(positions[nb] - positions[ci], axis=1)
        noff = np.zeros((len(ci), 3), dtype=np.int64)
    else:
        ci, nb, dist, omega, noff = _periodic_faces(positions, cell, periodic, cfg)
    if cutoffs:
        keep = dist <= cfg.cutoff + TOLERANCE
        ci, nb, dist, omega, noff = ci[keep], nb[keep], dist[keep], omega[keep], noff[keep]
        mx = np.zeros(n)
        np.maximum.at(mx, ci, omega)
        keep = ((omega >= cfg.min_solid_angle - TOLERANCE)
                & (omega / np.maximum(mx[ci], 1e-12) >= cfg.min_solid_angle_ratio - TOLERANCE))
        ci, nb, dist, omega, noff = ci[keep], nb[keep], dist[keep], omega[keep], noff[keep]
    order = np.lexsort((nb, ci))
    return LocalEnvironment(
        numbers=numbers, positions=positions, center=ci[order].astype(np.int64),
        neighbor=nb[order].astype(np.int64), distance=dist[order], solid_angle=omega[order],
        offset=noff[order].astype(np.int64), open_solid_angle=open_angle,
    )


def _periodic_faces(positions: np.ndarray, cell: np.ndarray, periodic: bool, cfg: VoronoiConfig):
    """Faces of a crystal (its lattice) or of a molecule in a box (legacy or padded, for checks)."""
    n = len(positions)
    if periodic:
        frame = positions
        lattice = cell
        # a face neighbour is at most the cell's longest body diagonal away (every point of space is within
        # half of it from a lattice image of each atom), so long lattice vectors (slabs with vacuum,
        # molecular crystals) need that reach; a fixed 8 Å left such cells open or flat
        diagonal = max(float(np.linalg.norm(np.array(signs) @ cell)) for signs in itertools.product((-1, 1), repeat=3))
        reach = max(2.0 * cfg.cutoff, 8.0, diagonal + TOLERANCE)
    elif cfg.legacy_box:
        frame = positions - positions.mean(axis=0)  # large molecules meet their images: the flaw kept for comparison
        lattice = np.eye(3) * cfg.legacy_box_size
        reach = cfg.legacy_box_size
    else:  # axis-aligned padded box: converges to the isolated cells as box_padding grows
        frame = positions - positions.mean(axis=0)
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
    return ci, nb, dist, omega, noff


def all_faces(atoms, config: VoronoiConfig | None = None) -> LocalEnvironment:
    """Every Voronoi face of every atom, without cut-offs (for checks: the Omega of a cell sum to 4 pi)."""
    return local_environment(atoms, config, cutoffs=False)
