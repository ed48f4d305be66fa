"""Fidelity experiments behind docs/fidelity.md: PID3Net variant x change -> phase SSIM, R_f, steps.

Trains on the quick benchmark's AuNP movie at the seed's dose (match_fluence) and records, every
``--eval-every`` epochs, the phase SSIM and R_f (against the full counts) of the current model, next to
the training-part R_f, the noise floor of the model's own prediction and the held-out Poisson NLL.
So one run gives the curve SSIM vs steps as well as the state the stopping rule keeps.

    python benchmarks/bench_fidelity.py --experiments po_old po_holdout nr_holdout --epochs 60

Writes benchmarks/results/fidelity_<tag>.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

import napari_cxdi.api as cx
from napari_cxdi.pid3net import PID3NetConfig, PID3NetTrainer, reconstruct_movie
from napari_cxdi.provenance import provenance
from napari_cxdi.simulate import simulate_aunp, simulate_test_chart

QUICK = dict(width=4, refine_width=8, batch_size=4, tv_weight=1.0, device="cpu", preview_every=0)
THESIS = dict(refine_mode="additive", refine_relaxation="none")  # the thesis' refinement block
NO_RULE = dict(holdout_fraction=0.0, noise_floor_margin=None)      # no held-out stopping, no floor check
EXPERIMENTS = {
    # name: (variant, overrides); every PO run uses K = 2 refinement steps (the quick size)
    "po_old": ("PID3Net-PO", dict(refine_steps=2, **THESIS, **NO_RULE)),
    "po_holdout": ("PID3Net-PO", dict(refine_steps=2, **THESIS)),
    "po_heldout_only": ("PID3Net-PO", dict(refine_steps=2, **THESIS, noise_floor_margin=None)),
    "nr_old": ("PID3Net-NR", dict(**NO_RULE)),
    "nr_holdout": ("PID3Net-NR", dict()),
    "nr_heldout_only": ("PID3Net-NR", dict(noise_floor_margin=None)),
    "po_relax_only": ("PID3Net-PO", dict(refine_steps=2, refine_mode="additive", refine_relaxation="poisson")),
    "po_bounded_only": ("PID3Net-PO", dict(refine_steps=2, **THESIS, alpha0=0.1, alpha_max=0.3)),
    "po_gated_classical": ("PID3Net-PO", dict(refine_steps=2, refine_mode="gated", refine_relaxation="none")),
    "po_gated": ("PID3Net-PO", dict(refine_steps=2, refine_mode="gated", refine_relaxation="poisson")),  # = default
    "po_gated_heldout_only": ("PID3Net-PO", dict(refine_steps=2, refine_mode="gated", refine_relaxation="poisson",
                                                 noise_floor_margin=None)),
    "po_gated_no_rule": ("PID3Net-PO", dict(refine_steps=2, refine_mode="gated", refine_relaxation="poisson", **NO_RULE)),
    "po_gated_bounded": ("PID3Net-PO", dict(refine_steps=2, alpha0=0.1, alpha_max=0.3)),
    # chart velocity (docs/fidelity.md): the thesis' zero padding of the time axis vs the default replicate padding
    "po_zero_padding": ("PID3Net-PO", dict(refine_steps=2, temporal_padding="zeros")),
    "nr_zero_padding": ("PID3Net-NR", dict(temporal_padding="zeros")),
    "po_zero_padding_no_rule": ("PID3Net-PO", dict(refine_steps=2, temporal_padding="zeros", **NO_RULE)),
    "po_gated_tol0": ("PID3Net-PO", dict(refine_steps=2, holdout_tol=0.0)),  # stop only when the held-out NLL rises
}


def run(name: str, sim, epochs: int, eval_every: int, seed: int, extra: dict | None = None) -> dict:
    variant, overrides = EXPERIMENTS[name]
    overrides = {**overrides, **(extra or {})}
    cfg = PID3NetConfig.variant(variant, **{**QUICK, **overrides, "epochs": epochs, "seed": seed})
    trainer = PID3NetTrainer(sim.counts, sim.probe, cfg)
    curve = []
    t0 = time.perf_counter()
    for event in trainer.run():
        if event["event"] == "epoch" and ((event["epoch"] + 1) % eval_every == 0):
            model = trainer.model
            trainer.calibrate_batchnorm()
            objects = reconstruct_movie(model, sim.counts)
            model.train()
            m = _evaluate(objects, sim)
            curve.append({"epoch": event["epoch"] + 1, "step": trainer.step, "phase_ssim": m.get("phase_ssim"), "rf": m["rf"],
                          "velocity_nm_s": m.get("velocity_nm_s"),
                          **{k: event.get(k) for k in ("rf_floor", "heldout_nll", "loss")}, "train_rf": event["rf"]})
            velocity = f" v {m['velocity_nm_s'][1]:.0f} nm/s" if "velocity_nm_s" in m else ""
            print(f"  {name} epoch {event['epoch'] + 1}: SSIM {m.get('phase_ssim', float('nan')):.3f} R_f {m['rf']:.3f}{velocity} "
                  f"(train {event['rf']:.3f}, floor {event['rf_floor']:.3f}) heldout {event.get('heldout_nll')}",
                  file=sys.stderr, flush=True)
    train_s = time.perf_counter() - t0
    objects = reconstruct_movie(trainer.model, sim.counts)
    m = _evaluate(objects, sim)
    return {"experiment": name, "variant": variant, "overrides": overrides, "seed": seed,
            "phase_ssim": m.get("phase_ssim"), "rf": m["rf"], "velocity_nm_s": m.get("velocity_nm_s"), "steps": trainer.step, "best_epoch": trainer.best_epoch,
            "stopped": trainer.stopped_reason, "training_s": train_s, "curve": curve, "history": trainer.history}


def _evaluate(objects, sim) -> dict:
    """evaluate() against the truth; the chart's velocity too (the simulation records a set velocity)."""
    interval = sim.metadata["frame_interval_s"] if "velocity_nm_s" in sim.metadata else None
    return cx.evaluate(objects, sim.counts, sim.probe, sim.pixel_size_nm, truth=sim.objects, frame_interval_s=interval)


def _write(args, argv, rows) -> None:
    from napari_cxdi.io.safe_write import write_json

    out = Path(__file__).parent / "results" / f"fidelity_{args.tag}.json"
    record = provenance(config={"command": "python benchmarks/" + Path(__file__).name + " " + " ".join(argv or sys.argv[1:]),
                                "case": args.case, "epochs": args.epochs, "frames": args.frames, "quick": QUICK},
                        metrics=rows)
    write_json(out, record, overwrite=True)


def _literal(text: str):
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiments", nargs="+", default=["po_old", "po_holdout"], choices=list(EXPERIMENTS))
    ap.add_argument("--case", default="aunp", choices=["aunp", "chart"])
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--eval-every", type=int, default=10)
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--tag", default="quick")
    ap.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                    help="PID3NetConfig overrides for every experiment, e.g. lr=3e-3 batch_size=1")
    args = ap.parse_args(argv)
    extra = {k: _literal(v) for k, v in (item.split("=", 1) for item in args.set)}
    torch.set_num_threads(1)
    rows = []
    for seed in args.seeds:
        simulate = simulate_aunp if args.case == "aunp" else simulate_test_chart
        sim = simulate(n_frames=args.frames, size=64, seed=seed, match_fluence=True)
        floor = cx.evaluate(sim.objects, sim.counts, sim.probe)["rf"]
        for name in args.experiments:
            row = run(name, sim, args.epochs, args.eval_every, seed, extra)
            row["rf_truth"] = floor
            rows.append(row)
            _write(args, argv, rows)  # after every experiment: a partial run keeps its numbers
            print(f"{name:22s} seed {seed} SSIM {row['phase_ssim'] or float('nan'):.3f} v {row['velocity_nm_s']} R_f {row['rf']:.3f} (truth {floor:.3f}) "
                  f"steps {row['steps']} best epoch {row['best_epoch']} {row['stopped']} {row['training_s']:.0f} s", flush=True)
    print(f"wrote fidelity_{args.tag}.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
