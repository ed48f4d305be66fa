"""Qt-free, evented session models behind the napari docks (one per dock).

Each holds a dock's settings, run state (idle -> running -> cancelling -> idle), last good results and
the texts it shows; the Qt panels in :mod:`napari_cxdi.widgets` only watch them. Testable without Qt.
"""

from ._base import RunSession, RunState, error_message
from .molecules import ColourSettings, MoleculeSession
from .reconstruction import PRESETS, ReconstructionSession, ReconstructionSettings, default_preset, estimate_seconds
from .speckle import SpeckleSession, probability_ood
from .tracking import TrackingSession, explain_empty

__all__ = [
    "RunSession", "RunState", "error_message", "ColourSettings", "MoleculeSession", "PRESETS", "ReconstructionSession",
    "ReconstructionSettings", "default_preset", "estimate_seconds", "SpeckleSession", "probability_ood",
    "TrackingSession", "explain_empty",
]
