"""The thin layer API (issue 6): modules that hold parameters, cache what their backward needs,
and call fastlayers.functional. No autograd graph: containers chain the backwards.

    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    crit = nn.CrossEntropyLoss()
    loss = crit(model(x), y)            # a float
    model.zero_grad()
    model.backward(crit.backward())     # fills each parameter's .grad
"""

from . import init
from .activation import GELU, LeakyReLU, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from .attention import MultiheadAttention, TransformerEncoderLayer
from .container import ModuleList, Parallel, Residual, Sequential
from .conv import Conv2d, ConvTranspose2d
from .dropout import Dropout
from .embedding import Embedding
from .linear import Flatten, Identity, Linear
from .loss import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from .module import Module, Parameter
from .norm import BatchNorm1d, BatchNorm2d, LayerNorm
from .pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d, Upsample
from .recurrent import LSTM, RNN

__all__ = [
    "init", "Module", "Parameter",
    "Linear", "Flatten", "Identity", "Conv2d", "ConvTranspose2d",
    "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Upsample",
    "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "GELU", "Softmax", "LogSoftmax",
    "Dropout", "BatchNorm1d", "BatchNorm2d", "LayerNorm", "Embedding", "RNN", "LSTM",
    "MultiheadAttention", "TransformerEncoderLayer",
    "Sequential", "Residual", "Parallel", "ModuleList",
    "MSELoss", "BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss",
]
