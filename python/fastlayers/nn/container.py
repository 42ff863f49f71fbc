"""Sequential, Residual and Parallel: the containers write the model's backward out by hand."""

from __future__ import annotations

from collections import OrderedDict

from .module import Module, _xp

__all__ = ["Sequential", "Residual", "Parallel", "ModuleList"]


class Sequential(Module):
    """Sequential(m0, m1, ...) or Sequential(OrderedDict(name=m)); children named "0", "1", ..."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, m in modules[0].items():
                self.add_module(name, m)
        else:
            for i, m in enumerate(modules):
                if not isinstance(m, Module):
                    raise TypeError(f"Sequential: argument {i} is a {type(m).__name__}, not a Module")
                self.add_module(str(i), m)

    def append(self, module):
        self.add_module(str(len(self._modules)), module)
        return self

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, i):
        mods = list(self._modules.values())
        if isinstance(i, slice):
            return Sequential(*mods[i])
        return mods[i]

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x

    def backward(self, grad_out):
        for m in reversed(list(self._modules.values())):
            grad_out = m.backward(grad_out)
        return grad_out


class ModuleList(Module):
    """A list of modules (named "0", "1", ...) that the owner runs itself."""

    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, module):
        self.add_module(str(len(self._modules)), module)
        return self

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, i):
        return list(self._modules.values())[i]


class Residual(Module):
    """y = body(x) + shortcut(x); the shortcut is the identity when None (children "body",
    "shortcut")."""

    def __init__(self, body, shortcut=None):
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x):
        y = self.body(x)
        s = x if self.shortcut is None else self.shortcut(x)
        if tuple(y.shape) != tuple(s.shape):
            raise ValueError(f"Residual: body output {tuple(y.shape)} and shortcut output {tuple(s.shape)} differ; "
                             f"give a shortcut that matches (e.g. a 1x1 Conv2d)")
        return y + s

    def backward(self, grad_out):
        g = self.body.backward(grad_out)
        return g + (grad_out if self.shortcut is None else self.shortcut.backward(grad_out))


class Parallel(Module):
    """Runs each branch on the same input and concatenates the outputs along axis (Inception)."""

    def __init__(self, *branches, axis=1):
        super().__init__()
        if not branches:
            raise ValueError("Parallel: give at least one branch")
        for i, m in enumerate(branches):
            self.add_module(str(i), m)
        self.axis = int(axis)
        self._sizes = None

    def forward(self, x):
        outs = [m(x) for m in self._modules.values()]
        ax = self.axis % outs[0].ndim
        self._sizes = [o.shape[ax] for o in outs]
        return _xp(outs[0]).concatenate(outs, axis=ax)

    def backward(self, grad_out):
        self._need_cache("_sizes")
        xp = _xp(grad_out)
        ax = self.axis % grad_out.ndim
        total = None
        start = 0
        for m, n in zip(self._modules.values(), self._sizes):
            idx = [slice(None)] * grad_out.ndim
            idx[ax] = slice(start, start + n)
            start += n
            g = m.backward(xp.ascontiguousarray(grad_out[tuple(idx)]))
            total = g if total is None else total + g
        return total
