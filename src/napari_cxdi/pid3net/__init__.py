"""PID3Net: self-supervised physics-informed dynamic phase retrieval (PyTorch, no Qt)."""

from .checkpoint import load_checkpoint, probe_hash, save_checkpoint
from .config import VARIANTS, PID3NetConfig
from .inference import iter_reconstruct, reconstruct_movie
from .model import PID3Net
from .train import PID3NetTrainer

__all__ = [
    "PID3Net", "PID3NetConfig", "PID3NetTrainer", "VARIANTS", "iter_reconstruct", "load_checkpoint",
    "probe_hash", "reconstruct_movie", "save_checkpoint",
]
