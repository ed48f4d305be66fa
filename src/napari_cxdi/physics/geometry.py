"""Experimental geometry: energy, detector distance and pixel, and the object-plane pixel size.

``dx = lambda * z / (N * p)`` with ``lambda[A] = 12.398 / E[keV]``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..checks import POSITIVE, check_number
from ..errors import ConfigError

HC_KEV_ANGSTROM = 12.398419843320026


def wavelength_m(energy_kev: float) -> float:
    """Photon wavelength in metres for an energy in keV."""
    check_number(energy_kev, "photon energy energy_kev", POSITIVE)
    return HC_KEV_ANGSTROM / energy_kev * 1e-10


@dataclass(frozen=True)
class Geometry:
    """Far-field CXDI geometry.

    energy_kev: photon energy; distance_m: sample-detector distance; detector_pixel_um: detector
    pixel pitch (after any binning); n: detector frame size in pixels (square frames).
    """

    energy_kev: float = 5.0
    distance_m: float = 3.14
    detector_pixel_um: float = 75.0
    n: int = 384

    def __post_init__(self):
        if self.n < 8:
            raise ConfigError(f"frame size n must be at least 8 pixels, got {self.n}")
        for name in ("energy_kev", "distance_m", "detector_pixel_um"):
            check_number(getattr(self, name), name, POSITIVE, where="geometry")

    @property
    def wavelength_m(self) -> float:
        return wavelength_m(self.energy_kev)

    @property
    def pixel_size_nm(self) -> float:
        """Object-plane pixel size ``lambda z / (N p)`` in nm."""
        return self.wavelength_m * self.distance_m / (self.n * self.detector_pixel_um * 1e-6) * 1e9

    @property
    def field_of_view_um(self) -> float:
        """Object-plane field of view ``lambda z / p`` in micrometres."""
        return self.n * self.pixel_size_nm * 1e-3

    def binned_to(self, n: int) -> "Geometry":
        """The same detector extent read out as ``n`` pixels (binning): keeps ``dx``, shrinks the field of view."""
        return dataclasses.replace(self, n=n, detector_pixel_um=self.detector_pixel_um * self.n / n)


# Seed settings (thesis Tables B.1-B.3).
TA_CHART = Geometry(energy_kev=5.0, distance_m=3.30, detector_pixel_um=72.6, n=384)
AUNP_SIMULATION = Geometry(energy_kev=5.0, distance_m=3.14, detector_pixel_um=75.0, n=384)
AUNP_PVA = AUNP_SIMULATION
