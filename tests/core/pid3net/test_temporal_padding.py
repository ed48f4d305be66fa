"""PID3Net's output may move only when the data move (docs/fidelity.md, "chart velocity").

With the thesis' zero padding of the time axis a trained network drew a fixed drift per position in
the window: a window of one frame repeated T times came out moving 0.18 px from its first to its last
frame, and a time-reversed window still moved forward (+0.12 px for a true -0.32). An untrained network
already shows the position dependence; these tests see it without training.
"""

import numpy as np
import pytest
import torch

from napari_cxdi.errors import ConfigError
from napari_cxdi.pid3net import PID3Net, PID3NetConfig


class _Movie:
    def __init__(self, n=32, frames=6):
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[:n, :n] - n / 2
        self.probe = (np.exp(-(yy**2 + xx**2) / (2 * 5.0**2)) * np.exp(0.02j * xx**2)).astype(np.complex64)[None]
        self.counts = rng.poisson(2.0 * np.exp(-(yy**2 + xx**2) / 50.0) + 0.5, size=(frames, n, n)).astype(np.float32)


@pytest.fixture(scope="module")
def chart():
    return _Movie()


def _model(chart, variant="PID3Net-PO", **overrides):
    torch.manual_seed(0)
    cfg = PID3NetConfig.variant(variant, width=4, refine_width=8, refine_steps=2, frames=5, device="cpu", amp=False,
                                **overrides)
    return PID3Net(cfg, chart.probe).eval()


def _repeated_window(chart, frame=0, T=5):
    return torch.as_tensor(chart.counts[frame], dtype=torch.float32)[None, None].repeat(1, T, 1, 1)


@pytest.mark.parametrize("variant", ["PID3Net-PO", "PID3Net-NR"])
def test_a_window_of_identical_frames_gives_identical_objects(chart, variant):
    with torch.no_grad():
        out = _model(chart, variant)(_repeated_window(chart))[0]
    assert float((out - out[2]).abs().max()) < 1e-5


def test_zero_time_padding_makes_the_output_depend_on_the_position_in_the_window(chart):
    with torch.no_grad():
        out = _model(chart, temporal_padding="zeros")(_repeated_window(chart))[0]
    assert float((out - out[2]).abs().max()) > 1e-3  # the thesis' form: the edge frames differ


def test_reversing_a_window_reverses_its_objects_when_the_temporal_kernels_are_symmetric(chart):
    """Replicate padding treats both ends alike: with time-symmetric kernels the network commutes with time reversal."""
    model = _model(chart)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv3d) and module.kernel_size[0] > 1:
                module.weight.copy_(0.5 * (module.weight + module.weight.flip(2)))
        window = torch.as_tensor(chart.counts[:5], dtype=torch.float32)[None]
        forward = model(window)[0]
        backward = model(window.flip(1))[0].flip(0)
    assert float((forward - backward).abs().max()) < 1e-5


def test_old_checkpoint_configs_keep_zero_padding_and_bad_values_are_refused():
    assert PID3NetConfig.from_dict({"width": 4}).temporal_padding == "zeros"
    assert PID3NetConfig().temporal_padding == "replicate"
    assert PID3NetConfig.from_dict(PID3NetConfig().to_dict()).temporal_padding == "replicate"
    with pytest.raises(ConfigError, match="temporal_padding"):
        PID3NetConfig(temporal_padding="circular").validate()
    from napari_cxdi.pid3net.blocks import TemporalBlock

    with pytest.raises(ConfigError, match="temporal_padding"):
        TemporalBlock(1, 4, temporal_padding="reflect")
