"""Value tests of pid3net/distributed.py in one process (issue 20, mutation testing; the 2-process DDP checks are in
test_distributed.py): a real gloo group of one rank for the process-group helpers, training and inference, and
a simulated second rank (dist.get_rank / get_world_size / all_reduce replaced for the test) for sharding, the
loss weights, the averaged values and BatchNorm over the global batch.
"""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist

from napari_cxdi.errors import ConfigError, OutputExistsError
from napari_cxdi.pid3net import distributed as D
from napari_cxdi.pid3net.config import PID3NetConfig
from napari_cxdi.pid3net.train import PID3NetTrainer

torch.set_num_threads(1)

TINY = dict(width=2, refine_width=2, refine_steps=1, frames=2, batch_size=4, device="cpu", epochs=1, preview_every=0,
            holdout_fraction=0.0, noise_floor_margin=None, lr=1e-3, seed=3)
ENV = ("WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK")


def _toy(n=5, size=16, seed=0):
    yy, xx = np.mgrid[:size, :size] - size / 2
    probe = (np.exp(-(yy**2 + xx**2) / 10.0) * 4).astype(np.complex64)[None]
    rng = np.random.default_rng(seed)
    counts = rng.poisson(20 * np.exp(-(yy**2 + xx**2) / 8.0), size=(n, size, size)).astype(np.float32)
    return counts, probe


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def group(monkeypatch):
    """A gloo process group of one rank for this test only (torchrun's environment)."""
    if dist.is_initialized():
        pytest.skip("a process group is already initialised")
    for key, value in (("WORLD_SIZE", "1"), ("RANK", "0"), ("MASTER_ADDR", "127.0.0.1"),
                       ("MASTER_PORT", str(_free_port())), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(key, value)
    assert D.init_process_group("cpu") == (0, 1, "cpu")
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


def _two_ranks(monkeypatch, rank=0, other=None):
    """Pretend to be ``rank`` of 2: all_reduce adds ``other(t)`` (default: the same values) to the tensor."""
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 2)
    monkeypatch.setattr(dist, "get_rank", lambda group=None: rank)

    def all_reduce(t, *args, **kwargs):
        t.add_(other(t) if other is not None else t.clone())

    monkeypatch.setattr(dist, "all_reduce", all_reduce)


# -- without a process group -------------------------------------------------------------------------------

def test_torchrun_environment(monkeypatch):
    for key in ENV:
        monkeypatch.delenv(key, raising=False)
    assert D.launched_by_torchrun() is False and D.rank() == 0 and D.world_size() == 1
    for value, expected in (("2", True), ("1", False), ("0", False), ("two", False)):
        monkeypatch.setenv("WORLD_SIZE", value)
        assert D.launched_by_torchrun() is expected
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.setenv("RANK", "0")
    if dist.is_initialized():
        pytest.skip("a process group is already initialised")
    with pytest.raises(ConfigError) as err:
        D.init_process_group("cpu")
    assert str(err.value) == ("distributed training needs the environment set by torchrun (missing WORLD_SIZE, "
                              "MASTER_ADDR, MASTER_PORT); launch e.g. `torchrun --nproc_per_node=2 -m napari_cxdi train ...`")
    with pytest.raises(ConfigError, match=r"^DistributedPID3NetTrainer needs an initialised process group \(see init_process_group\)$"):
        D.DistributedPID3NetTrainer(*_toy(), PID3NetConfig(**TINY))
    with pytest.raises(ConfigError, match=r"^sharded inference needs an initialised process group"):
        next(D.iter_sharded_reconstruct(None, _toy()[0]))
    D.shutdown()  # harmless without a group


def test_shard_ranges_by_value():
    assert D.shard_ranges(5, 2) == [range(0, 2), range(2, 5)]
    assert D.shard_ranges(7, 3) == [range(0, 2), range(2, 5), range(5, 7)]
    assert D.shard_ranges(1, 2) == [range(0, 0), range(0, 1)]
    assert D.shard_ranges(4, 1) == [range(0, 4)]


# -- a real group of one rank --------------------------------------------------------------------------------

def test_group_of_one(group):
    assert dist.is_initialized() and dist.get_backend() == "gloo"
    assert (D.rank(), D.world_size()) == (0, 1) and D._comm_device() == torch.device("cpu")
    assert D.init_process_group("cpu") == (0, 1, "cpu")  # joined once: the second call only reports
    assert D.init_process_group() == (0, 1, "cpu")  # auto: the CPU on a machine without CUDA
    assert D.broadcast_seed(5) == 5 and D.broadcast_seed(0) == 0
    drawn = {D.broadcast_seed(None) for _ in range(20)}
    assert all(0 <= s < 2**31 for s in drawn) and len(drawn) > 1 and max(drawn) > 2**20
    x = torch.tensor([1.0, -2.0], requires_grad=True)
    y = D.all_reduce(x * 3)
    assert torch.equal(y.detach(), torch.tensor([3.0, -6.0]))
    y.sum().backward()
    assert torch.equal(x.grad, torch.tensor([3.0, 3.0]))
    D.shutdown()
    assert not dist.is_initialized()


def test_one_rank_trains_like_one_process(group):
    counts, probe = _toy()
    cfg = PID3NetConfig(**{**TINY, "epochs": 2, "batch_size": 2})
    plain = PID3NetTrainer(counts, probe, cfg)
    ddp = D.DistributedPID3NetTrainer(counts, probe, cfg)
    assert (ddp.rank, ddp.world_size, ddp.config.seed) == (0, 1, 3)
    assert ddp.ddp.predicted_intensity.__self__ is ddp.model and ddp.ddp.config is ddp.model.config
    with pytest.raises(AttributeError):
        ddp.ddp.no_such_attribute
    a, b = list(plain.run()), list(ddp.run())
    la = [e["loss"] for e in a if e["event"] == "step"]
    lb = [e["loss"] for e in b if e["event"] == "step"]
    np.testing.assert_allclose(lb, la, rtol=1e-5)
    np.testing.assert_allclose([h["rf"] for h in ddp.history], [h["rf"] for h in plain.history], rtol=1e-5)
    # the BatchNorm modules are plain again after the run
    assert not any("forward" in m.__dict__ for m in ddp.model.modules())
    # no seed: one is drawn and used
    drawn = D.DistributedPID3NetTrainer(counts, probe, cfg.with_(seed=None))
    assert isinstance(drawn.config.seed, int) and 0 <= drawn.config.seed < 2**31


def test_one_rank_sharded_inference_equals_one_process(group):
    from napari_cxdi.pid3net.inference import reconstruct_movie
    from napari_cxdi.pid3net.model import PID3Net

    counts, probe = _toy(n=7)
    torch.manual_seed(0)
    model = PID3Net(PID3NetConfig(**TINY), probe)
    events = []
    gen = D.iter_sharded_reconstruct(model, counts, batch_size=2, stride=1)
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            out = stop.value
            break
    # 6 windows of stride 1, batches of 2: 3 batches, all on rank 0
    assert events == [{"event": "progress", "done": k, "total": 3, "rank": 0} for k in (1, 2, 3)]
    np.testing.assert_array_equal(out, reconstruct_movie(model, counts, batch_size=2, stride=1))
    np.testing.assert_array_equal(D.sharded_reconstruct(model, counts, batch_size=3),
                                  reconstruct_movie(model, counts, batch_size=3))


def test_one_rank_train_distributed_writes_and_resumes(group, tmp_path):
    from napari_cxdi.pid3net.checkpoint import load_checkpoint

    counts, probe = _toy()
    seen = []
    out = tmp_path / "m.pt"
    over = {k: v for k, v in TINY.items() if k != "device"}
    model = D.train_distributed(counts, probe, checkpoint=out, progress=seen.append, device="cpu", **over)
    loaded, payload = load_checkpoint(out, "cpu")
    assert payload["provenance"]["world_size"] == 1 and len(payload["history"]) == 1 and payload["optimizer"]
    assert [e["event"] for e in seen][0] == "start" and seen[-1]["event"] == "done"
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    with pytest.raises(OutputExistsError, match="exists"):
        D.train_distributed(counts, probe, checkpoint=out, device="cpu", **over)
    # resuming from the checkpoint into itself: allowed, the history goes on
    D.train_distributed(counts, probe, checkpoint=out, model=out, device="cpu")
    assert len(load_checkpoint(out, "cpu")[1]["history"]) == 2
    assert D._same(str(out), str(out)) and not D._same(str(out), None) and not D._same(str(out), model)
    assert not D._same(str(tmp_path / "new.pt"), str(out))


# -- a simulated second rank ---------------------------------------------------------------------------------

def test_shares_and_weights_of_a_global_batch(group, monkeypatch):
    counts, probe = _toy()
    t = D.DistributedPID3NetTrainer(counts, probe, PID3NetConfig(**TINY))
    _two_ranks(monkeypatch, rank=1)
    t.rank, t.world_size = 1, 2
    local, w = t.shard(np.array([4, 0, 3, 1, 2]))
    assert local.tolist() == [1, 2] and w == pytest.approx(2 * 2 / 5)
    t.rank = 0
    local, w = t.shard([4, 0, 3, 1, 2])
    assert local.tolist() == [4, 0, 3] and w == pytest.approx(3 * 2 / 5)
    local, w = t.shard(np.array([3]))  # fewer windows than ranks: every rank computes the whole batch
    assert local.tolist() == [3] and w == 1.0
    local, w = t.shard(np.array([3, 1]))
    assert local.tolist() == [3] and w == 1.0
    # the loss terms are weighted by the share
    batch = t.windows.batch([0, 1])
    t._scale = 1.0
    plain = {k: v.detach() for k, v in t.loss_terms(batch).items()}
    for scale in (0.5, 2.0):
        t._scale = scale
        half = t.loss_terms(batch)
        for k in ("loss", "diffraction", "tv"):
            torch.testing.assert_close(half[k].detach(), scale * plain[k])
    torch.testing.assert_close(half["predicted"].detach(), plain["predicted"])


def test_step_values_are_weighted_and_averaged_over_the_ranks(group, monkeypatch):
    counts, probe = _toy()
    t = D.DistributedPID3NetTrainer(counts, probe, PID3NetConfig(**TINY))
    seen = []

    def local_step(self, starts):
        seen.append((list(starts), self._scale))
        return {"loss": 2.0, "diffraction_loss": 1.5, "tv": 0.5, "rf": 0.4, "rf_floor": 0.2, "heldout_nll": 3.0}, ["w"]

    monkeypatch.setattr(PID3NetTrainer, "_train_step", local_step)
    other = {"heldout_nll": 1.0, "diffraction_loss": 0.5, "loss": 1.0, "rf": 0.2, "rf_floor": 0.6, "tv": 0.5}
    keys = sorted(other)
    _two_ranks(monkeypatch, rank=0, other=lambda x: torch.tensor([other[k] for k in keys], dtype=x.dtype))
    t.rank, t.world_size, t.batch_size = 0, 2, 4
    values, warnings = t._train_step(np.array([3, 2, 1, 0, 4]))
    # this rank: the first 2 of the batch's 4 windows, weight 2 x 2 / 4 = 1; loss terms are weighted already
    assert seen == [([3, 2], 1.0)] and warnings == ["w"]
    assert values == pytest.approx({"loss": 1.5, "diffraction_loss": 1.0, "tv": 0.5, "rf": 0.3, "rf_floor": 0.4,
                                    "heldout_nll": 2.0})
    t.batch_size = 3  # 3 windows: this rank 2 of them, weight 2 x 2 / 3
    seen.clear()
    values, _ = t._train_step(np.array([3, 2, 1, 0, 4]))
    w = 4 / 3
    assert seen == [([3, 2], pytest.approx(w))]
    assert values["rf"] == (0.4 * w + 0.2) / 2 and values["loss"] == (2.0 + 1.0) / 2  # exact: summed in float64
    assert values["heldout_nll"] == pytest.approx((3.0 * w + 1.0) / 2)


def test_batchnorm_over_the_global_batch(group, monkeypatch):
    torch.manual_seed(0)
    x = torch.randn(3, 4, 5, 6) * 2 + 1
    _two_ranks(monkeypatch)  # the other rank holds the same batch: the global batch is [x, x]
    for momentum, affine in ((0.1, True), (None, False)):
        bn = torch.nn.BatchNorm2d(4, momentum=momentum, affine=affine)
        ref = torch.nn.BatchNorm2d(4, momentum=momentum, affine=affine)
        if affine:
            with torch.no_grad():
                for m in (bn, ref):
                    m.weight.copy_(torch.tensor([1.0, 2.0, 0.5, -1.0]))
                    m.bias.copy_(torch.tensor([0.0, 1.0, -1.0, 3.0]))
        restore = D.enable_global_batchnorm(bn)
        assert "forward" in bn.__dict__
        for _ in range(2):
            y = bn(x)
            want = ref(torch.cat([x, x]))[:3]
            torch.testing.assert_close(y, want, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(bn.running_mean, ref.running_mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(bn.running_var, ref.running_var, rtol=1e-5, atol=1e-6)
        assert int(bn.num_batches_tracked) == 2
        bn.eval()
        ref.eval()
        torch.testing.assert_close(bn(x), ref(x))
        assert D.enable_global_batchnorm(bn)  # already patched: not patched twice
        restore()
        assert "forward" not in bn.__dict__
    # gradients flow through the global statistics as through one BatchNorm of the global batch
    bn, ref = torch.nn.BatchNorm2d(4), torch.nn.BatchNorm2d(4)
    D.enable_global_batchnorm(bn)
    w = torch.randn(x.shape)
    xa = x.clone().requires_grad_(True)
    x0, x1 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    (bn(xa) * w).pow(2).sum().backward()  # this rank's loss; the other rank's is the same
    (ref(torch.cat([x0, x1])) * torch.cat([w, w])).pow(2).sum().backward()
    torch.testing.assert_close(xa.grad, x0.grad, rtol=1e-4, atol=1e-5)
    assert float(x0.grad.abs().max()) > 1e-2  # a gradient worth comparing
    # no running statistics tracked: only the normalisation
    free = torch.nn.BatchNorm2d(4, track_running_stats=False)
    D.enable_global_batchnorm(free)
    torch.testing.assert_close(free(x), torch.nn.functional.batch_norm(x, None, None, training=True), rtol=1e-5, atol=1e-5)


def test_one_rank_reconstruct_distributed(group, tmp_path):
    from napari_cxdi.pid3net.checkpoint import load_checkpoint, save_checkpoint
    from napari_cxdi.pid3net.inference import reconstruct_movie

    counts, probe = _toy()
    over = {k: v for k, v in TINY.items() if k != "device"}
    with pytest.raises(ConfigError, match=r"^mf-PIE runs on one process; the distributed reconstruction is for PID3Net "
                                          r"\(PID3Net-PO, PID3Net-MAE, PID3Net-NR\) - use napari-cxdi batch"):
        D.reconstruct_distributed(counts, probe, method="mf-PIE")
    seen = []
    rec = D.reconstruct_distributed(counts, probe, progress=seen.append, device="cpu", evaluate_metrics=False, **over)
    assert rec.method == "PID3Net-PO" and rec.config["world_size"] == 1 and rec.config["method"] == "PID3Net-PO"
    assert set(rec.timings) == {"training_s", "inference_s"} and len(rec.history) == 1 and rec.metrics == {}
    np.testing.assert_array_equal(rec.objects, reconstruct_movie(rec.model, counts))
    stages = [e["stage"] for e in seen]
    assert stages[0] == "train" and stages[-1] == "inference" and "evaluate" not in stages
    # a given model without training: inference only, the checkpoint's history kept
    path = save_checkpoint(tmp_path / "m.pt", rec.model, rec.history)
    again = D.reconstruct_distributed(counts, probe, model=str(path), train=False, device="cpu", inference_stride=1)
    assert "training_s" not in again.timings and again.history == load_checkpoint(path, "cpu")[1]["history"]
    np.testing.assert_array_equal(again.objects, reconstruct_movie(load_checkpoint(path, "cpu")[0], counts, stride=1))
    assert set(again.metrics) and again.source is None


def test_simulated_ranks_send_and_gather_their_frame_ranges(group, monkeypatch):
    from napari_cxdi.pid3net.inference import reconstruct_movie
    from napari_cxdi.pid3net.model import PID3Net

    counts, probe = _toy(n=7)
    torch.manual_seed(0)
    model = PID3Net(PID3NetConfig(**TINY), probe)
    monkeypatch.setattr(dist, "barrier", lambda *a, **k: None)
    # 6 windows (stride 1), batches of 2: chunks 0..2; rank 0 computes chunks 0 and 1, rank 1 chunk 2
    assert D.shard_ranges(3, 2) == [range(0, 2), range(2, 3)]
    model.eval()
    with torch.no_grad():
        expected = [model(torch.as_tensor(np.stack([counts[s:s + 2] for s in starts]))) for starts in ([4, 5],)]
    sent = []
    monkeypatch.setattr(dist, "send", lambda t, dst=None, **k: sent.append((t.clone(), dst)))
    _two_ranks(monkeypatch, rank=1)
    events = []
    gen = D.iter_sharded_reconstruct(model, counts, batch_size=2, stride=1)
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            assert stop.value is None  # only rank 0 returns the movie
            break
    assert events == [{"event": "progress", "done": 1, "total": 1, "rank": 1}]
    assert [d for _, d in sent] == [0]
    for (t, _), want in zip(sent, expected):
        assert t.dtype == torch.float32 and t.is_contiguous()
        torch.testing.assert_close(torch.view_as_complex(t), want)
    # rank 0 receives them in order and averages like one process
    received = iter(t for t, _ in sent)
    srcs = []

    def recv(buf, src=None, **k):
        srcs.append(src)
        buf.copy_(next(received))

    monkeypatch.setattr(dist, "recv", recv)
    _two_ranks(monkeypatch, rank=0)
    out = D.sharded_reconstruct(model, counts, batch_size=2, stride=1)
    assert srcs == [1]
    np.testing.assert_allclose(out, reconstruct_movie(model, counts, batch_size=2, stride=1), rtol=1e-6, atol=1e-7)


def test_train_distributed_checks_its_output_like_one_process(group, tmp_path, monkeypatch):
    from napari_cxdi.errors import OutputWriteError
    from napari_cxdi.pid3net.checkpoint import load_checkpoint

    counts, probe = _toy()
    over = {k: v for k, v in TINY.items() if k != "device"}
    movie = tmp_path / "movie.npy"
    np.save(movie, counts)
    np.save(tmp_path / "probe.npy", probe)
    with pytest.raises(OutputExistsError, match="this is an input of the run"):
        D.train_distributed(str(movie), str(tmp_path / "probe.npy"), checkpoint=movie, overwrite=True, device="cpu", **over)
    out = tmp_path / "m.pt"
    D.train_distributed(counts, probe, checkpoint=out, device="cpu", **over)
    D.train_distributed(counts, probe, checkpoint=out, overwrite=True, device="cpu", **over)  # replacing is asked
    D.train_distributed(counts, probe, checkpoint=out, checkpoint_every=1, device="cpu", **over)  # resumable: replaced
    assert load_checkpoint(out, "cpu")[1]["provenance"].get("partial") is None
    from napari_cxdi.io import safe_write

    monkeypatch.setattr(safe_write.os, "access", lambda *a, **k: False)
    with pytest.raises(OutputWriteError) as err:
        D.train_distributed(counts, probe, checkpoint=tmp_path / "n.pt", device="cpu", **over)
    assert str(err.value) == f"{tmp_path / 'n.pt'}: the folder {tmp_path} is not writable; choose another folder"


def test_train_distributed_resumes_with_the_optimiser_state(group, tmp_path):
    from napari_cxdi.pid3net.checkpoint import load_checkpoint

    counts, probe = _toy()
    over = {k: v for k, v in TINY.items() if k != "device"}
    out = tmp_path / "m.pt"
    D.train_distributed(counts, probe, checkpoint=out, device="cpu", **over)
    first, payload = load_checkpoint(out, "cpu")
    resumed = D.train_distributed(counts, probe, model=str(out), device="cpu")
    ref = PID3NetTrainer(counts, probe, first.config.with_(device="cpu"), model=first,
                         optimizer_state=payload["optimizer"]).train()
    for (k, a), b in zip(resumed.state_dict().items(), ref.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=k)


def test_rank_and_world_come_from_the_group(group, monkeypatch):
    t = torch.arange(6.0).reshape(2, 3).t()  # not contiguous: reduced as a contiguous copy
    torch.testing.assert_close(D.all_reduce(t), t)
    _two_ranks(monkeypatch, rank=1)
    assert (D.rank(), D.world_size()) == (1, 2)


def test_train_distributed_takes_detector_settings(group):
    counts, probe = _toy()
    over = {k: v for k, v in TINY.items() if k != "device"}
    model = D.train_distributed(np.repeat(np.repeat(counts, 2, 1), 2, 2), np.repeat(np.repeat(probe, 2, 1), 2, 2),
                                device="cpu", crop_size=16, **over)
    assert model.frame_size == 16  # the 32 px frames cropped to 16 px before training


def test_one_rank_reconstruct_distributed_inputs_resume_and_timings(group, tmp_path):
    import time

    from napari_cxdi.io.movie import Movie
    from napari_cxdi.pid3net.checkpoint import load_checkpoint, save_checkpoint
    from napari_cxdi.pid3net.inference import reconstruct_movie

    counts, probe = _toy()
    over = {k: v for k, v in TINY.items() if k != "device"}
    big = Movie(data=np.repeat(np.repeat(counts, 2, 1), 2, 2), metadata={"pixel_size_nm": 12.5})
    t0 = time.perf_counter()
    rec = D.reconstruct_distributed(big, np.repeat(np.repeat(probe, 2, 1), 2, 2), device="cpu", crop_size=16,
                                    evaluate_metrics=False, **over)
    wall = time.perf_counter() - t0
    assert rec.objects.shape == (5, 16, 16) and rec.model.frame_size == 16 and rec.probe.shape == (1, 16, 16)
    assert rec.pixel_size_nm == 25.0  # half the detector frame: twice the object pixel (dx = lambda z / (N p))
    assert 0 < rec.timings["training_s"] < wall and 0 < rec.timings["inference_s"] < wall
    # a given checkpoint is trained further from its weights and optimiser state, with its own settings
    path = save_checkpoint(tmp_path / "m.pt", rec.model, rec.history)
    first = D.train_distributed(counts, probe, checkpoint=tmp_path / "c.pt", device="cpu", **over)
    loaded, payload = load_checkpoint(tmp_path / "c.pt", "cpu")
    again = D.reconstruct_distributed(counts, probe, model=str(tmp_path / "c.pt"), device="cpu", evaluate_metrics=False)
    ref = PID3NetTrainer(counts, probe, loaded.config.with_(device="cpu"), model=loaded,
                         optimizer_state=payload["optimizer"]).train()
    np.testing.assert_allclose(again.objects, reconstruct_movie(ref, counts), rtol=1e-4, atol=1e-5)
    assert len(again.history) == 2 and first.frame_size == 16 and path.exists()


def test_trainer_arguments_pass_through_and_batchnorm_patching(group):
    from napari_cxdi.pid3net.model import PID3Net

    counts, probe = _toy()
    m = PID3NetTrainer(counts, probe, PID3NetConfig(**TINY)).model
    calls = []
    t = D.DistributedPID3NetTrainer(counts, model=m, preview_frame=3, on_checkpoint=calls.append)
    assert t.config == m.config.with_(seed=3) and t.preview_frame == 3 and t.on_checkpoint == calls.append
    assert D.DistributedPID3NetTrainer(counts, probe, PID3NetConfig(**TINY)).preview_frame == 0
    assert t.finish() is t.model and not t.model.training  # finishing before any run is fine
    # with held-out photons the held-out score of a step is reported too
    h = D.DistributedPID3NetTrainer(counts, probe, PID3NetConfig(**{**TINY, "holdout_fraction": 0.2}))
    values, _ = h._train_step(np.array([0, 1, 2, 3]))
    assert "heldout_nll" in values and values["heldout_nll"] > 0
    # only BatchNorm modules are patched, once; restoring twice is harmless
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 2, 1), torch.nn.BatchNorm2d(2))
    restore = D.enable_global_batchnorm(net)
    assert "forward" not in net[0].__dict__ and "forward" in net[1].__dict__
    again = D.enable_global_batchnorm(net)
    again()
    assert "forward" in net[1].__dict__  # the second call patched nothing, so undid nothing
    restore()
    restore()
    assert "forward" not in net[1].__dict__
    # the sharded iterator's default batch is 8 windows: 9 windows of stride 1 make 2 batches
    torch.manual_seed(0)
    model = PID3Net(PID3NetConfig(**TINY), probe)
    events = list(D.iter_sharded_reconstruct(model, _toy(n=10)[0], stride=1))
    assert [e["total"] for e in events] == [2, 2]


def test_same_checkpoint_only_when_both_name_one_file(tmp_path):
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    a.write_bytes(b"1")
    b.write_bytes(b"2")
    assert D._same(str(a), str(a)) and not D._same(str(a), str(b)) and not D._same(str(a), a.stat)


def test_batchnorm_statistics_of_small_and_changing_batches(group, monkeypatch):
    _two_ranks(monkeypatch)
    torch.manual_seed(1)
    for x_list in ([torch.randn(3, 4, 5, 6) * 0.01, torch.randn(3, 4, 5, 6) * 0.02 + 1],  # small variance: eps matters
                   [torch.randn(1, 4, 1, 1), torch.randn(1, 4, 1, 1)]):  # 2 values per channel in the global batch
        for momentum in (0.1, None):
            bn = torch.nn.BatchNorm2d(4, momentum=momentum)
            ref = torch.nn.BatchNorm2d(4, momentum=momentum)
            D.enable_global_batchnorm(bn)
            for x in x_list:
                torch.testing.assert_close(bn(x), ref(torch.cat([x, x]))[: len(x)], rtol=1e-3, atol=1e-4)
            torch.testing.assert_close(bn.running_mean, ref.running_mean, rtol=1e-5, atol=1e-7)
            torch.testing.assert_close(bn.running_var, ref.running_var, rtol=1e-5, atol=1e-7)


def test_train_distributed_writes_partial_checkpoints_every_n_epochs(group, tmp_path):
    from napari_cxdi.pid3net.checkpoint import load_checkpoint

    counts, probe = _toy()
    over = {k: v for k, v in {**TINY, "epochs": 3}.items() if k != "device"}
    out = tmp_path / "m.pt"
    seen = {}

    def progress(event):  # the checkpoint of epoch k is written after its event, so look at the next one
        if event["event"] == "epoch":
            seen[event["epoch"]] = load_checkpoint(out, "cpu")[1] if out.exists() else None

    D.train_distributed(counts, probe, checkpoint=out, progress=progress, checkpoint_every=2, device="cpu", **over)
    assert seen[0] is None and seen[1] is None  # (0 + 1) % 2 != 0: nothing after epoch 0
    part = seen[2]  # written after epoch 1
    assert part["provenance"]["partial"] is True and part["provenance"]["world_size"] == 1
    assert len(part["history"]) == 2 and part["optimizer"]
    final = load_checkpoint(out, "cpu")[1]
    assert final["provenance"].get("partial") is None and len(final["history"]) == 3


def test_reconstruct_distributed_source_evaluation_and_events(group, tmp_path):
    from napari_cxdi.api import evaluate

    counts, probe = _toy()
    over = {k: v for k, v in TINY.items() if k != "device"}
    path = tmp_path / "movie.npy"
    np.save(path, counts)
    seen = []
    truth = np.ones((5, 16, 16), np.complex64)
    rec = D.reconstruct_distributed(str(path), probe, progress=seen.append, device="cpu", truth=truth, **over)
    assert rec.source == str(path)
    assert {"stage": "evaluate", "event": "progress"} in seen
    want = evaluate(rec.objects, counts, probe, rec.pixel_size_nm, truth)
    assert set(rec.metrics) == set(want) and set(want) != set(evaluate(rec.objects, counts, probe, rec.pixel_size_nm))
    for k, v in want.items():
        if isinstance(v, float):
            assert rec.metrics[k] == pytest.approx(v, rel=1e-6, nan_ok=True), k


def test_detector_objects_default_config_and_checkpoint_period(group, tmp_path):
    from napari_cxdi.api import DetectorSettings
    from napari_cxdi.pid3net.checkpoint import load_checkpoint

    counts, probe = _toy()
    over = {k: v for k, v in TINY.items() if k != "device"}
    big, big_probe = np.repeat(np.repeat(counts, 2, 1), 2, 2), np.repeat(np.repeat(probe, 2, 1), 2, 2)
    det = DetectorSettings(crop_size=16)
    assert D.train_distributed(big, big_probe, detector=det, device="cpu", **over).frame_size == 16
    rec = D.reconstruct_distributed(big, big_probe, detector=det, device="cpu", evaluate_metrics=False, **over)
    assert rec.objects.shape == (5, 16, 16)
    assert D.DistributedPID3NetTrainer(counts, probe).config == PID3NetConfig().with_(seed=0)
    out = tmp_path / "m.pt"
    seen = []
    D.train_distributed(counts, probe, checkpoint=out, checkpoint_every=3, device="cpu",
                        progress=lambda e: seen.append(out.exists()) if e["event"] == "epoch" else None,
                        **{**over, "epochs": 3})
    assert seen == [False, False, False]  # the first partial checkpoint would follow epoch 3
    assert len(load_checkpoint(out, "cpu")[1]["history"]) == 3
