"""Rewrite the README's table of measured speeds from bench/results JSON files.

    python bench/readme_table.py bench/results/cpu-all.json [more.json ...]

The table goes between the markers <!-- bench:begin --> and <!-- bench:end --> in README.md
(SGEMM_CUDA's habit: the numbers in the README are generated, never typed)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def ratio(v):
    return f"{v:.2f}x" if v else "-"


def rate(row, peer):
    v = row["rate"].get(peer)
    return f"{v:.1f}" if v else "-"


def table(files) -> str:
    lines = []
    for f in files:
        d = json.loads(Path(f).read_text())
        m = d["machine"]
        lines.append(
            f"`{d['command']}` — {m['cpu']}, {m['cores']} cores, ISA {m['fastlayers']['cpu_isa']}, "
            f"{d['threads']} thread(s); FMA peak {d['fma_peak_gflops']:.0f} GFLOP/s, copy "
            f"{d['copy_bandwidth_gbs']:.1f} GB/s; NumPy {m['numpy']} ({m.get('numpy_blas', '?')}), "
            f"torch {m.get('torch')}; {d['date']}  \n"
        )
        lines.append("| op | shape | unit | fastlayers | NumPy ref | vs NumPy | torch | vs torch | % peak |")
        lines.append("|---|---|---|---:|---:|---:|---:|---:|---:|")
        for r in d["results"]:
            pct = f"{r['percent_of_peak']:.0f}%" if r.get("percent_of_peak") else "-"
            unit = r["unit"] or "ms"
            fl_rate = rate(r, "fastlayers") if r["unit"] else f"{r['seconds']['fastlayers'] * 1e3:.2f}"
            # † the row's note (e.g. conv's Winograd rows: effective GFLOP/s), listed below the table
            mark = " †" if r.get("note", "").startswith("Winograd") else ""
            lines.append(
                f"| {r['op']} | {r['shape']}{mark} | {unit} | {fl_rate} | {rate(r, 'numpy')} | "
                f"{ratio(r.get('ratio_vs_numpy'))} | {rate(r, 'torch')} | {ratio(r.get('ratio_vs_torch'))} | {pct} |"
            )
        winograd = [r["note"] for r in d["results"] if r.get("note", "").startswith("Winograd")]
        if winograd:
            lines.append(f"† {winograd[0]}.")
        lines.append("")
    return "\n".join(lines)


def main(argv) -> int:
    if not argv:
        print(__doc__)
        return 2
    readme = ROOT / "README.md"
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        print("README.md has no bench markers", file=sys.stderr)
        return 1
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(head + BEGIN + "\n" + table(argv) + "\n" + END + tail)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
