"""Module and Parameter: the whole of the layer machinery.

A module holds its parameters, its buffers (running statistics) and its children, and caches
whatever its backward needs from its last forward. There is no autograd graph: a model's
backward is the chain of its layers' backwards, written out by the containers.
"""

from __future__ import annotations

from collections import OrderedDict, namedtuple

import numpy as np

__all__ = ["Module", "Parameter"]

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


def _xp(x):
    if type(x).__module__.split(".", 1)[0] == "cupy":
        import cupy

        return cupy
    return np


def _to_numpy(v):
    """A NumPy array from a NumPy/CuPy array, a torch tensor or a Python number."""
    if hasattr(v, "detach") and hasattr(v, "cpu"):  # torch.Tensor, without importing torch
        return v.detach().cpu().numpy()
    if type(v).__module__.split(".", 1)[0] == "cupy":
        return v.get()
    return np.asarray(v)


def _move(arr, device):
    if arr is None:
        return None
    if device == "cpu":
        return _to_numpy(arr)
    try:
        import cupy
    except ImportError:
        raise RuntimeError("to('cuda'): CuPy is not installed (pip install cupy-cuda13x)") from None
    try:
        return cupy.asarray(arr)
    except Exception as e:  # no driver / no device: CuPy raises its own runtime errors
        raise RuntimeError(f"to('cuda'): cannot move arrays to the GPU ({e})") from None


class Parameter:
    """A trainable array: .data (float32) and .grad (None until a backward accumulates into it)."""

    __slots__ = ("data", "grad")

    def __init__(self, data):
        if isinstance(data, Parameter):
            data = data.data
        xp = _xp(data)
        self.data = xp.ascontiguousarray(xp.asarray(data, dtype=np.float32))
        self.grad = None

    @property
    def shape(self):
        return self.data.shape

    def accumulate(self, g):
        """grad += g (grad starts as a copy of the first g)."""
        if g is None:
            return
        if self.grad is None:
            self.grad = _xp(self.data).array(g, dtype=np.float32, copy=True).reshape(self.data.shape)
        else:
            self.grad += g.reshape(self.data.shape)

    def __repr__(self):
        return f"Parameter(shape={tuple(self.data.shape)})"


class Module:
    """Base class: __call__ runs forward; backward(grad_out) returns the gradient w.r.t. the input
    and accumulates into each parameter's .grad."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # -- attribute registration ------------------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call Module.__init__() before assigning attributes")
        params, buffers, modules = self._parameters, self._buffers, self._modules
        if isinstance(value, Parameter):
            buffers.pop(name, None)
            modules.pop(name, None)
            params[name] = value
        elif isinstance(value, Module):
            params.pop(name, None)
            buffers.pop(name, None)
            modules[name] = value
        elif name in params:
            if value is not None:
                raise TypeError(f"{name}: expected a Parameter or None, got {type(value).__name__}")
            params[name] = None
        elif name in buffers:
            buffers[name] = value
        elif name in modules:
            if value is not None:
                raise TypeError(f"{name}: expected a Module or None, got {type(value).__name__}")
            modules[name] = None
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def register_buffer(self, name, value):
        """A non-trainable array saved in the state dict (e.g. BatchNorm's running_mean)."""
        self.__dict__.pop(name, None)
        self._buffers[name] = value

    def register_parameter(self, name, param):
        self._parameters[name] = param

    def add_module(self, name, module):
        self._modules[str(name)] = module

    # -- running ---------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, x):
        raise NotImplementedError(f"{type(self).__name__}.forward is not implemented")

    def backward(self, grad_out):
        raise NotImplementedError(f"{type(self).__name__}.backward is not implemented")

    def _need_cache(self, *names):
        for n in names:
            if getattr(self, n, None) is None:
                raise RuntimeError(f"{type(self).__name__}.backward called before forward")

    # -- traversal -------------------------------------------------------------------------
    def children(self):
        return (m for m in self._modules.values() if m is not None)

    def named_children(self):
        return ((n, m) for n, m in self._modules.items() if m is not None)

    def named_modules(self, prefix=""):
        yield prefix, self
        for name, m in self.named_children():
            yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return (m for _, m in self.named_modules())

    def named_parameters(self, prefix=""):
        seen = set()
        for mp, m in self.named_modules(prefix):
            for name, p in m._parameters.items():
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mp}.{name}" if mp else name), p

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix=""):
        for mp, m in self.named_modules(prefix):
            for name, b in m._buffers.items():
                if b is not None:
                    yield (f"{mp}.{name}" if mp else name), b

    def zero_grad(self):
        """Drop every parameter's gradient (grad = None), as PyTorch's set_to_none default."""
        for p in self.parameters():
            p.grad = None

    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    # -- state -----------------------------------------------------------------------------
    def _state_items(self):
        """(name, owner module, attribute, is_param) for every entry of the state dict, in
        PyTorch's order: each module's parameters, then its buffers, then its children."""
        out = []

        def walk(m, prefix):
            for name, p in m._parameters.items():
                if p is not None:
                    out.append((prefix + name, m, name, True))
            for name, b in m._buffers.items():
                if b is not None:
                    out.append((prefix + name, m, name, False))
            for name, c in m.named_children():
                walk(c, f"{prefix}{name}.")

        walk(self, "")
        return out

    def state_dict(self):
        """An ordered dict name -> array copy (parameters and buffers, PyTorch's names)."""
        sd = OrderedDict()
        for key, m, attr, is_param in self._state_items():
            v = m._parameters[attr].data if is_param else m._buffers[attr]
            sd[key] = _xp(v).array(v, copy=True)
        return sd

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays (NumPy, CuPy or torch tensors) into the parameters and buffers.

        Shapes must match exactly (ValueError naming the key and both shapes). With strict=True,
        missing or unexpected keys are a KeyError listing them; with strict=False they are
        returned as (missing_keys, unexpected_keys)."""
        items = self._state_items()
        own = {k for k, *_ in items}
        missing = [k for k, *_ in items if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append(f"missing keys: {missing}")
            if unexpected:
                parts.append(f"unexpected keys: {unexpected}")
            raise KeyError(f"load_state_dict for {type(self).__name__}: " + "; ".join(parts))
        staged = []
        for key, m, attr, is_param in items:
            if key not in state_dict:
                continue
            cur = m._parameters[attr].data if is_param else m._buffers[attr]
            new = _to_numpy(state_dict[key])
            if tuple(new.shape) != tuple(cur.shape):
                raise ValueError(
                    f"load_state_dict: {key!r} has shape {tuple(new.shape)} in the state dict, "
                    f"but the model expects {tuple(cur.shape)}"
                )
            staged.append((m, attr, is_param, new.astype(cur.dtype, copy=False), _xp(cur)))
        # Checked everything first, so a failed load leaves the model untouched.
        for m, attr, is_param, new, xp in staged:
            arr = xp.array(new, order="C", copy=True)  # never alias the caller's arrays
            if is_param:
                m._parameters[attr].data = arr
            else:
                m._buffers[attr] = arr
        return IncompatibleKeys(missing, unexpected)

    def to(self, device):
        """Move parameters, gradients and buffers to "cpu" (NumPy) or "cuda" (CuPy)."""
        device = str(device)
        if device.startswith("cuda"):
            device = "cuda"
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device: expected 'cpu' or 'cuda', got {device!r}")
        for m in self.modules():
            for p in m._parameters.values():
                if p is not None:
                    p.data = _move(p.data, device)
                    p.grad = _move(p.grad, device)
            for name, b in list(m._buffers.items()):
                m._buffers[name] = _move(b, device)
        return self

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    # -- display ---------------------------------------------------------------------------
    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        kids = list(self.named_children())
        if not kids:
            return lines[0] + ")"
        for name, m in kids:
            sub = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {sub}")
        return "\n".join(lines) + "\n)"
