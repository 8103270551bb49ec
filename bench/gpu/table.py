"""One markdown table from the JSON lines bench/bench_gpu_sd15.py --json appends (bench/gpu/run.sh).

    python bench/gpu/table.py ROWS.jsonl
"""

from __future__ import annotations

import json
import sys


def table(rows: list[dict]) -> str:
    head = ["family", "memory plan", "px", "dtype", "images", "bare img/s", "audit img/s", "audit/bare time",
            "load s", "switch ms", "peak GiB", "estimate GiB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        peak = "n/a" if r.get("peak_gib") is None else f"{r['peak_gib']:.1f}"
        lines.append("| " + " | ".join([
            r["family"], r["memory"], str(r["resolution"]), r["dtype"], str(r["images"]),
            f"{r['bare_images_per_s']:.3f}", f"{r['audit_images_per_s']:.3f}", f"{r['audit_over_bare']:.2f}",
            f"{r['load_s']:.1f}", f"{r['switch_ms']:.1f}", peak, f"{r['estimated_gib']:.1f}"]) + " |")
    machines = sorted({r["machine"] for r in rows})
    return "\n".join(lines) + "\n\n" + "\n".join(f"machine: {m}" for m in machines) + "\n"


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        print(table([json.loads(line) for line in f if line.strip()]), end="")
