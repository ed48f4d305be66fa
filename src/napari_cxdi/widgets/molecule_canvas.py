"""A vispy SceneCanvas showing one molecule as balls (spherical markers) and sticks (cylinder mesh)."""

from __future__ import annotations

import numpy as np

from .. import molecules as mol

CAMERAS = ("turntable", "arcball")
BACKGROUND = "#262930"


def _use_qt_backend() -> None:
    import qtpy
    from vispy.app import use_app

    try:
        use_app(qtpy.API_NAME.lower())
    except Exception:  # an app with another backend already exists; vispy keeps it
        pass


class MoleculeCanvas:
    """Ball-and-stick view with per-atom colours, a highlight for the picked atom and its neighbours,
    screen-space picking and off-screen rendering. ``native`` is the Qt widget to put in a layout."""

    def __init__(self, size: tuple[int, int] = (420, 380)):
        _use_qt_backend()
        from vispy import scene

        self.canvas = scene.SceneCanvas(keys=None, show=False, size=size, bgcolor=BACKGROUND)
        self.view = self.canvas.central_widget.add_view()
        self.atoms_visual = scene.visuals.Markers(parent=self.view.scene, scaling="scene", spherical=True,
                                                  light_position=(1, -1, 2), light_ambient=0.35)
        self.bonds_visual = scene.visuals.Mesh(parent=self.view.scene, shading=None)
        self.highlight_visual = scene.visuals.Markers(parent=self.view.scene, scaling="scene")
        self.highlight_visual.set_gl_state("translucent", depth_test=False)
        for markers in (self.atoms_visual, self.highlight_visual):  # vispy cannot bound empty markers
            markers.set_data(np.zeros((1, 3), np.float32), size=1)
            markers.visible = False
        self.bonds_visual.visible = False
        self.positions = np.zeros((0, 3))
        self.radii = np.zeros(0)
        self.colors = np.zeros((0, 4), np.float32)
        self.numbers = np.zeros(0, int)
        self.bonds = np.zeros((0, 2), int)
        self.camera_kind = ""
        self.set_camera("turntable")

    @property
    def native(self):
        return self.canvas.native

    # -- scene ----------------------------------------------------------------------------------
    def set_camera(self, kind: str) -> None:
        from vispy import scene

        if kind not in CAMERAS:
            raise ValueError(f"camera must be one of {CAMERAS}")
        cam = scene.TurntableCamera(fov=35) if kind == "turntable" else scene.ArcballCamera(fov=35)
        self.view.camera = cam
        self.camera_kind = kind
        self.reset_view()

    def reset_view(self) -> None:
        if len(self.positions) == 0:
            return
        lo = self.positions.min(0) - 1.0
        hi = self.positions.max(0) + 1.0
        cam = self.view.camera
        cam.center = tuple(0.5 * (lo + hi))
        cam.scale_factor = float(np.max(hi - lo)) * 1.1
        self.canvas.update()

    def set_structure(self, numbers: np.ndarray, positions: np.ndarray, bonds: np.ndarray | None = None,
                      colors: np.ndarray | None = None, reset: bool = True) -> None:
        """Show atoms (Z, positions in Å); bonds from covalent radii unless given; element colours by default."""
        new = len(numbers) != len(self.numbers) or not np.array_equal(numbers, self.numbers)
        self.numbers = np.asarray(numbers, int)
        self.positions = np.asarray(positions, float)
        self.radii = mol.atom_radii(self.numbers)
        self.bonds = mol.detect_bonds(self.numbers, self.positions) if bonds is None else np.asarray(bonds, int)
        self.set_colors(mol.element_colors(self.numbers) if colors is None else colors)
        self.select(None)
        if reset and new:
            self.reset_view()

    def set_colors(self, colors: np.ndarray) -> None:
        """Per-atom RGBA colours (balls and their half of each stick)."""
        self.colors = np.asarray(colors, np.float32)
        if len(self.positions) == 0:
            self.atoms_visual.visible = self.bonds_visual.visible = False
            self.canvas.update()
            return
        self.atoms_visual.visible = True
        self.atoms_visual.set_data(self.positions.astype(np.float32), size=2 * self.radii, face_color=self.colors,
                                   edge_width=0, edge_color=self.colors)
        v, f, c = mol.bond_cylinders(self.positions, self.bonds, self.colors)
        self.bonds_visual.visible = len(f) > 0
        if len(f):
            self.bonds_visual.set_data(vertices=v, faces=f, vertex_colors=c)
        self.canvas.update()

    def select(self, index: int | None, neighbours=()) -> None:
        """Ring the picked atom (white) and its neighbours (orange); None clears."""
        if index is None or len(self.positions) == 0:
            self.highlight_visual.visible = False
            self.canvas.update()
            return
        idx = np.concatenate([[index], np.asarray(neighbours, int)]).astype(int)
        edge = np.tile(np.array([[1.0, 0.6, 0.1, 1.0]], np.float32), (len(idx), 1))
        edge[0] = (1, 1, 1, 1)
        self.highlight_visual.set_data(self.positions[idx].astype(np.float32), size=2.6 * self.radii[idx],
                                       face_color=(0, 0, 0, 0), edge_color=edge, edge_width_rel=0.12)
        self.highlight_visual.visible = True
        self.canvas.update()

    # -- picking --------------------------------------------------------------------------------
    def _project(self, points: np.ndarray) -> np.ndarray:
        tr = self.atoms_visual.get_transform("visual", "canvas")
        p = np.asarray(tr.map(np.asarray(points, float)))
        return p[:, :3] / p[:, 3:4]

    def pick(self, xy) -> int | None:
        """Front-most atom under canvas pixel ``xy`` (logical pixels), or None."""
        if len(self.positions) == 0:
            return None
        centre = self._project(self.positions)
        radius_px = np.zeros(len(self.positions))
        for e in np.eye(3):
            off = self._project(self.positions + self.radii[:, None] * e)
            radius_px = np.maximum(radius_px, np.linalg.norm(off[:, :2] - centre[:, :2], axis=1))
        return mol.pick_atom(centre[:, :2], self.depth(), radius_px, xy)

    def depth(self) -> np.ndarray:
        """Distance of each atom from the camera's eye (smaller = nearer)."""
        tr = self.atoms_visual.get_transform("visual", "render")
        p = np.asarray(tr.map(self.positions))
        return p[:, 2] / p[:, 3]

    def screen_position(self, i: int) -> tuple[float, float]:
        """Canvas pixel of atom ``i``'s centre."""
        x, y, _ = self._project(self.positions[i:i + 1])[0]
        return float(x), float(y)

    # -- output ---------------------------------------------------------------------------------
    def render(self) -> np.ndarray:
        """RGBA image (H, W, 4) uint8 of the current view."""
        return np.asarray(self.canvas.render())

    def close(self) -> None:
        try:
            self.canvas.close()
        except Exception:  # already gone with its Qt parent
            pass
