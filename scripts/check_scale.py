"""Acceptance check of the scale-out engines on the machine at hand (the multi-GPU section of the GPU checks).

    python scripts/check_scale.py --device cuda     # >= 2 GPUs: NCCL DDP over all GPUs, one Dask worker per GPU
    python scripts/check_scale.py --device cpu      # the same checks with gloo / CPU workers (2 processes)

1. DDP: ``torchrun --nproc_per_node=P`` PID3Net training (P = all GPUs, or 2 on CPU) against one process with
   the same global batch: the loss curves must agree (rtol 1e-5 on CPU, 1e-3 on GPU where cuDNN kernels
   differ with the batch size), and the sharded inference must equal the one-process inference of the DDP model.
2. Batch: 4 small movies with one Dask worker per GPU (``CUDA_VISIBLE_DEVICES`` pinned; 2 CPU workers on CPU)
   against the serial run (``workers=0``): statuses equal and reconstructions identical (max difference reported).

Prints PASS/FAIL per check, exits 1 on a failure, writes ``benchmarks/results/check_scale_<device>.json``.
With fewer than 2 GPUs and ``--device cuda`` it says so and exits 0 (nothing to check).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

CFG = dict(epochs=2, width=4, frames=3, refine_steps=1, batch_size=5, seed=5, preview_every=0, amp=False)

RANK_SCRIPT = '''
import json, sys
import numpy as np, torch
torch.set_num_threads(1)
from napari_cxdi.api import train
from napari_cxdi.simulate import simulate_aunp
from napari_cxdi.pid3net.distributed import rank, sharded_reconstruct
out, cfg = sys.argv[1], json.loads(sys.argv[2])
m = simulate_aunp(n_frames=16, size=32, seed=1)
losses = []
model = train(m.counts, m.probe, checkpoint=out + "/model.pt", distributed=True,
              progress=lambda e: losses.append(e["loss"]) if e.get("event") == "step" else None, **cfg)
objects = sharded_reconstruct(model, m.counts, batch_size=2, stride=1)
if rank() == 0:
    np.savez(out + "/rank0.npz", losses=np.array(losses), objects=objects)
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_ddp(device: str, procs: int, work: Path) -> dict:
    from napari_cxdi.api import train
    from napari_cxdi.pid3net import load_checkpoint
    from napari_cxdi.pid3net.inference import reconstruct_movie
    from napari_cxdi.simulate import simulate_aunp

    script = work / "rank.py"
    script.write_text(RANK_SCRIPT)
    cfg = {**CFG, "device": "auto" if device == "cuda" else "cpu"}
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={procs}",
                           f"--master_port={_free_port()}", str(script), str(work), json.dumps(cfg)],
                          env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"passed": False, "error": proc.stderr[-3000:]}
    ddp_s = time.perf_counter() - t0
    ran = np.load(work / "rank0.npz")
    m = simulate_aunp(n_frames=16, size=32, seed=1)
    single = []
    train(m.counts, m.probe, distributed=False,
          progress=lambda e: single.append(e["loss"]) if e.get("event") == "step" else None,
          **{**CFG, "device": "cuda:0" if device == "cuda" else "cpu"})
    rtol = 1e-5 if device == "cpu" else 1e-3
    loss_rel = float(np.max(np.abs(ran["losses"] - np.array(single)) / np.abs(np.array(single))))
    model, _ = load_checkpoint(work / "model.pt", "cuda:0" if device == "cuda" else "cpu")
    reference = reconstruct_movie(model, m.counts, batch_size=2, stride=1)
    inference_diff = float(np.abs(reference - ran["objects"]).max())
    passed = len(single) == len(ran["losses"]) and loss_rel <= rtol and inference_diff <= (0 if device == "cpu" else 1e-4)
    return {"passed": bool(passed), "processes": procs, "loss_max_rel_diff": loss_rel, "rtol": rtol,
            "sharded_inference_max_diff": inference_diff, "ddp_wall_s": ddp_s}


def check_batch(device: str, workers: int, work: Path) -> dict:
    import h5py

    from napari_cxdi.api import batch
    from napari_cxdi.io import write_cxi
    from napari_cxdi.simulate import simulate_aunp

    scans = work / "scans"
    scans.mkdir()
    for i in range(4):
        m = simulate_aunp(n_frames=8, size=32, seed=20 + i)
        write_cxi(scans / f"scan_{i}.cxi", counts=m.counts, probe=m.probe,
                  metadata={k: v for k, v in m.metadata.items() if k != "config"})
    options = {**CFG, "device": "auto" if device == "cuda" else "cpu"}
    serial = batch(str(scans / "*.cxi"), work / "serial", workers=0, **options)
    t0 = time.perf_counter()
    spread = batch(str(scans / "*.cxi"), work / "cluster", workers=workers, dashboard_address=":0", **options)
    wall = time.perf_counter() - t0
    diff = 0.0
    for row in serial.rows:
        name = Path(row["output"]).name if row["output"] else None
        if name:
            with h5py.File(work / "serial" / name) as a, h5py.File(work / "cluster" / name) as b:
                diff = max(diff, float(np.abs(a["entry_1/image_1/data"][()] - b["entry_1/image_1/data"][()]).max()))
    same_status = [r["status"] for r in serial.rows] == [r["status"] for r in spread.rows]
    workers_used = sorted({str(r["worker"]) for r in spread.rows})
    return {"passed": bool(same_status and serial.count("done") == 4 and diff == 0.0), "workers": workers_used,
            "max_abs_diff": diff, "cluster_wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_num_threads(1)
    n_gpus = torch.cuda.device_count() if args.device == "cuda" else 0
    if args.device == "cuda" and n_gpus < 2:
        print(f"multi-GPU checks skipped: {n_gpus} GPU(s) visible (run with --device cpu for the gloo checks)")
        return
    procs = n_gpus if args.device == "cuda" else 2
    results = {}
    with tempfile.TemporaryDirectory(prefix="cxdi-check-scale-") as tmp:
        (Path(tmp) / "ddp").mkdir()
        (Path(tmp) / "batch").mkdir()
        results["ddp"] = check_ddp(args.device, procs, Path(tmp) / "ddp")
        results["batch"] = check_batch(args.device, procs, Path(tmp) / "batch")
    for name, r in results.items():
        detail = {k: v for k, v in r.items() if k not in ("passed", "error")}
        print(f"{'PASS' if r['passed'] else 'FAIL'} {name}: {detail}")
        if "error" in r:
            print(r["error"])
    from napari_cxdi.io.safe_write import write_json
    from napari_cxdi.provenance import provenance

    out = ROOT / "benchmarks" / "results" / f"check_scale_{args.device}.json"
    write_json(out, provenance({"device": args.device, "processes": procs, **CFG}, results,
                               gpus=[torch.cuda.get_device_name(i) for i in range(n_gpus)]), overwrite=True)
    print(f"wrote {out}")
    sys.exit(0 if all(r["passed"] for r in results.values()) else 1)


if __name__ == "__main__":
    main()
