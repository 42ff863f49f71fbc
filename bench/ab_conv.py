"""conv2d forward on the ResNet-18 3x3 layers: fastlayers, PyTorch and the NumPy reference
interleaved in one process, round after round (best of each), the robust check of the
bench/run.py ratios on a noisy 2-core VM (a single pass moves +-10%).

    PYTHONPATH=python python bench/ab_conv.py [--batch 1,8] [--rounds 7] [--threads 2] [--json PATH]

One line a layer: GFLOP/s of each (best round) and the ratios fastlayers/torch and
fastlayers/NumPy, from the best round and from the medians. Needs torch for its column.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fastlayers as fl
from common import machine_info, time_rounds
from fastlayers import reference as R

LAYERS = [(64, 56), (128, 28), (256, 14), (512, 7)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    args = ap.parse_args()
    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:
        torch = None
    fl.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    rows = []
    for n in (int(b) for b in args.batch.split(",")):
        for c, h in LAYERS:
            x = rng.standard_normal((n, c, h, h), dtype=np.float32)
            w = (rng.standard_normal((c, c, 3, 3), dtype=np.float32) * (9 * c) ** -0.5).astype(np.float32)
            fns = {"fastlayers": lambda x=x, w=w: fl.conv2d(x, w, None, 1, 1),
                   "numpy": lambda x=x, w=w: R.conv2d(x, w, None, 1, 1)}
            if torch is not None:
                tx, tw = torch.from_numpy(x), torch.from_numpy(w)
                fns["torch"] = lambda tx=tx, tw=tw: torch.nn.functional.conv2d(tx, tw, None, 1, 1)
            flops = 2.0 * n * c * c * 9 * h * h
            times = time_rounds(fns, min_time=0.05 * args.rounds, repeat=args.rounds)
            best = {k: min(v) for k, v in times.items()}
            med = {k: float(np.median(v)) for k, v in times.items()}
            row = {"shape": f"{n}x{c}x{h}x{h} -> {c}, 3x3 s1",
                   **{f"{k}_GFLOPs": round(flops / t / 1e9, 1) for k, t in best.items()},
                   "vs_numpy": round(best["numpy"] / best["fastlayers"], 2),
                   "vs_numpy_median": round(med["numpy"] / med["fastlayers"], 2)}
            if "torch" in best:
                row["vs_torch"] = round(best["torch"] / best["fastlayers"], 2)
                row["vs_torch_median"] = round(med["torch"] / med["fastlayers"], 2)
            row.update({f"{k}_ms": [round(t * 1e3, 3) for t in v] for k, v in times.items()})
            rows.append(row)
            print(f"{row['shape']:28s} fl {row['fastlayers_GFLOPs']:6.1f}  torch {row.get('torch_GFLOPs', 0):6.1f}  "
                  f"numpy {row['numpy_GFLOPs']:5.1f} GFLOP/s | vs torch {row.get('vs_torch', 0):.2f} "
                  f"(median {row.get('vs_torch_median', 0):.2f})  vs numpy {row['vs_numpy']:.2f} "
                  f"(median {row['vs_numpy_median']:.2f})", flush=True)
    if args.json:
        out = {"what": "conv2d forward, ResNet-18 3x3 layers, interleaved rounds in one process "
                       f"({args.rounds} rounds of bench/common.py's time_rounds: fastlayers/NumPy/torch in "
                       "turn, each after a 0.12 s pause and 5 ms of untimed calls; best and median kept)",
               "command": "PYTHONPATH=python python bench/ab_conv.py " + " ".join(sys.argv[1:]),
               "threads": args.threads, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "machine": machine_info(), "rows": rows}
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
