"""X-ray optical constants and projected-thickness transmission.

Refractive index ``n = 1 - delta + i beta``; a projected thickness ``t`` transmits
``O = exp(-i k delta t - k beta t)`` with ``k = 2 pi / lambda`` (phase shift is negative).
The constants below are approximate values at 5 keV from the Henke tables (good to ~10 %);
pass your own :class:`Material` for other energies or substances.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Material:
    name: str
    delta: float
    beta: float

    def relative_to(self, medium: "Material") -> "Material":
        """Contrast of this material embedded in ``medium`` (e.g. gold in water)."""
        return Material(f"{self.name} in {medium.name}", self.delta - medium.delta, self.beta - medium.beta)


GOLD_5KEV = Material("Au", delta=1.20e-4, beta=1.65e-5)
TANTALUM_5KEV = Material("Ta", delta=1.04e-4, beta=1.30e-5)
WATER_5KEV = Material("H2O", delta=9.2e-6, beta=1.4e-7)
VACUUM = Material("vacuum", 0.0, 0.0)


def transmission(thickness_nm: np.ndarray, material: Material, wavelength_m: float) -> np.ndarray:
    """Complex transmission ``exp(-i k delta t - k beta t)`` of a projected thickness map (nm)."""
    k = 2 * np.pi / wavelength_m
    t = np.asarray(thickness_nm, dtype=np.float64) * 1e-9
    return np.exp((-1j * material.delta - material.beta) * k * t).astype(np.complex64)
