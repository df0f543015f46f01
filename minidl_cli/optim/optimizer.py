"""Optimizer base: parameter groups, per-parameter state and state dicts, as torch.optim.

Subclasses write only `step`, one line of maths per update, over `tensors()`.
On a small network each torch op costs more in dispatch than in arithmetic, so the
optimizer also packs its parameters' data and gradients into two contiguous buffers
(`Packed`): zero_grad and element-wise updates are then one op on one flat tensor.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from minidl_cli.nn.module import Parameter

_LABELS = {"lr": "learning rate", "eps": "epsilon value"}  # torch.optim's wording


def check_non_negative(**hyperparameters: float) -> None:
    """torch.optim's argument checks: ValueError naming the first one that is not >= 0."""
    for name, value in hyperparameters.items():
        if not value >= 0:  # NaN fails too
            label = _LABELS.get(name, f"{name} value")
            raise ValueError(f"Invalid {label}: {value}; {name} must be a number >= 0")


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
        self._flat_state: dict[str, Tensor] = {}  # state name -> the flat buffer state views

    @property
    def params(self) -> list[Parameter]:
        return self.param_groups[0]["params"]

    def tensors(self, *state_names: str) -> tuple[list[Tensor], ...]:
        """(weights, grads, *states), lists to zip over: one flat tensor each while the parameters
        and the named state tensors are packed, else one tensor per parameter."""
        packed, flat = self.packed, self._flat_state
        if packed is not None and packed.intact and all(n in flat for n in state_names):
            return ([packed.data], [packed.grad], *([flat[n]] for n in state_names))
        params = self.params
        return ([p.data for p in params], [p.grad for p in params],
                *([self.state[i][n] for i in range(len(params))] for n in state_names))

    def init_state(self, names: list[str], **scalars: Any) -> None:
        """Zeroed state tensors `names` (plus `scalars`) for every parameter; views of one
        flat buffer per name while the parameters are packed."""
        with torch.inference_mode(False):  # state outlives Trainer.fit's inference mode
            self.state = {i: {**scalars, **{n: torch.zeros_like(p.data) for n in names}}
                          for i, p in enumerate(self.params)}
            self._pack_state()

    def ensure_state(self, names: list[str], fill: float = 0.0, **scalars: Any) -> None:
        """Create the state entries that are missing: all of them at the first step, the new
        ones after loading a state saved with other options; then pack them."""
        first = self.state.get(0)
        if first is not None and all(n in first for n in (*names, *scalars)):
            return
        with torch.inference_mode(False):  # state outlives Trainer.fit's inference mode
            for i, p in enumerate(self.params):
                state = self.state.setdefault(i, {})
                for name, value in scalars.items():
                    state.setdefault(name, value)
                for name in names:
                    if name not in state:
                        state[name] = torch.full_like(p.data, fill)
            self._pack_state()

    def count_step(self) -> int:
        """Add one to every parameter's `step` (kept per parameter, as torch.optim); the new t."""
        for s in self.state.values():
            s["step"] += 1
        return self.state[0]["step"]

    def _pack_state(self) -> None:
        """Move each per-parameter state tensor into one flat buffer laid out as the packed
        parameters; `state` keeps views of it (same values, shapes and state_dict)."""
        self._flat_state = {}
        packed, params = self.packed, self.params
        if packed is None or not packed.intact or sorted(self.state) != list(range(len(params))):
            return
        for name in list(self.state[0]):
            tensors = [self.state[i].get(name) for i in range(len(params))]
            if not all(torch.is_tensor(t) and t.shape == p.data.shape and t.dtype == p.data.dtype
                       and t.device == p.data.device for t, p in zip(tensors, params, strict=True)):
                continue  # not a per-parameter tensor of the parameter's kind (e.g. "step")
            flat = torch.zeros_like(packed.data)
            for i, view in enumerate(packed.views(flat)):
                self.state[i][name] = view.copy_(tensors[i])
            self._flat_state[name] = flat

    def zero_grad(self) -> None:
        packed = self.packed
        if packed is not None and packed.intact:  # one op on the flat buffer
            packed.grad.zero_()
        else:
            for p in self.params:
                p.grad.zero_()

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
        self._pack_state()

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v}" for k, v in self.defaults.items())
        return f"{type(self).__name__}({options})"


class Packed:
    """The data and the grads of several parameters in two contiguous buffers.

    Each Parameter's `.data` and `.grad` become views of the buffers (same values, same
    shapes), as torch's flat parameters and apex's contiguous gradients do. The parameters
    know nothing of it: when one holds a tensor other than its view (Module.to() assigns
    new ones; `p.grad += g` assigns the same one back), `intact` turns false and the
    optimizer goes back to one tensor per parameter.
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
        self.layout = [(offset, p.data.shape) for p, offset in zip(params, offsets, strict=True)]
        self.data = first.new_zeros(end)
        self.grad = first.new_zeros(end)
        for p, data, grad in zip(params, self.views(self.data), self.views(self.grad), strict=True):
            data.copy_(p.data)
            grad.copy_(p.grad)
            p.data, p.grad = data, grad
        self.params = params
        self._views = [(p, p.data, p.grad) for p in params]

    @property
    def intact(self) -> bool:
        """Whether every parameter still holds its views of the buffers."""
        for p, data, grad in self._views:  # a plain loop: a quarter of all(map(is_, ...))'s time
            if p.data is not data or p.grad is not grad:
                return False
        return True

    def views(self, flat: Tensor) -> list[Tensor]:
        """One view of `flat` (a buffer of the packed size) per parameter, shaped like it."""
        return [flat[offset:offset + shape.numel()].view(shape) for offset, shape in self.layout]

    @classmethod
    def pack(cls, params: list[Parameter]) -> Packed | None:
        """Packed params, or None when they differ in dtype or device or one is listed twice."""
        first = params[0].data
        if len({id(p) for p in params}) < len(params) or any(
                p.data.dtype != first.dtype or p.data.device != first.device
                or p.grad.shape != p.data.shape for p in params):
            return None
        return cls(params)
