"""RNN and LSTM over the fused multi-layer kernels (PyTorch's parameter names and layout)."""

from __future__ import annotations

import math

from . import _kernels as K
from . import init
from .module import Module, Parameter

__all__ = ["RNN", "LSTM"]


class _RNNBase(Module):
    _gates = 1

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False):
        super().__init__()
        if int(hidden_size) < 1 or int(num_layers) < 1:
            raise ValueError(f"hidden_size and num_layers must be >= 1, got {hidden_size} and {num_layers}")
        if dropout:
            raise ValueError("dropout between recurrent layers is not supported by the fused kernel; "
                             "stack single-layer modules with nn.Dropout between them instead")
        self.input_size, self.hidden_size, self.num_layers = int(input_size), int(hidden_size), int(num_layers)
        self.bias, self.batch_first, self.bidirectional = bool(bias), bool(batch_first), bool(bidirectional)
        self.dropout = 0.0
        H, G = self.hidden_size, self._gates * self.hidden_size
        bound = 1.0 / math.sqrt(H)
        self._names = []
        for layer in range(self.num_layers):
            in_size = self.input_size if layer == 0 else H * self.num_directions
            for d in range(self.num_directions):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                names = [f"weight_ih{sfx}", f"weight_hh{sfx}", f"bias_ih{sfx}", f"bias_hh{sfx}"]
                shapes = [(G, in_size), (G, H), (G,), (G,)]
                for n, s in zip(names, shapes):
                    if n.startswith("bias") and not self.bias:
                        continue
                    setattr(self, n, Parameter(init.uniform(s, -bound, bound)))
                self._names.append(names)
        self._cache = None
        self.grad_hx = None

    @property
    def num_directions(self):
        return 2 if self.bidirectional else 1

    def _params(self):
        """The kernel's params list: (w_ih, w_hh, b_ih, b_hh) per layer and direction."""
        out = []
        for names in self._names:
            out.append(tuple(getattr(self, n).data if self.bias or not n.startswith("bias") else None
                             for n in names))
        return out

    def _accumulate(self, grad_params):
        for names, grads in zip(self._names, grad_params):
            for n, g in zip(names, grads):
                if n.startswith("bias") and not self.bias:
                    continue
                getattr(self, n).accumulate(g)

    def _check_input(self, x):
        if x.ndim != 3:
            raise ValueError(f"{type(self).__name__}: expected a 3-D input "
                             f"({'(B, T, I)' if self.batch_first else '(T, B, I)'}), got shape {tuple(x.shape)}")
        if x.shape[2] != self.input_size:
            raise ValueError(f"{type(self).__name__}: input has {x.shape[2]} features (shape {tuple(x.shape)}), "
                             f"expected input_size={self.input_size}")

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        if self.batch_first:
            s += ", batch_first=True"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s


class LSTM(_RNNBase):
    """forward(x, (h0, c0)=None) -> (output, (h_n, c_n)); backward(grad_output, grad_h_n=None,
    grad_c_n=None) -> grad_x (gradients of h0/c0 land in .grad_hx). Backward needs a forward in
    training mode (the kernel keeps its reserve only then)."""

    _gates = 4

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0):
        if proj_size:
            raise ValueError("proj_size: LSTM projections are not supported")
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional)

    def forward(self, x, hx=None):
        self._check_input(x)
        h0, c0 = (None, None) if hx is None else hx
        params = self._params()
        args = (self.num_layers, self.bidirectional, self.batch_first)
        if self.training:
            out, hn, cn, reserve = K.lstm_train(x, params, h0, c0, *args)
            self._cache = (x, params, h0, c0, reserve)
        else:
            out, hn, cn = K.lstm_eval(x, params, h0, c0, *args)
            self._cache = None
        return out, (hn, cn)

    def backward(self, grad_output, grad_h_n=None, grad_c_n=None):
        if self._cache is None:
            raise RuntimeError("LSTM.backward needs a forward in training mode (call .train())")
        x, params, h0, c0, reserve = self._cache
        gx, gparams, gh0, gc0 = K.lstm_backward(grad_output, grad_h_n, grad_c_n, x, params, h0, c0, reserve,
                                                self.num_layers, self.bidirectional, self.batch_first)
        self._accumulate(gparams)
        self.grad_hx = (gh0, gc0)
        return gx


class RNN(_RNNBase):
    """Elman RNN, nonlinearity 'tanh' or 'relu'. forward(x, h0=None) -> (output, h_n);
    backward(grad_output, grad_h_n=None) -> grad_x (h0's gradient lands in .grad_hx)."""

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")
        self_nl = nonlinearity
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional)
        self.nonlinearity = self_nl

    def forward(self, x, hx=None):
        self._check_input(x)
        params = self._params()
        args = (self.nonlinearity, self.num_layers, self.bidirectional, self.batch_first)
        if self.training:
            out, hn, reserve = K.rnn_train(x, params, hx, *args)
            self._cache = (x, params, hx, reserve)
        else:
            out, hn = K.rnn_eval(x, params, hx, *args)
            self._cache = None
        return out, hn

    def backward(self, grad_output, grad_h_n=None):
        if self._cache is None:
            raise RuntimeError("RNN.backward needs a forward in training mode (call .train())")
        x, params, h0, reserve = self._cache
        gx, gparams, gh0 = K.rnn_backward(grad_output, grad_h_n, x, params, h0, reserve, self.nonlinearity,
                                          self.num_layers, self.bidirectional, self.batch_first)
        self._accumulate(gparams)
        self.grad_hx = gh0
        return gx
