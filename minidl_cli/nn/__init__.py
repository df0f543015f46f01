"""The framework: modules with hand-written forward and backward passes, and losses."""

from minidl_cli.nn.activations import ELU, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from minidl_cli.nn.attention import GELU, PositionalEmbedding, SelfAttention
from minidl_cli.nn.bilinear import Bilinear
from minidl_cli.nn.blocks import Concat, Repeat, Residual
from minidl_cli.nn.conv import Conv2d
from minidl_cli.nn.dropout import Dropout
from minidl_cli.nn.embedding import Embedding
from minidl_cli.nn.flatten import Flatten, Unflatten
from minidl_cli.nn.linear import Identity, Linear
from minidl_cli.nn.losses import (
    CrossEntropyLoss,
    ElementwiseLoss,
    HuberLoss,
    L1Loss,
    Loss,
    MSELoss,
    SmoothL1Loss,
)
from minidl_cli.nn.module import Module, Parameter, Sequential
from minidl_cli.nn.normalization import BatchNorm1d, BatchNorm2d, LayerNorm
from minidl_cli.nn.pooling import AvgPool2d, MaxPool2d
from minidl_cli.nn.recurrent import GRU, LSTM, RNN

__all__ = [
    "Module", "Parameter", "Sequential", "Linear", "Identity", "ReLU", "LeakyReLU", "ELU",
    "Tanh", "Sigmoid", "Softmax", "Dropout", "Loss", "ElementwiseLoss", "MSELoss",
    "L1Loss", "HuberLoss", "SmoothL1Loss", "CrossEntropyLoss",
    "Conv2d", "MaxPool2d", "AvgPool2d", "Flatten", "BatchNorm1d", "BatchNorm2d", "LayerNorm",
    "Bilinear", "Residual", "Concat", "Repeat",
    "Embedding", "Unflatten", "RNN", "LSTM", "GRU", "GELU",
    "PositionalEmbedding", "SelfAttention",
]


def _import_every_layer_file() -> None:
    """Import every other file in nn/ too, so that a new layer is one new file: its
    @register runs, and the Module classes it defines become `nn.<Name>`."""
    import importlib
    import inspect
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for name, value in vars(module).items():
            if (inspect.isclass(value) and issubclass(value, Module) and not name.startswith("_")
                    and value.__module__ == module.__name__ and name not in globals()):
                globals()[name] = value
                __all__.append(name)


_import_every_layer_file()
