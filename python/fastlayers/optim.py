"""Optimizers with PyTorch's update rules (torch.optim's single-tensor algorithms): SGD, Adam,
AdamW, RMSprop. Each parameter's update is one fused C++ pass over its elements
(csrc/optim/optim_cpu.cpp), in place on ``param.data`` and the optimizer's state.

``params``: an iterable of parameters (objects with ``.data`` and ``.grad`` float32 NumPy
arrays, e.g. ``nn.Parameter``), or of param-group dicts ``{"params": [...], "lr": ...}`` whose
keys override the defaults, as in PyTorch. Parameters whose ``.grad`` is None are skipped.
The hyper-parameters of a group can be changed between steps (``opt.param_groups[0]["lr"] = ...``).

Constructors take PyTorch's arguments in PyTorch's order:

    SGD(params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False)
    Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False)
    AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False)
    RMSprop(params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False)

``zero_grad(set_to_none=False)`` zeroes every ``.grad`` in place (fastlayers' layers
accumulate into the existing arrays); ``set_to_none=True`` sets them to None as PyTorch's
default does. ``state_dict()`` / ``load_state_dict()`` save and restore the per-parameter
state (momentum buffers, moments, step counts) and the groups' hyper-parameters."""

from __future__ import annotations

import copy
import math

import numpy as np

from . import _core
from ._arrays import is_cupy

__all__ = ["SGD", "Adam", "AdamW", "Optimizer", "RMSprop"]


def _number(v, name, low=0.0, low_open=False, high=None, high_open=True):
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a number, got {type(v).__name__}")
    v = float(v)
    bad = not math.isfinite(v) or v < low or (low_open and v == low)
    if high is not None:
        bad = bad or v > high or (high_open and v == high)
    if bad:
        hi = "" if high is None else f" and {'<' if high_open else '<='} {high}"
        raise ValueError(f"{name}: expected a value {'>' if low_open else '>='} {low}{hi}, got {v}")
    return v


class Optimizer:
    """Base class: parameter groups, per-parameter state, step() dispatching to _update()."""

    def __init__(self, params, defaults: dict):
        self.defaults = defaults
        self.param_groups: list[dict] = []
        self.state: dict[int, dict] = {}  # id(param) -> state (the groups keep the params alive)
        if hasattr(params, "data") and hasattr(params, "grad"):
            raise TypeError("params: expected an iterable of parameters or of param-group dicts, got one parameter")
        params = list(params)
        if not params:
            raise ValueError("params: the optimizer got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        for g in groups:
            self.add_param_group(g)

    def add_param_group(self, group: dict) -> None:
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError("param group: expected a dict with a 'params' entry")
        group = dict(group)
        ps = group["params"]
        ps = [ps] if hasattr(ps, "data") and hasattr(ps, "grad") else list(ps)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for i, p in enumerate(ps):
            if not (hasattr(p, "data") and hasattr(p, "grad")):
                raise TypeError(f"params[{i}]: expected an object with .data and .grad, got {type(p).__name__}")
            if id(p) in seen:
                raise ValueError(f"params[{i}]: appears in more than one parameter group (or twice)")
            seen.add(id(p))
        group["params"] = ps
        for k, v in self.defaults.items():
            group.setdefault(k, v)
        self._check_group(group)
        self.param_groups.append(group)

    def _check_group(self, group: dict) -> None:  # overridden: validates hyper-parameters
        pass

    def zero_grad(self, set_to_none: bool = False) -> None:
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad[...] = 0

    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns closure() if given."""
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            self._check_group(group)
            for i, p in enumerate(group["params"]):
                if p.grad is None:
                    continue
                data, grad = self._arrays(p, i)
                st = self.state.setdefault(id(p), {})
                self._update(data, grad, st, group)
                if data is not p.data:  # non-contiguous .data went through a copy
                    p.data[...] = data
        return loss

    @staticmethod
    def _arrays(p, i):
        data, grad = p.data, p.grad
        if is_cupy(data) or is_cupy(grad):
            raise NotImplementedError("optimizer step: no CUDA kernel yet for CuPy parameters; keep the model on the CPU")
        for name, a in (("data", data), ("grad", grad)):
            if not isinstance(a, np.ndarray):
                raise TypeError(f"params[{i}].{name}: expected a numpy.ndarray, got {type(a).__name__}")
            if a.dtype != np.float32:
                raise TypeError(f"params[{i}].{name}: dtype {a.dtype} is not supported (accepted: float32)")
        if grad.shape != data.shape:
            raise ValueError(f"params[{i}].grad: shape {grad.shape} differs from .data shape {data.shape}")
        if not data.flags.writeable:
            raise ValueError(f"params[{i}].data: is read-only; the optimizer updates it in place")
        if not data.flags.c_contiguous:
            data = np.ascontiguousarray(data)
        return data, np.ascontiguousarray(grad)

    def _update(self, data, grad, state, group):  # pragma: no cover - abstract
        raise NotImplementedError

    # ---- state (for checkpoints) ----
    def state_dict(self) -> dict:
        """{"state": {index: {name: array or number}}, "param_groups": [{hyper-params, "params": [index]}]},
        parameters numbered in group order, as PyTorch."""
        index, groups = {}, []
        for g in self.param_groups:
            ids = []
            for p in g["params"]:
                index.setdefault(id(p), len(index))
                ids.append(index[id(p)])
            groups.append({**{k: v for k, v in g.items() if k != "params"}, "params": ids})
        state = {index[k]: copy.deepcopy(v) for k, v in self.state.items() if k in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups) or any(
                len(a["params"]) != len(b["params"]) for a, b in zip(groups, self.param_groups)):
            raise ValueError("state_dict: its parameter groups do not match this optimizer's")
        self.state = {}
        for saved, g in zip(groups, self.param_groups):
            for k, v in saved.items():
                if k != "params":
                    g[k] = v
            for idx, p in zip(saved["params"], g["params"]):
                if idx in state_dict["state"]:
                    self.state[id(p)] = copy.deepcopy(state_dict["state"][idx])


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, dampening, Nesterov and L2 weight decay."""

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False):
        super().__init__(params, {"lr": lr, "momentum": momentum, "dampening": dampening, "weight_decay": weight_decay,
                                      "nesterov": nesterov})

    def _check_group(self, g):
        _number(g["lr"], "lr")
        _number(g["momentum"], "momentum")
        _number(g["dampening"], "dampening")
        _number(g["weight_decay"], "weight_decay")
        if g["nesterov"] and (g["momentum"] <= 0 or g["dampening"] != 0):
            raise ValueError("nesterov: Nesterov momentum requires a momentum > 0 and zero dampening")

    def _update(self, data, grad, st, g):
        buf = None
        first = False
        if g["momentum"] != 0:
            buf = st.get("momentum_buffer")
            if buf is None:
                buf = st["momentum_buffer"] = np.empty_like(data)
                first = True
        _core.sgd_step(data, grad, buf, g["lr"], g["momentum"], g["dampening"], g["weight_decay"],
                       bool(g["nesterov"]), first)


class Adam(Optimizer):
    """Adam (L2 weight decay added to the gradient), optionally AMSGrad."""

    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay, "amsgrad": amsgrad})

    def _check_group(self, g):
        _number(g["lr"], "lr")
        _number(g["eps"], "eps")
        _number(g["weight_decay"], "weight_decay")
        try:
            b1, b2 = g["betas"]
        except (TypeError, ValueError):
            raise TypeError(f"betas: expected a pair of numbers, got {g['betas']!r}") from None
        _number(b1, "betas[0]", high=1.0)
        _number(b2, "betas[1]", high=1.0)

    def _update(self, data, grad, st, g):
        if "step" not in st:
            st["step"] = 0
            st["exp_avg"] = np.zeros_like(data)
            st["exp_avg_sq"] = np.zeros_like(data)
        if g["amsgrad"] and "max_exp_avg_sq" not in st:
            st["max_exp_avg_sq"] = np.zeros_like(data)
        st["step"] += 1
        b1, b2 = (float(b) for b in g["betas"])
        t = st["step"]
        step_size = g["lr"] / (1.0 - b1**t)
        bc2_sqrt = math.sqrt(1.0 - b2**t)
        _core.adam_step(data, grad, st["exp_avg"], st["exp_avg_sq"], st.get("max_exp_avg_sq") if g["amsgrad"] else None,
                        g["lr"], b1, b2, g["eps"], g["weight_decay"], step_size, bc2_sqrt, self._decoupled)


class AdamW(Adam):
    """Adam with decoupled weight decay: p *= 1 - lr * weight_decay before the Adam step."""

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)


class RMSprop(Optimizer):
    """RMSprop, optionally centered and with momentum."""

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False):
        super().__init__(params, {"lr": lr, "alpha": alpha, "eps": eps, "weight_decay": weight_decay, "momentum": momentum,
                                      "centered": centered})

    def _check_group(self, g):
        _number(g["lr"], "lr")
        _number(g["alpha"], "alpha")
        _number(g["eps"], "eps")
        _number(g["weight_decay"], "weight_decay")
        _number(g["momentum"], "momentum")

    def _update(self, data, grad, st, g):
        if "step" not in st:
            st["step"] = 0
            st["square_avg"] = np.zeros_like(data)
        st["step"] += 1
        if g["momentum"] > 0 and "momentum_buffer" not in st:
            st["momentum_buffer"] = np.zeros_like(data)
        if g["centered"] and "grad_avg" not in st:
            st["grad_avg"] = np.zeros_like(data)
        _core.rmsprop_step(data, grad, st["square_avg"], st.get("grad_avg") if g["centered"] else None,
                           st.get("momentum_buffer") if g["momentum"] > 0 else None, g["lr"], g["alpha"], g["eps"],
                           g["weight_decay"], g["momentum"])
