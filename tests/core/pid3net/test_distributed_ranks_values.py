"""pid3net/distributed.py, by value, for what only shows with more than one rank (issue 20): BatchNorm's running
variance over a global batch of two values, the global BatchNorm during a trainer's run, the metrics in nm, and
that only rank 0 reports. A gloo group of one rank; the other rank is simulated (see test_distributed_values)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.distributed as dist

from napari_cxdi.pid3net import distributed as D
from napari_cxdi.pid3net.config import PID3NetConfig

from test_distributed_values import TINY, _toy, _two_ranks, group  # noqa: F401  (group: a fixture)

torch.set_num_threads(1)


def _mirror_rank(monkeypatch):
    """The other rank holds -x: its count and centred square sums equal this rank's, its sum is the negative."""
    calls = []

    def other(t):
        calls.append(1)
        return -t if len(calls) % 3 == 2 else t.clone()  # all_reduce order per forward: count, sum, centred squares

    _two_ranks(monkeypatch, other=other)
    return calls


@pytest.mark.parametrize("momentum", [0.1, None])
def test_running_variance_of_a_global_batch_of_two_values_is_unbiased(group, monkeypatch, momentum):
    # one value per channel on each rank: the global batch [a, -a] has biased variance a^2 and unbiased 2 a^2
    calls = _mirror_rank(monkeypatch)
    torch.manual_seed(2)
    x = torch.randn(1, 3, 1, 1) + 1.0
    bn, ref = torch.nn.BatchNorm2d(3, momentum=momentum), torch.nn.BatchNorm2d(3, momentum=momentum)
    D.enable_global_batchnorm(bn)
    torch.testing.assert_close(bn(x), ref(torch.cat([x, -x]))[:1], rtol=1e-4, atol=1e-4)
    assert len(calls) == 3
    m = 0.1 if momentum else 1.0
    a2 = x.flatten() ** 2
    torch.testing.assert_close(bn.running_var, (1 - m) * torch.ones(3) + m * 2 * a2, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bn.running_var, ref.running_var, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bn.running_mean, torch.zeros(3), rtol=0, atol=1e-7)


@pytest.mark.filterwarnings("ignore:Grad strides do not match bucket view strides")  # DDP on a 1-rank group
def test_a_distributed_run_normalises_over_the_global_batch_and_restores_after(group):
    counts, probe = _toy()
    t = D.DistributedPID3NetTrainer(counts, probe, PID3NetConfig(**TINY))
    norms = [m for m in t.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and all("forward" not in m.__dict__ for m in norms)
    run = t.run()
    next(run)  # the first event: training has started
    assert all(m.__dict__["forward"].__func__ is D._global_batchnorm_forward for m in norms)
    for _ in run:
        pass
    assert all("forward" not in m.__dict__ for m in norms)


def test_metrics_of_a_distributed_reconstruction_are_in_the_movies_nm(group):
    from napari_cxdi.api import evaluate
    from napari_cxdi.io.movie import Movie

    counts, probe = _toy()
    over = {k: v for k, v in TINY.items() if k != "device"}
    truth = np.ones((5, 16, 16), np.complex64)
    rec = D.reconstruct_distributed(Movie(data=counts, metadata={"pixel_size_nm": 12.5}), probe, device="cpu",
                                    truth=truth, **over)
    assert rec.pixel_size_nm == 12.5
    want = evaluate(rec.objects, counts, probe, 12.5, truth)
    in_px = evaluate(rec.objects, counts, probe, None, truth)
    assert set(rec.metrics) == set(want) and set(want) != set(in_px)  # with a pixel size, resolutions are in nm
    for k, v in want.items():
        if isinstance(v, float):
            assert rec.metrics[k] == pytest.approx(v, rel=1e-6, nan_ok=True), k


def test_only_rank_zero_reports_and_returns(group, monkeypatch):
    counts, probe = _toy()
    over = {k: v for k, v in TINY.items() if k != "device"}
    monkeypatch.setattr(D, "init_process_group", lambda device="auto": (1, 1, "cpu"))  # this process is rank 1
    seen = []
    assert D.reconstruct_distributed(counts, probe, progress=seen.append, **over) is None
    assert seen == []
    monkeypatch.setattr(D, "init_process_group", lambda device="auto": (0, 1, "cpu"))
    assert D.reconstruct_distributed(counts, probe, progress=seen.append, evaluate_metrics=False, **over) is not None
    assert {e["stage"] for e in seen} == {"train", "inference"}
