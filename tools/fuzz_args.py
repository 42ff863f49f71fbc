#!/usr/bin/env python
"""Fuzz the argument-validation layer of every public kernel (fastlayers.functional.__all__).

    PYTHONPATH=python python tools/fuzz_args.py --inputs 20000        # a long run
    PYTHONPATH=python python tools/fuzz_args.py --seed 123 --replay 17  # rerun one input

Inputs: for each draw, a kernel from fastlayers.functional.__all__ (every kernel that exists,
nothing to register) and one of
  * a valid call from the property-test table (tests/test_properties.py KERNELS) with NaN/Inf
    poured into its arrays ("poison"),
  * that valid call with 1-3 arguments replaced by garbage ("mutate"),
  * garbage for every argument, positional and keyword, sometimes too many or unknown ones
    ("garbage").
Garbage: arrays of every dtype (float16/64, ints, bool, complex, object, structured), rank 0-6,
zero-size, non-contiguous, read-only, zero-stride views claiming up to 2**62 elements,
misaligned float32 views; None, bools, ints near 2**31/2**63/2**100, NaN/Inf floats, strings,
bytes, lists, nested tuples, dicts, objects, callables.

Each batch runs in a child process (RLIMIT_AS 4 GiB unless under ASan, whose shadow memory
needs the address space; tools/sanitize.sh caps allocations instead), so a segfault or abort is
counted with its reproducer instead of ending the run; a batch that stops answering for
--timeout seconds is a hang. Reported: inputs tried, outcomes (ok / exception type), crashes,
hangs, and "unexpected" exceptions — anything but TypeError, ValueError, NotImplementedError,
MemoryError (a legitimately huge output refused), or RuntimeError about CUDA. Exit status 1
when there is any crash, hang or unexpected exception.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")
ALLOWED = {"TypeError", "ValueError", "NotImplementedError", "MemoryError"}
MEM_LIMIT = 4 << 30


# ---- input generation (runs in the child; deterministic in the seed) -------------------------
def _make_generator():
    import numpy as np

    sys.path.insert(0, TESTS)
    import test_properties as tp  # the kernel table: valid calls for every kernel

    return np, tp, tp.RandomGen


BIG = [2**31 - 1, 2**31, 2**31 + 1, 2**32, 2**40, 2**62, 2**63 - 1, 2**63, 2**64, 2**100]


def garbage_array(np, r: random.Random):
    """An array that is wrong in one or more ways (or, by chance, right)."""
    kind = r.random()
    if kind < 0.1:  # zero-stride view claiming a huge size (no memory behind it)
        rank = r.randint(1, 4)
        shape = [r.choice([1, 2, 3] + BIG[:6]) for _ in range(rank)]
        while np.prod([float(s) for s in shape]) >= 2.0**60:  # numpy's own limit: bytes < 2**63
            shape[r.randrange(rank)] = 1
        return np.broadcast_to(np.float32(r.choice([0.0, 1.0, np.nan])), tuple(shape))
    rank = r.choice([0, 1, 1, 2, 2, 3, 4, 4, 5, 6])
    shape = tuple(r.choice([0, 1, 1, 2, 3, 4, 5]) for _ in range(rank))
    dtype = r.choice(["float32"] * 6 + ["float64", "float16", "int32", "int64", "uint8", "bool", "complex64",
                                         "object", "f4,f4", "int8"])
    size = int(np.prod(shape)) if shape else 1
    if dtype == "object":
        a = np.empty(shape, dtype=object)
        a.reshape(-1)[:] = [r.choice([None, 1.0, "x", (1,)]) for _ in range(size)]
        return a
    if dtype == "f4,f4":
        return np.zeros(shape, dtype="f4,f4")
    vals = np.asarray([r.choice([0.0, 1.0, -1.0, 0.5, 3.0, -2.0, np.nan, np.inf, -np.inf, 1e30, -1e38])
                       for _ in range(size)])
    with np.errstate(all="ignore"):
        a = (vals.astype(np.complex64) if dtype == "complex64" else
             np.nan_to_num(vals).astype(dtype) if dtype[0] in "iub" else vals.astype(dtype)).reshape(shape)
    layout = r.random()
    if layout < 0.15 and a.ndim:
        a = a[tuple(slice(None, None, -1) for _ in range(a.ndim))]
    elif layout < 0.3 and a.ndim >= 2:
        a = a.swapaxes(0, -1)
    elif layout < 0.4:
        a.setflags(write=False)
    elif layout < 0.45 and dtype == "float32" and size:
        # misaligned float32 view into a byte buffer
        buf = np.zeros(size * 4 + 1, np.uint8)
        a = buf[1:].view(np.float32).reshape(shape)
    return a


def garbage_value(np, r: random.Random, depth=0):
    k = r.random()
    if k < 0.35:
        return garbage_array(np, r)
    pool = [None, True, False, 0, 1, -1, 2, 3, -7, 0.0, 0.5, -0.5, 1.5, float("nan"), float("inf"), -float("inf"),
            "", "same", "valid", "none", "tanh", "relu", "mean", "sum", "x" * 1000, b"bytes", [], {}, set(),
            object(), print, np.float32(1.5), np.int64(2), np.bool_(True), np.float64(np.nan), 1j, Ellipsis,
            slice(1, 2)] + BIG + [-b for b in BIG]
    if k < 0.8 or depth >= 2:
        return r.choice(pool)
    n = r.choice([0, 1, 2, 2, 3, 4])
    items = [garbage_value(np, r, depth + 1) for _ in range(n)]
    return items if r.random() < 0.4 else tuple(items)


def poison(np, r, obj):
    """Pour NaN/Inf/huge values into the float arrays of a valid call."""
    if isinstance(obj, np.ndarray) and obj.dtype == np.float32 and obj.size:
        a = np.array(obj)  # writable copy, same shape
        flat = a.reshape(-1)
        for _ in range(r.randint(1, 3)):
            flat[r.randrange(flat.size)] = r.choice([np.nan, np.inf, -np.inf, 3e38, -3e38, 1e-45])
        return a
    if isinstance(obj, (list, tuple)):
        return type(obj)(poison(np, r, o) for o in obj)
    return obj


def make_input(np, tp, RandomGen, r: random.Random, names):
    """One fuzz input: (kernel name, args, kwargs, mode)."""
    import inspect

    import fastlayers as fl

    name = r.choice(names)
    fn = getattr(fl, name)
    params = [p for p in inspect.signature(fn).parameters.values() if p.kind != p.VAR_KEYWORD]
    mode = r.choice(["poison", "mutate", "mutate", "mutate", "garbage"])
    if mode != "garbage" and name in tp.KERNELS:
        try:
            args, kw = tp.KERNELS[name](RandomGen(r))
        except Exception:  # the table's generator may need another kernel (backward entries)
            args, kw = None, None
        if args is not None:
            if mode == "poison":
                return name, poison(np, r, tuple(args)), kw, mode
            args, kw = list(args), dict(kw)
            for _ in range(r.randint(1, 3)):
                target = r.random()
                if target < 0.5 and args:
                    args[r.randrange(len(args))] = garbage_value(np, r)
                elif target < 0.8:
                    kwp = [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
                           and params.index(p) >= len(args)]
                    if kwp:
                        kw[r.choice(kwp)] = garbage_value(np, r)
                elif target < 0.9:
                    args.append(garbage_value(np, r))  # one too many
                elif args:
                    args.pop()  # one too few
            return name, tuple(args), kw, "mutate"
    pos = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    n = r.randint(0, len(pos) + 1)
    args = tuple(garbage_value(np, r) for _ in range(n))
    kw = {}
    for p in params[n:]:
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and r.random() < 0.5:
            kw[p.name] = garbage_value(np, r)
    if r.random() < 0.05:
        kw["no_such_argument"] = 1
    return name, args, kw, "garbage"


def describe(np, obj, depth=0):
    if isinstance(obj, np.ndarray):
        flags = "" if obj.flags.writeable else ",ro"
        return f"ndarray({obj.dtype},{obj.shape},strides={obj.strides}{flags})"
    if isinstance(obj, (list, tuple)) and depth < 3:
        inner = ", ".join(describe(np, o, depth + 1) for o in obj)
        return f"[{inner}]" if isinstance(obj, list) else f"({inner}{',' if len(obj) == 1 else ''})"
    text = repr(obj)
    return text if len(text) <= 40 else text[:37] + "..."


def child(seed: int, count: int, replay: int | None = None) -> None:
    """Run `count` inputs of the batch `seed`; one START and one DONE line per input."""
    import warnings

    if "libasan" not in os.environ.get("LD_PRELOAD", ""):
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (MEM_LIMIT, MEM_LIMIT))
    warnings.simplefilter("ignore")
    np, tp, RandomGen = _make_generator()
    import fastlayers as fl

    names = sorted(n for n in fl.functional.__all__)
    r = random.Random(seed)
    for i in range(count):
        name, args, kw, mode = make_input(np, tp, RandomGen, r, names)
        if replay is not None and i != replay:
            continue
        desc = f"{name}({', '.join([describe(np, a) for a in args] + [f'{k}={describe(np, v)}' for k, v in kw.items()])})"
        print(f"START {i} {mode} {desc}", flush=True)
        try:
            getattr(fl, name)(*args, **kw)
            outcome, msg = "ok", ""
        except Exception as e:  # noqa: BLE001 - classifying is the point
            outcome, msg = type(e).__name__, str(e).replace("\n", " ")[:200]
        print(f"DONE {i} {outcome} {msg}", flush=True)


# ---- parent: batches in subprocesses ----------------------------------------------------------
def child_env():
    """Under ASan (tools/sanitize.sh) the child's reports go to its stderr, so that a refused
    huge C++ allocation can be told from a real error."""
    env = dict(os.environ)
    if "ASAN_OPTIONS" in env:
        env["ASAN_OPTIONS"] += ":log_path=stderr"
    return env


# Under ASan, a C++ `new` beyond max_allocation_size_mb aborts (operator new may not return
# null) where a normal build throws std::bad_alloc -> MemoryError: not a crash.
ASAN_OOM = ("allocation-size-too-big", "out-of-memory")


def run_batch(seed, count, timeout):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--seed", str(seed), "--inputs", str(count)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=child_env())
        out, err, rc, hung = p.stdout, p.stderr, p.returncode, False
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
        rc, hung = None, True
    return out, err, rc, hung


def allowed(outcome, msg):
    return outcome in ALLOWED or outcome == "ok" or (outcome == "RuntimeError" and "CUDA" in msg.upper())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--inputs", type=int, default=5000, help="total inputs (default 5000)")
    ap.add_argument("--batch", type=int, default=500, help="inputs per child process")
    ap.add_argument("--seed", type=int, default=None, help="base seed (default: random, printed)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds a batch may run")
    ap.add_argument("--replay", type=int, default=None, help="with --seed: rerun input N of that batch, in-process")
    ap.add_argument("--json", default=None, help="write the summary here")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        child(a.seed, a.inputs)
        return 0
    if a.replay is not None:
        child(a.seed, a.replay + 1, replay=a.replay)
        return 0
    base = a.seed if a.seed is not None else random.SystemRandom().randrange(2**31)
    print(f"fuzz_args: base seed {base}, {a.inputs} inputs in batches of {a.batch}", flush=True)
    outcomes, modes, kernels = Counter(), Counter(), Counter()
    crashes, hangs, unexpected = [], [], []
    tried, t0, b = 0, time.time(), 0
    while tried < a.inputs:
        seed = base * 1000 + b  # batch b of base seed
        n = min(a.batch, a.inputs - tried)
        out, err, rc, hung = run_batch(seed, n, a.timeout)
        started, last = {}, None
        for line in out.splitlines():
            parts = line.split(" ", 3)
            if parts[0] == "START":
                last = int(parts[1])
                started[last] = (parts[2], parts[3] if len(parts) > 3 else "")
                modes[parts[2]] += 1
                kernels[started[last][1].split("(", 1)[0]] += 1
            elif parts[0] == "DONE":
                i, outcome, msg = int(parts[1]), parts[2], parts[3] if len(parts) > 3 else ""
                outcomes[outcome] += 1
                last = None
                if not allowed(outcome, msg) and len(unexpected) < 200:
                    unexpected.append({"seed": seed, "index": i, "input": started[i][1], "exception": outcome,
                                       "message": msg})
        tried += len(started)
        if not hung and rc != 0 and last is None:
            print("fuzz_args: a batch failed outside any input (harness or import error):", file=sys.stderr)
            print(err[-3000:], file=sys.stderr)
            return 2
        if not hung and rc != 0 and any(f"SUMMARY: AddressSanitizer: {m}" in err for m in ASAN_OOM):
            outcomes["MemoryError(asan)"] += 1
        elif hung or rc != 0:
            where = {"seed": seed, "index": last, "input": started.get(last, ("", "?"))[1],
                     "stderr": err[-1500:], "returncode": rc,
                     "replay": f"PYTHONPATH=python python tools/fuzz_args.py --seed {seed} --replay {last}"}
            (hangs if hung else crashes).append(where)
            # continue the rest of this batch's budget in a fresh batch
        b += 1
    dt = time.time() - t0
    summary = {"base_seed": base, "inputs": tried, "seconds": round(dt, 1), "outcomes": dict(outcomes),
               "modes": dict(modes), "kernels": len(kernels), "crashes": crashes, "hangs": hangs,
               "unexpected": unexpected}
    print(f"fuzz_args: {tried} inputs over {len(kernels)} kernels in {dt:.0f}s "
          f"({', '.join(f'{k} {v}' for k, v in sorted(modes.items()))})")
    print("  outcomes: " + ", ".join(f"{k} {v}" for k, v in outcomes.most_common()))
    print(f"  crashes: {len(crashes)}, hangs: {len(hangs)}, unexpected exceptions: {len(unexpected)}")
    for c in crashes + hangs:
        print(f"  CRASH/HANG rc={c['returncode']} {c['input']}\n    replay: {c['replay']}\n    {c['stderr'][-600:]}")
    for u in unexpected[:20]:
        print(f"  UNEXPECTED {u['exception']}: {u['message'][:120]}\n    {u['input'][:300]}\n"
              f"    replay: PYTHONPATH=python python tools/fuzz_args.py --seed {u['seed']} --replay {u['index']}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(summary, f, indent=1)
    return 1 if crashes or hangs or unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
