"""The public kernels: argument checks with clear errors, then the compiled code.

One module per op family; each lists its public names in ``__all__``."""

from . import _activations, _attention, _conv, _gemm, _loss, _misc, _norm, _pool, _rnn
from ._activations import *  # noqa: F401,F403
from ._attention import *  # noqa: F401,F403
from ._conv import *  # noqa: F401,F403
from ._gemm import *  # noqa: F401,F403
from ._loss import *  # noqa: F401,F403
from ._misc import *  # noqa: F401,F403
from ._norm import *  # noqa: F401,F403
from ._pool import *  # noqa: F401,F403
from ._rnn import *  # noqa: F401,F403

__all__ = [
    name
    for mod in (_gemm, _activations, _conv, _pool, _rnn, _attention, _norm, _loss, _misc)
    for name in mod.__all__
]
