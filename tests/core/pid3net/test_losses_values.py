"""PID3Net training losses at non-ideal inputs against hand-computed values (issue 20)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_cxdi.pid3net import losses

nan = float("nan")


def test_weights_helper():
    m = torch.tensor([1.0, 2.0])
    out, w = losses._weights(m, None)
    assert out is m and w is None  # every pixel measured, no weight: the fast path
    out, w = losses._weights(torch.tensor([1.0, nan, 3.0]), None)
    assert out.tolist() == [1.0, 0.0, 3.0] and w.tolist() == [1.0, 0.0, 1.0] and w.dtype == torch.float32
    out, w = losses._weights(torch.tensor([1.0, nan, 3.0], dtype=torch.float64), torch.tensor([2, 5, 0]))
    assert out.tolist() == [1.0, 0.0, 3.0] and w.tolist() == [2.0, 0.0, 0.0] and w.dtype == torch.float64
    out, w = losses._weights(m, torch.tensor([0.5, 1.0]))  # a weight without NaN counts still applies
    assert w.tolist() == [0.5, 1.0]
    assert float(losses._mean(torch.tensor([1.0, 3.0]), None)) == 2.0
    assert float(losses._mean(torch.tensor([1.0, 3.0]), torch.tensor([3.0, 1.0]))) == pytest.approx(6 / 4)
    assert float(losses._mean(torch.tensor([1.0, 3.0]), torch.zeros(2))) == 0.0  # no measured pixel: 0, not NaN


def test_poisson_deviance_by_hand():
    pred = torch.tensor([2.0, 1.0, 3.0])
    meas = torch.tensor([1.0, 0.5, 3.0])
    # threshold 1: 0.5 -> 0; terms: 2 - 1 - log 2, 1 - 0 - 0, 0
    expected = (1 - math.log(2) + 1 + 0) / 3
    assert float(losses.poisson_deviance(pred, meas)) == pytest.approx(expected, rel=1e-6)
    assert float(losses.poisson_deviance(pred, meas, threshold=1.0)) == pytest.approx(expected, rel=1e-6)
    # threshold 0.5: 0.5 is kept (not below it): 1 - 0.5 - 0.5 log 2
    expected_half = (1 - math.log(2) + 0.5 - 0.5 * math.log(2)) / 3
    assert float(losses.poisson_deviance(pred, meas, threshold=0.5)) == pytest.approx(expected_half, rel=1e-6)
    # threshold 2: the count 1 is zeroed too -> 2 - 0 = 2
    assert float(losses.poisson_deviance(pred, meas, threshold=2.0)) == pytest.approx((2 + 1 + 0) / 3, rel=1e-6)
    # a zero prediction of a non-zero count costs n (log n - log EPS) - n
    big = float(losses.poisson_deviance(torch.tensor([0.0]), torch.tensor([2.0])))
    assert big == pytest.approx(-2 - 2 * (math.log(1e-8) - math.log(2)), rel=1e-5)
    assert losses.EPS == 1e-8
    # unmeasured (NaN) pixels and weights
    meas_nan = torch.tensor([1.0, nan, 3.0])
    assert float(losses.poisson_deviance(pred, meas_nan)) == pytest.approx((1 - math.log(2)) / 2, rel=1e-6)
    w = torch.tensor([3.0, 1.0, 0.0])
    assert float(losses.poisson_deviance(pred, meas, weight=w)) == pytest.approx(
        (3 * (1 - math.log(2)) + 1) / 4, rel=1e-6)
    assert float(losses.diffraction_loss("poisson", pred, meas, 0.5, w)) == pytest.approx(
        (3 * (1 - math.log(2)) + 0.5 - 0.5 * math.log(2)) / 4, rel=1e-6)


def test_mae_and_sqrt_mse_by_hand():
    pred = torch.tensor([[4.0, 9.0], [0.0, 1.0]])
    meas = torch.tensor([[1.0, 4.0], [4.0, nan]])
    assert float(losses.mae(pred, meas)) == pytest.approx((3 + 5 + 4) / 3)
    assert float(losses.mae(pred, torch.nan_to_num(meas))) == pytest.approx((3 + 5 + 4 + 1) / 4)
    w = torch.tensor([[1.0, 0.0], [2.0, 1.0]])
    assert float(losses.mae(pred, meas, w)) == pytest.approx((3 + 2 * 4) / 3)
    # moduli: (2 - 1)^2, (3 - 2)^2, (sqrt(EPS) - 2)^2 = (1e-4 - 2)^2
    zero = (1e-4 - 2) ** 2
    assert float(losses.sqrt_mse(pred, meas)) == pytest.approx((1 + 1 + zero) / 3, rel=1e-6)
    assert float(losses.sqrt_mse(pred, meas, w)) == pytest.approx((1 + 2 * zero) / 3, rel=1e-6)
    # a negative count (e.g. after background subtraction) counts as 0
    assert float(losses.sqrt_mse(torch.tensor([4.0]), torch.tensor([-1.0]))) == pytest.approx(4.0, rel=1e-5)
    # the EPS under the root keeps the gradient finite at a zero prediction
    p = torch.zeros(3, requires_grad=True)
    losses.sqrt_mse(p, torch.ones(3)).backward()
    assert torch.isfinite(p.grad).all()
    assert float(losses.sqrt_mse(torch.zeros(1), torch.zeros(1))) == pytest.approx(1e-8, rel=1e-3)
    assert float(losses.diffraction_loss("mae", pred, meas)) == pytest.approx(4.0)
    assert float(losses.diffraction_loss("sqrt_mse", pred, meas)) == pytest.approx((2 + zero) / 3, rel=1e-6)
    assert float(losses.diffraction_loss("sqrt_mse", pred, meas, weight=w)) == pytest.approx((1 + 2 * zero) / 3, rel=1e-6)
    assert float(losses.diffraction_loss("mae", pred, meas, weight=w)) == pytest.approx(11 / 3)


def test_total_variation_3d_by_hand():
    obj = torch.zeros(1, 2, 2, 3, dtype=torch.complex64)
    obj[0, 0] = torch.tensor([[0, 1, 3], [0, 1, 3]])  # x steps 1, 2; no y change
    obj[0, 1] = torch.tensor([[0, 1, 3], [1j, 1 + 1j, 3 + 1j]])  # y steps of modulus 1
    # dy: frame 0 -> 0 x 3, frame 1 -> 1 x 3: mean 0.5
    # dx: both frames: |1|, |2| per row: mean 1.5
    # dt: frame 1 - frame 0: row 0: 0, row 1: 1j: mean 0.5
    assert float(losses.total_variation_3d(obj)) == pytest.approx((0.5 + 1.5 + 0.5) / 3)
    single = obj[:, :1]
    assert float(losses.total_variation_3d(single)) == pytest.approx((0.0 + 1.5) / 3)  # no time term, still / 3
    batch = torch.cat([obj, 2 * obj])
    assert float(losses.total_variation_3d(batch)) == pytest.approx(1.5 * (0.5 + 1.5 + 0.5) / 3)


def test_weighted_mean_with_small_weights_and_default_threshold():
    # weights summing to less than 1 are a proper weighted mean (the clamp only guards against 0)
    assert float(losses._mean(torch.tensor([2.0, 4.0]), torch.tensor([0.25, 0.25]))) == pytest.approx(3.0)
    assert float(losses.mae(torch.tensor([2.0, 4.0]), torch.zeros(2), torch.tensor([0.1, 0.3]))) == pytest.approx(3.5)
    # the default threshold of diffraction_loss is 1 count: 1.5 counts stay, 0.5 are zeroed
    pred, meas = torch.tensor([2.0, 1.0]), torch.tensor([1.5, 0.5])
    assert float(losses.diffraction_loss("poisson", pred, meas)) == pytest.approx(
        float(losses.poisson_deviance(pred, meas, 1.0)), rel=1e-7)
    assert float(losses.diffraction_loss("poisson", pred, meas)) != pytest.approx(
        float(losses.poisson_deviance(pred, meas, 2.0)), rel=1e-3)


def test_total_variation_uses_every_neighbour_pair():
    # 3 frames of 3 x 3: steps differ between neighbour pairs, so dropping any pair changes the value
    obj = torch.zeros(1, 3, 3, 3, dtype=torch.complex64)
    obj[0, :, 1, :] = 1.0  # rows 0 -> 1: +1, rows 1 -> 2: -1
    obj[0, :, 2, :] = 3.0  # rows 1 -> 2: +2
    obj[0, 1] *= 1.5  # frames scale by 1, 1.5, 2
    obj[0, 2] *= 2.0
    a = obj.numpy()
    dy = np.abs(np.diff(a, axis=-2)).mean()
    dx = np.abs(np.diff(a, axis=-1)).mean()
    dt = np.abs(np.diff(a, axis=-3)).mean()
    assert dy > 0 and dt > 0 and dx == 0
    assert float(losses.total_variation_3d(obj)) == pytest.approx((dy + dx + dt) / 3, rel=1e-6)
    # by hand: dy per frame = (1 + 2) x 3 / 6 = 1.5 times the frame's scale (1, 1.5, 2) -> 2.25
    assert dy == pytest.approx(2.25)
    # dt: consecutive frames differ by 0.5 x (0, 1, 3) per row -> mean 0.5 x 4 / 3 (not frame 2 - frame 0)
    assert dt == pytest.approx(0.5 * 4 / 3)


def test_total_variation_3d_time_term_uses_consecutive_frames():
    # three constant frames 0, 1, 3: consecutive differences 1 and 2 (mean 1.5); no spatial change.
    # (Differences against the first frame would give 1 and 3: mean 2.)
    obj = torch.stack([torch.full((2, 2), v, dtype=torch.complex64) for v in (0.0, 1.0, 3.0)])[None]
    assert float(losses.total_variation_3d(obj)) == pytest.approx(1.5 / 3)
