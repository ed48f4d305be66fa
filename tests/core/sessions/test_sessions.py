"""The docks' Qt-free session models (issue 15): run states, cancellation, estimates, settings round trips."""

import numpy as np
import pytest

from napari_cxdi.errors import ConfigError
from napari_cxdi.sessions import (
    ColourSettings, MoleculeSession, ReconstructionSession, ReconstructionSettings, RunSession, SpeckleSession,
    TrackingSession, estimate_seconds, explain_empty, probability_ood,
)
from napari_cxdi.sessions.reconstruction import PRESET_FULL, PRESET_QUICK, PRESET_SMALL, default_preset, eta_text
from napari_cxdi.tracking import DetectionConfig, TrackingConfig


def test_sessions_do_not_import_qt():
    import subprocess
    import sys

    code = ("import sys, napari_cxdi.sessions as s; s.ReconstructionSession(); "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'napari')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_run_state_machine_and_signals():
    s = RunSession("test")
    states, statuses = [], []
    s.state_changed.connect(states.append)
    s.status_changed.connect(statuses.append)
    assert not s.request_cancel()  # nothing runs
    cancel = s.begin("job")
    with pytest.raises(ConfigError, match="already running"):
        s.begin("another")
    assert s.request_cancel() and cancel.is_set() and s.state.value == "cancelling"
    s.cancelled()
    assert states == ["running", "cancelling", "idle"] and "cancelled" in statuses[-1]
    assert not s.begin("again").is_set()  # a fresh cancel event per run


class _Result:
    def __init__(self, cancelled, model="m"):
        self.cancelled, self.model, self.objects = cancelled, model, None if cancelled else np.ones((2, 4, 4))
        self.history, self.metrics, self.timings, self.method = [{"epoch": 0}], {"rf": 0.4}, {}, "PID3Net-PO"


def test_a_cancelled_run_never_replaces_the_last_good_result_or_model():
    s = ReconstructionSession(ReconstructionSettings.from_preset(PRESET_SMALL))
    s.begin()
    good = _Result(False, model="good")
    assert s.accept(good) and s.model == "good" and s.result is good
    s.begin()
    s.request_cancel()
    assert not s.accept(_Result(True, model="partial"))
    assert s.result is good and s.model == "good" and s.cancelled_model == "partial" and not s.running


def test_cpu_default_preset_is_fast_on_the_sample_and_slow_settings_are_flagged():
    assert default_preset(has_gpu=False) in (PRESET_SMALL, PRESET_QUICK)
    assert default_preset(has_gpu=True) == PRESET_FULL
    n, size = 64, 128  # the AuNP sample
    assert estimate_seconds(ReconstructionSettings.from_preset(default_preset(False), device="cpu"), n, size, "cpu") < 300
    small = ReconstructionSettings.from_preset(PRESET_SMALL, device="cpu")
    assert estimate_seconds(small, n, size, "cpu") < 300
    assert estimate_seconds(ReconstructionSettings.from_preset(PRESET_QUICK), n, size, "cpu") < 60
    full = ReconstructionSettings.from_preset(PRESET_FULL, device="cpu")
    text, slow = eta_text(full, n, size, "cpu")
    assert slow and "more than 10 min" in text and estimate_seconds(full, n, size, "cpu") > 3600
    assert not eta_text(small, n, size, "cpu")[1]
    # the estimate grows with the work
    assert estimate_seconds(small.with_(pid3net=small.pid3net.with_(epochs=6)), n, size, "cpu") > \
        1.8 * estimate_seconds(small, n, size, "cpu") - 5


def test_settings_round_trip_and_validation():
    s = ReconstructionSettings.from_preset(PRESET_SMALL, device="cpu").with_(finetune=True)
    back = ReconstructionSettings.from_dict(s.to_dict())
    assert back == s
    with pytest.raises(ConfigError, match="probe file"):
        s.with_(probe_source="file").validate()
    with pytest.raises(ConfigError, match="T = 5"):
        s.validate(n_frames=3, frame_shape=(32, 32))
    kw = ReconstructionSettings.from_preset(PRESET_QUICK).run_kwargs()
    assert kw["method"] == "mf-PIE" and kw["config"].batch_size == 8
    nr = s.with_(method="PID3Net-NR").run_kwargs()["config"]
    assert nr.refine_steps == 0 and nr.width == 4
    t = TrackingConfig(DetectionConfig(threshold=0.3), memory=2)
    assert TrackingConfig.from_dict(t.to_dict()) == t and t.with_(memory=1).memory == 1
    c = ColourSettings(cmap="magma")
    assert ColourSettings.from_dict(c.to_dict()) == c


def test_speckle_out_of_domain_heuristic():
    sure = {"probs": np.array([[0.02, 0.95, 0.03]]), "pred": np.array([8])}
    unsure = {"probs": np.array([[0.30, 0.36, 0.34]]), "pred": np.array([8])}
    assert probability_ood(sure) is None
    assert "out of the model's domain" in probability_ood(unsure)
    s = SpeckleSession()
    seen = []
    s.warning.connect(seen.append)
    s.ood_checks.append(lambda r: "custom check")  # the hook another detector plugs into
    s.begin()
    assert len(s.accept(unsure)) == 2 and len(seen) == 2 and "⚠" in s.result_text(s.last_result)
    assert s.accept(sure) == ["custom check"]


def test_tracking_explains_zero_detections():
    frame = np.zeros((32, 32))
    frame[10:15, 10:15] = -0.1  # weak dark particle
    advice = explain_empty(frame, TrackingConfig(DetectionConfig(threshold=0.5)), 27.0)
    assert "lower 'threshold' to about 0.05" in advice
    bright = -frame
    advice = explain_empty(bright, TrackingConfig(DetectionConfig(threshold=0.5)), 27.0)
    assert "try 'particles are' = bright" in advice
    s = TrackingSession()
    assert s.config.detection.threshold == 0.15


def test_molecule_session_frames_selection_and_clamping():
    from napari_cxdi import molecules as mol

    s = MoleculeSession()
    frames = mol.deformed_fullerene(n_frames=3)
    s.set_frames(frames, "c60")
    assert s.slider_range == (0, 2)
    assert s.set_frame(-4) == 0 and s.set_frame(10) == 2
    s.select(5)
    assert s.selected == 5
    s.set_frames(mol.example("ethanol"), "ethanol")
    assert s.selected is None and s.frame == 0 and s.results is None and s.slider_range == (0, 0)
    assert s.property_names("qm9-lumo") == ["lumo"]
    with pytest.raises(ConfigError):
        s.set_colours(cmap="nope")
