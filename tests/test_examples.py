"""Shortened runs of every example (main(quick=True)) and of `python -m fastlayers train-demo`.

Run with `pytest -m examples`. Quick mode trains for a few epochs only, so the bars are lower
than the full runs' (stated in each example's docstring) but far above chance, so a pass still
proves that the model learns:

    perceptron        separable accuracy >= 0.97; XOR accuracy <= 0.75 (no line does better)
    mlp_digits        >= 0.85   (chance 0.10; full run >= 0.96)
    cnn_digits        >= 0.90   (full run >= 0.97)
    resnet_digits     >= 0.85
    inception_digits  >= 0.70
    mobilenet_digits  >= 0.85
    lstm_digits       >= 0.75
    bilstm_digits     >= 0.70
    transformer_digits>= 0.75
    echo_state        test NRMSE < 0.2 at 10 steps ahead (persistence baseline ~1.2)
    gan_mixture       mean distance of samples to the nearest mode < 0.6 x the untrained generator's
    autoencoder       test MSE < 0.6 x the mean-image baseline's
"""

from __future__ import annotations

import importlib
import os
import sys

import pytest


EXAMPLES = os.path.join(os.path.dirname(__file__), os.pardir, "examples")

pytestmark = pytest.mark.examples


@pytest.fixture(autouse=True)
def example_path(monkeypatch):
    monkeypatch.syspath_prepend(os.path.abspath(EXAMPLES))


def run(name):
    mod = importlib.import_module(name)
    return mod.main(quick=True)


DIGITS = [("mlp_digits", 0.85), ("cnn_digits", 0.90), ("resnet_digits", 0.85), ("inception_digits", 0.70),
          ("mobilenet_digits", 0.85), ("lstm_digits", 0.75), ("bilstm_digits", 0.70), ("transformer_digits", 0.75)]


@pytest.mark.parametrize("name,bar", DIGITS)
def test_digit_classifiers(name, bar, capsys):
    acc = run(name)
    assert "test accuracy" in capsys.readouterr().out
    assert acc >= bar, f"{name}: quick-mode test accuracy {acc:.3f} < {bar}"


def test_perceptron():
    r = run("perceptron")
    assert r["separable"] >= 0.97
    assert r["xor"] <= 0.75


def test_echo_state():
    assert run("echo_state") < 0.2


def test_gan_mixture():
    r = run("gan_mixture")
    assert r["distance"] < 0.6 * r["start_distance"], r


def test_autoencoder():
    assert run("autoencoder_digits")["ratio"] < 0.6


def test_train_demo(capsys):
    from fastlayers import __main__ as cli

    assert cli.main(["train-demo", "--epochs", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    acc = float(out.strip().splitlines()[-1].split()[2])
    assert acc >= 0.8, out  # one epoch of the demo CNN; chance is 0.1


def test_examples_import_cleanly():
    """Every example module exposes main(quick=False)."""
    names = sorted(f[:-3] for f in os.listdir(EXAMPLES) if f.endswith(".py") and not f.startswith("_"))
    assert len(names) == 12
    for n in names:
        assert callable(importlib.import_module(n).main), n
    assert all(n in sys.modules for n in names)
