"""TEMPORARY stand-ins used only by the nn tests while branch nnk's dropout/embedding kernels and
fastlayers.optim are not merged into this tree.

`install()` fills each name in KERNELS that fastlayers.functional lacks with
fastlayers.reference's function when that exists, else with the plain-NumPy one below (API.md's
signatures, the semantics of branch nnk: a bool keep-mask, embedding_backward -> (grad_weight,)),
and provides fastlayers.optim (SGD, Adam with PyTorch's rules) when it is absent. `ref(name)`
gives the oracle: fastlayers.reference's function when there is one, else the one below. Once
nnk is merged nothing here is used and the file can go.
"""

from __future__ import annotations

import sys
import types

import numpy as np

KERNELS = ["dropout", "dropout_backward", "embedding", "embedding_backward"]


def dropout(x, p=0.5, training=True, seed=None):
    if not training:
        return x.copy(), None
    mask = np.random.default_rng(seed).random(x.shape) >= p
    scale = 0.0 if p == 1 else 1.0 / (1.0 - p)
    return (x * mask * scale).astype(x.dtype), mask


def dropout_backward(grad_out, mask, p=0.5, training=True):
    if not training:
        return grad_out.copy()
    scale = 0.0 if p == 1 else 1.0 / (1.0 - p)
    return (grad_out * mask * scale).astype(grad_out.dtype)


def embedding(indices, weight, padding_idx=None):
    return np.ascontiguousarray(weight[indices])


def embedding_backward(grad_out, indices, weight, padding_idx=None):
    gw = np.zeros(weight.shape, grad_out.dtype)
    np.add.at(gw, indices.reshape(-1), grad_out.reshape(-1, weight.shape[1]))
    if padding_idx is not None:
        gw[padding_idx] = 0
    return (gw,)


# -- optim (API.md: optim.SGD / optim.Adam, PyTorch's update rules) -------------------------
class _Opt:
    def __init__(self, params):
        self.params = list(params)

    def zero_grad(self):
        for p in self.params:
            p.grad = None


class SGD(_Opt):
    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(params)
        self.lr, self.momentum, self.dampening = lr, momentum, dampening
        self.weight_decay, self.nesterov = weight_decay, nesterov
        self.buf = [None] * len(self.params)

    def step(self):
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            g = p.grad + self.weight_decay * p.data if self.weight_decay else p.grad
            if self.momentum:
                if self.buf[i] is None:
                    self.buf[i] = np.array(g, copy=True)
                else:
                    self.buf[i] = self.momentum * self.buf[i] + (1 - self.dampening) * g
                g = g + self.momentum * self.buf[i] if self.nesterov else self.buf[i]
            p.data -= np.float32(self.lr) * g


class Adam(_Opt):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params)
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.m = [None] * len(self.params)
        self.v = [None] * len(self.params)
        self.t = 0

    def step(self):
        self.t += 1
        b1, b2 = self.betas
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            g = p.grad + self.weight_decay * p.data if self.weight_decay else p.grad
            if self.m[i] is None:
                self.m[i] = np.zeros_like(p.data)
                self.v[i] = np.zeros_like(p.data)
            self.m[i] = b1 * self.m[i] + (1 - b1) * g
            self.v[i] = b2 * self.v[i] + (1 - b2) * g * g
            mh = self.m[i] / (1 - b1**self.t)
            vh = self.v[i] / (1 - b2**self.t)
            p.data -= (self.lr * mh / (np.sqrt(vh) + self.eps)).astype(np.float32)


# -- installation -----------------------------------------------------------------------------
def ref(name):
    """The oracle for name: fastlayers.reference's function, or this file's stand-in."""
    from fastlayers import reference as R

    f = getattr(R, name, None)
    # (reference/<family>.py modules share some names, e.g. reference.rnn, until they fill in)
    return f if callable(f) and not isinstance(f, types.ModuleType) else globals()[name]


def missing_kernels():
    from fastlayers import functional as F

    return [n for n in KERNELS if not callable(getattr(F, n, None)) or isinstance(getattr(F, n), types.ModuleType)]


def install(monkeypatch=None):
    """Fill the kernels fastlayers.functional lacks (and fastlayers.optim if absent); returns the
    names filled. With a pytest monkeypatch, everything is undone after the test."""
    import importlib.util

    import fastlayers
    from fastlayers import functional as F

    def put(obj, name, value):
        if monkeypatch is None:
            setattr(obj, name, value)
        else:
            monkeypatch.setattr(obj, name, value, raising=False)

    filled = missing_kernels()
    for n in filled:
        put(F, n, ref(n))
    if importlib.util.find_spec("fastlayers.optim") is None:
        mod = types.ModuleType("fastlayers.optim")
        mod.SGD, mod.Adam = SGD, Adam
        if monkeypatch is None:
            sys.modules["fastlayers.optim"] = mod
        else:
            monkeypatch.setitem(sys.modules, "fastlayers.optim", mod)
        put(fastlayers, "optim", mod)
        filled.append("optim")
    return filled
