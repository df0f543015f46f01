"""Optimizer base: parameter groups, per-parameter state and state dicts, as torch.optim.

Subclasses write only `step`; updates use multi-tensor (foreach) ops over all parameters.
On a small network each torch op costs more in dispatch than in arithmetic, so the
optimizer also packs its parameters' data and gradients into two contiguous buffers
(`Packed`): zero_grad and element-wise updates are then one op on one flat tensor.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from minidl_cli.nn.module import Parameter


class Optimizer:
    """Holds `param_groups` (one group: params + hyper-parameters) and per-parameter `state`."""

    def __init__(self, params, defaults: dict[str, Any]):
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        for p in params:
            if not isinstance(p, Parameter):
                raise TypeError("optimizer params must be minidl Parameters, "
                                f"got {type(p).__name__}")
        self.defaults = defaults
        self.param_groups = [{"params": params, **defaults}]
        self.state: dict[int, dict[str, Any]] = {}  # parameter index -> state tensors
        self.packed = Packed.pack(params)

    @property
    def params(self) -> list[Parameter]:
        return self.param_groups[0]["params"]

    def tensors(self, flat: bool = True) -> tuple[list[Tensor], list[Tensor]]:
        """(weights, grads) for foreach ops: one flat tensor each while the parameters are
        still packed and `flat` (element-wise updates only), else one tensor per parameter."""
        packed = self.packed
        if flat and packed is not None and packed.intact:
            return [packed.data], [packed.grad]
        params = self.params
        return [p.data for p in params], [p.grad for p in params]

    def zero_grad(self) -> None:
        grads = self.tensors()[1]
        if len(grads) == 1:  # packed: one plain op, cheaper to call than a foreach op
            grads[0].zero_()
        else:
            torch._foreach_zero_(grads)

    def step(self) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Plain tensors, numbers and lists only: loadable with torch.load(weights_only=True)."""
        group = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        group["params"] = list(range(len(self.params)))
        state = {i: dict(s) for i, s in self.state.items()}
        return {"state": state, "param_groups": [group]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        groups = state_dict["param_groups"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(self.params):
            raise ValueError("optimizer state does not match this model's parameters")
        self.param_groups[0].update({k: v for k, v in groups[0].items() if k != "params"})
        self.state = {}
        for i, s in state_dict["state"].items():
            p = self.params[int(i)].data
            self.state[int(i)] = {
                k: v.to(device=p.device, dtype=p.dtype)
                if torch.is_tensor(v) and v.is_floating_point() and k != "step" else v
                for k, v in s.items()
            }

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v}" for k, v in self.defaults.items())
        return f"{type(self).__name__}({options})"


class Packed:
    """The data and the grads of several parameters in two contiguous buffers.

    Each Parameter's `.data` and `.grad` become views of the buffers (same values, same
    shapes), as torch's flat parameters and apex's contiguous gradients do. Assigning a new
    tensor to one of them (Module.to() does) clears `intact`, and the optimizer then goes
    back to one tensor per parameter.
    """

    ALIGN_BYTES = 64  # each view starts where torch's allocator would start a tensor, so
    # that BLAS takes the same code path and results stay bit-identical

    def __init__(self, params: list[Parameter]):
        first = params[0].data
        align = max(1, self.ALIGN_BYTES // first.element_size())
        offsets, end = [], 0
        for p in params:
            offsets.append(end)
            end += -(-p.data.numel() // align) * align  # round up to a multiple of align
        self.data = first.new_zeros(end)
        self.grad = first.new_zeros(end)
        for p, offset in zip(params, offsets, strict=True):
            n, shape = p.data.numel(), p.data.shape
            data = self.data[offset:offset + n].view(shape)
            grad = self.grad[offset:offset + n].view(shape)
            data.copy_(p.data)
            grad.copy_(p.grad)
            p.data, p.grad = data, grad  # clears an older packing's `intact`
            p.packing = self
        self.intact = True

    @classmethod
    def pack(cls, params: list[Parameter]) -> Packed | None:
        """Packed params, or None when they differ in dtype or device or one is listed twice."""
        first = params[0].data
        if len({id(p) for p in params}) < len(params) or any(
                p.data.dtype != first.dtype or p.data.device != first.device
                or p.grad.shape != p.data.shape for p in params):
            return None
        return cls(params)
