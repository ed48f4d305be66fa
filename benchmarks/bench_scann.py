#!/usr/bin/env python
"""SCANN benchmark of the shipped model (``qm9`` deep ensemble): invariance, accuracy on held-out
QM9 against the seed's table, calibration of sigma and how well it ranks the errors (against the
ensemble spread alone), applicability-domain flags on non-QM9
structures, featurisation speed. Prints tables and writes ``benchmarks/results/bench_scann.json``.

    python benchmarks/bench_scann.py                    # all sections (~5-10 min on 2 busy cores)
    python benchmarks/bench_scann.py --n-test 2000      # a subset of the held-out test split

The held-out test split is the one the shipped ensemble was trained without (paper split sizes
110,000 / 10,000 / 10,831, seed 0; see scripts/train_scann_qm9.py). Seed (thesis, SPEC §6), QM9 MAE
in meV: SCANN HOMO 41 / LUMO 37, SCANN+ 32 / 31 (full data, width 128, 8 layers, GPU).
To train: ``scripts/train_scann_qm9.py`` (its docstring has the GPU command for the paper size).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np
import torch

from napari_cxdi.provenance import provenance
from napari_cxdi.scann import (OutOfDomainWarning, ScannPredictor, VoronoiConfig, all_faces, featurize,
                               load_qm9, split_indices)
from napari_cxdi.scann.uncertainty import calibration_report

SEED_MEV = {"SCANN": {"homo": 41, "lumo": 37}, "SCANN+": {"homo": 32, "lumo": 31}}
TARGETS = ("homo", "lumo")


def _moved(atoms, rng):
    from scipy.spatial.transform import Rotation

    perm = rng.permutation(len(atoms))
    out = atoms[perm]
    out.positions = out.positions @ Rotation.random(random_state=int(rng.integers(2**31))).as_matrix().T \
        + rng.uniform(-50, 50, 3)
    return out, perm


def invariance(predictor, n_motions: int, seed: int = 0) -> dict:
    """Max spread of features (all faces) and predictions over random rigid motions + permutations."""
    from ase.build import molecule
    from ase.collections import g2

    rng = np.random.default_rng(seed)
    mols = [molecule(n) for n in g2.names if len(molecule(n)) >= 2]
    qm9 = load_qm9(TARGETS, n=40, seed=seed + 1)
    mols += [qm9.atoms(k) for k in range(len(qm9))]
    feat_spread, pred_spread, ga_spread, worst = 0.0, 0.0, 0.0, ("", 0.0)
    for m in mols:
        ref = all_faces(m)
        key = {(int(i), int(j)): o for i, j, o in zip(ref.center, ref.neighbor, ref.solid_angle)}
        copies, perms = [m], [np.arange(len(m))]
        for _ in range(n_motions):
            c, p = _moved(m, rng)
            env = all_faces(c)
            got = {(int(p[i]), int(p[j])): o for i, j, o in zip(env.center, env.neighbor, env.solid_angle)}
            if set(got) != set(key):
                feat_spread = max(feat_spread, float("inf"))
            else:
                feat_spread = max(feat_spread, max(abs(got[k] - key[k]) for k in key))
            copies.append(c)
            perms.append(p)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OutOfDomainWarning)
            res = predictor.predict(copies, n_jobs=1)
        vals = np.array([[r.properties[t] for t in predictor.target_names] for r in res])
        spread = float((vals.max(axis=0) - vals.min(axis=0)).max())
        ga = np.stack([np.asarray(r.ga_scores)[np.argsort(p)] for r, p in zip(res, perms)])
        ga_spread = max(ga_spread, float((ga.max(axis=0) - ga.min(axis=0)).max()))
        if spread > worst[1]:
            worst = (m.get_chemical_formula(), spread)
        pred_spread = max(pred_spread, spread)
    return {"n_molecules": len(mols), "motions_per_molecule": n_motions,
            "max_solid_angle_spread_sr": feat_spread, "max_prediction_spread_eV": pred_spread,
            "max_ga_spread": ga_spread, "worst_molecule": worst[0]}


def _mean_sigma(predictor, res):
    mean = np.array([[r.properties[t] for t in predictor.target_names] for r in res])
    sigma = np.array([[r.sigma[t] for t in predictor.target_names] for r in res])
    return mean, sigma


def accuracy(predictor, n_test: int | None, jobs: int, compare_ensemble_only: bool = True) -> dict:
    structures = load_qm9(TARGETS)
    t = time.perf_counter()
    envs = featurize(structures, VoronoiConfig(), n_jobs=jobs)  # cached after the first run
    t_feat = time.perf_counter() - t
    n = len(envs)
    _, _, test_idx = split_indices(n, [n - 10_000 - 10_831, 10_000, 10_831], seed=0)
    if n_test:
        test_idx = test_idx[:n_test]
    test = envs.subset(test_idx)
    t = time.perf_counter()
    res = predictor.predict_environments(test, batch_size=256)
    t_pred = time.perf_counter() - t
    cols = [TARGETS.index(t) for t in predictor.target_names]
    y = test.targets[:, cols]
    mean, sigma = _mean_sigma(predictor, res)
    report = calibration_report(mean, sigma, y, predictor.target_names)
    ensemble_only = None
    if compare_ensemble_only and getattr(predictor, "sigma_model", None) is not None:
        # the same members with the earlier sigma (spread scaled on validation, no latent distance)
        plain = ScannPredictor(predictor.models, {**predictor.meta, "sigma_model": None}, predictor.target_names)
        m2, s2 = _mean_sigma(plain, plain.predict_environments(test, batch_size=256))
        ensemble_only = calibration_report(m2, s2, y, predictor.target_names)
    flagged = np.array([not r.reliable for r in res])
    ga_rel_sigma = np.concatenate([r.ga_sigma / np.maximum(r.ga_scores, 1e-12) for r in res if r.ga_sigma is not None])
    # accuracy where the domain says "in" vs "out"
    err = np.abs(mean - y)
    return {"qm9_molecules_featurised": n, "n_test": len(test), "calibration": report,
            "sigma_model": (predictor.meta.get("sigma_model") or {}).get("formula", "ensemble spread x scale"),
            "calibration_ensemble_only": ensemble_only, "domain_flagged_fraction": float(flagged.mean()),
            "mae_in_domain_meV": (1000 * err[~flagged].mean(axis=0)).round(1).tolist() if (~flagged).any() else None,
            "mae_flagged_meV": (1000 * err[flagged].mean(axis=0)).round(1).tolist() if flagged.any() else None,
            "ga_relative_sigma_median": float(np.median(ga_rel_sigma)) if ga_rel_sigma.size else None,
            "ga_relative_sigma_p95": float(np.quantile(ga_rel_sigma, 0.95)) if ga_rel_sigma.size else None,
            "featurisation_or_cache_s": round(t_feat, 1), "prediction_molecules_per_s": round(len(test) / t_pred, 1)}


def sigma_ranking(acc: dict) -> None:
    """Print how well sigma ranks the errors: Spearman, MAE of the most/least confident tenth, and the
    error-vs-sigma table (deciles of sigma), for the model's sigma and the ensemble spread alone."""
    runs = [("sigma model", acc["calibration"])]
    if acc.get("calibration_ensemble_only"):
        runs.append(("ensemble spread alone", acc["calibration_ensemble_only"]))
    print(f"\n[sigma ranking] sigma = {acc['sigma_model']}; test molecules sorted by sigma, 10 equal groups "
          "(1 = most confident)")
    print(f"{'target':6s} {'sigma':22s} {'rho(err,sigma)':>14s} {'<=1 sig':>8s} {'<=2 sig':>8s} "
          f"{'MAE 10% most':>13s} {'MAE 10% least':>14s}  (meV)")
    for t in acc["calibration"]:
        for label, cal in runs:
            r = cal[t]
            print(f"{t:6s} {label:22s} {r['spearman_error_sigma']:14.3f} {100 * r['within_1_sigma']:7.1f}% "
                  f"{100 * r['within_2_sigma']:7.1f}% {1000 * r['mae_most_confident_10pct']:13.1f} "
                  f"{1000 * r['mae_least_confident_10pct']:14.1f}")
    for t in acc["calibration"]:
        for label, cal in runs:
            rows = cal[t]["error_by_sigma"]
            print(f"{t} {label:22s} mean sigma: " + " ".join(f"{1000 * r['mean_sigma']:5.0f}" for r in rows))
            print(f"{t} {label:22s} MAE       : " + " ".join(f"{1000 * r['mae']:5.0f}" for r in rows))


def _cisplatin():
    from ase import Atoms

    pos = [[0, 0, 0], [2.3, 0, 0], [0, 2.3, 0], [-2.05, 0, 0], [0, -2.05, 0]]
    atoms = Atoms("PtClClNN", positions=pos)
    for n_idx in (3, 4):  # three H on each N
        n = atoms.positions[n_idx]
        axis = n / np.linalg.norm(n)
        perp = np.cross(axis, [0, 0, 1.0])
        for k in range(3):
            ang = 2 * np.pi * k / 3
            d = 0.33 * axis + 0.94 * (np.cos(ang) * perp + np.sin(ang) * np.array([0, 0, 1.0]))
            atoms += Atoms("H", positions=[n + d])
    return atoms


def domain_flags(predictor) -> list[dict]:
    from ase.build import bulk, molecule

    cases = [("H2S", molecule("SH2")), ("CH3SH", molecule("CH3SH")), ("SO2", molecule("SO2")),
             ("CH3Cl", molecule("CH3Cl")), ("CCl4", molecule("CCl4")), ("SiH4", molecule("SiH4")),
             ("PH3", molecule("PH3")), ("cisplatin Pt(NH3)2Cl2", _cisplatin()),
             ("bulk Cu (fcc, 2x2x2)", bulk("Cu", "fcc", a=3.61) * (2, 2, 2)),
             ("bulk diamond C (periodic)", bulk("C", "diamond", a=3.57)),
             ("C60 (60 atoms)", molecule("C60")), ("biphenyl (12 heavy atoms)", molecule("biphenyl")),
             ("ethanol (in domain expected)", molecule("CH3CH2OH")), ("benzene", molecule("C6H6"))]
    qm9 = load_qm9(TARGETS, indices=[0, 1, 2])  # CH4, NH3, H2O with their QM9 values
    for k, name in enumerate(("QM9 CH4", "QM9 NH3", "QM9 H2O")):
        cases.append((name, qm9.atoms(k), {t: float(qm9.targets[k, i]) for i, t in enumerate(TARGETS)}))
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutOfDomainWarning)
        for case in cases:
            name, atoms = case[0], case[1]
            ref = case[2] if len(case) > 2 else None
            r = predictor.predict(atoms, n_jobs=1)[0]
            row = {"structure": name, "formula": atoms.get_chemical_formula(), "flagged": not r.reliable,
                   "codes": r.domain.codes if r.domain else [], "reasons": r.domain.reasons if r.domain else [],
                   "prediction": r.properties, "sigma": r.sigma}
            if ref:
                row["qm9"] = {t: ref[t] for t in predictor.target_names}
                row["error_in_sigma"] = {t: abs(r.properties[t] - ref[t]) / r.sigma[t] for t in predictor.target_names}
            rows.append(row)
    return rows


def featurisation_speed(n: int, jobs: int) -> dict:
    s = load_qm9(("homo",), n=n, seed=123)
    out = {}
    for j in sorted({1, jobs}):
        t = time.perf_counter()
        featurize(s, VoronoiConfig(), n_jobs=j, cache=False)
        out[f"{j}_process"] = round(n / (time.perf_counter() - t), 1)
    return {"n_structures": n, "molecules_per_s": out, "mean_atoms": float(np.mean([len(z) for z in s.numbers]))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="qm9", help="shipped name or ensemble/checkpoint path")
    p.add_argument("--n-test", type=int, default=None, help="first N of the 10,831 held-out molecules")
    p.add_argument("--motions", type=int, default=4, help="random rigid motions + permutations per molecule")
    p.add_argument("--speed-n", type=int, default=1000)
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip", nargs="*", default=[], choices=["invariance", "accuracy", "domain", "speed"])
    p.add_argument("--baseline", default=None,
                   help="another ensemble/checkpoint (e.g. the previously shipped one, from git show) evaluated on "
                        "the same held-out test split, for the accuracy comparison")
    p.add_argument("--out", default="benchmarks/results/bench_scann.json")
    args = p.parse_args(argv)
    import shlex

    command = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/bench_scann.py"]
                                   + list(sys.argv[1:] if argv is None else argv))
    torch.set_num_threads(args.threads)
    from napari_cxdi.io.safe_write import check_output, write_json

    check_output(args.out, overwrite=True)
    predictor = ScannPredictor.load(args.model, device="cpu")
    per_target = {t: len(idx) for t, idx in predictor.target_members.items()}
    out: dict = {"model": args.model, "members": predictor.n_members, "members_per_target": per_target,
                 "model_provenance": {k: predictor.meta.get("provenance", {}).get(k) for k in ("git_revision", "git", "command")}}
    print(f"SCANN benchmark: model {args.model} ({predictor.n_members} members; per target {per_target}), "
          f"targets {predictor.target_names}; "
          "timings on a shared 2-core CPU under load")
    if "invariance" not in args.skip:
        inv = out["invariance"] = invariance(predictor, args.motions)
        print(f"\n[invariance] {inv['n_molecules']} molecules (ase g2 + 40 QM9) x {inv['motions_per_molecule']} "
              f"random rotations+translations+permutations: max spread solid angle {inv['max_solid_angle_spread_sr']:.2e} sr, "
              f"prediction {inv['max_prediction_spread_eV']:.2e} eV (worst {inv['worst_molecule']}), "
              f"GA score {inv['max_ga_spread']:.2e}")
    if "accuracy" not in args.skip:
        acc = out["accuracy"] = accuracy(predictor, args.n_test, args.jobs)
        print(f"\n[accuracy + calibration] all {acc['qm9_molecules_featurised']} QM9 molecules featurised "
              f"(featurize raises on any failure); held-out QM9 test split, {acc['n_test']} molecules")
        print(f"{'target':6s} {'MAE meV':>8s} {'SCANN+ seed':>12s} {'SCANN seed':>11s} {'mean sigma':>11s} "
              f"{'<=1 sigma':>10s} {'<=2 sigma':>10s} {'rho(err,sigma)':>15s}")
        for t, r in acc["calibration"].items():
            print(f"{t:6s} {1000 * r['mae']:8.1f} {SEED_MEV['SCANN+'][t]:12d} {SEED_MEV['SCANN'][t]:11d} "
                  f"{1000 * r['mean_sigma']:11.1f} {100 * r['within_1_sigma']:9.1f}% {100 * r['within_2_sigma']:9.1f}% "
                  f"{r['spearman_error_sigma']:15.2f}")
        sigma_ranking(acc)
        print(f"domain-flagged test molecules: {100 * acc['domain_flagged_fraction']:.2f} % "
              f"(MAE in-domain {acc['mae_in_domain_meV']} meV, flagged {acc['mae_flagged_meV']} meV); "
              f"GA score spread over members: median {acc['ga_relative_sigma_median']:.3f}, "
              f"95 % {acc['ga_relative_sigma_p95']:.3f} of the score")
        if args.baseline:
            base = ScannPredictor.load(args.baseline, device="cpu")
            bacc = accuracy(base, args.n_test, args.jobs, compare_ensemble_only=False)
            out["baseline"] = {"model": args.baseline, "members": base.n_members,
                               "model_provenance": {k: base.meta.get("provenance", {}).get(k)
                                                    for k in ("git_revision", "command")},
                               "test_mae_meV": {t: round(1000 * r["mae"], 2) for t, r in bacc["calibration"].items()},
                               "calibration": bacc["calibration"]}
            print(f"baseline {args.baseline} ({base.n_members} members) on the same test molecules: "
                  + ", ".join(f"{t} MAE {v:.1f} meV" for t, v in out["baseline"]["test_mae_meV"].items())
                  + " | this model: " + ", ".join(f"{t} {1000 * r['mae']:.1f}" for t, r in acc["calibration"].items()))
    if "domain" not in args.skip:
        rows = out["domain"] = domain_flags(predictor)
        print("\n[applicability domain] non-QM9 structures and the smallest QM9 molecules")
        for r in rows:
            pred = ", ".join(f"{t} {r['prediction'][t]:.2f}±{r['sigma'][t]:.2f}" for t in predictor.target_names)
            ref = (" | QM9 " + ", ".join(f"{t} {r['qm9'][t]:.2f} ({r['error_in_sigma'][t]:.1f} sigma)"
                                          for t in predictor.target_names)) if "qm9" in r else ""
            print(f"{r['structure']:32s} {'FLAGGED' if r['flagged'] else 'in     '} {','.join(r['codes']):28s} "
                  f"{pred}{ref}")
    if "speed" not in args.skip:
        sp = out["featurisation"] = featurisation_speed(args.speed_n, args.jobs)
        print(f"\n[featurisation] {sp['n_structures']} QM9 molecules ({sp['mean_atoms']:.1f} atoms mean): "
              + ", ".join(f"{k.replace('_', ' ')}: {v} molecules/s" for k, v in sp["molecules_per_s"].items()))
    record = {"command": command, **provenance(vars(args), out, cpu_count=os.cpu_count(),
                                               torch_threads=torch.get_num_threads())}
    write_json(args.out, record, overwrite=True)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
