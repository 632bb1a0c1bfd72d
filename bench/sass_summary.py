"""Markdown table of two `python -m tritonconv.compile --report --json` files side by side (before/after).

    python bench/sass_summary.py bench/results/sass_report_before.json bench/results/sass_report_after.json \
        > bench/results/sass_report.md
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from tritonconv.results import load_results  # noqa: E402


def _cell(record: dict) -> str:
    s = record.get("sass") or {}
    loads = " ".join(f"{b}b:{n}" for b, n in sorted(s.get("load_bits", {}).items(), key=lambda kv: -int(kv[0]))) or "-"
    mma = f"{s.get('mma_kind') or '-'}" + (" SER" if record.get("serialised_wgmma") else "")
    if s.get("wgmma_wait_depth") is not None:
        mma += f" w{s['wgmma_wait_depth']}"
    ratio = record.get("loop_ratio")
    loop = f"{s.get('loop_instructions')}/{(record.get('reference') or {}).get('loop_instructions', '-')}"
    loop += f" ({ratio:.2f}x)" if ratio is not None else ""
    ld = f"{s.get('loop_async_loads', 0)}a/{s.get('loop_sync_loads', 0)}s {loads}"
    return f"{record.get('family')} | {mma} | {loop} | {ld} | {record.get('spill_bytes')}"


def _records(path: str) -> list[dict]:
    """A report's records (a results file of kind "compile")."""
    return load_results(path)["records"]


def main(before_path: str, after_path: str) -> str:
    before = {(r["label"], r["sm"]): r for r in _records(before_path)}
    after = {(r["label"], r["sm"]): r for r in _records(after_path)}
    lines = [
        "Per suite layer (fp16 NHWC), the dispatcher's default kernel before and after issue 14. loop: main-loop",
        "instructions / tutorial matmul's of the same tile (ratio); loads: async/sync in the loop and widths;",
        "mma: kind, SER = ptxas serialised the wgmma (C7515), wN = wgmma wait depth. Static structure only.",
        "",
        "| layer | sm | before: family | mma | loop | loads | spill | after: family | mma | loop | loads | spill | after: bar |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key in after:
        b, a = before.get(key), after[key]
        bar = "; ".join(v.split(":")[0] for v in a.get("bar_violations", [])) or "ok"
        lines.append(f"| {key[0]} | {key[1]} | {_cell(b) if b else '- | - | - | - | -'} | {_cell(a)} | {bar} |")
    missed = sum(bool(r.get("bar_violations")) for r in before.values()), sum(bool(r.get("bar_violations")) for r in after.values())
    lines += ["", f"Kernels missing the bar: before {missed[0]} of {len(before)}, after {missed[1]} of {len(after)}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(main(*sys.argv[1:3]))
