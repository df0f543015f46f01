"""Weight initialisation with torch.nn.init's names and meanings, drawn from torch's global RNG.

Each function fills a tensor in place and returns it, computing its bound or standard
deviation with torch.nn.init's own arithmetic, so that after the same `torch.manual_seed`
the values are the same bits as torch.nn.init's. Fans are those of
torch.nn.init._calculate_fan_in_and_fan_out: for a weight (out, in, *kernel),
fan_in = in · ∏kernel and fan_out = out · ∏kernel.

Sources: Glorot & Bengio, "Understanding the difficulty of training deep feedforward neural
networks" (2010) for xavier_*; He et al., "Delving deep into rectifiers" (2015) for
kaiming_*; the gains are torch.nn.init.calculate_gain's.
"""

from __future__ import annotations

import math
from typing import Literal

from torch import Tensor

Mode = Literal["fan_in", "fan_out"]


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The gain torch.nn.init.calculate_gain recommends: 1 for linear and sigmoid, 5/3 for
    tanh, √2 for relu, √(2 / (1 + a²)) for leaky_relu with slope a (default 0.01).

    Raises ValueError for a nonlinearity torch does not list."""
    if nonlinearity in ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                        "conv_transpose2d", "conv_transpose3d", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"unsupported nonlinearity {nonlinearity!r}")


def fans(tensor: Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight (out, in, *kernel); ValueError for fewer than 2 dims."""
    if tensor.dim() < 2:
        raise ValueError("fan in and fan out need a tensor of at least 2 dimensions")
    receptive = math.prod(tensor.shape[2:]) if tensor.dim() > 2 else 1
    return tensor.size(1) * receptive, tensor.size(0) * receptive


def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0) -> Tensor:
    """U(a, b)."""
    return tensor.uniform_(a, b)


def zeros_(tensor: Tensor) -> Tensor:
    return tensor.zero_()


def xavier_uniform_(tensor: Tensor, gain: float = 1.0) -> Tensor:
    """U(−a, a), a = gain · √(6 / (fan_in + fan_out)) (Glorot & Bengio, 2010)."""
    fan_in, fan_out = fans(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    a = math.sqrt(3.0) * std  # torch.nn.init's order of operations: the same bound, bit for bit
    return tensor.uniform_(-a, a)


def xavier_normal_(tensor: Tensor, gain: float = 1.0) -> Tensor:
    """N(0, std²), std = gain · √(2 / (fan_in + fan_out))."""
    fan_in, fan_out = fans(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return tensor.normal_(0.0, std)


def _kaiming_std(tensor: Tensor, a: float, mode: Mode, nonlinearity: str) -> float:
    fan_in, fan_out = fans(tensor)
    fan = fan_in if mode == "fan_in" else fan_out
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(tensor: Tensor, a: float = 0.0, mode: Mode = "fan_in",
                     nonlinearity: str = "leaky_relu") -> Tensor:
    """U(−bound, bound), bound = gain · √(3 / fan) (He et al., 2015); with torch's defaults
    (a = 0, leaky_relu: gain √2) bound = √(6 / fan_in). torch.nn.Linear and Conv2d's own
    default is a = √5: bound = 1 / √fan_in."""
    bound = math.sqrt(3.0) * _kaiming_std(tensor, a, mode, nonlinearity)
    return tensor.uniform_(-bound, bound)


def kaiming_normal_(tensor: Tensor, a: float = 0.0, mode: Mode = "fan_in",
                    nonlinearity: str = "leaky_relu") -> Tensor:
    """N(0, std²), std = gain / √fan; with torch's defaults std = √(2 / fan_in)."""
    return tensor.normal_(0.0, _kaiming_std(tensor, a, mode, nonlinearity))


def torch_default_(weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """torch.nn.Linear's and ConvNd's reset_parameters: the weight kaiming_uniform_(a=√5),
    i.e. U(±1/√fan_in), then the bias U(±1/√fan_in); returns the weight."""
    kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in, _ = fans(weight)
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        uniform_(bias, -bound, bound)
    return weight
