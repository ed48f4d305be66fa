"""Sample-data contributions: small simulated movies that open in a few seconds, with ground truth."""

from __future__ import annotations

from ..simulate import SimulatedMovie, simulate_aunp, simulate_test_chart
from .layers import LayerData, diffraction_layer, phase_layer, probe_layer, tracks_layer


def movie_layers(movie: SimulatedMovie, label: str) -> list[LayerData]:
    """Layers of a simulated movie: the ground truth (true phase, true tracks; hidden) and the probe (hidden)
    first, the measured diffraction counts (probe in its metadata) last, so the first view shows the data."""
    dx = movie.pixel_size_nm
    meta = {k: v for k, v in movie.metadata.items() if k != "config"}
    truth = phase_layer(movie.phase, f"{label} true phase", dx, {"ground_truth": True})
    truth[1]["visible"] = False
    layers = [truth, probe_layer(movie.probe, f"{label} probe", dx)]
    if len(movie.trajectories):
        tracks = tracks_layer(movie.trajectories, f"{label} true tracks", dx)
        tracks[1]["visible"] = False
        tracks[1]["metadata"]["ground_truth"] = True
        layers.append(tracks)
    layers.append(diffraction_layer(movie.counts, f"{label} diffraction", dx, {**meta, "probe": movie.probe}))
    return layers


def sample_aunp() -> list[LayerData]:
    """Simulated AuNP movie: 64 frames of 128 x 128, 300 nm gold particles drifting at 200 nm/s."""
    return movie_layers(simulate_aunp(n_frames=64, size=128, seed=0), "AuNP")


def sample_test_chart() -> list[LayerData]:
    """Simulated Ta test chart moving at 340 nm/s: 64 frames of 128 x 128."""
    return movie_layers(simulate_test_chart(n_frames=64, size=128, seed=0), "Ta chart")
