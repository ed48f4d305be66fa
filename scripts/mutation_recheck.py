"""Re-check recorded surviving mutants one by one after new tests were added (the module unchanged):
each mutant's diff (benchmarks/results/mutation_<slug>_survivors.txt) is applied to a scratch copy of
src/, the target's tests (scripts/mutation.sh's TESTS) run against it, and the record of the target in
benchmarks/results/mutation.json is updated: a mutant the tests now fail on counts as killed, one listed in
benchmarks/mutation_equivalent.txt as equivalent, the rest stay survivors.

    python scripts/mutation_recheck.py scann/environments.py

Not a replacement for a full run (the module must be unchanged since the run that recorded the survivors).
RECHECK_FIRST="tests/.../test_new.py" runs those test files first (faster: a killed mutant stops at once).
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from napari_cxdi.io.safe_write import write_text

ROOT = Path(__file__).resolve().parents[1]


def tests_for(target: str) -> list[str]:
    text = (ROOT / "scripts" / "mutation.sh").read_text()
    pkg = target.split("/")[0]
    for key in (target, pkg):
        m = re.search(r"^\s*\[" + re.escape(key) + r"\]=\"([^\"]*)\"", text, re.M)
        if m:
            return [t for t in m.group(1).split() if (ROOT / t).exists()]
    raise SystemExit(f"no tests for {target} in scripts/mutation.sh")


def diffs(slug: str) -> dict[str, str]:
    text = (ROOT / "benchmarks" / "results" / f"mutation_{slug}_survivors.txt").read_text()
    out = {}
    for block in re.split(r"^# ", text, flags=re.M)[1:]:
        head, _, body = block.partition("\n")
        out[head.split(":")[0].strip()] = body
    return out


def _replace_line(tmp: Path, diff: str) -> bool:
    """Fallback when patch cannot place the hunk (mutmut shows functions reformatted): replace the one
    removed line by the added one, if the removed line occurs exactly once in the file."""
    lines = diff.splitlines()
    target = next((ln[4:].strip() for ln in lines if ln.startswith("--- ")), None)
    minus = [ln[1:] for ln in lines if ln.startswith("-") and not ln.startswith("---")]
    plus = [ln[1:] for ln in lines if ln.startswith("+") and not ln.startswith("+++")]
    if not target or len(minus) != 1 or len(plus) != 1:
        return False
    path = tmp / target
    for rej in path.parent.glob(path.name + ".*"):
        rej.unlink()
    text = path.read_text()
    old, new = minus[0].strip(), plus[0].strip()
    if text.count(old) != 1:
        return False
    path.write_text(text.replace(old, new))
    return True


def main(target: str) -> None:
    pkg, _, module = target.partition("/")
    slug = f"{pkg}_{module[:-3]}" if module else pkg
    record_path = ROOT / "benchmarks" / "results" / "mutation.json"
    data = json.loads(record_path.read_text())
    rec = data[target]
    equivalent = {line.split(" ", 1)[0] for line in (ROOT / "benchmarks" / "mutation_equivalent.txt").read_text().splitlines()
                  if line.strip() and not line.startswith("#")}
    tests = tests_for(target)
    # RECHECK_FIRST="a.py b.py": run these test files first (the new tests written to kill the survivors), so
    # that a killed mutant stops at its first failure (-x) instead of after the package's other tests
    first = [t for t in os.environ.get("RECHECK_FIRST", "").split() if (ROOT / t).exists()]
    tests = first + [t for t in tests if t not in first]
    patches = diffs(slug)
    killed, still = [], []
    for name in rec["survivors"]:
        if name in equivalent:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copytree(ROOT / "src", Path(tmp) / "src")
            p = subprocess.run(["patch", "-p0", "-s", "-F3", "-d", tmp], input=patches[name], text=True,
                               capture_output=True)
            if p.returncode and _replace_line(Path(tmp), patches[name]):
                p = subprocess.CompletedProcess(p.args, 0)
            if p.returncode:
                print(f"{name}: patch did not apply ({p.stdout.strip()[:200]}); left as survivor")
                still.append(name)
                continue
            env = dict(os.environ, PYTHONPATH=str(Path(tmp) / "src"), CI="1", OMP_NUM_THREADS="1",
                       NAPARI_CXDI_CACHE=str(Path(tmp) / "cache"))
            r = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:xvfb", "-p", "no:cacheprovider",
                                *tests], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
            (killed if r.returncode else still).append(name)
            print(f"{name}: {'killed' if r.returncode else 'survived'}", flush=True)
    eq = sum(1 for n in rec["survivors"] if n in equivalent)
    counts = dict(rec["by_status"])
    counts["survived"] = counts.get("survived", 0) - len(killed)
    counts["killed"] = counts.get("killed", 0) + len(killed)
    total = rec["mutants"]
    # records of the first runs (physics) have no "killed" field: killed = killed + timeout + segfault + suspicious
    k = rec.get("killed", sum(v for s, v in rec["by_status"].items()
                              if s in ("killed", "timeout", "segfault", "suspicious"))) + len(killed)
    e = rec.get("equivalent", 0) + eq
    rec.update({"by_status": {a: b for a, b in counts.items() if b}, "killed": k, "equivalent": e,
                "survived": len(still), "killed_or_equivalent": k + e, "score": round((k + e) / total, 4),
                "survivors": sorted(still),
                "recheck": {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                            "killed_by_new_tests": sorted(set(killed) | set(rec.get("recheck", {}).get("killed_by_new_tests", []))),
                            "newly_equivalent": eq + rec.get("recheck", {}).get("newly_equivalent", 0),
                            "command": f"python scripts/mutation_recheck.py {target}"}})
    data = json.loads(record_path.read_text())  # re-read: another target's run may have written meanwhile
    data[target] = rec
    write_text(record_path, json.dumps(data, indent=1, sort_keys=True) + "\n", overwrite=True)  # atomic
    print(f"[recheck] {target}: killed {k}, equivalent {e}, survived {len(still)} -> score {(k + e) / total:.1%}")


if __name__ == "__main__":
    for t in sys.argv[1:]:
        main(t)
