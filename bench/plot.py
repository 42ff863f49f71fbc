"""GFLOP/s versus size for the GEMM rows of a benchmark run (matplotlib, PNG)."""

from __future__ import annotations


def gemm_plot(rows, path, fma_peak):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    square = [r for r in rows if r["op"] == "gemm" and r.get("size")]
    if not square:
        return
    square.sort(key=lambda r: r["size"])
    sizes = [r["size"] for r in square]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for peer, style in (("fastlayers", "o-"), ("numpy", "s--"), ("torch", "^:")):
        ys = [r["rate"].get(peer) for r in square]
        if any(y is not None for y in ys):
            ax.plot(sizes, ys, style, label=peer)
    if fma_peak:
        ax.axhline(fma_peak, color="gray", lw=0.8, label=f"FMA peak {fma_peak:.0f}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("square size n (n x n @ n x n, float32)")
    ax.set_ylabel("GFLOP/s")
    ax.set_title("GEMM throughput")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
