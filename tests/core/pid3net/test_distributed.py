"""torch.distributed: DDP training over 2 gloo processes equals one process with the same global batch;
sharded inference equals one-process inference; rank 0 writes the checkpoint; training resumes from it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_cxdi.errors import ConfigError
from napari_cxdi.pid3net.distributed import init_process_group, shard_ranges

CFG = dict(epochs=2, width=4, frames=3, refine_steps=1, batch_size=5, seed=5, device="cpu", preview_every=0)
SRC = str(Path(__file__).resolve().parents[3] / "src")

RANK_SCRIPT = textwrap.dedent('''
    import json, sys
    import numpy as np, torch
    torch.set_num_threads(1)
    from napari_cxdi.api import train
    from napari_cxdi.simulate import simulate_aunp
    from napari_cxdi.pid3net.distributed import rank, sharded_reconstruct
    out, cfg = sys.argv[1], json.loads(sys.argv[2])
    m = simulate_aunp(n_frames=8, size=32, seed=1)
    losses = []
    record = lambda e: losses.append(e["loss"]) if e.get("event") == "step" else None
    model = train(m.counts, m.probe, checkpoint=out + "/model.pt", progress=record, **cfg)   # DDP: WORLD_SIZE=2
    objects = sharded_reconstruct(model, m.counts, batch_size=2, stride=1)
    resumed = train(m.counts, m.probe, model=out + "/model.pt", checkpoint=out + "/resumed.pt", epochs=1)
    if rank() == 0:
        np.savez(out + "/rank0.npz", losses=np.array(losses), objects=objects)
    else:
        assert objects is None
''')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    import json

    out = tmp_path_factory.mktemp("ddp")
    script = out / "rank.py"
    script.write_text(RANK_SCRIPT)
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
           str(script), str(out), json.dumps(CFG)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


@pytest.fixture(scope="module")
def single(ddp_run):
    from napari_cxdi.api import train
    from napari_cxdi.simulate import simulate_aunp

    m = simulate_aunp(n_frames=8, size=32, seed=1)
    losses = []
    model = train(m.counts, m.probe, progress=lambda e: losses.append(e["loss"]) if e.get("event") == "step" else None,
                  distributed=False, **CFG)
    return m, model, np.array(losses)


def test_ddp_loss_curve_equals_single_process_with_the_same_global_batch(ddp_run, single):
    _, _, losses = single
    ddp = np.load(ddp_run / "rank0.npz")["losses"]
    # 6 windows, global batch 5: steps of 5 windows (3 + 2 per rank: unequal shares, weighted losses) and of
    # 1 window (fewer than the ranks: computed whole on both), 2 epochs
    assert len(losses) == len(ddp) == 4
    np.testing.assert_allclose(ddp, losses, rtol=1e-5)
    assert losses[-1] < losses[0]  # it trains


def test_ddp_model_reconstructs_like_the_single_process_model(ddp_run, single):
    from napari_cxdi.pid3net import load_checkpoint
    from napari_cxdi.pid3net.inference import reconstruct_movie

    m, model, _ = single
    ddp_model, payload = load_checkpoint(ddp_run / "model.pt", "cpu")
    assert payload["provenance"]["world_size"] == 2 and len(payload["history"]) == 2
    # Biases right before a BatchNorm get zero gradients up to rounding, which Adam turns into +-lr steps,
    # so compare what the models compute, not those parameters.
    a, b = reconstruct_movie(model, m.counts), reconstruct_movie(ddp_model, m.counts)
    np.testing.assert_allclose(np.angle(a), np.angle(b), atol=2e-3)
    np.testing.assert_allclose(np.abs(a), np.abs(b), atol=2e-3)


def test_sharded_inference_equals_single_process_inference(ddp_run, single):
    from napari_cxdi.pid3net import load_checkpoint
    from napari_cxdi.pid3net.inference import reconstruct_movie

    m, _, _ = single
    ddp_model, _ = load_checkpoint(ddp_run / "model.pt", "cpu")
    sharded = np.load(ddp_run / "rank0.npz")["objects"]
    # stride 1: every frame averaged over overlapping windows, across the two ranks' frame ranges
    np.testing.assert_array_equal(sharded, reconstruct_movie(ddp_model, m.counts, batch_size=2, stride=1))


def test_resume_continues_from_the_rank0_checkpoint(ddp_run):
    from napari_cxdi.pid3net import load_checkpoint

    _, payload = load_checkpoint(ddp_run / "resumed.pt", "cpu")
    first = load_checkpoint(ddp_run / "model.pt", "cpu")[1]
    assert len(payload["history"]) == 3 and payload["history"][:2] == first["history"]
    assert payload["optimizer"] is not None


def test_shard_ranges_cover_everything_in_order():
    for n in range(0, 12):
        for world in (1, 2, 3, 5):
            ranges = shard_ranges(n, world)
            assert [i for r in ranges for i in r] == list(range(n))
            assert max(map(len, ranges)) - min(map(len, ranges)) <= 1


def test_distributed_without_torchrun_is_a_clear_error(monkeypatch):
    for key in ("WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    if torch.distributed.is_initialized():
        pytest.skip("a process group is already initialised")
    with pytest.raises(ConfigError, match="torchrun"):
        init_process_group("cpu")
