"""Optimizer base: parameter groups, per-parameter state and state dicts, as torch.optim.

Subclasses write only `step`; updates use multi-tensor (foreach) ops over all parameters.
"""

from __future__ import annotations

from typing import Any

import torch

from minidl_cli.nn.module import Parameter


class Optimizer:
    """Holds `param_groups` (one group: params + hyper-parameters) and per-parameter `state`."""

    def __init__(self, params, defaults: dict[str, Any]):
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        for p in params:
            if not isinstance(p, Parameter):
                raise TypeError(f"optimizer params must be minidl Parameters, got {type(p).__name__}")
        self.defaults = defaults
        self.param_groups = [{"params": params, **defaults}]
        self.state: dict[int, dict[str, Any]] = {}  # parameter index -> state tensors

    @property
    def params(self) -> list[Parameter]:
        return self.param_groups[0]["params"]

    def zero_grad(self) -> None:
        torch._foreach_zero_([p.grad for p in self.params])

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
                k: v.to(device=p.device, dtype=p.dtype) if torch.is_tensor(v) and v.is_floating_point()
                and k != "step" else v
                for k, v in s.items()
            }

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v}" for k, v in self.defaults.items())
        return f"{type(self).__name__}({options})"
