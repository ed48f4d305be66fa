#!/usr/bin/env python
"""Train the shipped SCANN+ deep ensemble on QM9 (HOMO and LUMO), calibrate it, fit its
applicability domain, and write ``sample_data/models/scann_qm9_ensemble.pt`` (+ ``.json``).

Everything is offline (QM9 from the ``qm9pack`` package) and seeded. The split is the seed's
(paper's) QM9 split sizes: 110,000 train / 10,000 validation / 10,831 test (seed 0). Each member is
one SCANN+ model predicting both targets, seeded ``seed + k``; a single cosine learning-rate cycle
over ``--epochs`` epochs. Voronoi features of all 130,831 molecules are computed once and cached
(``~/.cache/napari-cxdi/scann``), so later runs start training at once.

Stages (``--stage``): ``members`` trains the members that do not exist yet in ``--work-dir``
(re-runnable: finished members are kept), ``ensemble`` evaluates them on validation and test, fits
the sigma scale (validation), the domain thresholds (validation) and writes the ensemble; ``all``
does both.

The shipped (CPU) ensemble is a *snapshot ensemble*: one run, one L1-loss cosine from 1e-3 to 1e-5
over the first 70 % of a 63-minute wall-time budget, then three short cosine cycles (2e-4 -> 1e-5);
the model at the end of the main cosine and of each cycle is one member (4 members; sigma is their
spread, scaled on the 10,000 validation molecules). Independent members were not affordable: the
2-core machine was shared with ~7 other jobs (load average ~7, this process got ~40 % of one core,
~560 molecules/s, ~3.5 min per epoch, so the run saw ~18 epochs). It was warm-started from member 2
of the previously shipped ensemble (git a79a9ca; test MAE of that ensemble 114.7 / 153.8 meV), whose
lineage is: single-target models on the old box features (commit 83e1171), fine-tuned on the exact
features (see git history of this docstring). Exact commands (code at the commit the JSON names):

    git show a79a9ca:sample_data/models/scann_qm9_ensemble.pt > /tmp/s16/prev_ensemble.pt
    python scripts/train_scann_qm9.py --stage members --members 1 --epochs 200 --time-cosine \\
        --time-limit-min 63 --loss l1 --lr 1e-3 --lr-min 1e-5 --batch-size 128 --snapshots 3 \\
        --snapshot-fraction 0.3 --init-from /tmp/s16/prev_ensemble.pt@2 --jobs 1 --work-dir /tmp/s16/long
    python scripts/train_scann_qm9.py --stage ensemble --domain-structures 10000 --jobs 1 \\
        --work-dir /tmp/s16/long

The per-epoch "val MAE" in that run's log and learning curve is on the first 2,000 validation
molecules, which were the smallest (split parts are sorted; fixed since: a random 2,000): it read
63.6 / 85.4 meV at the end, while all 10,000 validation molecules give 75.1 / 87.6 and the test split
76.6 / 86.7. Learning curve of the run (minutes: val-2000 HOMO/LUMO meV): 3: 111/134, 10: 103/134,
18: 85/116, 23: 77/107, 28: 71/94, 38: 65/87, 44 (end of the main decay, snapshot 0): 66/88 (test
78/88), 50 (snapshot 1): 64/88, 57 (snapshot 2): 63/85, 63 (snapshot 3): 64/85. It was
still improving slowly when the budget ended (more epochs, independent members and the paper-size
network on a GPU are what remains).

The shipped ensemble is now a continuation of that run (issue 16; the machine nearly idle, ~1,300
molecules/s, ~75 s per epoch, 16 epochs): warm start from the member with the best validation MAE of the
63-minute ensemble (snapshot 2), a lower L1 cosine 3e-4 -> 1e-5 over 70 % of a 20-minute budget, then
three snapshot cycles (6e-5 -> 1e-5); the 4 snapshots are the members. It was shipped because its test
MAE is lower on both targets: test 73.5 / 83.1 meV (the 63-minute ensemble 76.6 / 86.7 on the same
10,831 molecules), all 10,000 validation molecules 71.6 / 84.2. Learning curve (minutes: random
val-2000 HOMO/LUMO meV): 1.4: 81/90, 6.4: 75/86, 12: 72/84, 14 (snapshot 0): 72/84, 20 (snapshot 3):
72/84 -- nearly flat at the end: more of the same gains little; a larger network or independent members
are what remains. The snapshots agree more than before (sigma's Spearman rank correlation with the
error fell from 0.14 / 0.13 to 0.06 / 0.04; its coverage stays 81 / 80 % within 1 sigma, 95 / 95 % within
2 sigma). Commands (trained at the commit the JSON names):

    python scripts/train_scann_qm9.py --stage members --members 1 --epochs 200 --time-cosine \\
        --time-limit-min 20 --loss l1 --lr 3e-4 --lr-min 1e-5 --batch-size 128 --snapshots 3 \\
        --snapshot-fraction 0.3 --init-from sample_data/models/scann_qm9_ensemble.pt@2 --threads 1 \\
        --jobs 1 --work-dir /tmp/t16/cont
    python scripts/train_scann_qm9.py --stage ensemble --domain-structures 10000 --jobs 1 \\
        --work-dir /tmp/t16/cont --out /tmp/t16/candidate.pt
    git show 1c5f047:sample_data/models/scann_qm9_ensemble.pt > /tmp/t16/shipped.pt   # the 63-minute one
    python benchmarks/bench_scann.py --model /tmp/t16/candidate.pt --skip invariance speed --jobs 1 \\
        --baseline /tmp/t16/shipped.pt --out /tmp/t16/bench_cand.json   # then copied in, full bench rerun

The shipped ensemble is now (sixth session) a further continuation: warm start from the best snapshot (3) of
that ensemble, a *higher* L1 cosine 5e-4 -> 1e-5 over 70 % of a 115-minute budget (the machine shared with three
mutation-testing helpers: ~48 epochs), then three snapshot cycles; the 4 snapshots are the members. Restarting
at a high rate (a warm restart, as the seed's Adam 5e-4 -> 1e-4 with restarts) left the plateau of the low-rate
continuation: random val-2000 HOMO/LUMO meV 79/98 after the first epoch, 71/83 at epoch 11, 68/80 at 14, 66/78
at 37, 65.9/77.4 at the last snapshot. Ensemble on all 10,000 validation molecules 66.1 / 77.9 (before 71.6 /
84.2), on the 10,831 test molecules **67.7 / 77.2** (before 73.5 / 83.1); pooling the old 4 members with the new
4 was worse on validation (68.0 / 80.0) and was not shipped. Commands (run from the repository at the commit the
JSON names; /work/scann_s7 is a scratch folder):

    python scripts/train_scann_qm9.py --stage members --members 1 --epochs 400 --time-cosine \\
        --time-limit-min 115 --loss l1 --lr 5e-4 --lr-min 1e-5 --batch-size 128 --snapshots 3 \\
        --snapshot-fraction 0.3 --init-from sample_data/models/scann_qm9_ensemble.pt@3 --threads 1 \\
        --jobs 1 --work-dir /work/scann_s7/run
    python scripts/train_scann_qm9.py --stage ensemble --domain-structures 10000 --jobs 1 \\
        --work-dir /work/scann_s7/run --out /work/scann_s7/new.pt

The 20-minute continuation gained 3 / 4 meV, this 115-minute one 6 / 6 meV (test); the goal (<= 60 / 60) needs
more of them (or the GPU recipe): the next one starts from this ensemble's snapshot 3 the same way.

The shipped ensemble is now (seventh session) the next such continuation: warm start from snapshot 3 of the
115-minute ensemble, the same L1 cosine 5e-4 -> 1e-5 over 70 % of a 110-minute budget and three snapshot cycles
(the machine shared with mutation runs on the other core; ~1,100 molecules/s, ~69 epochs). Random val-2000
HOMO/LUMO meV: 72/86 after the first epoch, 69/80 at epoch 12, 63/75 at 30, 62/72 at 36, 61/72 at the end of the
main decay (snapshot 0, epoch ~47), 60.4/71.0 at the last snapshot. Ensemble on all 10,000 validation molecules
60.7 / 71.4 (before 66.1 / 77.9), on the 10,831 test molecules **61.9 / 71.6** (before 67.7 / 77.2): again 6 / 6
meV. Members trained at git 988f9d5, the ensemble built at the commit
the JSON names (/work/scann_s8 is a scratch folder):

    python scripts/train_scann_qm9.py --stage members --members 1 --epochs 400 --time-cosine \\
        --time-limit-min 110 --loss l1 --lr 5e-4 --lr-min 1e-5 --batch-size 128 --snapshots 3 \\
        --snapshot-fraction 0.3 --init-from /work/scann_s8/shipped_prev.pt@3 --threads 1 \\
        --jobs 1 --work-dir /work/scann_s8/run   # shipped_prev.pt: the 115-minute ensemble
    python scripts/train_scann_qm9.py --stage ensemble --domain-structures 10000 --jobs 2 \\
        --work-dir /work/scann_s8/run --out /work/scann_s8/new.pt

That ensemble was then continued for 25 minutes at a low rate (3e-4 -> 1e-5, three snapshot cycles, from its
snapshot 3; ~21 epochs): random val-2000 63.5/75.8 after 2 epochs (the restart), 60.3/71.4 at 10, 59.7-60.0 /
70.4-70.8 at the snapshots. All 10,000 validation molecules 59.8 / 70.5 (before 60.7 / 71.4), test **61.2 /
70.7** (before 61.9 / 71.6), shipped until the pooled runs below. HOMO is 1 meV from the goal on validation, LUMO 10:

    python scripts/train_scann_qm9.py --stage members --members 1 --epochs 200 --time-cosine \\
        --time-limit-min 25 --loss l1 --lr 3e-4 --lr-min 1e-5 --batch-size 128 --snapshots 3 \\
        --snapshot-fraction 0.3 --init-from /work/scann_s8/new.pt@3 --threads 1 --jobs 1 \\
        --work-dir /work/scann_s8/cont
    python scripts/train_scann_qm9.py --stage ensemble --domain-structures 10000 --jobs 2 \\
        --work-dir /work/scann_s8/cont --out /work/scann_s8/cont.pt

The shipped ensemble is now (eighth session) two runs pooled, after finding why LUMO lagged HOMO by ~10 meV:
the loss is on standardised targets, and QM9's LUMO spread (1.27 eV) is 2.13x HOMO's (0.60 eV), so the equal
loss weighed a HOMO error in eV 2.13x more than a LUMO error. ``--target-weights`` weighs each target's term.
Both runs: warm start from snapshot 3 of the 61.2 / 70.7 ensemble, L1 cosine 5e-4 -> 1e-5 over 70 % of a
118-minute budget, three snapshot cycles; the machine otherwise idle, one run per core (~1,400 molecules/s
each, ~90 epochs). Run A weighs LUMO 2.13 (the loss in eV), seed 0; run B weighs it 3.2, seed 1. Random
val-2000 HOMO/LUMO meV, A: 67/78 after one epoch, 65/69 at 16, 61/66 at 31, 60/64 at 45, 59.3/62.4 at
snapshot 0, 59.2/62.1 at snapshot 3; B: 65/77, 64/70, 65/65, 62/61, 60.8/60.2, 60.8/59.8. On all 10,000
validation / 10,831 test molecules (meV): A's 4 snapshots 59.4 / 62.4 and 60.8 / 63.2, B's 61.2 / 60.2 and
62.6 / 61.0, all 8 pooled 60.1 / 61.1 and **61.6 / 61.9** (before 59.8 / 70.5 and 61.2 / 70.7): LUMO gained
8.8 meV and HOMO lost 0.4. HOMO from A with LUMO from B would be 59.4 / 60.2 on validation (per-target
members were not supported by the ensemble format then; they are now, see below). The 8 pooled members were
the shipped file (``member_0s*`` from A, ``member_1s*`` from B; the JSON's ``member_train`` has each one's
settings):

    # run A; run B is the same with --seed 1 --target-weights 1 3.2 --work-dir .../runB, on the other core
    python scripts/train_scann_qm9.py --stage members --members 1 --epochs 400 --time-cosine \\
        --time-limit-min 118 --loss l1 --lr 5e-4 --lr-min 1e-5 --batch-size 128 --snapshots 3 \\
        --snapshot-fraction 0.3 --init-from /work/scann_s9/shipped_prev.pt@3 --threads 1 --jobs 1 \\
        --seed 0 --target-weights 1 2.13 --work-dir /work/scann_s9/runA   # shipped_prev: the 61.2 / 70.7 file
    cd /work/scann_s9 && mkdir poolAB && for s in 0 1 2 3; do cp runA/member_0s$s.pt poolAB/member_0s$s.pt; \\
        cp runB/member_0s$s.pt poolAB/member_1s$s.pt; done && cd -
    python scripts/train_scann_qm9.py --stage ensemble --domain-structures 10000 --jobs 2 --threads 2 \\
        --work-dir /work/scann_s9/poolAB --out /work/scann_s9/poolAB.pt

The shipped ensemble is now (ninth session) **per-target members**: each target averages only the members
chosen for it on the 10,000 validation molecules by greedy forward selection (``--select-members``; Caruana
et al. 2004; at least ``--min-members 4`` per target so that each has a spread), from 20 candidates: the 4
snapshots of the 61.2 / 70.7 ensemble, of runs A and B, and of two new 108-minute warm restarts side by side,
one per core, that lean each to one target (the machine otherwise idle but for ~25 minutes of mutation
testing on one core; ~85 epochs each). Run C starts from A's snapshot 3 (``@3`` of the A + B file) and weighs
LUMO 0.5, seed 2; run D from B's snapshot 3 (``@7``), LUMO weight 6, seed 3; both L1 cosine 5e-4 -> 1e-5
over 70 % of the budget and three snapshot cycles. Random val-2000 HOMO/LUMO meV, C: 70/71 after one
epoch, 62/72 at 15, 58/71 at 30, 55/68 at 45, 55.0/67.6 at snapshot 0, 54.7/67.5 at snapshot 3; D: 65/67,
67/65, 65/61, 64/56, 63.4/55.9, 63.3/55.8. Chosen: HOMO from C's 4 snapshots and snapshot 2 of the
61.2 / 70.7 ensemble, LUMO from D's 4 snapshots; the 11 candidates no target chose are left out of the file
(9 members, 4.4 MB). All 10,000 validation / 10,831 test molecules (meV): **55.0 / 55.8** and **56.8 /
56.5** (before 60.1 / 61.1 and 61.6 / 61.9; all 20 candidates averaged for both targets 58.1 / 61.2 and
59.7 / 61.8). The goal (<= 60 / 60 on test) is reached; the seed's 32 / 31 needs the paper-size network
(GPU command below). Sigma on test: within 1 / 2 sigma 73.7 / 94.6 % (HOMO) and 75.0 / 94.8 % (LUMO);
Spearman(|error|, sigma) 0.246 / 0.163 (the spread alone 0.173 / 0.056: LUMO's members are one run's
snapshots, which agree closely). Commands (members trained at git e5bc91c, the ensemble built at the commit
the JSON names):

    # run C; run D is the same with --init-from .../shipped_AB.pt@7 --seed 3 --target-weights 1 6 and
    # --work-dir .../runD, on the other core (shipped_AB.pt: the A + B file, git show 4d3d0b1:sample_data/...)
    python scripts/train_scann_qm9.py --stage members --members 1 --epochs 400 --time-cosine \\
        --time-limit-min 108 --loss l1 --lr 5e-4 --lr-min 1e-5 --batch-size 128 --snapshots 3 \\
        --snapshot-fraction 0.3 --init-from /work/scann_s10/shipped_AB.pt@3 --threads 1 --jobs 1 \\
        --seed 2 --target-weights 1 0.5 --work-dir /work/scann_s10/runC
    # the 20 candidates, one run per k in member_<k>s<snapshot>.pt: 0 the 61.2 / 70.7 run, 1 A, 2 B, 3 C, 4 D
    cd /work/scann_s10 && mkdir pool && for s in 0 1 2 3; do cp /work/scann_s8/cont/member_0s$s.pt \\
        pool/member_0s$s.pt; cp /work/scann_s9/runA/member_0s$s.pt pool/member_1s$s.pt; \\
        cp /work/scann_s9/runB/member_0s$s.pt pool/member_2s$s.pt; cp runC/member_0s$s.pt pool/member_3s$s.pt; \\
        cp runD/member_0s$s.pt pool/member_4s$s.pt; done && cd -
    python scripts/train_scann_qm9.py --stage ensemble --select-members --min-members 4 \\
        --domain-structures 10000 --jobs 2 --threads 2 --work-dir /work/scann_s10/pool \\
        --out /work/scann_s10/pool.pt   # 3 minutes; then copied into sample_data/models

Sigma (issue 16, the "or better" than a deep ensemble): the snapshots of one low-rate run agree
closely, so their spread hardly ranks errors. Every ensemble file now carries a sigma model,
``sigma^2 = a * ensemble_std^2 + b * d^2 + c`` per target, ``d`` the molecule's latent distance to the
training data (mean over atoms of the applicability domain's embedding distance ratio; Janet et al. 2019),
``a, b, c`` fitted on the 10,000 validation molecules by Gaussian likelihood (``--stage ensemble`` does it;
``--stage calibrate --from FILE`` adds it to an existing ensemble, members and domain unchanged). The
shipped file was recalibrated so (members unchanged, ~3 min on the shared CPU):

    python scripts/train_scann_qm9.py --stage calibrate --from sample_data/models/scann_qm9_ensemble.pt \\
        --jobs 1 --work-dir /tmp/u16/work --out /tmp/u16/calibrated.pt   # then copied into sample_data/models

Held-out test (10,831): Spearman(|error|, sigma) HOMO 0.225 / LUMO 0.176 (spread alone 0.057 / 0.039),
within 1 / 2 sigma 73.6 / 94.5 % and 74.2 / 95.4 %, MAE of the 10 % most / least confident molecules
47 / 115 meV (HOMO) and 61 / 120 meV (LUMO) (spread alone 66 / 94 and 83 / 108). Outside the
applicability domain (2.2 % of test molecules) sigma is at least the validation-scaled spread.
Coefficients a, b, c: HOMO 65.3, 0.098 eV^2, 0.0015 eV^2; LUMO 55.9, 0.124 eV^2, 0.0023 eV^2.

Accuracy (goal <= 60 meV; 73.5 / 83.1 when this paragraph was written, reached since by the per-target
ensemble above: 56.8 / 56.5). Tried then without training: a
k-nearest-neighbour residual correction in the latent space (mean training residual of the k nearest
of 20,000 training molecules) gains ~1 meV (k = 5, half weight: test 72.4 / 81.7), not worth a larger
file; a ridge regression or a small MLP from the members' molecule vectors (4 x 64, before the readout)
to the residual gains nothing (validation 71.4-71.6 / 84.2-84.5 vs 71.6 / 84.2): the members underfit
(training-set MAE 64 / 76 meV), so only more training of the network itself helps. The last 20-minute continuation was nearly flat, so more of the same run gains little. What would
reach it: independent members of a larger network (width 128, 8 layers: ~2.5x slower per step than
width 128 / 3 layers) trained for ~100+ epochs each, i.e. the GPU command below (~3 h per member at
the paper size). On CPU, independent from-scratch members of the shipped size (width 64, 3 layers,
~2 min per epoch on one quiet core, see below) cost ~3.5 h per member for 100 epochs; whether that reaches
60 meV is not known (the shipped run saw ~34 epochs in all).

Pilot that chose these settings (4 min each from scratch, full training set, same load; val MAE on
2,000 molecules after the first epoch, meV HOMO/LUMO): MSE lr 1e-3 batch 64: 160/204; L1 lr 1e-3
batch 64: 162/206; L1 lr 2e-3 batch 128: 162/200 -- indistinguishable this early; L1 was kept because
the metric is the MAE, batch 128 because it was ~15 % faster per molecule under load, lr 1e-3 because
the run is warm-started.

From scratch with enough CPU (one quiet core: ~1,000 molecules/s, ~2 min per epoch for width 64,
3 layers), independent members (a deep ensemble) for a better sigma:

    python scripts/train_scann_qm9.py --members 3 --epochs 200 --time-cosine --time-limit-min 120 \\
        --loss l1 --lr 1e-3 --lr-min 1e-5 --batch-size 128

To reach the paper's 32 / 31 meV (SCANN+, width 128, 8 layers, 8 heads) on a GPU:

    python scripts/train_scann_qm9.py --members 5 --width 128 --layers 8 --heads 8 --dropout 0.1 \\
        --epochs 300 --lr 5e-4 --lr-min 1e-5 --batch-size 128 --device cuda --threads 4 \\
        --time-limit-min 0 --out sample_data/models/scann_qm9_ensemble_paper.pt

Estimated time (not measured: no GPU was available to this work): one paper-size member does ~860
steps per epoch; at ~25 steps/s on a modern GPU that is ~35 s/epoch, so 300 epochs ~3 h per member,
~15 h for 5 members (members are independent: run them in parallel with ``--member K`` on several
GPUs, then ``--stage ensemble``). On one CPU thread the same member runs ~1.5 steps/s (measured for
width 128 with 3 layers: 3.8 steps/s; 8 layers ~2.5x slower), i.e. ~10 min per epoch, ~50 h for 300
epochs: CPU is not the place for the paper size.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from napari_cxdi.provenance import provenance
from napari_cxdi.scann import (
    ScannConfig,
    TrainConfig,
    VoronoiConfig,
    featurize,
    load_checkpoint,
    load_qm9,
    save_checkpoint,
    split_indices,
    train_iter,
)
from napari_cxdi.io.safe_write import write_text
from napari_cxdi.scann.datasets import QM9_SIZE
from napari_cxdi.scann.domain import fit_domain
from napari_cxdi.scann.uncertainty import (calibration_report, ensemble_predict, fit_scale, fit_sigma_model,
                                           out_of_domain_sigma, save_ensemble, select_members, structure_distances,
                                           used_members)

REPO = Path(__file__).resolve().parents[1]
TARGETS = ("homo", "lumo")
PAPER_MEV = {"SCANN": {"homo": 41, "lumo": 37}, "SCANN+": {"homo": 32, "lumo": 31},
             "note": "paper: full QM9 110k/10k/10.8k split, one model per target, width 128, 8 layers, GPU"}


def git_revision() -> dict:
    def run(*cmd):
        try:
            return subprocess.run(["git", "-C", str(REPO), *cmd], capture_output=True, text=True,
                                  timeout=5, check=False).stdout.rstrip("\n")  # keep porcelain's leading blanks
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"commit": run("rev-parse", "HEAD").strip() or None,
            "dirty_files": [ln[3:] for ln in run("status", "--porcelain", "--untracked-files=no").splitlines()]}


def load_data(args):
    structures = load_qm9(TARGETS, n=args.n_total, seed=0)
    t0 = time.time()
    envs = featurize(structures, VoronoiConfig(), n_jobs=args.jobs)
    t_feat = time.time() - t0
    n = len(envs)
    n_train = n - args.n_val - args.n_test
    parts = split_indices(n, [n_train, args.n_val, args.n_test], seed=0)
    return structures, envs, parts, t_feat


def _init_checkpoint(spec: str, work: Path) -> str:
    """``path`` as is; ``ensemble.pt@K``: member K of an ensemble file, written as a checkpoint in ``work``."""
    if "@" not in spec:
        return spec
    path, k = spec.rsplit("@", 1)
    from napari_cxdi.scann.uncertainty import load_ensemble_file

    obj = torch.load(path, map_location="cpu", weights_only=True)
    models, meta = load_ensemble_file(obj, path, "cpu")
    out = work / f"init_{Path(path).stem}_member{int(k)}.pt"
    save_checkpoint(out, models[int(k)], voronoi=VoronoiConfig(**meta["voronoi_config"]),
                    metrics={"extracted_from": path, "member": int(k),
                             "ensemble_git": (meta.get("provenance") or {}).get("git")},
                    target_units=meta["target_units"])
    return str(out)


def _member_paths(work: Path, k: int) -> list[Path]:
    return sorted(work.glob(f"member_{k}.pt")) + sorted(work.glob(f"member_{k}s*.pt"))


def train_member(k: int, args, envs, parts, work: Path) -> None:
    if _member_paths(work, k):
        print(f"member {k}: exists in {work}, kept", flush=True)
        return
    train = envs.subset(parts[0])
    # monitoring only (the ensemble stage uses all): a random subset, since split parts are sorted and QM9
    # is ordered by size (the first 2,000 were the smallest molecules, ~12 meV easier in HOMO)
    pick = np.sort(np.random.default_rng(0).permutation(len(parts[1]))[:args.n_val_monitor])
    val = envs.subset(parts[1][pick])
    model_cfg = ScannConfig(variant=args.variant, width=args.width, n_layers=args.layers, n_heads=args.heads,
                            readout=args.width, dropout=args.dropout, n_targets=len(TARGETS),
                            target_names=list(TARGETS))
    train_cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, lr_min=args.lr_min,
                            restart_epochs=args.epochs, patience=args.epochs, seed=args.seed + k,
                            device=args.device, time_limit_s=args.time_limit_min * 60 or None, log_every=200,
                            lr_schedule="time_cosine" if args.time_cosine else "restarts", loss=args.loss,
                            snapshots=args.snapshots, snapshot_fraction=args.snapshot_fraction,
                            snapshot_lr=args.snapshot_lr, target_weights=args.target_weights,
                            init_from=_init_checkpoint(args.init_from[k % len(args.init_from)], work)
                            if args.init_from else None)
    result, curve, snaps = None, [], []
    for prog in train_iter(model_cfg, train, val, train_cfg, VoronoiConfig()):
        if prog["event"] == "step":
            print(f"member {k} epoch {prog['epoch']} step {prog['step']} loss {prog['loss']:.4f} "
                  f"lr {prog['lr']:.2e} {prog['elapsed_s']:.0f} s", flush=True)
        elif prog["event"] == "epoch":
            val_txt = " ".join(f"{t} {1000 * v:.1f}" for t, v in zip(TARGETS, prog["val_mae"]))
            print(f"member {k} epoch {prog['epoch']} val MAE (meV) {val_txt} {prog['elapsed_s']:.0f} s", flush=True)
            curve.append({"minutes": round(prog["elapsed_s"] / 60, 2), "epoch": prog["epoch"],
                          "val_mae_meV": [round(1000 * v, 1) for v in prog["val_mae"]]})
        elif prog["event"] == "snapshot":
            snaps.append(prog)
            print(f"member {k} snapshot {prog['phase']} at {prog['elapsed_s']:.0f} s", flush=True)
        elif prog["event"] == "done":
            result = prog["result"]
            print(f"member {k} done ({prog['reason']}) {prog['elapsed_s']:.0f} s", flush=True)
    metrics = {"val_mae_meV": [1000 * v for v in result.best_val_mae], "best_epoch": result.best_epoch,
               "epochs_run": len(result.history), "training_s": result.history[-1]["elapsed_s"],
               "n_train": len(train), "git": args.git_at_start, "learning_curve": curve,
               "n_val_monitor": len(val)}
    if not snaps:
        save_checkpoint(work / f"member_{k}.pt", result.model, voronoi=VoronoiConfig(), train_config=train_cfg,
                        metrics=metrics, target_units=["eV"] * len(TARGETS))
        return
    from napari_cxdi.scann.train import mae as _mae, evaluate as _evaluate

    model = result.model
    for snap in snaps:  # every snapshot of this run is one ensemble member
        model.load_state_dict(snap["state_dict"])
        val_mae = _mae(_evaluate(model, val), val.targets)
        print(f"member {k} snapshot {snap['phase']}: val MAE (meV) "
              + " ".join(f"{t} {1000 * v:.1f}" for t, v in zip(TARGETS, val_mae)), flush=True)
        m = {**metrics, "snapshot": snap["phase"], "snapshot_s": round(snap["elapsed_s"], 1),
             "snapshot_epoch": snap["epoch"], "val_mae_meV": [1000 * v for v in val_mae],
             "training_s": snap["elapsed_s"]}
        save_checkpoint(work / f"member_{k}s{snap['phase']}.pt", model, voronoi=VoronoiConfig(),
                        train_config=train_cfg, metrics=m, target_units=["eV"] * len(TARGETS))


def build(args, structures, envs, parts, work: Path, t_feat: float) -> None:
    paths = sorted(work.glob("member_*.pt"))
    if not paths:
        raise SystemExit(f"no members in {work}; run --stage members first")
    from napari_cxdi.io.safe_write import check_output

    inputs = list(paths)  # the member files: never written onto, checked before the evaluation starts
    out = check_output(args.out, overwrite=True, protected=inputs)
    check_output(out.with_suffix(".json"), overwrite=True, protected=inputs)
    loaded = [load_checkpoint(p) for p in paths]
    models = [m for m, _ in loaded]
    train, val, test = (envs.subset(p) for p in parts)
    t0 = time.time()
    out_val = ensemble_predict(models, val, atom_features=True)
    out_test = ensemble_predict(models, test, atom_features=True)
    pooled_mae = {name: {t: round(1000 * float(np.nanmean(np.abs(o.mean[:, i] - d.targets[:, i]))), 2)
                         for i, t in enumerate(TARGETS)}
                  for name, o, d in (("val", out_val, val), ("test", out_test, test))}
    target_members, candidates = None, [p.name for p in paths]
    if args.select_members:  # each target's members chosen on validation (greedy forward selection)
        target_members = select_members(out_val.members, val.targets, min_members=args.min_members)
        for t, idx in zip(TARGETS, target_members):
            print(f"{t}: members {', '.join(paths[k].stem for k in idx)} (chosen on validation)", flush=True)
        # members that no target uses are left out of the file; member 0 of the rest measures the domain
        use = used_members(target_members, len(models))
        pos = {k: i for i, k in enumerate(use)}
        target_members = [[pos[k] for k in idx] for idx in target_members]
        paths, loaded, models = ([x[k] for k in use] for x in (paths, loaded, models))
        out_val = ensemble_predict(models, val, atom_features=True, target_members=target_members)
        out_test = ensemble_predict(models, test, atom_features=True, target_members=target_members)
    scale = fit_scale(out_val.mean, out_val.std, val.targets)
    rng = np.random.default_rng(0)
    ref_idx = np.sort(rng.choice(len(train), size=min(args.domain_structures, len(train)), replace=False))
    out_ref = ensemble_predict(models[:1], train.subset(ref_idx), atom_features=True)
    train_numbers = [train.numbers[train.atom_ptr[s]:train.atom_ptr[s + 1]] for s in range(len(train))]
    val_numbers = [val.numbers[val.atom_ptr[s]:val.atom_ptr[s + 1]] for s in range(len(val))]
    from napari_cxdi.scann.domain import environment_signatures

    elements = sorted({int(z) for z in np.unique(train.numbers)})
    edge_struct = np.repeat(np.arange(len(train)), np.diff(train.edge_ptr))
    train_sigs = environment_signatures(train.numbers, train.atom_ptr[edge_struct] + train.center,
                                        train.atom_ptr[edge_struct] + train.neighbor, elements)
    domain = fit_domain(train_numbers, [train_numbers[s] for s in ref_idx], out_ref.atom_features,
                        val_numbers, out_val.atom_features, per_element=args.domain_atoms_per_element,
                        quantile=args.domain_quantile, seed=0, train_signatures=train_sigs,
                        min_signature_count=args.domain_min_count)

    test_flag = ~in_domain(domain, test, out_test.atom_features)
    members_test = [[1000 * float(np.mean(np.abs(out_test.members[k, :, t] - test.targets[:, t])))
                     for t in range(len(TARGETS))] for k in range(len(models))]
    sigma_model, cal = calibrate(domain, out_val, val, out_test, test)
    report = cal["calibration_test"]
    metrics = {
        "test_mae_meV": {t: round(1000 * report[t]["mae"], 2) for t in TARGETS},
        "member_test_mae_meV": members_test, **cal,
        # every member for every target (before the per-target selection; the same when none)
        "val_mae_all_members_meV": pooled_mae["val"], "test_mae_all_members_meV": pooled_mae["test"],
        "target_members": None if target_members is None else
        {t: [paths[k].name for k in idx] for t, idx in zip(TARGETS, target_members)},
        "candidate_members": candidates,
        "sigma_scale": scale.tolist(),
        "domain_flagged_fraction_test": float(test_flag.mean()),
        "n_train": len(train), "n_val": len(val), "n_test": len(test), "n_members": len(models),
        "featurisation_s": round(t_feat, 1), "evaluation_s": round(time.time() - t0, 1),
        "member_training_s": [round(meta["provenance"]["metrics"]["training_s"], 1) for _, meta in loaded],
        "member_git": [meta["provenance"]["metrics"].get("git") for _, meta in loaded],
        "members_trained_by_commit": args.members_commit or [(meta["provenance"]["metrics"].get("git") or {})
                                                             .get("commit") for _, meta in loaded],
        "member_files": [p.name for p in paths],
        "member_val_mae_meV": [[round(v, 1) for v in meta["provenance"]["metrics"]["val_mae_meV"]]
                               for _, meta in loaded],
        "member_snapshot": [meta["provenance"]["metrics"].get("snapshot") for _, meta in loaded],
        "learning_curves": {p.stem.split("s")[0]: meta["provenance"]["metrics"].get("learning_curve")
                            for p, (_, meta) in zip(paths, loaded)},  # one curve per run (snapshots share it)
        "n_parameters_per_member": models[0].n_parameters(), "torch_threads": args.threads,
        "paper_reference_meV": PAPER_MEV,
    }
    print(json.dumps({k: metrics[k] for k in ("test_mae_meV", "member_test_mae_meV", "sigma_scale",
                                               "domain_flagged_fraction_test")}, indent=1), flush=True)
    for t in TARGETS:
        r = report[t]
        print(f"TEST {t}: MAE {1000 * r['mae']:.1f} meV, within 1 sigma {100 * r['within_1_sigma']:.1f} %, "
              f"2 sigma {100 * r['within_2_sigma']:.1f} %, mean sigma {1000 * r['mean_sigma']:.1f} meV", flush=True)
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, REPO)] + sys.argv[1:])
    member_meta = loaded[0][1]
    trains = [meta["provenance"]["config"]["train"] for _, meta in loaded]
    record = provenance({"command": command, "args": vars(args), "model": member_meta["model_config"],
                         "train": trains[0],
                         # members pooled from several runs (e.g. different loss weights or seeds): each one's
                         "member_train": trains if any(t != trains[0] for t in trains) else None}, metrics,
                        git=git_revision(), members=[p.name for p in paths])
    save_ensemble(out, models, voronoi=VoronoiConfig().to_dict(), scale=scale, target_units=["eV"] * len(TARGETS),
                  domain=domain, provenance={"command": command, **record}, sigma_model=sigma_model,
                  target_members=target_members, protected=inputs)
    js = out.with_suffix(".json")
    write_text(js, json.dumps({"command": command, **record}, indent=1, default=str), overwrite=True,
               protected=inputs)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB) and {js}", flush=True)


def _numbers(envs) -> list[np.ndarray]:
    return [envs.numbers[envs.atom_ptr[s]:envs.atom_ptr[s + 1]] for s in range(len(envs))]


def in_domain(domain: dict, envs, atom_features) -> np.ndarray:
    """(S,) applicability-domain verdict of every structure of ``envs`` (molecules)."""
    from napari_cxdi.scann.domain import DomainModel

    dm = DomainModel.from_dict(domain)
    return np.array([dm.check(z, False, f, (envs.center[envs.edge_ptr[s]:envs.edge_ptr[s + 1]],
                                            envs.neighbor[envs.edge_ptr[s]:envs.edge_ptr[s + 1]])).in_domain
                     for s, (z, f) in enumerate(zip(_numbers(envs), atom_features))])


def calibrate(domain: dict, out_val, val, out_test, test) -> tuple:
    """Fit the sigma model (ensemble spread + latent distance) on validation; reports on validation and
    test for it (as predictions get it: at least the scaled spread outside the domain) and for the
    ensemble spread alone (scaled on validation, the earlier sigma)."""
    d_val = structure_distances(domain, _numbers(val), out_val.atom_features)
    d_test = structure_distances(domain, _numbers(test), out_test.atom_features)
    sm = fit_sigma_model(out_val.std, d_val, out_val.mean - val.targets, TARGETS,
                         fitted_on=f"QM9 validation split ({len(val)} molecules, seed 0), Gaussian likelihood")
    scale = fit_scale(out_val.mean, out_val.std, val.targets)
    sig_val = out_of_domain_sigma(sm.sigma(out_val.std, d_val), out_val.std * scale,
                                  in_domain(domain, val, out_val.atom_features))
    sig_test = out_of_domain_sigma(sm.sigma(out_test.std, d_test), out_test.std * scale,
                                   in_domain(domain, test, out_test.atom_features))
    cal = {"sigma_model": sm.to_dict(),
           "calibration_val": calibration_report(out_val.mean, sig_val, val.targets, TARGETS),
           "calibration_test": calibration_report(out_test.mean, sig_test, test.targets, TARGETS),
           "calibration_test_ensemble_only": calibration_report(out_test.mean, out_test.std * scale, test.targets,
                                                                TARGETS)}
    for t in TARGETS:
        new, old = cal["calibration_test"][t], cal["calibration_test_ensemble_only"][t]
        print(f"TEST {t}: sigma model rho(|err|, sigma) {new['spearman_error_sigma']:.3f} (ensemble alone "
              f"{old['spearman_error_sigma']:.3f}), within 1/2 sigma {100 * new['within_1_sigma']:.1f} / "
              f"{100 * new['within_2_sigma']:.1f} %, MAE of the 10 % most / least confident "
              f"{1000 * new['mae_most_confident_10pct']:.1f} / {1000 * new['mae_least_confident_10pct']:.1f} meV "
              f"(ensemble alone {1000 * old['mae_most_confident_10pct']:.1f} / "
              f"{1000 * old['mae_least_confident_10pct']:.1f})", flush=True)
    return sm, cal


def recalibrate(args, envs, parts) -> None:
    """``--stage calibrate``: the members and domain of an existing ensemble file (``--from``) unchanged,
    a sigma model fitted on validation added; written to ``--out`` (never onto ``--from``)."""
    from napari_cxdi.scann.uncertainty import load_ensemble_file
    from napari_cxdi.io.safe_write import check_output

    src = Path(args.calibrate_from)
    out = check_output(args.out, overwrite=True, protected=[src])
    check_output(out.with_suffix(".json"), overwrite=True, protected=[src, src.with_suffix(".json")])
    obj = torch.load(src, map_location="cpu", weights_only=True)
    models, meta = load_ensemble_file(obj, src, "cpu")
    if not meta.get("domain"):
        raise SystemExit(f"{src} has no applicability domain: the latent distance needs it")
    _, val, test = (envs.subset(p) for p in parts)
    t0 = time.time()
    tm = meta.get("target_members")  # the file's per-target members are kept
    out_val = ensemble_predict(models, val, atom_features=True, target_members=tm)
    out_test = ensemble_predict(models, test, atom_features=True, target_members=tm)
    sm, cal = calibrate(meta["domain"], out_val, val, out_test, test)
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, REPO)] + sys.argv[1:])
    record = dict(meta.get("provenance") or {})  # the training record (command, git, metrics) stays
    record["metrics"] = {**record.get("metrics", {}), **cal}
    record["calibration"] = provenance({"command": command, "from": str(src)},
                                       {"evaluation_s": round(time.time() - t0, 1)}, git=git_revision())
    save_ensemble(out, models, voronoi=meta["voronoi_config"], scale=meta["sigma_scale"],
                  target_units=meta["target_units"], domain=meta["domain"], provenance=record, sigma_model=sm,
                  target_members=tm, protected=[src])
    write_text(out.with_suffix(".json"), json.dumps(record, indent=1, default=str), overwrite=True,
               protected=[src, src.with_suffix(".json")])
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB) and {out.with_suffix('.json')}", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage", choices=["members", "ensemble", "all", "calibrate"], default="all")
    p.add_argument("--from", dest="calibrate_from", default=None,
                   help="--stage calibrate: the ensemble file whose sigma model is (re)fitted on validation")
    p.add_argument("--members", type=int, default=3, help="ensemble size")
    p.add_argument("--member", type=int, default=None, help="train only this member (0-based)")
    p.add_argument("--n-total", type=int, default=None, help="random QM9 subset (default: all 130,831)")
    p.add_argument("--n-val", type=int, default=10000)
    p.add_argument("--n-test", type=int, default=10831)
    p.add_argument("--variant", default="scann+", choices=["scann", "scann+"])
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-min", type=float, default=2e-5)
    p.add_argument("--time-limit-min", type=float, default=25.0, help="per member, 0 = none")
    p.add_argument("--time-cosine", action="store_true",
                   help="one cosine learning-rate decay over --time-limit-min of wall time (fixed budget)")
    p.add_argument("--loss", default="mse", choices=["mse", "l1"], help="on standardised targets")
    p.add_argument("--snapshots", type=int, default=0,
                   help="with --time-cosine: the last --snapshot-fraction of the time is this many short cosine "
                        "cycles; the model at the end of the main cosine and of each cycle is an ensemble member")
    p.add_argument("--snapshot-fraction", type=float, default=0.3)
    p.add_argument("--target-weights", type=float, nargs=len(TARGETS), default=None, metavar="W",
                   help="weight of HOMO and LUMO in the loss on standardised targets (default equal); the targets' "
                        "standard deviations (about 1 2.1 on QM9) make it the loss in eV")
    p.add_argument("--snapshot-lr", type=float, default=None, help="cycle start rate (default lr / 5)")
    p.add_argument("--init-from", nargs="+", default=None,
                   help="warm start: member k starts from checkpoint k mod len (matching weights; the target "
                        "statistics are recomputed); ENSEMBLE.pt@J takes member J of an ensemble file")
    p.add_argument("--n-val-monitor", type=int, default=2000, help="validation molecules evaluated per epoch")
    p.add_argument("--seed", type=int, default=0, help="member k is seeded seed + k")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--jobs", type=int, default=None, help="featurisation processes (default: all cores)")
    p.add_argument("--device", default="auto")
    p.add_argument("--domain-structures", type=int, default=20000, help="training molecules for the domain")
    p.add_argument("--domain-atoms-per-element", type=int, default=2000, help="stored reference atoms")
    p.add_argument("--domain-quantile", type=float, default=0.999, help="of validation atoms' distances")
    p.add_argument("--domain-min-count", type=int, default=3,
                   help="neighbour-composition signatures seen fewer times in training are out of domain")
    p.add_argument("--select-members", action="store_true",
                   help="ensemble stage: each target averages only the members chosen for it on validation (greedy "
                        "forward selection; e.g. runs trained with different --target-weights); default: all")
    p.add_argument("--min-members", type=int, default=2, help="--select-members: at least this many per target")
    p.add_argument("--members-commit", nargs="+", default=None,
                   help="ensemble stage: the commit each member was trained at (in member order), when an earlier "
                        "run recorded the commit at the end of training instead of at its start (fixed since)")
    p.add_argument("--work-dir", default=None, help="member checkpoints (default: cache folder)")
    p.add_argument("--out", default=str(REPO / "sample_data" / "models" / "scann_qm9_ensemble.pt"))
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    args.git_at_start = git_revision()  # the code this process runs (later commits do not change it)
    if args.n_total is not None and args.n_total < QM9_SIZE:
        args.n_val = min(args.n_val, args.n_total // 10)
        args.n_test = min(args.n_test, args.n_total // 10)
    from napari_cxdi.scann.datasets import cache_dir

    work = Path(args.work_dir or cache_dir() / f"qm9_ensemble_w{args.width}_l{args.layers}_e{args.epochs}")
    work.mkdir(parents=True, exist_ok=True)
    structures, envs, parts, t_feat = load_data(args)
    print(f"QM9 {len(envs)}: train {len(parts[0])} / val {len(parts[1])} / test {len(parts[2])}; "
          f"featurisation {t_feat:.1f} s; members in {work}", flush=True)
    if args.stage in ("members", "all"):
        ks = [args.member] if args.member is not None else range(args.members)
        for k in ks:
            train_member(k, args, envs, parts, work)
    if args.stage in ("ensemble", "all"):
        build(args, structures, envs, parts, work, t_feat)
    if args.stage == "calibrate":
        if not args.calibrate_from:
            raise SystemExit("--stage calibrate needs --from ENSEMBLE.pt")
        recalibrate(args, envs, parts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
