"""PID3NetConfig: defaults, every field's range at its boundary, validate() messages, variants, names,
working size and the legacy from_dict rules (issue 20)."""

from __future__ import annotations

import pytest

from napari_cxdi.errors import ConfigError
from napari_cxdi.pid3net.config import LOSSES, VARIANTS, PID3NetConfig


def test_defaults_follow_the_documented_values():
    assert PID3NetConfig().to_dict() == {
        "width": 8, "frames": 5, "refine_steps": 5, "refine_width": 32, "image_size": None, "loss": "poisson",
        "tv_weight": 0.01, "poisson_threshold": 1.0, "alpha0": 0.2, "alpha_max": None, "refine_relaxation": "poisson",
        "relaxation_sigma": 2.0, "refine_mode": "gated", "temporal_padding": "replicate", "support_threshold": 0.02,
        "epochs": 20, "batch_size": 4, "lr": 1e-3, "lr_final_factor": 0.2, "early_stop_patience": 0,
        "early_stop_tol": 1e-3, "holdout_fraction": 0.1, "holdout_patience": 5, "holdout_patience_steps": 60,
        "holdout_tol": 0.0, "noise_floor_margin": 0.05, "preview_every": 20, "seed": 0, "device": "auto", "amp": True, "checkpoint_every": 0,
    }
    assert VARIANTS == {"PID3Net-PO": ("poisson", True), "PID3Net-MAE": ("mae", True), "PID3Net-NR": ("poisson", False)}
    assert LOSSES == ("poisson", "mae", "sqrt_mse")
    PID3NetConfig().validate()


# field, a value on the boundary that is allowed, a value just outside, the interval in the message
BOUNDS = [
    ("width", 1, 0, "[1, inf)"), ("frames", 1, 0, "[1, inf)"), ("refine_steps", 0, -1, "[0, inf)"),
    ("refine_width", 1, 0, "[1, inf)"), ("image_size", 1, 0, "[1, inf)"), ("tv_weight", 0.0, -0.5, "[0, inf)"),
    ("poisson_threshold", 0.0, -0.5, "[0, inf)"), ("alpha0", 1e-6, 0.0, "(0, inf)"),
    ("support_threshold", 1.0, 1.5, "[0, 1]"), ("support_threshold", 0.0, -0.5, "[0, 1]"),
    ("epochs", 1, 0, "[1, inf)"), ("batch_size", 1, 0, "[1, inf)"), ("lr", 1e-9, 0.0, "(0, inf)"),
    ("lr_final_factor", 1.0, 0.0, "(0, 1]"), ("lr_final_factor", 0.5, 1.5, "(0, 1]"),
    ("early_stop_patience", 0, -1, "[0, inf)"), ("early_stop_tol", 0.0, -0.5, "[0, 1)"), ("early_stop_tol", 0.999, 1.0, "[0, 1)"),
    ("preview_every", 0, -1, "[0, inf)"), ("checkpoint_every", 0, -1, "[0, inf)"), ("seed", 0, -1, "[0, inf)"),
    ("alpha_max", 1e-6, 0.0, "(0, inf)"), ("relaxation_sigma", 0.0, -0.5, "[0, inf)"),
    ("holdout_fraction", 0.0, 1.0, "[0, 1)"), ("holdout_fraction", 0.5, -0.5, "[0, 1)"),
    ("holdout_patience", 0, -1, "[0, inf)"), ("holdout_patience_steps", 0, -1, "[0, inf)"),
    ("holdout_tol", 0.0, -0.5, "[0, 1)"), ("holdout_tol", 0.5, 1.5, "[0, 1)"),
    ("noise_floor_margin", 1.0, 1.5, "[0, 1]"), ("noise_floor_margin", 0.0, -0.5, "[0, 1]"),
]


@pytest.mark.parametrize("field, ok, bad, interval", BOUNDS)
def test_every_number_is_range_checked_when_the_config_is_made(field, ok, bad, interval):
    PID3NetConfig(**{field: ok})
    message = f"PID3Net config: {field} must be in {interval}, got {bad!r}"
    with pytest.raises(ConfigError) as err:
        PID3NetConfig(**{field: bad})
    assert str(err.value) == message


def test_whole_numbers_and_finite_values():
    with pytest.raises(ConfigError, match=r"^PID3Net config: width must be a whole number, got 2.5$"):
        PID3NetConfig(width=2.5)
    with pytest.raises(ConfigError, match=r"^PID3Net config: lr must be finite, got nan$"):
        PID3NetConfig(lr=float("nan"))


@pytest.mark.parametrize("changes, message", [
    ({"width": 1}, "width must be an even number >= 2, got 1"),
    ({"width": 6 + 1}, "width must be an even number >= 2, got 7"),
    ({"loss": "l2"}, "unknown loss 'l2'; choose one of poisson, mae, sqrt_mse"),
    ({"image_size": 24}, "image size m must be a multiple of 16, got 24"),
    ({"refine_relaxation": "x"}, "refine_relaxation must be 'none' or 'poisson', got 'x'"),
    ({"temporal_padding": "reflect"}, "temporal_padding must be 'zeros' or 'replicate', got 'reflect'"),
    ({"refine_mode": "x"}, "refine_mode must be 'additive' or 'gated', got 'x'"),
    ({"alpha_max": 0.2, "alpha0": 0.2}, "alpha_max must exceed alpha0 > 0, got alpha_max=0.2, alpha0=0.2"),
    ({"alpha_max": 0.1, "alpha0": 0.2}, "alpha_max must exceed alpha0 > 0, got alpha_max=0.1, alpha0=0.2"),
    ({"holdout_patience": 0}, "holdout_patience must be >= 1 epoch, got 0"),
    ({"noise_floor_margin": 1.0}, "noise_floor_margin must be in [0, 1) or None, got 1.0"),
])
def test_validate_messages(changes, message):
    with pytest.raises(ConfigError) as err:
        PID3NetConfig(**changes).validate()
    assert str(err.value) == message


def test_validate_accepts_the_edges():
    PID3NetConfig(width=2, frames=1, refine_steps=0, image_size=16, alpha_max=0.21, alpha0=0.2, holdout_patience=1,
                  holdout_fraction=0.0, noise_floor_margin=None, relaxation_sigma=0.0, refine_relaxation="none",
                  temporal_padding="zeros", refine_mode="additive", loss="sqrt_mse").validate()
    PID3NetConfig(loss="mae", image_size=32).validate(frame_shape=(32, 32), n_frames=5)
    PID3NetConfig(epochs=1, batch_size=1, lr=1e-12, noise_floor_margin=0.0).validate()
    PID3NetConfig(frames=5).validate(n_frames=5)


def test_validate_against_the_movie():
    cfg = PID3NetConfig(image_size=32)
    with pytest.raises(ConfigError, match=r"^PID3Net needs square frames, got 32x48; crop the movie first$"):
        cfg.validate(frame_shape=(32, 48))
    with pytest.raises(ConfigError, match=r"^image size m = 32 is smaller than the 48x48 frames$"):
        cfg.validate(frame_shape=(48, 48))
    cfg.validate(frame_shape=(32, 32))
    PID3NetConfig().validate(frame_shape=(100, 100))  # no image size: any square frame
    with pytest.raises(ConfigError, match=r"^T = 5 frames per window is more than the movie's 4 frames$"):
        PID3NetConfig().validate(n_frames=4)


def test_variants_and_names():
    po = PID3NetConfig.variant("PID3Net-PO")
    assert (po.loss, po.refine_steps, po.name) == ("poisson", 5, "PID3Net-PO")
    mae = PID3NetConfig.variant("PID3Net-MAE", width=4)
    assert (mae.loss, mae.refine_steps, mae.width, mae.name) == ("mae", 5, 4, "PID3Net-MAE")
    nr = PID3NetConfig.variant("PID3Net-NR")
    assert (nr.loss, nr.refine_steps, nr.name) == ("poisson", 0, "PID3Net-NR")
    assert PID3NetConfig.variant("PID3Net-PO", loss="mae").loss == "mae"  # overrides win
    assert PID3NetConfig.variant("PID3Net-NR", refine_steps=2).refine_steps == 2
    assert PID3NetConfig(loss="sqrt_mse").name == "PID3Net-sqrt_mse"
    assert PID3NetConfig(loss="mae", refine_steps=0).name == "PID3Net-NR"
    with pytest.raises(ConfigError, match=r"^unknown PID3Net variant 'PID3Net'; choose one of PID3Net-PO, PID3Net-MAE, PID3Net-NR$"):
        PID3NetConfig.variant("PID3Net")


def test_working_size_and_with():
    cfg = PID3NetConfig()
    assert [cfg.working_size(n) for n in (1, 16, 17, 32, 33, 100)] == [16, 16, 32, 32, 48, 112]
    assert PID3NetConfig(image_size=64).working_size(20) == 64
    assert cfg.with_(width=4).width == 4 and cfg.width == 8


def test_from_dict_fills_the_legacy_defaults():
    cfg = PID3NetConfig(width=4, refine_mode="gated", temporal_padding="replicate")
    assert PID3NetConfig.from_dict({**cfg.to_dict(), "unknown": 1}) == cfg
    old = {k: v for k, v in cfg.to_dict().items() if k not in ("refine_mode", "refine_relaxation", "temporal_padding")}
    back = PID3NetConfig.from_dict(old)
    assert (back.refine_mode, back.refine_relaxation, back.temporal_padding) == ("additive", "none", "zeros")
    # a file with refine_mode but no relaxation keeps the current relaxation default
    partial = PID3NetConfig.from_dict({**old, "refine_mode": "gated"})
    assert (partial.refine_mode, partial.refine_relaxation, partial.temporal_padding) == ("gated", "poisson", "zeros")
    # a legacy file that names the relaxation keeps it
    named = PID3NetConfig.from_dict({**old, "refine_relaxation": "poisson"})
    assert (named.refine_mode, named.refine_relaxation) == ("additive", "poisson")
    padded = PID3NetConfig.from_dict({**old, "temporal_padding": "replicate"})
    assert padded.temporal_padding == "replicate" and padded.refine_mode == "additive"
