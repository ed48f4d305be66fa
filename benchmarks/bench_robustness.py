"""Robustness: >= 1000 generated damaged/unusual inputs fed to every reader and command.

    PYTHONPATH=src python benchmarks/bench_robustness.py [--cases 1000] [--workers 2]

Cases come from ``tests/core/io/fuzz_corpus.py`` (empty, random, truncated, bit-flipped, wrong dtype/rank,
giant declared shapes, NaN/inf/negative/all-zero content, bad geometry and metadata, no data, links
(dangling and working), TIFF layouts (page stacks, hyperstacks, RGB), permission denied, folders,
probes, phase movies, structure files) and are fed to open_movie, ``info``, read_probe, the all-frame
validation, the napari reader, ``reconstruct``, ``track``, ``speckle classify`` and ``scann predict``.

Each worker is a subprocess that logs ``start``/``done`` per case, so a crash (segfault, abort, a
kill by the OOM killer) is attributed to its case and the worker restarted after it.

Prints: untyped exceptions, crashes, silent acceptances (a bad input that succeeded), wrong results
(wrong frame count), valid inputs rejected, inputs changed - the goal is 0 for all - and writes
benchmarks/results/robustness.json.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "core" / "io"))

BAD = ("untyped", "crash", "silent", "wrong", "rejected-valid", "changed")


def run_chunk(cases: list[dict], scratch: Path, log: Path, timeout_s: float, cpu: list) -> list[dict]:
    """Run ``cases`` in a worker subprocess (restarted after a crash); returns all records.

    ``cpu`` receives the CPU seconds the cases took (the machine may be shared: wall time is not the cost)."""
    import fuzz_corpus as fc

    records: list[dict] = []
    start = 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests" / "core" / "io"), os.environ.get("PYTHONPATH", "")])}
    while start < len(cases):
        part = scratch / f"cases_{start}.json"
        part.write_text(json.dumps(cases[start:]))
        log.unlink(missing_ok=True)
        proc = subprocess.Popen([sys.executable, fc.__file__, str(part), str(scratch), str(log)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            _, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        started, finished = None, set()
        for line in log.read_text().splitlines() if log.exists() else []:
            entry = json.loads(line)
            if "start" in entry:
                started = entry["start"]
            else:
                finished.add(entry["done"])
                records.extend(entry["records"])
                cpu.append(entry.get("cpu_s", 0.0))
        if proc.returncode == 0 and len(finished) == len(cases) - start:
            break
        # the worker died: the case it had started is a crash
        if started is None or started in finished:
            records.append({"case": "?", "kind": "?", "target": "*", "expect": "-", "outcome": "crash",
                            "message": f"worker died before a case started (rc {proc.returncode}): {err[-300:]}"})
            break
        bad = cases[start + started]
        records.append({"case": bad["name"], "kind": bad["kind"], "target": "*", "expect": "-", "outcome": "crash",
                        "message": f"worker exit status {proc.returncode}: {err[-300:]}"})
        start += started + 1
    return records


def _generate(job) -> list[dict]:
    import fuzz_corpus as fc

    folder, n, seed, indices = job
    return [c.to_dict() for c in fc.generate(folder, n, seed=seed, indices=indices)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "robustness.json")
    args = parser.parse_args(argv)

    import fuzz_corpus as fc

    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="cxdi-robustness-"))
    try:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.workers) as pool:
            parts = pool.map(_generate, [(work / "corpus", args.cases, args.seed, list(range(k, args.cases, args.workers)))
                                         for k in range(args.workers)])
            chunks = [list(p) for p in parts]
        t_generate = time.perf_counter() - t0
        results: list[list[dict]] = [[] for _ in chunks]
        cpu: list[float] = []

        def go(k):
            scratch = work / f"worker{k}"
            scratch.mkdir()
            results[k] = run_chunk(chunks[k], scratch, scratch / "log.jsonl", timeout_s=1800, cpu=cpu)

        threads = [threading.Thread(target=go, args=(k,)) for k in range(len(chunks))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        records = [r for part in results for r in part]
    finally:
        for p in work.rglob("*"):  # permission-denied cases were chmod 000
            try:
                if not p.is_symlink():
                    os.chmod(p, 0o755 if p.is_dir() else 0o644)
            except OSError:
                pass
        shutil.rmtree(work, ignore_errors=True)
    wall = time.perf_counter() - t0

    totals = collections.Counter(r["outcome"] for r in records)
    by_target = collections.defaultdict(collections.Counter)
    by_kind = collections.defaultdict(collections.Counter)
    for r in records:
        by_target[r["target"]][r["outcome"]] += 1
        by_kind[r["kind"]][r["outcome"]] += 1
    failures = [r for r in records if r["outcome"] in BAD]

    cpu_s = sum(cpu)
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    print(f"{args.cases} generated cases, {len(records)} (case, entry point) runs, {args.workers} workers, "
          f"{wall:.1f} s wall (generation {t_generate:.1f} s), {cpu_s:.1f} CPU s in the cases "
          f"(= {cpu_s / args.workers:.0f} s on {args.workers} idle cores), load average {load:.1f}")
    print(f"{'entry point':<14}" + "".join(f"{k:>15}" for k in ("ok", "typed") + BAD))
    for target in list(fc.TARGETS) + ["*"]:
        if target in by_target:
            c = by_target[target]
            print(f"{target:<14}" + "".join(f"{c.get(k, 0):>15}" for k in ("ok", "typed") + BAD))
    print()
    summary = {
        "untyped_exceptions": totals.get("untyped", 0), "crashes": totals.get("crash", 0),
        "silent_acceptances": totals.get("silent", 0), "wrong_results": totals.get("wrong", 0),
        "valid_inputs_rejected": totals.get("rejected-valid", 0), "inputs_changed": totals.get("changed", 0),
    }
    for key, value in summary.items():
        print(f"{key:<24} {value}")
    for r in failures[:30]:
        print(f"  {r['outcome']:<14} {r['kind']:<18} {r['target']:<12} {r['case']}: {r.get('message', '')[:160]}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT / "src"))
    from napari_cxdi.io.safe_write import write_json
    from napari_cxdi.provenance import provenance

    write_json(args.output, provenance({"cases": args.cases, "workers": args.workers, "seed": args.seed}, {
        **summary, "runs": len(records), "wall_s": round(wall, 1), "generation_s": round(t_generate, 1),
        "case_cpu_s": round(cpu_s, 1), "load_average": load,
        "cpu_count": os.cpu_count(), "by_entry_point": {k: dict(v) for k, v in by_target.items()},
        "by_kind": {k: dict(v) for k, v in by_kind.items()}, "failures": failures[:200],
    }), overwrite=True)
    print(f"wrote {args.output}")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
