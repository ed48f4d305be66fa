"""Sample data "Simulated n-disk speckle": a random n-disk system and its speckle pattern (no napari import)."""

from __future__ import annotations

import numpy as np


def simulate_speckle_layers(n: int = 8, seed: int | None = 0, polydisperse: bool = False,
                            window: int = 513) -> list[tuple]:
    """Layer data tuples: the rasterised disks ``(2001, 2001)`` and ``|F|^2`` ``(window, window)``.

    The pattern is the raw intensity (k = 0 at the centre pixel, central 11 x 11 block zeroed) on the
    9x-oversampled grid of SPEC section 7, ready for the speckle classifier.
    """
    from ..speckle.disks import random_disk_system, thickness_map
    from ..speckle.patterns import BLOCK, block_center, speckle_dft

    system = random_disk_system(n, seed, polydisperse=polydisperse)
    disks = thickness_map(system)
    intensity = block_center(speckle_dft(disks, window), BLOCK)
    kind = "polydisperse" if polydisperse else "monodisperse"
    meta = {"n_disks": int(n), "radii": system.radii.tolist(), "centers_yx": system.centers.tolist(),
            "seed": seed, "polydisperse": bool(polydisperse), "window": int(window), "pad": 18001,
            "block": BLOCK}
    hi = float(np.percentile(intensity, 99.9)) or 1.0
    return [
        (disks, {"name": f"{n} disks ({kind})", "colormap": "gray", "metadata": meta}, "image"),
        (intensity, {"name": f"speckle {n} disks", "colormap": "magma", "gamma": 0.3,
                     "contrast_limits": [0.0, hi], "metadata": meta}, "image"),
    ]


def make_speckle_sample() -> list[tuple]:
    """npe2 sample-data entry point: an 8-disk monodisperse system (seed 0) and its 513 x 513 pattern."""
    return simulate_speckle_layers(8, seed=0)
