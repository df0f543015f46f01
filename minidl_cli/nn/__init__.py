"""The framework: modules with hand-written forward and backward passes, and losses."""

from minidl_cli.nn.activations import ELU, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from minidl_cli.nn.dropout import Dropout
from minidl_cli.nn.linear import Identity, Linear
from minidl_cli.nn.losses import CrossEntropyLoss, Loss, MSELoss
from minidl_cli.nn.module import Module, Parameter, Sequential

__all__ = [
    "Module", "Parameter", "Sequential", "Linear", "Identity", "ReLU", "LeakyReLU", "ELU",
    "Tanh", "Sigmoid", "Softmax", "Dropout", "Loss", "MSELoss", "CrossEntropyLoss",
]
