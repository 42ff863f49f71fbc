"""python -m fastlayers train-demo: train a small CNN on scikit-learn's 8x8 digits with a progress
bar, then print the test accuracy. Needs scikit-learn (pip install "fastlayers[examples]");
tqdm is optional (plain progress lines without it)."""

from __future__ import annotations

import argparse
import time

import numpy as np


def _build(nn):
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.3), nn.Linear(128, 10),
    )


class _Progress:
    """tqdm when installed, else a line per epoch."""

    def __init__(self, total, enabled):
        self.bar = None
        self.total, self.done, self.t0 = total, 0, time.perf_counter()
        if enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, unit="batch", dynamic_ncols=True)
            except ImportError:
                pass

    def update(self, n, **info):
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix(**info, refresh=False)

    def epoch_end(self, text):
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(f"{text}  [{self.done}/{self.total} batches, {time.perf_counter() - self.t0:.1f} s]", flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m fastlayers train-demo", description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="plain lines instead of a tqdm bar")
    args = p.parse_args(argv)
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        print("train-demo needs scikit-learn: pip install scikit-learn (or fastlayers[examples])")
        return 1
    import fastlayers as fl
    from fastlayers import nn, optim

    fl.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    d = load_digits()
    x = (d.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    y = d.target.astype(np.int64)
    order = rng.permutation(len(y))
    n_test = len(y) // 4
    x_te, y_te, x_tr, y_tr = x[order[:n_test]], y[order[:n_test]], x[order[n_test:]], y[order[n_test:]]
    print(f"fastlayers {fl.__version__} ({fl.info()['cpu_isa']}, {fl.get_num_threads()} threads): "
          f"CNN on digits, {len(y_tr)} train / {len(y_te)} test images")

    model = _build(nn)
    opt = optim.Adam(model.parameters(), lr=args.lr)
    crit = nn.CrossEntropyLoss()
    per_epoch = -(-len(y_tr) // args.batch_size)
    progress = _Progress(args.epochs * per_epoch, not args.no_progress)

    def accuracy():
        model.eval()
        pred = np.concatenate([model(x_te[i:i + 512]) for i in range(0, len(x_te), 512)]).argmax(axis=1)
        model.train()
        return float((pred == y_te).mean())

    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        total = 0.0
        perm = rng.permutation(len(y_tr))
        for i in range(0, len(perm), args.batch_size):
            idx = perm[i:i + args.batch_size]
            loss = crit(model(x_tr[idx]), y_tr[idx])
            opt.zero_grad()
            model.backward(crit.backward())
            opt.step()
            total += loss * len(idx)
            progress.update(1, loss=f"{loss:.3f}")
        progress.epoch_end(f"epoch {epoch + 1}/{args.epochs}: train loss {total / len(y_tr):.4f}, "
                           f"test accuracy {accuracy():.4f}")
    progress.close()
    acc = accuracy()
    print(f"test accuracy: {acc:.4f} ({time.perf_counter() - t0:.1f} s)")
    return 0
