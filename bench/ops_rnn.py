"""Recurrent-layer benchmark cases: whole-sequence LSTM inference (the issue's T=100, B=32,
I=256, H=512 shape and the batch-1 latency shape T=50, B=1, I=128, H=256), a training step
(forward + backward through time) on the first shape, a stacked bidirectional LSTM and an
Elman RNN, each against the NumPy reference and PyTorch's nn.LSTM / nn.RNN loaded with the
same weights."""

from __future__ import annotations

import numpy as np

import fastlayers as fl
from common import Case
from fastlayers import reference as R


def _module(torch, kind, I, H, L, bi):
    torch.manual_seed(0)
    if kind == "lstm":
        m = torch.nn.LSTM(I, H, num_layers=L, bidirectional=bi)
    else:
        m = torch.nn.RNN(I, H, num_layers=L, bidirectional=bi, nonlinearity="tanh")
    return m


def _params_from(m, L, bi):
    out = []
    for layer in range(L):
        for sfx in ("", "_reverse")[: 2 if bi else 1]:
            out.append(tuple(getattr(m, f"{n}_l{layer}{sfx}").detach().numpy()
                             for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")))
    return out


def _random_params(rng, G, I, H, L, bi):
    s = 1.0 / np.sqrt(H)
    out = []
    for layer in range(L):
        for _ in range(2 if bi else 1):
            n_in = I if layer == 0 else (2 if bi else 1) * H
            out.append(tuple(rng.uniform(-s, s, shape).astype(np.float32)
                             for shape in ((G * H, n_in), (G * H, H), (G * H,), (G * H,))))
    return out


def _flops(G, T, B, I, H, L, bi):
    dirs = 2 if bi else 1
    total = 0.0
    for layer in range(L):
        n_in = I if layer == 0 else dirs * H
        total += dirs * 2.0 * T * B * G * H * (n_in + H)
    return total


def _inference_case(torch, rng, kind, T, B, I, H, L=1, bi=False, numpy=True, note=""):
    G = 4 if kind == "lstm" else 1
    dirs = 2 if bi else 1
    m = _module(torch, kind, I, H, L, bi) if torch else None
    params = _params_from(m, L, bi) if torch else _random_params(rng, G, I, H, L, bi)
    x = rng.standard_normal((T, B, I), dtype=np.float32)
    kw = dict(num_layers=L, bidirectional=bi)
    if kind == "lstm":
        def fast():
            return fl.lstm(x, params, **kw)

        def ref():
            return R.lstm(x, params, **kw)
    else:
        def fast():
            return fl.rnn(x, params, **kw)

        def ref():
            return R.rnn(x, params, **kw)
    peer = None
    if torch:
        tx = torch.from_numpy(x)

        def peer():
            with torch.no_grad():
                return m(tx)
    op = f"{kind} inference" if L == 1 and not bi else f"{kind} {L}L{' bidir' if bi else ''} inference"
    return Case("rnn", op, f"T={T} B={B} I={I} H={H}", fast, numpy=ref if numpy else None, torch=peer,
                flops=_flops(G, T, B, I, H, L, bi), note=note, extra={"T": T, "B": B, "I": I, "H": H,
                                                                      "layers": L, "dirs": dirs})


def _training_case(torch, rng, T, B, I, H, numpy=True):
    m = _module(torch, "lstm", I, H, 1, False) if torch else None
    params = _params_from(m, 1, False) if torch else _random_params(rng, 4, I, H, 1, False)
    x = rng.standard_normal((T, B, I), dtype=np.float32)
    g = rng.standard_normal((T, B, H), dtype=np.float32)

    def fast():
        out, _, reserve = fl.lstm(x, params, training=True)
        return fl.lstm_backward(g, None, None, x, params, reserve)[0]

    def ref():
        out, _, reserve = R.lstm(x, params, training=True)
        return R.lstm_backward(g, None, None, x, params, reserve)[0]

    peer = None
    if torch:
        tx = torch.from_numpy(x).requires_grad_()
        tg = torch.from_numpy(g)

        def peer():
            m.zero_grad(set_to_none=True)
            tx.grad = None
            out, _ = m(tx)
            out.backward(tg)
            return tx.grad

    return Case("rnn", "lstm train fwd+bwd", f"T={T} B={B} I={I} H={H}", fast, numpy=ref if numpy else None,
                torch=peer, flops=3 * _flops(4, T, B, I, H, 1, False),
                note="forward with reserve + backward through time (all weight gradients)",
                extra={"T": T, "B": B, "I": I, "H": H, "layers": 1, "dirs": 1})


def cases(quick: bool, torch=None) -> list[Case]:
    rng = np.random.default_rng(0)
    out = [
        _inference_case(torch, rng, "lstm", 100, 32, 256, 512, note="issue 4 target: >= 0.9x torch, >= 10x numpy"),
        _inference_case(torch, rng, "lstm", 50, 1, 128, 256, note="batch-1 latency, issue 4 target: >= 1.0x torch"),
        _training_case(torch, rng, 100, 32, 256, 512, numpy=not quick),
    ]
    if not quick:
        out += [
            _inference_case(torch, rng, "lstm", 50, 16, 128, 256, L=2, bi=True),
            _inference_case(torch, rng, "rnn", 100, 32, 256, 512),
            _inference_case(torch, rng, "lstm", 200, 64, 128, 128),
        ]
    return out
