"""Cold-start cost of the tuning cache: time and peak memory of a process's first `conv2d` with a synthetic
N-entry cache (each entry with its trial history, ~8 KB as tuned grid studies leave them) against an empty one.

    python bench/cache_cold_start.py --entries 20000 --migrate    # a v1 file; measured, migrated, measured again
    python bench/cache_cold_start.py --pythonpath OLD_CHECKOUT    # the same with an older tritonconv

Runs on the CPU (Triton interpreter); the cache's share is the difference to the empty-cache run.

Measured on the shared 2-core development machine (times vary with its load), 20000 entries, a 185 MB v1 file,
first conv2d / peak RSS growth: empty cache 0.7-1.0 s / +3.6 MB; v1 file parsed whole (up to 0973ebb) 16.5-27.8 s /
+795 MB on every run until migrated; v1 file read entry by entry (store.IndentedIndexed) 1.8-6.1 s / +188 MB (its bytes);
migration by `cache check --fix` 151 s (20000 trial files written); after it (v3 hot file, 19 MB) 2.1 s / +23 MB.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIRST_CALL = """
import json, time
import torch
import tritonconv

def status(field):
    return int(open("/proc/self/status").read().split(field + ":")[1].split()[0]) / 1024

x, w = torch.randn(1, 4, 5, 5), torch.randn(8, 4, 3, 3)
tritonconv.conv2d(x, w, padding=1, backend="cudnn")  # torch's own first-call costs, outside the measurement
rss0 = status("VmRSS")
t0 = time.perf_counter()
tritonconv.conv2d(x, w, padding=1)
t1 = time.perf_counter()
print(json.dumps({"first_conv2d_s": t1 - t0, "rss_growth_mb": status("VmHWM") - rss0, "rss_after_mb": status("VmRSS")}))
"""


def synthetic_v1_cache(path: Path, count: int, trials_per_entry: int = 20) -> None:
    """A version-1 cache file (trials inline) of `count` valid entries for this machine's CPU fingerprint."""
    from tritonconv import cache
    from tritonconv.kernels import get_family
    from tritonconv.problem import ConvProblem

    family = get_family("implicit_gemm")
    here = cache.fingerprint("cpu")
    base = ConvProblem(n=1, c=16, h=8, w=8, k=32, r=3, s=3, pad_h=1, pad_w=1, dtype="float16", layout="nhwc")
    config = {"family": family.name, **family.default_config(base)}
    entries = {}
    for i in range(count):
        problem = base.with_(n=1 + i % 64, k=8 * (1 + i // 64))
        trials = [{"family": family.name, "family_version": family.version, "config": {**config, "BLOCK_M": 16 * (t % 8 + 1),
                   "trial": t}, "time_ms": 1.0 + t / 100, "rel_error": 1e-4, "error": None} for t in range(trials_per_entry)]
        entries[cache.entry_key(problem, here)] = {
            "family": family.name, "family_version": family.version, "config": config, "time_ms": 1.0,
            "cudnn_time_ms": 2.0, "cudnn_error": None, "rel_error": 1e-4, "precision": problem.precision,
            "trials_run": trials_per_entry, "wall_time_s": 12.5, "timestamp": "2026-01-01T00:00:00", "fingerprint": here,
            "triton": "3.6.0", "problem": problem.to_dict(), "search": {"layouts": "native", "precisions": ["fp16"]},
            "timer": "cuda", "trials": trials,
        }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"schema": cache.SCHEMA, "version": 1, "entries": entries}, indent=1))


def measure(cache_dir: Path, pythonpath: str) -> dict:
    env = {**os.environ, "TRITONCONV_CACHE_DIR": str(cache_dir), "TRITON_INTERPRET": "1", "PYTHONPATH": pythonpath}
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", FIRST_CALL], env=env, cwd=pythonpath, check=True, capture_output=True,
                         text=True).stdout
    return {**json.loads(out.strip().splitlines()[-1]), "process_s": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=20000)
    parser.add_argument("--pythonpath", default=str(Path(__file__).resolve().parents[1]),
                        help="the tritonconv checkout to measure (e.g. an older commit's worktree)")
    parser.add_argument("--migrate", action="store_true", help="migrate the v1 file before the second run")
    parser.add_argument("--generate", metavar="FILE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        synthetic_v1_cache(Path(args.generate), args.entries)
        return
    with tempfile.TemporaryDirectory() as tmp:
        empty, full = Path(tmp) / "empty", Path(tmp) / "full"
        # Written by the measured checkout itself, so its problems have exactly the fields that version knows.
        subprocess.run([sys.executable, __file__, "--generate", str(full / "tuning-cache.json"), "--entries",
                        str(args.entries)], env={**os.environ, "PYTHONPATH": args.pythonpath}, check=True)
        size_mb = (full / "tuning-cache.json").stat().st_size / 2**20
        runs = {"empty cache": measure(empty, args.pythonpath)}
        runs[f"{args.entries} entries, first run ({size_mb:.0f} MB v1 file)"] = measure(full, args.pythonpath)
        if args.migrate:
            env = {**os.environ, "TRITONCONV_CACHE_DIR": str(full), "TRITON_INTERPRET": "1", "PYTHONPATH": args.pythonpath}
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "tritonconv.cli", "cache", "check", "--fix"], env=env, check=True,
                           cwd=args.pythonpath, capture_output=True)
            runs["migration (tritonconv cache check --fix)"] = {"process_s": time.perf_counter() - started}
        runs[f"{args.entries} entries, after migration" if args.migrate else f"{args.entries} entries, second run"] = \
            measure(full, args.pythonpath)
        hot = full / "tuning-cache.json"
        runs["hot file now"] = {"size_mb": hot.stat().st_size / 2**20, "version": json.loads(hot.read_text())["version"]}
    print(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
