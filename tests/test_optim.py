"""Optimizers: several steps vs a float64 NumPy transcription of each PyTorch rule (always),
vs torch.optim itself (torch marker), param groups, state, errors."""

import math

import numpy as np
import pytest
from conftest import randn
from fastlayers import optim


class Param:
    """Stand-in for nn.Parameter: .data and .grad float32 arrays."""

    def __init__(self, data):
        self.data = data
        self.grad = None


# ---- float64 NumPy transcriptions of torch.optim's single-tensor rules -------------------


def _decayed(g, p, wd):
    """g + wd * p rounded as float32 computes it. When g ~ -wd p the sum cancels, and Adam's and
    RMSprop's g / sqrt(avg(g^2)) magnify its float32 rounding without bound: starting the float64
    rule from the float32 sum makes the test measure the update rule, not that cancellation
    (seen as a 4e-6 miss at one element in ~60 runs before)."""
    f32 = np.float32
    return (g.astype(f32) + f32(wd) * p.astype(f32)).astype(np.float64)


def ref_sgd(p, g, st, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False):
    d = _decayed(g, p, weight_decay) if weight_decay else g
    if momentum:
        st["buf"] = d.copy() if "buf" not in st else momentum * st["buf"] + (1 - dampening) * d
        d = d + momentum * st["buf"] if nesterov else st["buf"]
    return p - lr * d


def ref_adam(p, g, st, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, decoupled=False):
    b1, b2 = betas
    if "t" not in st:
        st.update(t=0, m=np.zeros_like(p), v=np.zeros_like(p), vmax=np.zeros_like(p))
    st["t"] += 1
    if weight_decay:
        if decoupled:
            p = p * (1 - lr * weight_decay)
        else:
            g = _decayed(g, p, weight_decay)
    st["m"] = st["m"] + (1 - b1) * (g - st["m"])
    st["v"] = b2 * st["v"] + (1 - b2) * g * g
    v = st["v"]
    if amsgrad:
        st["vmax"] = np.maximum(st["vmax"], st["v"])
        v = st["vmax"]
    bc1, bc2 = 1 - b1 ** st["t"], 1 - b2 ** st["t"]
    return p - lr / bc1 * st["m"] / (np.sqrt(v) / math.sqrt(bc2) + eps)


def ref_rmsprop(p, g, st, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False):
    if "sq" not in st:
        st.update(sq=np.zeros_like(p), ga=np.zeros_like(p), buf=np.zeros_like(p))
    if weight_decay:
        g = _decayed(g, p, weight_decay)
    st["sq"] = alpha * st["sq"] + (1 - alpha) * g * g
    if centered:
        st["ga"] = st["ga"] + (1 - alpha) * (g - st["ga"])
        avg = np.sqrt(st["sq"] - st["ga"] ** 2) + eps
    else:
        avg = np.sqrt(st["sq"]) + eps
    if momentum > 0:
        st["buf"] = momentum * st["buf"] + g / avg
        return p - lr * st["buf"]
    return p - lr * g / avg


CASES = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.05, "momentum": 0.9}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.01}),
    ("SGD", {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.1}),
    ("Adam", {"lr": 0.01}),
    ("Adam", {"lr": 0.01, "betas": (0.8, 0.99), "weight_decay": 0.1}),
    ("Adam", {"lr": 0.01, "amsgrad": True, "eps": 1e-6}),
    ("AdamW", {"lr": 0.01}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.3, "amsgrad": True}),
    ("RMSprop", {"lr": 0.01}),
    ("RMSprop", {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.05}),
    ("RMSprop", {"lr": 0.005, "centered": True, "alpha": 0.9}),
    ("RMSprop", {"lr": 0.005, "centered": True, "momentum": 0.5}),
]


def _ref_step(name, kw):
    if name == "SGD":
        return lambda p, g, st: ref_sgd(p, g, st, **kw)
    if name in ("Adam", "AdamW"):
        kw2 = dict(kw)
        if name == "AdamW":
            kw2.setdefault("weight_decay", 1e-2)
        return lambda p, g, st: ref_adam(p, g, st, decoupled=name == "AdamW", **kw2)
    return lambda p, g, st: ref_rmsprop(p, g, st, **kw)


SHAPES = [(5,), (3, 7), (1,), (0, 4), (40_001,)]


@pytest.mark.parametrize("name,kw", CASES)
def test_optimizer_vs_numpy_rule(rng, name, kw):
    params = [Param(randn(rng, *s)) for s in SHAPES]
    truth = [p.data.astype(np.float64) for p in params]
    states = [{} for _ in params]
    opt = getattr(optim, name)(params, **kw)
    ref = _ref_step(name, kw)
    for _ in range(6):
        for i, p in enumerate(params):
            p.grad = randn(rng, *p.data.shape)
            # The reference starts each step from the kernel's float32 parameters, so the
            # comparison measures one step's error, not the drift of six.
            truth[i] = ref(p.data.astype(np.float64), p.grad.astype(np.float64), states[i])
        opt.step()
        for p, t in zip(params, truth):
            np.testing.assert_allclose(p.data, t, rtol=1e-5, atol=1e-6)


@pytest.mark.torch
@pytest.mark.parametrize("name,kw", CASES)
def test_optimizer_vs_torch(rng, name, kw):
    import torch

    params = [Param(randn(rng, *s)) for s in [(5,), (3, 7), (0, 4), (9, 9, 3)]]
    tparams = [torch.nn.Parameter(torch.from_numpy(p.data.copy())) for p in params]
    opt = getattr(optim, name)(params, **kw)
    topt = getattr(torch.optim, name)(tparams, **kw)
    for _ in range(8):
        for p, tp in zip(params, tparams):
            p.grad = randn(rng, *p.data.shape)
            tp.grad = torch.from_numpy(p.grad.copy())
        opt.step()
        topt.step()
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_param_groups_skip_none_grads_and_lr_changes(rng):
    a, b, c = Param(randn(rng, 4)), Param(randn(rng, 3)), Param(randn(rng, 2))
    opt = optim.SGD([{"params": [a]}, {"params": [b, c], "lr": 0.5, "momentum": 0.9}], lr=0.1)
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[1]["momentum"] == 0.9
    a0, b0, c0 = a.data.copy(), b.data.copy(), c.data.copy()
    a.grad, b.grad = randn(rng, 4), randn(rng, 3)
    opt.step()
    np.testing.assert_allclose(a.data, a0 - np.float32(0.1) * a.grad, rtol=1e-6)
    np.testing.assert_allclose(b.data, b0 - np.float32(0.5) * b.grad, rtol=1e-6)
    assert (c.data == c0).all()  # no gradient: untouched
    opt.param_groups[0]["lr"] = 0.0
    a1 = a.data.copy()
    opt.step()
    assert (a.data == a1).all()
    opt.zero_grad()
    assert (a.grad == 0).all() and (b.grad == 0).all() and c.grad is None
    opt.zero_grad(set_to_none=True)
    assert a.grad is None and b.grad is None


def test_non_contiguous_data_and_grad(rng):
    base = randn(rng, 6, 8)
    p = Param(base[:, ::2])
    p.grad = randn(rng, 6, 8)[:, 1::2]
    want = p.data.astype(np.float64) - 0.1 * p.grad
    optim.SGD([p], lr=0.1).step()
    np.testing.assert_allclose(base[:, ::2], want, rtol=1e-6, atol=1e-7)  # updated through the view


def test_state_dict_round_trip(rng):
    def run(opt, ps, grads):
        for g in grads:
            for p, gi in zip(ps, g):
                p.grad = gi.copy()
            opt.step()

    grads = [[randn(rng, 5), randn(rng, 2, 3)] for _ in range(6)]
    init = [randn(rng, 5), randn(rng, 2, 3)]
    ps = [Param(v.copy()) for v in init]
    opt = optim.Adam(ps, lr=0.01, amsgrad=True)
    run(opt, ps, grads)
    # Resume halfway from a state dict: same result as the uninterrupted run.
    qs = [Param(v.copy()) for v in init]
    o1 = optim.Adam(qs, lr=0.01, amsgrad=True)
    run(o1, qs, grads[:3])
    sd = o1.state_dict()
    rs = [Param(q.data.copy()) for q in qs]
    o2 = optim.Adam(rs, lr=0.5, amsgrad=True)
    o2.load_state_dict(sd)
    assert o2.param_groups[0]["lr"] == 0.01
    run(o2, rs, grads[3:])
    for p, r in zip(ps, rs):
        np.testing.assert_array_equal(p.data, r.data)


def test_optimizer_errors(rng):
    p = Param(randn(rng, 3))
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="got one parameter"):
        optim.SGD(p, lr=0.1)
    with pytest.raises(TypeError, match=r"params\[0\]: expected an object with .data and .grad"):
        optim.SGD([np.zeros(3, np.float32)], lr=0.1)
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.SGD([p, p], lr=0.1)
    with pytest.raises(ValueError, match="lr: expected a value >= 0"):
        optim.SGD([p], lr=-1)
    with pytest.raises(ValueError, match="Nesterov momentum requires"):
        optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match=r"betas\[1\]"):
        optim.Adam([p], betas=(0.9, 1.0))
    with pytest.raises(TypeError, match="betas: expected a pair"):
        optim.Adam([p], betas=0.9)
    with pytest.raises(ValueError, match="eps"):
        optim.RMSprop([p], eps=-1e-8)
    opt = optim.SGD([p], lr=0.1)
    p.grad = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match=r"params\[0\].grad: shape \(4,\) differs"):
        opt.step()
    p.grad = np.zeros(3, np.float64)
    with pytest.raises(TypeError, match=r"params\[0\].grad: dtype float64"):
        opt.step()
    p.grad = np.zeros(3, np.float32)
    p.data.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        opt.step()
