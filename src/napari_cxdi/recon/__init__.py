"""Classical iterative reconstructions (baselines beside PID3Net)."""

from .iterative import METHODS, IterativeConfig, iter_iterative, run_iterative

__all__ = ["METHODS", "IterativeConfig", "iter_iterative", "run_iterative"]
