"""Scaling benchmark: many movies on 1 and 2 local Dask workers, one movie's PID3Net training on 1 and 2 DDP
processes (gloo on CPU; NCCL on GPUs with --device cuda), and the scaling efficiency of each.

    python benchmarks/bench_scale.py --quick          # 2 CPU cores, a few minutes
    python benchmarks/bench_scale.py                  # larger movies and more epochs
    python benchmarks/bench_scale.py --device cuda    # >= 2 GPUs: one Dask worker / DDP rank per GPU (NCCL)

* batch: ``napari_cxdi.api.batch`` over N simulated movies with ``workers=1`` and ``workers=2``
  (LocalCluster, one thread per worker). Movies/hour is counted from the moment the cluster is up (the
  ``start`` event) to the last scan; the cluster start-up time is reported beside it.
* DDP: ``torchrun --nproc_per_node=P`` of a PID3Net training with the same *global* batch, P = 1, 2;
  steps/s from the trainer's own clock (start-up and data loading excluded).
* efficiency = (rate with 2) / (2 x rate with 1).

On a shared machine the numbers depend on the other jobs: the load average before and after each run is
stored in the JSON (``benchmarks/results/scale.json``, with the size used).
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

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from napari_cxdi.provenance import provenance  # noqa: E402

SIZES = {
    "quick": {"movies": 6, "frames": 12, "size": 32, "epochs": 2, "width": 4, "refine_steps": 1, "batch_size": 4,
              "ddp_frames": 24, "ddp_size": 32, "ddp_epochs": 2, "ddp_batch": 8},
    "full": {"movies": 12, "frames": 32, "size": 64, "epochs": 5, "width": 8, "refine_steps": 2, "batch_size": 4,
             "ddp_frames": 64, "ddp_size": 64, "ddp_epochs": 3, "ddp_batch": 8},
}

DDP_SCRIPT = '''
import json, sys, time
import torch
torch.set_num_threads(1)
from napari_cxdi.api import train
from napari_cxdi.simulate import simulate_aunp
from napari_cxdi.pid3net.distributed import rank, world_size
cfg = json.loads(sys.argv[2])
m = simulate_aunp(n_frames=cfg.pop("frames"), size=cfg.pop("size"), seed=0)
marks = {}
def record(e):
    if e.get("event") == "step":
        marks.setdefault("first", (e["step"], e["elapsed_s"]))
        marks["last"] = (e["step"], e["elapsed_s"])
train(m.counts, m.probe, progress=record, distributed=True, **cfg)
if rank() == 0:
    (s0, t0), (s1, t1) = marks["first"], marks["last"]
    json.dump({"world_size": world_size(), "steps": s1, "steps_per_s": (s1 - s0) / max(t1 - t0, 1e-9),
               "train_s": t1}, open(sys.argv[1], "w"))
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_batch(size: dict, workers: int, scans: Path, out: Path, device: str = "cpu") -> dict:
    from napari_cxdi.api import batch

    marks: dict = {}

    def record(event):
        marks.setdefault(event["event"], time.perf_counter())

    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    result = batch(str(scans / "*.cxi"), out, workers=workers, dashboard_address=":0", progress=record,
                   epochs=size["epochs"], width=size["width"], refine_steps=size["refine_steps"],
                   batch_size=size["batch_size"], seed=0, device=device)
    end = time.perf_counter()
    busy = end - marks["start"]
    return {"workers": workers, "movies": len(result.rows), "done": result.count("done"),
            "failed": result.count("failed"), "startup_s": marks["start"] - t0, "processing_s": busy,
            "total_s": end - t0, "movies_per_hour": len(result.rows) / busy * 3600,
            "mean_task_s": float(result.table["task_s"].mean()),
            "load_avg_before": load0, "load_avg_after": os.getloadavg()[0]}


def bench_ddp(size: dict, procs: int, workdir: Path, device: str) -> dict:
    script = workdir / "ddp_rank.py"
    script.write_text(DDP_SCRIPT)
    out = workdir / f"ddp_{procs}.json"
    cfg = {"frames": size["ddp_frames"], "size": size["ddp_size"], "epochs": size["ddp_epochs"],
           "batch_size": size["ddp_batch"], "width": size["width"], "refine_steps": size["refine_steps"],
           "seed": 0, "device": device, "preview_every": 0}
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={procs}",
                           f"--master_port={_free_port()}", str(script), str(out), json.dumps(cfg)],
                          env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    record = json.loads(out.read_text())
    record.update(total_s=time.perf_counter() - t0, global_batch=size["ddp_batch"],
                  load_avg_before=load0, load_avg_after=os.getloadavg()[0])
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small movies (2 CPU cores: a few minutes)")
    parser.add_argument("--device", default="cpu", help="DDP device: cpu (gloo) or cuda (NCCL, one GPU per process)")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    name = "quick" if args.quick else "full"
    size = SIZES[name]
    torch.set_num_threads(1)
    if args.device.startswith("cuda") and torch.cuda.device_count() < 2:
        raise SystemExit(f"the multi-GPU section needs 2 or more GPUs, {torch.cuda.device_count()} found; "
                         "run with --device cpu (gloo) instead")
    from napari_cxdi.io import write_cxi
    from napari_cxdi.simulate import simulate_aunp

    with tempfile.TemporaryDirectory(prefix="cxdi-scale-") as tmp:
        tmp = Path(tmp)
        scans = tmp / "scans"
        scans.mkdir()
        for i in range(size["movies"]):
            m = simulate_aunp(n_frames=size["frames"], size=size["size"], seed=i)
            write_cxi(scans / f"scan_{i:03d}.cxi", counts=m.counts, probe=m.probe,
                      metadata={k: v for k, v in m.metadata.items() if k != "config"})
        batch_runs = [bench_batch(size, w, scans, tmp / f"out_{w}", args.device) for w in (1, 2)]
        ddp_runs = [bench_ddp(size, p, tmp, args.device) for p in (1, 2)]
    eff_batch = batch_runs[1]["movies_per_hour"] / (2 * batch_runs[0]["movies_per_hour"])
    eff_ddp = ddp_runs[1]["steps_per_s"] / (2 * ddp_runs[0]["steps_per_s"])
    print(f"{'engine':<8} {'workers':>7} {'rate':>14} {'start-up s':>10} {'total s':>8} {'load':>5}")
    for r in batch_runs:
        print(f"{'dask':<8} {r['workers']:>7} {r['movies_per_hour']:>9.0f} mv/h {r['startup_s']:>10.1f} "
              f"{r['total_s']:>8.1f} {r['load_avg_before']:>5.1f}")
    for r in ddp_runs:
        print(f"{'ddp':<8} {r['world_size']:>7} {r['steps_per_s']:>8.3f} step/s {'':>10} {r['total_s']:>8.1f} "
              f"{r['load_avg_before']:>5.1f}")
    print(f"scaling efficiency (2 vs 1): batch {eff_batch:.2f}, DDP {eff_ddp:.2f}")
    note = (f"measured on {os.cpu_count()} CPU cores shared with other jobs (load averages stored per run); "
            "with 2 cores and other jobs running, 2 workers cannot reach 2x")
    print(note)
    record = provenance({"preset": name, **size, "device": args.device},
                        {"batch": batch_runs, "ddp": ddp_runs, "batch_efficiency": eff_batch, "ddp_efficiency": eff_ddp},
                        note=note, cpu_count=os.cpu_count(), cuda_devices=torch.cuda.device_count())
    out = args.output or ROOT / "benchmarks" / "results" / "scale.json"
    from napari_cxdi.io.safe_write import write_json

    write_json(out, record, overwrite=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
