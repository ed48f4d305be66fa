"""Simulators of dynamic single-shot CXDI experiments, with ground truth."""

from .aunp import AuNPConfig, simulate_aunp
from .movie import SimulatedMovie
from .test_chart import TestChartConfig, simulate_test_chart

__all__ = ["AuNPConfig", "SimulatedMovie", "TestChartConfig", "simulate_aunp", "simulate_test_chart"]
