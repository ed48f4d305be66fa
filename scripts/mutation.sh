#!/usr/bin/env bash
# Mutation testing of the core packages with mutmut (not run in CI: minutes per package on 2 cores).
#
#   bash scripts/mutation.sh                 # every core package
#   bash scripts/mutation.sh metrics physics # some of them
#   bash scripts/mutation.sh io/mask.py      # one module of a package (against that package's tests)
#   SURVIVORS_ONLY=1 bash scripts/mutation.sh io/mask.py
#                                            # re-run only the survivors recorded in mutation.json (after adding
#                                            # tests; the module itself unchanged): the record is updated in place
#
# A score counts every mutant of what it names (a package, or a module given as <package>/<file>.py).
# JOBS (default 2) mutants run at once; property tests run derandomized (CI=1) so that runs repeat; dask
# computes synchronously (its thread pool does not survive mutmut's fork: threaded computes would hang).
#
# Each package is mutated in a scratch copy of the checkout (the work tree is never touched) and only the
# tests of that package run against its mutants (TESTS below). Results: benchmarks/results/mutation.json
# (killed / survived / timeout / suspicious per package, the surviving mutants' names) and the surviving
# mutants' diffs in benchmarks/results/mutation_<package>_survivors.txt. Reviewed survivors are listed, each
# with a one-line reason, in benchmarks/mutation_equivalent.txt (they count as killed in the score).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
JOBS=${JOBS:-2}
"$PYTHON" -c "import mutmut" 2>/dev/null || "$PYTHON" -m pip install -q "mutmut==3.8.1"

declare -A TESTS=(
  [physics]="tests/core/physics"
  [metrics]="tests/core/metrics"
  [io]="tests/core/io/test_values_io.py tests/core/io/test_values_mask.py tests/core/io/test_io.py tests/core/io/test_safe_write.py tests/core/io/test_values_safe_write.py tests/core/io/test_values_movie.py tests/core/io/test_detector_values.py tests/core/io/test_probes_values.py tests/core/io/test_probe_formats.py tests/core/io/test_writer_values.py tests/core/io/test_hdf5_values.py tests/core/io/test_validate_values.py tests/core/io/test_arrays_values.py tests/core/io/test_lazy_values.py tests/core/io/test_experiment_values.py"
  [io/mask.py]="tests/core/io/test_mask_dtype.py tests/core/io/test_values_io.py tests/core/io/test_values_mask.py tests/core/io/test_io.py tests/core/io/test_safe_write.py tests/core/io/test_values_safe_write.py tests/core/io/test_values_movie.py tests/core/io/test_detector_values.py tests/core/io/test_probes_values.py tests/core/io/test_probe_formats.py tests/core/io/test_writer_values.py tests/core/io/test_hdf5_values.py tests/core/io/test_validate_values.py tests/core/io/test_arrays_values.py tests/core/io/test_lazy_values.py tests/core/io/test_experiment_values.py"
  [io/detector.py]="tests/core/io/test_centre_peak_values.py tests/core/io/test_detector_values.py tests/core/io/test_centre_off_axis.py tests/core/io/test_crop_blocks.py tests/core/io/test_real_detector.py tests/core/io/test_reconstruction_mask.py"
  [io/probes.py]="tests/core/io/test_probes_values.py tests/core/io/test_probe_formats.py tests/core/io/test_io_survivor_values.py"
  [io/hdf5.py]="tests/core/io/test_hdf5_values.py tests/core/io/test_io_survivor_values.py tests/core/io/test_values_io.py tests/core/io/test_io.py"
  # io: a module may name its own fast value tests; otherwise the io list above runs
  [io/arrays.py]="tests/core/io/test_arrays_values.py"
  [io/lazy.py]="tests/core/io/test_lazy_values.py"
  [io/experiment.py]="tests/core/io/test_experiment_values.py"
  [io/live.py]="tests/core/io/test_live_tiff_layouts.py tests/core/io/test_live_values.py"
  [tracking]="tests/core/tracking"
  [pid3net]="tests/core/pid3net/test_pid3net.py"
  # a module of a package may name its own (fast) tests; otherwise the package's tests run
  [pid3net/losses.py]="tests/core/pid3net/test_losses_values.py"
  [pid3net/blocks.py]="tests/core/pid3net/test_blocks_values.py"
  [pid3net/data.py]="tests/core/pid3net/test_data_values.py"
  [pid3net/config.py]="tests/core/pid3net/test_config_values.py"
  [pid3net/checkpoint.py]="tests/core/pid3net/test_checkpoint_values.py"
  [pid3net/inference.py]="tests/core/pid3net/test_inference_values.py"
  [pid3net/model.py]="tests/core/pid3net/test_model_values.py"
  [pid3net/train.py]="tests/core/pid3net/test_train_values.py tests/core/pid3net/test_train_policy_values.py"
  [pid3net/distributed.py]="tests/core/pid3net/test_distributed_ranks_values.py tests/core/pid3net/test_distributed_values.py"
  [recon]="tests/core/recon"
  [scann]="tests/core/scann/test_scann_voronoi.py tests/core/scann/test_scann_model.py tests/core/scann/test_scann_invariance.py"
  # scann: a module may name its own fast value tests (checked first); otherwise the package's tests run
  [scann/voronoi.py]="tests/core/scann/test_voronoi_values.py tests/core/scann/test_scann_voronoi.py tests/core/scann/test_scann_invariance.py"
  [scann/environments.py]="tests/core/scann/test_environments_values.py"
  [scann/uncertainty.py]="tests/core/scann/test_uncertainty_values.py tests/core/scann/test_target_members.py"
  [scann/domain.py]="tests/core/scann/test_domain_values.py"
  [scann/batching.py]="tests/core/scann/test_batching_values.py"
  [scann/model.py]="tests/core/scann/test_scann_model_values.py"
  [scann/predict.py]="tests/core/scann/test_predict_values.py tests/core/scann/test_target_members.py"
  [scann/datasets.py]="tests/core/scann/test_datasets_values.py"
  [scann/train.py]="tests/core/scann/test_scann_train_values.py"
  [scann/view.py]="tests/core/scann/test_view_values.py tests/core/scann/test_scann_view.py"
  # speckle: a module may name its own fast value tests (checked first); otherwise the package's tests run
  [speckle/features.py]="tests/core/speckle/test_features_values.py"
  [speckle/disks.py]="tests/core/speckle/test_disks_values.py"
  [speckle/saliency.py]="tests/core/speckle/test_saliency_values.py"
  [speckle/patterson.py]="tests/core/speckle/test_patterson_values.py"
  [speckle/radial.py]="tests/core/speckle/test_radial_values.py"
  [speckle/pipeline.py]="tests/core/speckle/test_speckle_pipeline_values.py"
  [speckle/classifier.py]="tests/core/speckle/test_speckle_classifier_values.py"
  [speckle/dataset.py]="tests/core/speckle/test_speckle_dataset_values.py"
  [speckle/models.py]="tests/core/speckle/test_speckle_models_values.py"
  [speckle/resnet.py]="tests/core/speckle/test_speckle_resnet_values.py"
  [speckle/train.py]="tests/core/speckle/test_speckle_train_batch.py tests/core/speckle/test_speckle_train_values.py"
  [speckle/radial_train.py]="tests/core/speckle/test_radial_train_values.py"
  [speckle/patterson_train.py]="tests/core/speckle/test_patterson_train_values.py tests/core/speckle/test_values_patterson_train.py"
  [speckle/patterns.py]="tests/core/speckle/test_prepare_range.py tests/core/speckle/test_values_speckle.py tests/core/speckle/test_values_baseline.py tests/core/speckle/test_values_speckle_metrics.py tests/core/speckle/test_values_patterns.py tests/core/speckle/test_speckle_core.py tests/core/speckle/test_patterns_sim_values.py"
  [speckle]="tests/core/speckle/test_values_speckle.py tests/core/speckle/test_values_baseline.py tests/core/speckle/test_values_speckle_metrics.py tests/core/speckle/test_values_patterns.py tests/core/speckle/test_speckle_core.py tests/core/speckle/test_patterns_sim_values.py tests/core/speckle/test_features_values.py tests/core/speckle/test_disks_values.py tests/core/speckle/test_saliency_values.py tests/core/speckle/test_patterson_values.py tests/core/speckle/test_radial_values.py tests/core/speckle/test_speckle_pipeline_values.py tests/core/speckle/test_speckle_classifier_values.py tests/core/speckle/test_speckle_dataset_values.py tests/core/speckle/test_speckle_models_values.py tests/core/speckle/test_speckle_resnet_values.py tests/core/speckle/test_speckle_train_values.py tests/core/speckle/test_speckle_train_batch.py tests/core/speckle/test_prepare_range.py tests/core/speckle/test_radial_train_values.py tests/core/speckle/test_patterson_train_values.py tests/core/speckle/test_values_patterson_train.py"
)
PACKAGES=("$@")
[ ${#PACKAGES[@]} -gt 0 ] || PACKAGES=(physics metrics io tracking pid3net recon scann speckle)
mkdir -p benchmarks/results
for target in "${PACKAGES[@]}"; do
  pkg=${target%%/*}                       # io/mask.py -> package io, module mask.py
  module=${target#"$pkg"}; module=${module#/}
  tests=${TESTS[$target]:-${TESTS[$pkg]:-}}
  [ -n "$tests" ] || { echo "unknown package $pkg (choose from ${!TESTS[*]})" >&2; exit 2; }
  if [ -n "$module" ]; then
    [ -f "src/napari_cxdi/$pkg/$module" ] || { echo "no module src/napari_cxdi/$pkg/$module" >&2; exit 2; }
    pattern="src/napari_cxdi/$pkg/$module"; key="$pkg/$module"; slug="${pkg}_${module%.py}"
  else
    pattern="src/napari_cxdi/$pkg/*"; key="$pkg"; slug="$pkg"
  fi
  # only the test files that exist in this checkout
  sel=""; for t in $tests; do [ -e "$t" ] && sel="$sel \"$t\","; done
  work=$(mktemp -d "${TMPDIR:-/tmp}/cxdi-mutation-$slug.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  # derived-data caches (e.g. SCANN features, keyed by input and config but not by code) go to this run's
  # scratch folder: a mutant must neither read the user's cache nor write wrong features into it
  export NAPARI_CXDI_CACHE="$work/cache"
  git ls-files -z --cached --others --exclude-standard | grep -z -v -E '^(sample_data/models|docs/.*\.png)' \
    | xargs -0 cp --parents -t "$work" 2>/dev/null || true
  cp -r sample_data "$work/" 2>/dev/null || true
  cat >> "$work/pyproject.toml" <<TOML

[tool.mutmut]
source_paths = ["src"]
only_mutate = ["$pattern"]
pytest_add_cli_args_test_selection = [${sel%,}]
pytest_add_cli_args = ["-p", "no:xvfb", "-p", "no:cacheprovider", "-x", "-q"]
timeout_multiplier = 10.0
TOML
  rerun=""
  if [ -n "${SURVIVORS_ONLY:-}" ]; then
    rerun=$("$PYTHON" -c 'import json, sys; print(" ".join(json.load(open(sys.argv[1])).get(sys.argv[2], {}).get("survivors", [])))' \
      benchmarks/results/mutation.json "$key" 2>/dev/null || true)
    [ -n "$rerun" ] || { echo "[mutation] $key: no recorded survivors to re-run" >&2; rm -rf "$work"; trap - EXIT; continue; }
  fi
  echo "[mutation] $key: mutating $pattern against:$tests${rerun:+ (only the $(wc -w <<<"$rerun") recorded survivors)}"
  start=$(date +%s)
  # DASK_SCHEDULER=synchronous: mutmut forks each mutant's run from a process whose dask thread pool already
  # exists; in the fork that pool has no threads, so any dask compute would hang until the timeout and count
  # as a (false) kill
  (cd "$work" && env -u PYTHONPATH CI=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 DASK_SCHEDULER=synchronous "$PYTHON" -m mutmut run --max-children "$JOBS" $rerun >"$work/run.log" 2>&1) || true
  tail -n 3 "$work/run.log" | tr '\r' '\n' | tail -n 2
  (cd "$work" && "$PYTHON" -m mutmut results --all true >"$work/results.txt" 2>&1) || true
  if ! grep -qE ": (killed|survived|no tests|timeout|suspicious|segfault)$" "$work/results.txt"; then
    # e.g. "failed to collect stats": a test failed or errored before any mutant ran; keep the old record
    echo "[mutation] $key: no mutant was checked; benchmarks/results/mutation.json left unchanged. mutmut said:" >&2
    tr '\r' '\n' <"$work/run.log" | grep -v '^\s*$' | tail -n 40 >&2
    rm -rf "$work"; trap - EXIT; exit 1
  fi
  (cd "$work" && "$PYTHON" -m mutmut export-cicd-stats >/dev/null 2>&1) || true
  survivors="$ROOT/benchmarks/results/mutation_${slug}_survivors.txt"
  grep -E ": (survived|no tests)$" "$work/results.txt" | awk -F: '{print $1}' | tr -d ' ' >"$work/survivors.lst" || true
  (cd "$work" && "$PYTHON" - "$work/survivors.lst" >"$survivors" 2>/dev/null <<'PY'
import contextlib, io, sys
import mutmut.__main__ as mm
for name in open(sys.argv[1]).read().split():
    buf = io.StringIO()
    with contextlib.suppress(Exception), contextlib.redirect_stdout(buf):
        mm.show.callback(name)
    print(buf.getvalue())
PY
  ) || true
  "$PYTHON" - "$key" "$work" "$(( $(date +%s) - start ))" "$JOBS" "$rerun" <<'PY'
import datetime, json, re, sys
from pathlib import Path
pkg, work, seconds, jobs = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rerun = sys.argv[5].split() if len(sys.argv) > 5 else []
status = {}
for line in (work / "results.txt").read_text().splitlines():
    m = re.match(r"\s*(\S+): (.+)$", line)
    if m:
        status[m.group(1)] = m.group(2).strip()
equivalent = {}
eq_file = Path("benchmarks/mutation_equivalent.txt")
if eq_file.exists():
    for line in eq_file.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, reason = line.partition(" ")
            equivalent[name] = reason.strip()
counts = {}
for name, st in status.items():
    counts[st] = counts.get(st, 0) + 1
survived = sorted(n for n, st in status.items() if st in ("survived", "no tests") and n not in equivalent)
killed = sum(v for k, v in counts.items() if k in ("killed", "timeout", "segfault", "suspicious"))
eq = sum(1 for n, st in status.items() if n in equivalent and st in ("survived", "no tests"))
total = sum(v for k, v in counts.items() if k not in ("skipped", "not checked"))
score = (killed + eq) / total if total else float("nan")
out_path = Path("benchmarks/results/mutation.json")
data = json.loads(out_path.read_text()) if out_path.exists() else {}
if rerun:  # only the recorded survivors ran: update the previous full record with their new status
    old = data[pkg]
    counts = dict(old["by_status"])
    for name in rerun:
        st = status.get(name)
        if st in (None, "not checked", "survived", "no tests"):
            continue
        src = "survived" if counts.get("survived", 0) > 0 else "no tests"
        counts[src] -= 1
        counts[st] = counts.get(st, 0) + 1
    counts = {k: v for k, v in counts.items() if v}
    survived = sorted(n for n in rerun if status.get(n) in ("survived", "no tests", None, "not checked") and n not in equivalent)
    killed = sum(v for k, v in counts.items() if k in ("killed", "timeout", "segfault", "suspicious"))
    total = old["mutants"]
    eq = total - killed - len(survived)
    score = (killed + eq) / total
    seconds += old.get("seconds", 0)
data[pkg] = {"mutants": total, "by_status": counts, "killed": killed, "equivalent": eq, "survived": len(survived),
             "killed_or_equivalent": killed + eq, "score": round(score, 4), "survivors": survived,
             "seconds": seconds, "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
             "command": f"JOBS={jobs} bash scripts/mutation.sh {pkg}" + (
                 f", then JOBS={jobs} SURVIVORS_ONLY=1 bash scripts/mutation.sh {pkg}" if rerun else "")}
from napari_cxdi.io.safe_write import write_text  # the one atomic write path
write_text(out_path, json.dumps(data, indent=1, sort_keys=True) + "\n", overwrite=True)
print(f"[mutation] {pkg}: {total} mutants, killed {killed}, equivalent {eq}, survived {len(survived)} -> score {score:.1%} ({seconds} s)")
PY
  rm -rf "$work"; trap - EXIT
done
