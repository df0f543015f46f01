"""Recurrent layers: RNN, LSTM and GRU, with backpropagation through time written out.

Layouts and weights are torch.nn's (batch first): the input is (N, T, input_size); layer k
of direction d keeps `weight_ih_l{k}{s}` (G·H, I), `weight_hh_l{k}{s}` (G·H, H),
`bias_ih_l{k}{s}` and `bias_hh_l{k}{s}` (G·H,), s = "" forward or "_reverse" backward in
time, G = 1 (RNN), 4 (LSTM: gates i, f, g, o) or 3 (GRU: r, z, n), every entry drawn from
U(−1/√H, 1/√H) as torch.nn does. The initial state is zero.

Forward, one layer (each cell's `_forward_steps`):

    a_t = x_t W_ihᵀ + b_ih          all T steps in one matrix product
    h_t = cell(a_t, h_{t-1})        a loop over time

Backward is backpropagation through time (Werbos, 1990): a loop over reversed time (each
cell's `_through_time`) that carries dL/dh (and, for the LSTM, dL/dc) to the step before:

    dL/dh_t   = g_t (from the output) + dL/dh_t sent back by step t+1
    dL/dpre_t = dL/dh_t ⊙ (the cell's derivative at step t)
    dL/dh_{t-1} = dL/dpre_t W_hh (+ the direct path of a gated cell)

Every factor of a cell's derivative that does not depend on dL/dh (σ' = s(1 − s),
tanh' = 1 − y², …) is known once the forward is done, so it is computed for all steps at
once before the loop; the loop itself only carries the gradient. The shared weights then
receive every step's gradient, summed over t in one matrix product each:

    dL/dW_hh = Σ_t (dL/dpre_t)ᵀ h_{t-1},   dL/db_hh = Σ_t Σ_n dL/dpre_t
    dL/dW_ih = Σ_t (dL/da_t)ᵀ x_t,         dL/dx_t = dL/da_t W_ih

Inside, sequences are time-major and the D directions step side by side as a batch:
(T, D, N, ·), so that step t of every direction is one contiguous block and one batched
matrix product (the reverse direction reads the input flipped in time).

Output: `output="sequence"` gives (N, T, D·H), the top layer's hidden states with both
directions side by side (torch's `output`); `output="last"` gives (N, D·H), the top
layer's final hidden state of each direction (torch's `h_n[-D:]`, directions
concatenated): for the reverse direction that is the state after reading x_0.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
from torch import Tensor

from minidl_cli.nn.module import Module, Parameter, show_shape
from minidl_cli.registry import Range, register

Output = Literal["sequence", "last"]


def _stack(params: list[Parameter | None]) -> Tensor | None:
    """The D directions' tensors of one kind as one (D, …) tensor (None without a bias)."""
    return None if params[0] is None else torch.stack([p.data for p in params])


def _twin_class(base: type) -> type:
    """torch.nn.RNN/LSTM/GRU (batch_first=True) returning what minidl's layer returns: the
    output sequence, or the top layer's final states of each direction side by side."""

    class Twin(base):
        def __init__(self, *args, output: str = "sequence", **kwargs):
            super().__init__(*args, batch_first=True, **kwargs)
            self.output = output

        def forward(self, x):
            sequence, h_n = super().forward(x)
            if self.output == "sequence":
                return sequence
            h_n = h_n[0] if isinstance(h_n, tuple) else h_n  # an LSTM's (h_n, c_n)
            return torch.cat(list(h_n[-(2 if self.bidirectional else 1):]), dim=1)

    Twin.__name__ = Twin.__qualname__ = f"{base.__name__}Twin"
    return Twin


class RecurrentBase(Module):
    """The bookkeeping shared by RNN, LSTM and GRU: parameters, layers, directions, output.

    Subclasses set `gates` (G) and write `_forward_steps` (the loop over time) and
    `_through_time` (the loop over reversed time) of one layer, all directions at once.
    Raises ValueError for sizes < 1 or an unknown `output`.
    """

    gates = 1
    inferred = {"input_size": -1}  # as torch's Lazy modules would: input.shape[-1]

    def __init__(self, input_size: int, hidden_size: Annotated[int, Range(ge=1)],
                 num_layers: Annotated[int, Range(ge=1)] = 1, bias: bool = True,
                 bidirectional: bool = False, output: Output = "sequence"):
        if input_size < 1 or hidden_size < 1 or num_layers < 1:
            raise ValueError(f"{type(self).__name__} needs input_size, hidden_size and "
                             f"num_layers >= 1, got {input_size}, {hidden_size}, {num_layers}")
        if output not in ("sequence", "last"):
            raise ValueError(f"output must be 'sequence' or 'last', got {output!r}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.bidirectional, self.output = bias, bidirectional, output
        bound = 1.0 / math.sqrt(hidden_size)  # torch.nn.RNNBase.reset_parameters

        def uniform(*shape: int) -> Parameter:
            return Parameter(torch.empty(*shape).uniform_(-bound, bound))

        G, H = self.gates * hidden_size, hidden_size
        for layer in range(num_layers):
            width = input_size if layer == 0 else H * self.num_directions
            for suffix in self._suffixes():
                name = f"l{layer}{suffix}"
                setattr(self, f"weight_ih_{name}", uniform(G, width))
                setattr(self, f"weight_hh_{name}", uniform(G, H))
                if bias:
                    setattr(self, f"bias_ih_{name}", uniform(G))
                    setattr(self, f"bias_hh_{name}", uniform(G))

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def _suffixes(self) -> tuple[str, ...]:
        return ("", "_reverse") if self.bidirectional else ("",)

    def _stacked(self, layer: int) -> list[list[Parameter | None]]:
        """[[w_ih], [w_hh], [b_ih], [b_hh]] of one layer, one entry per direction."""
        get = vars(self).get
        return [[get(f"{kind}_l{layer}{suffix}") for suffix in self._suffixes()]
                for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) != 2:
            raise ValueError(f"needs (N, T, {self.input_size}), got {show_shape(input_shape)}; "
                             "add an unflatten (a signal of T points is unflattened_size [T, 1])")
        if input_shape[1] != self.input_size:
            raise ValueError(f"needs (N, T, {self.input_size}), got {show_shape(input_shape)}")
        width = self.hidden_size * self.num_directions
        return (width,) if self.output == "last" else (input_shape[0], width)

    # --- forward and backward over layers and directions ---

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 3 or not x.is_floating_point():
            raise ValueError(f"{type(self).__name__} needs (N, T, F) float inputs, got "
                             f"{x.dtype} of shape {tuple(x.shape)}")
        seq = x.transpose(0, 1)  # (T, N, F): time-major
        self._caches = []
        for layer in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = (_stack(ps) for ps in self._stacked(layer))
            directions = (seq, seq.flip(0)) if self.bidirectional else (seq,)
            inputs = torch.stack(directions, 1)  # (T, D, N, F)
            a = self._input_projection(inputs, w_ih, b_ih)  # (T, D, N, G·H)
            hs, cache = self._forward_steps(a, w_hh, b_hh)  # (T, D, N, H)
            self._caches.append((inputs, hs, cache))
            # (T, N, D·H): the directions side by side, the reverse one back in time order
            seq = hs[:, 0] if not self.bidirectional else torch.cat((hs[:, 0], hs[:, 1].flip(0)), 2)
        self._steps = seq.size(0)
        if self.output == "last":  # forward: the state after x_{T-1}; reverse: after x_0
            H = self.hidden_size
            ends = [seq[-1, :, :H]] + ([seq[0, :, H:]] if self.bidirectional else [])
            return torch.cat(ends, dim=1)
        return seq.transpose(0, 1).contiguous()  # (N, T, D·H)

    def backward(self, grad_output: Tensor) -> Tensor:
        H, D = self.hidden_size, self.num_directions
        if self.output == "last":  # only the final states received a gradient
            g = grad_output.new_zeros(self._steps, *grad_output.shape)
            g[-1, :, :H] = grad_output[:, :H]
            if self.bidirectional:
                g[0, :, H:] = grad_output[:, H:]
        else:
            g = grad_output.transpose(0, 1)  # (T, N, D·H)
        for layer in reversed(range(self.num_layers)):
            inputs, hs, cache = self._caches[layer]
            g_steps = torch.stack((g[:, :, :H], g[:, :, H:].flip(0)) if D == 2 else (g,), 1)
            g_in = self._backward_steps(g_steps, inputs, hs, cache, self._stacked(layer))
            # the input fans out to both directions: their gradients add
            g = g_in[:, 0] if D == 1 else g_in[:, 0] + g_in[:, 1].flip(0)
        return g.transpose(0, 1)  # (N, T, F)

    def _input_projection(self, x: Tensor, w_ih: Tensor, b_ih: Tensor | None) -> Tensor:
        """a = x W_ihᵀ + b_ih for every step at once, one matrix product per direction:
        (T, D, N, I) -> (T, D, N, G·H), W_ih (D, G·H, I), b_ih (D, G·H)."""
        T, D, N, _ = x.shape
        a = [x[:, d].reshape(T * N, -1).mm(w_ih[d].t()) for d in range(D)]
        a = torch.stack([p.view(T, N, -1) for p in a], 1)
        return a if b_ih is None else a.add_(b_ih.unsqueeze(1))

    def _backward_steps(self, g: Tensor, x: Tensor, hs: Tensor, cache: tuple,
                        params: list[list[Parameter | None]]) -> Tensor:
        """dL/dx (T, D, N, I) from g = dL/dh (T, D, N, H), adding the weight gradients into
        each direction's parameters; the loop over time is the cell's `_through_time`."""
        w_ih, w_hh, b_ih, b_hh = params
        # d_a: dL/da_t (input side); d_hh: dL/d(h_{t-1} W_hhᵀ + b_hh); both (T, D, N, G·H)
        d_a, d_hh = self._through_time(g, hs, cache, _stack(w_hh))
        T, D, N, G = d_a.shape
        grad_input = []
        for d in range(D):
            d_a_d, d_hh_d = d_a[:, d].reshape(T * N, G), d_hh[:, d].reshape(T, N, G)
            # dL/dW_hh = Σ_t d_hh_tᵀ h_{t-1}; h_{-1} = 0, so from t = 1
            w_hh[d].grad.addmm_(d_hh_d[1:].reshape(-1, G).t(), hs[:-1, d].reshape(-1, hs.size(3)))
            w_ih[d].grad.addmm_(d_a_d.t(), x[:, d].reshape(T * N, -1))  # Σ_t d_a_tᵀ x_t
            if b_ih[d] is not None:  # dL/db = Σ_t Σ_n d
                b_hh[d].grad.add_(d_hh_d.sum((0, 1)))
                b_ih[d].grad.add_(d_a_d.sum(0))
            grad_input.append(d_a_d.mm(w_ih[d].data).view(T, N, -1))  # dL/dx_t = d_a_t W_ih
        return torch.stack(grad_input, 1)

    def torch_twin(self) -> torch.nn.Module:
        twin = getattr(torch.nn, type(self).__name__)
        extra = {"nonlinearity": self.nonlinearity} if isinstance(self, RNN) else {}
        return _twin_class(twin)(self.input_size, self.hidden_size, self.num_layers,
                                 bias=self.bias, bidirectional=self.bidirectional,
                                 output=self.output, **extra)

    def extra_repr(self) -> str:
        extras = [f"{self.input_size}, {self.hidden_size}"]
        if self.num_layers != 1:
            extras.append(f"num_layers={self.num_layers}")
        if not self.bias:
            extras.append("bias=False")
        if self.bidirectional:
            extras.append("bidirectional=True")
        if self.output != "sequence":
            extras.append(f"output={self.output!r}")
        return ", ".join(extras)


@register("layer", "rnn")
class RNN(RecurrentBase):
    """Elman RNN, h_t = act(x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh), act tanh or relu.

    Shape: (N, T, input_size) -> (N, T, D·hidden_size), or (N, D·hidden_size) with
    output="last" (D = 2 if bidirectional). As torch.nn.RNN(batch_first=True).
    """

    gates = 1

    def __init__(self, input_size: int, hidden_size: Annotated[int, Range(ge=1)],
                 num_layers: Annotated[int, Range(ge=1)] = 1,
                 nonlinearity: Literal["tanh", "relu"] = "tanh", bias: bool = True,
                 bidirectional: bool = False, output: Output = "sequence"):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, num_layers, bias, bidirectional, output)

    def _forward_steps(self, a: Tensor, w_hh: Tensor, b_hh: Tensor | None):
        if b_hh is not None:
            a.add_(b_hh.unsqueeze(1))  # b_hh enters the same sum as b_ih
        T, D, N, H = a.shape
        hs, h, w_hh_t = a.new_empty(T, D, N, H), a.new_zeros(D, N, H), w_hh.transpose(1, 2)
        act_ = torch.tanh_ if self.nonlinearity == "tanh" else torch.relu_
        for t in range(T):
            h = act_(torch.baddbmm(a[t], h, w_hh_t, out=hs[t]))  # h_t = act(a_t + h_{t-1} W_hhᵀ)
        return hs, ()

    def _through_time(self, g: Tensor, hs: Tensor, cache: tuple,
                      w_hh: Tensor) -> tuple[Tensor, Tensor]:
        # act'(pre_t) from the output: tanh' = 1 − h², relu' = 1[h > 0]
        slope = 1 - hs * hs if self.nonlinearity == "tanh" else (hs > 0).to(hs.dtype)
        d_pre, dh_next = torch.empty_like(hs), g.new_zeros(g.shape[1:])
        for t in reversed(range(len(g))):
            torch.mul(g[t] + dh_next, slope[t], out=d_pre[t])  # dL/dpre_t = dL/dh_t ⊙ act'
            dh_next = torch.bmm(d_pre[t], w_hh)  # dL/dh_{t-1} = dL/dpre_t W_hh
        return d_pre, d_pre  # a_t and h_{t-1} W_hhᵀ enter the same sum

    def extra_repr(self) -> str:
        extra = super().extra_repr()
        return extra if self.nonlinearity == "tanh" else extra + ", nonlinearity='relu'"


@register("layer", "lstm")
class LSTM(RecurrentBase):
    """Long short-term memory (Hochreiter & Schmidhuber, 1997), as torch.nn.LSTM.

        i, f, g, o = σ(a_i), σ(a_f), tanh(a_g), σ(a_o),  a = x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh
        c_t = f ⊙ c_{t-1} + i ⊙ g,   h_t = o ⊙ tanh(c_t)

    Shape: (N, T, input_size) -> (N, T, D·hidden_size), or (N, D·hidden_size) with
    output="last". As torch.nn.LSTM(batch_first=True).
    """

    gates = 4

    def _forward_steps(self, a: Tensor, w_hh: Tensor, b_hh: Tensor | None):
        if b_hh is not None:
            a.add_(b_hh.unsqueeze(1))  # b_hh enters the same sum as b_ih
        T, D, N, G = a.shape
        H = G // 4
        hs, cs, tanh_cs = (a.new_empty(T, D, N, H) for _ in range(3))
        gates, pre = a.new_empty(T, D, N, 4, H), a.new_empty(D, N, 4, H)
        h, c, w_hh_t = a.new_zeros(D, N, H), a.new_zeros(D, N, H), w_hh.transpose(1, 2)
        for t in range(T):
            torch.baddbmm(a[t], h, w_hh_t, out=pre.view(D, N, G))  # a_t + h_{t-1} W_hhᵀ
            torch.sigmoid(pre, out=gates[t])  # i, f, o = σ(·) …
            torch.tanh(pre[:, :, 2], out=gates[t, :, :, 2])  # … and g = tanh(·)
            i, f, gg, o = gates[t].unbind(2)
            c = torch.addcmul(f * c, i, gg, out=cs[t])  # c_t = f ⊙ c_{t-1} + i ⊙ g
            h = torch.mul(o, torch.tanh(c, out=tanh_cs[t]), out=hs[t])  # h_t = o ⊙ tanh(c_t)
        return hs, (cs, tanh_cs, gates)

    def _through_time(self, g: Tensor, hs: Tensor, cache: tuple,
                      w_hh: Tensor) -> tuple[Tensor, Tensor]:
        cs, tanh_c, gates = cache
        i, f, gg, o = gates.unbind(3)
        c_prev = torch.cat((torch.zeros_like(cs[:1]), cs[:-1]))
        # the factors of the chain rule that do not depend on the incoming gradient:
        dc_dh = o * (1 - tanh_c * tanh_c)  # h = o tanh(c): ∂h/∂c = o tanh'(c)
        dpre_dc = torch.stack((gg * i * (1 - i),        # c = … + i g, i = σ(a_i)
                               c_prev * f * (1 - f),    # c = f c_{t-1} + …, f = σ(a_f)
                               i * (1 - gg * gg)), 3)   # c = … + i g, g = tanh(a_g)
        dpre_o = tanh_c * o * (1 - o)                   # h = o tanh(c), o = σ(a_o)
        T, D, N, H = g.shape
        d_pre = gates.new_empty(T, D, N, 4, H)
        dh_next, dc_next = g.new_zeros(D, N, H), g.new_zeros(D, N, H)
        for t in reversed(range(T)):
            dh = g[t] + dh_next                                   # dL/dh_t
            dc = torch.addcmul(dc_next, dh, dc_dh[t])             # dL/dc_t: through h, and from t+1
            torch.mul(dc.unsqueeze(2), dpre_dc[t], out=d_pre[t, :, :, :3])  # dL/da_i, a_f, a_g
            torch.mul(dh, dpre_o[t], out=d_pre[t, :, :, 3])       # dL/da_o
            dc_next = dc * f[t]                                   # dL/dc_{t-1} = dL/dc_t ⊙ f
            dh_next = torch.bmm(d_pre[t].view(D, N, 4 * H), w_hh)  # dL/dh_{t-1} = dL/da_t W_hh
        d_pre = d_pre.view(T, D, N, 4 * H)
        return d_pre, d_pre


@register("layer", "gru")
class GRU(RecurrentBase):
    """Gated recurrent unit (Cho et al., 2014), as torch.nn.GRU.

        r = σ(a_r + h W_hrᵀ + b_hr),  z = σ(a_z + h W_hzᵀ + b_hz)
        n = tanh(a_n + r ⊙ (h W_hnᵀ + b_hn)),  h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}

    Shape: (N, T, input_size) -> (N, T, D·hidden_size), or (N, D·hidden_size) with
    output="last". As torch.nn.GRU(batch_first=True).
    """

    gates = 3

    def _forward_steps(self, a: Tensor, w_hh: Tensor, b_hh: Tensor | None):
        T, D, N, G = a.shape
        H = G // 3
        hs, ns = a.new_empty(T, D, N, H), a.new_empty(T, D, N, H)
        hh, rz = a.new_empty(T, D, N, G), a.new_empty(T, D, N, 2 * H)
        h, w_hh_t = a.new_zeros(D, N, H), w_hh.transpose(1, 2)
        for t in range(T):
            if b_hh is None:  # h W_hhᵀ + b_hh: the r, z and n parts
                torch.bmm(h, w_hh_t, out=hh[t])
            else:
                torch.baddbmm(b_hh.unsqueeze(1), h, w_hh_t, out=hh[t])
            rz_t = torch.add(a[t, ..., :2 * H], hh[t, ..., :2 * H], out=rz[t]).sigmoid_()
            r, z = rz_t.chunk(2, 2)
            n = torch.addcmul(a[t, ..., 2 * H:], r, hh[t, ..., 2 * H:], out=ns[t]).tanh_()
            h = torch.lerp(n, h, z, out=hs[t])  # h_t = n + z ⊙ (h_{t-1} − n)
        return hs, (hh[..., 2 * H:], rz, ns)

    def _through_time(self, g: Tensor, hs: Tensor, cache: tuple,
                      w_hh: Tensor) -> tuple[Tensor, Tensor]:
        hn, rz, n = cache
        r, z = rz.chunk(2, 3)
        h_prev = torch.cat((torch.zeros_like(hs[:1]), hs[:-1]))
        # the factors of the chain rule that do not depend on the incoming gradient:
        dan_dh = (1 - z) * (1 - n * n)            # h = (1 − z) n + …, n = tanh(a_n + r ⊙ hn)
        dar_dh = dan_dh * hn * r * (1 - r)        # r enters n's argument times hn, r = σ(a_r)
        daz_dh = (h_prev - n) * z * (1 - z)       # ∂h/∂z = h_{t-1} − n, z = σ(a_z)
        dhh_dh = torch.stack((dar_dh, daz_dh, dan_dh * r), 3)  # hn enters n's argument times r
        T, D, N, H = g.shape
        dhs, d_hh = g.new_empty(T, D, N, H), g.new_empty(T, D, N, 3, H)
        dh_next = g.new_zeros(D, N, H)
        for t in reversed(range(T)):
            dh = torch.add(g[t], dh_next, out=dhs[t])           # dL/dh_t
            torch.mul(dh.unsqueeze(2), dhh_dh[t], out=d_hh[t])  # dL/d(h_{t-1} W_hhᵀ + b_hh)
            dh_next = torch.baddbmm(dh * z[t], d_hh[t].view(D, N, 3 * H), w_hh)  # dL/dh_{t-1}
        d_a = dhs.unsqueeze(3) * torch.stack((dar_dh, daz_dh, dan_dh), 3)  # dL/da_t: r, z, n
        return d_a.view(T, D, N, 3 * H), d_hh.view(T, D, N, 3 * H)
