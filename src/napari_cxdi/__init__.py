"""napari-cxdi: coherent X-ray diffraction movies to real-space movies of moving nanoparticles.

The public API is importable without Qt or napari. Heavy sub-packages load on first use.
"""

from ._version import __version__

__all__ = ["__version__"]
