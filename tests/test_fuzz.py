"""A short run of the argument fuzzer (tools/fuzz_args.py) over every public kernel.

2000 random, mostly malformed calls (FASTLAYERS_FUZZ_INPUTS to change), in child processes: no
crash (segfault/abort), no hang, and every exception a TypeError, ValueError,
NotImplementedError, MemoryError (a legitimately huge output refused) or a RuntimeError about
CUDA. The seed is fresh each run and printed in the failure message with a replay command."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_INPUTS = int(os.environ.get("FASTLAYERS_FUZZ_INPUTS", "2000"))


def test_fuzz_argument_validation(tmp_path, request):
    out = tmp_path / "fuzz.json"
    cmd = [sys.executable, os.path.join(ROOT, "tools", "fuzz_args.py"), "--inputs", str(N_INPUTS),
           "--batch", "1000", "--json", str(out)]
    seed = os.environ.get("FASTLAYERS_TEST_SEED")
    if seed:
        cmd += ["--seed", seed]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert out.exists(), f"fuzzer did not finish (rc {p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    s = json.loads(out.read_text())
    report = p.stdout[-6000:]
    assert s["inputs"] >= N_INPUTS, report
    assert not s["crashes"], f"crashes:\n{report}"
    assert not s["hangs"], f"hangs:\n{report}"
    assert not s["unexpected"], f"unexpected exception types:\n{report}"
    assert p.returncode == 0, report
    capman = request.config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled():
        print("\n" + "\n".join(ln for ln in p.stdout.splitlines() if ln.startswith(("fuzz_args", "  outcomes",
                                                                                    "  crashes"))))
