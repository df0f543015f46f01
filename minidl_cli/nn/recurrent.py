"""Recurrent layers: RNN, LSTM and GRU, with backpropagation through time written out.

Layouts and weights are torch.nn's (batch first): the input is (N, T, input_size); layer k
of direction d keeps `weight_ih_l{k}{s}` (G·H, I), `weight_hh_l{k}{s}` (G·H, H),
`bias_ih_l{k}{s}` and `bias_hh_l{k}{s}` (G·H,), s = "" forward or "_reverse" backward in
time, G = 1 (RNN), 4 (LSTM: gates i, f, g, o) or 3 (GRU: r, z, n), every entry drawn from
U(−1/√H, 1/√H) as torch.nn does. The initial state is zero.

Inside, a step's vectors are columns, one per batch row: x_t is (I, N), h_t is (H, N), and
sequences are (T, D, F, N), time first, the D directions side by side, the batch innermost.
Each step is then one contiguous block and each gate of a step a run of H·N numbers, which
is what the many small element-wise operations of a step want. The reverse direction reads
the input flipped in time, so both directions step forward together, one batched matrix
product a step.

Forward, one layer (each cell's `_forward_steps`):

    a_t = W_ih x_t + b_ih           all T steps in one matrix product
    h_t = cell(a_t, h_{t-1})        a loop over time: pre_t = a_t + W_hh h_{t-1} + b_hh

Backward is backpropagation through time (Werbos, 1990): a loop over reversed time (each
cell's `_through_time`) that carries dL/dh (and, for the LSTM, dL/dc) to the step before:

    dL/dh_t   = g_t (from the output) + dL/dh_t sent back by step t+1
    dL/dpre_t = dL/dh_t ⊙ (the cell's derivative at step t)
    dL/dh_{t-1} = W_hhᵀ dL/dpre_t (+ the direct path of a gated cell)

Every factor of a cell's derivative that does not depend on dL/dh (σ' = s(1 − s),
tanh' = 1 − y², …) is known once the forward is done, so it is computed for all steps at
once before the loop; the loop itself only carries the gradient. The shared weights then
receive every step's gradient, summed over t in one matrix product each (the steps laid
side by side as (F, T·N) matrices, one transposing copy away):

    dL/dW_hh = Σ_t dL/dpre_t h_{t-1}ᵀ,   dL/db_hh = Σ_t Σ_n dL/dpre_t
    dL/dW_ih = Σ_t dL/da_t x_tᵀ,         dL/dx_t = W_ihᵀ dL/da_t

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
    if params[0] is None:
        return None
    if len(params) == 1:
        return params[0].data.unsqueeze(0)
    return torch.stack([p.data for p in params])


def _columns(x: Tensor) -> Tensor:
    """(N, T, F) -> (T, F, N), each step's vectors as columns: one transpose of x as an
    (N, T·F) matrix, which torch copies block by block (a 3-D permute copies element by
    element, three times slower on a character model's batch)."""
    N, T, F = x.shape
    return x.reshape(N, T * F).t().contiguous().view(T, F, N)


def _per_direction(seq: Tensor, directions: int) -> Tensor:
    """(T, D·F, N) in time order -> (T, D, F, N), the reverse direction's part flipped in time."""
    if directions == 1:
        return seq.unsqueeze(1)
    forward, reverse = seq.chunk(2, 1)
    return torch.stack((forward, reverse.flip(0)), 1)


def _in_time_order(hs: Tensor) -> Tensor:
    """(T, D, F, N) -> (T, D·F, N), the reverse direction's part flipped back in time."""
    return hs[:, 0] if hs.size(1) == 1 else torch.cat((hs[:, 0], hs[:, 1].flip(0)), 1)


def _transposed(w_hh: Tensor) -> Tensor:
    """W_hhᵀ of every direction, (D, H, G·H), laid out for the per-step product of the
    backward (a transposed view costs the loop a copy of W_hh on every step)."""
    return w_hh.transpose(1, 2).contiguous()


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
        D, (N, T, _) = self.num_directions, x.shape
        seq = _columns(x)  # (T, F, N): time first, a step's inputs as columns
        self._caches = []
        for layer in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = (_stack(ps) for ps in self._stacked(layer))
            # (D, F, T·N): every step's input side by side; the reverse direction's flipped
            xs = seq.permute(1, 0, 2)
            inputs = torch.stack((xs, xs.flip(1)) if D == 2 else (xs,)).view(D, -1, T * N)
            bias = None if b_ih is None else self._projection_bias(b_ih, b_hh)
            a = self._input_projection(inputs, w_ih, bias, T)  # (T, D, G·H, N)
            hs, cache = self._forward_steps(a, w_hh, b_hh)  # (T + 1, D, H, N), hs[0] = 0
            self._caches.append((inputs, hs, cache))
            seq = _in_time_order(hs[1:])  # (T, D·H, N), both directions in time order
        self._steps = T
        if self.output == "last":  # forward: the state after x_{T-1}; reverse: after x_0
            return hs[-1].reshape(D * self.hidden_size, N).t().contiguous()  # (N, D·H)
        return seq.reshape(-1, N).t().contiguous().view(N, T, -1)  # (N, T, D·H), as _columns

    def backward(self, grad_output: Tensor) -> Tensor:
        return self._backward(grad_output, input_grad=True)

    def backward_params(self, grad_output: Tensor) -> None:
        """`backward` without dL/dx of the first layer: its input is data."""
        self._backward(grad_output, input_grad=False)

    def _backward(self, grad_output: Tensor, input_grad: bool) -> Tensor | None:
        H, D, T, N = self.hidden_size, self.num_directions, self._steps, grad_output.size(0)
        if self.output == "last":  # only each direction's final state received a gradient
            g = grad_output.new_zeros(T, D, H, N)
            g[-1] = grad_output.t().reshape(D, H, N)
        else:
            g = _per_direction(_columns(grad_output), D)  # (T, D, H, N)
        for layer in reversed(range(self.num_layers)):
            inputs, hs, cache = self._caches[layer]
            if layer == 0 and not input_grad:
                self._backward_steps(g, inputs, hs, cache, self._stacked(layer), False)
                return None
            g_in = self._backward_steps(g, inputs, hs, cache, self._stacked(layer), True)
            # the input fans out to both directions: their gradients add, in time order
            g_in = g_in[0] if D == 1 else g_in[0] + g_in[1].flip(1)  # (F, T, N)
            g = _per_direction(g_in.transpose(0, 1), D) if layer else g_in
        return g.permute(2, 1, 0)  # (N, T, F)

    def _input_projection(self, x: Tensor, w_ih: Tensor, b: Tensor | None, steps: int) -> Tensor:
        """a = W_ih x + b for every step at once, one matrix product per direction:
        x (D, I, T·N), W_ih (D, G·H, I), b (D, G·H) -> (T, D, G·H, N)."""
        D, _, TN = x.shape
        wx = torch.bmm(w_ih, x).view(D, -1, steps, TN // steps).permute(2, 0, 1, 3)
        a = wx.new_empty(wx.shape)  # time first; the bias is added on the way
        return a.copy_(wx) if b is None else torch.add(wx, b.view(1, D, -1, 1), out=a)

    def _projection_bias(self, b_ih: Tensor, b_hh: Tensor) -> Tensor:
        """The bias added to a_t, (D, G·H): b_hh enters the same sum as b_ih."""
        return b_ih + b_hh

    def _backward_steps(self, g: Tensor, x: Tensor, hs: Tensor, cache: tuple,
                        params: list[list[Parameter | None]], input_grad: bool) -> Tensor | None:
        """dL/dx (D, I, T, N) from g = dL/dh (T, D, H, N), adding the weight gradients into
        each direction's parameters; the loop over time is the cell's `_through_time`."""
        w_ih, w_hh, b_ih, b_hh = params
        # d_a: dL/da_t (input side); d_hh: dL/d(W_hh h_{t-1} + b_hh); both (D, G·H, T, N),
        # every step side by side
        d_a, d_hh = self._through_time(g, hs, cache, _stack(w_hh))
        D, G, T, N = d_a.shape
        d_a_steps, d_hh_steps = d_a.view(D, G, T * N), d_hh.view(D, G, T * N)
        h_prev = hs[1:-1].permute(1, 2, 0, 3).reshape(D, hs.size(2), -1)  # h_0 … h_{T-2}
        for d in range(D):
            # dL/dW_hh = Σ_t d_hh_t h_{t-1}ᵀ; h_{-1} = 0, so from t = 1
            w_hh[d].grad.addmm_(d_hh_steps[d, :, N:], h_prev[d].t())
            w_ih[d].grad.addmm_(d_a_steps[d], x[d].t())  # dL/dW_ih = Σ_t d_a_t x_tᵀ
            if b_ih[d] is not None:  # dL/db = Σ_t Σ_n d
                b_hh[d].grad.add_(d_hh_steps[d].sum(1))
                b_ih[d].grad.add_(d_a_steps[d].sum(1))
        if not input_grad:
            return None
        w_ih_t = _stack(w_ih).transpose(1, 2)
        return torch.bmm(w_ih_t, d_a_steps).view(D, -1, T, N)  # dL/dx_t = W_ihᵀ d_a_t

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
    """Elman RNN, h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), act tanh or relu.

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
        T, D, H, N = a.shape  # b_hh is in a
        hs = a.new_empty(T + 1, D, H, N)
        hs[0].zero_()
        act_ = torch.tanh_ if self.nonlinearity == "tanh" else torch.relu_
        a_, h = a.unbind(0), hs.unbind(0)
        for t in range(T):
            act_(torch.baddbmm(a_[t], w_hh, h[t], out=h[t + 1]))  # h_t = act(a_t + W_hh h_{t-1})
        return hs, ()

    def _through_time(self, g: Tensor, hs: Tensor, cache: tuple,
                      w_hh: Tensor) -> tuple[Tensor, Tensor]:
        T, D, H, N = g.shape
        h = hs[1:]
        # act'(pre_t) from the output: tanh' = 1 − h², relu' = 1[h > 0]
        slope = 1 - h * h if self.nonlinearity == "tanh" else (h > 0).to(h.dtype)
        # written step by step into (D, H, T, N): every step side by side
        d_pre, w_hh_t = g.new_empty(D, H, T, N), _transposed(w_hh)
        g_, slope_, d_pre_ = g.unbind(0), slope.unbind(0), d_pre.unbind(2)
        dh = g_[-1]
        for t in reversed(range(len(g))):
            torch.mul(dh, slope_[t], out=d_pre_[t])  # dL/dpre_t = dL/dh_t ⊙ act'
            if t:  # dL/dh_{t-1} = g_{t-1} + W_hhᵀ dL/dpre_t
                dh = torch.baddbmm(g_[t - 1], w_hh_t, d_pre_[t])
        return d_pre, d_pre  # a_t and W_hh h_{t-1} enter the same sum


@register("layer", "lstm")
class LSTM(RecurrentBase):
    """Long short-term memory (Hochreiter & Schmidhuber, 1997), as torch.nn.LSTM.

        i, f, g, o = σ(a_i), σ(a_f), tanh(a_g), σ(a_o),  a = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh
        c_t = f ⊙ c_{t-1} + i ⊙ g,   h_t = o ⊙ tanh(c_t)

    Shape: (N, T, input_size) -> (N, T, D·hidden_size), or (N, D·hidden_size) with
    output="last". As torch.nn.LSTM(batch_first=True).
    """

    gates = 4

    def _forward_steps(self, a: Tensor, w_hh: Tensor, b_hh: Tensor | None):
        T, D, G, N = a.shape  # b_hh is in a
        H = G // 4
        gates, pre = a.new_empty(T, D, G, N), a.new_empty(D, G, N)
        hs, cs = a.new_empty(T + 1, D, H, N), a.new_empty(T + 1, D, H, N)
        tanh_cs = a.new_empty(T, D, H, N)
        hs[0].zero_(), cs[0].zero_()
        a_, gates_, h, c, tanh_c = (t.unbind(0) for t in (a, gates, hs, cs, tanh_cs))
        i, f, gg, o = (t.unbind(0) for t in gates.view(T, D, 4, H, N).unbind(2))
        pre_g = pre[:, 2 * H:3 * H]
        for t in range(T):
            torch.baddbmm(a_[t], w_hh, h[t], out=pre)  # a_t + W_hh h_{t-1}
            torch.sigmoid(pre, out=gates_[t])  # i, f, o = σ(·) …
            torch.tanh(pre_g, out=gg[t])  # … and g = tanh(·)
            torch.addcmul(f[t] * c[t], i[t], gg[t], out=c[t + 1])  # c_t = f ⊙ c_{t-1} + i ⊙ g
            torch.tanh(c[t + 1], out=tanh_c[t])
            torch.mul(o[t], tanh_c[t], out=h[t + 1])  # h_t = o ⊙ tanh(c_t)
        return hs, (cs, tanh_cs, gates)

    def _through_time(self, g: Tensor, hs: Tensor, cache: tuple,
                      w_hh: Tensor) -> tuple[Tensor, Tensor]:
        cs, tanh_c, gates = cache
        T, D, H, N = g.shape
        i, f, gg, o = gates.view(T, D, 4, H, N).unbind(2)
        # the factors of the chain rule that do not depend on the incoming gradient:
        dc_dh = o * (1 - tanh_c * tanh_c)  # h = o tanh(c): ∂h/∂c = o tanh'(c)
        dpre_dc = g.new_empty(T, D, 3, H, N)  # dL/da_i, a_f, a_g = dL/dc_t ⊙ these:
        torch.mul(gg * i, 1 - i, out=dpre_dc[:, :, 0])        # c = … + i g, i = σ(a_i)
        torch.mul(cs[:-1] * f, 1 - f, out=dpre_dc[:, :, 1])   # c = f c_{t-1} + …, f = σ(a_f)
        torch.mul(i, 1 - gg * gg, out=dpre_dc[:, :, 2])       # c = … + i g, g = tanh(a_g)
        dpre_o = tanh_c * o * (1 - o)                  # h = o tanh(c), o = σ(a_o)
        # written step by step into (D, 4H, T, N): every step side by side
        d_pre, w_hh_t = gates.new_empty(D, 4, H, T, N), _transposed(w_hh)
        g_, f_, dc_dh_, dpre_dc_, dpre_o_ = (t.unbind(0) for t in (g, f, dc_dh, dpre_dc, dpre_o))
        d_ifg, d_o = d_pre[:, :3].unbind(3), d_pre[:, 3].unbind(2)
        d_pre_ = d_pre.view(D, 4 * H, T, N).unbind(2)
        dh, dc_next = g_[-1], g.new_zeros(D, H, N)
        for t in reversed(range(T)):
            dc = torch.addcmul(dc_next, dh, dc_dh_[t])  # dL/dc_t: through h_t, and from c_{t+1}
            torch.mul(dc.unsqueeze(1), dpre_dc_[t], out=d_ifg[t])  # dL/da_i, a_f, a_g
            torch.mul(dh, dpre_o_[t], out=d_o[t])  # dL/da_o
            if t:
                dc_next = dc * f_[t]  # dL/dc_{t-1} = dL/dc_t ⊙ f
                # dL/dh_{t-1} = g_{t-1} + W_hhᵀ dL/da_t
                dh = torch.baddbmm(g_[t - 1], w_hh_t, d_pre_[t])
        d_pre = d_pre.view(D, 4 * H, T, N)
        return d_pre, d_pre


@register("layer", "gru")
class GRU(RecurrentBase):
    """Gated recurrent unit (Cho et al., 2014), as torch.nn.GRU.

        r = σ(a_r + W_hr h + b_hr),  z = σ(a_z + W_hz h + b_hz)
        n = tanh(a_n + r ⊙ (W_hn h + b_hn)),  h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}

    Shape: (N, T, input_size) -> (N, T, D·hidden_size), or (N, D·hidden_size) with
    output="last". As torch.nn.GRU(batch_first=True).
    """

    gates = 3

    def _projection_bias(self, b_ih: Tensor, b_hh: Tensor) -> Tensor:
        """b_ih, and b_hh's r and z parts, which add to a as b_ih does (b_hn is multiplied by r)."""
        bias = b_ih.clone()
        bias[:, :2 * bias.size(1) // 3] += b_hh[:, :2 * bias.size(1) // 3]
        return bias

    def _forward_steps(self, a: Tensor, w_hh: Tensor, b_hh: Tensor | None):
        T, D, G, N = a.shape
        H = G // 3
        hs, ns = a.new_empty(T + 1, D, H, N), a.new_empty(T, D, H, N)
        hh, rz = a.new_empty(T, D, G, N), a.new_empty(T, D, 2 * H, N)
        hs[0].zero_()
        h, n, hh_, rz_ = (t.unbind(0) for t in (hs, ns, hh, rz))
        a_rz, a_n = a[:, :, :2 * H].unbind(0), a[:, :, 2 * H:].unbind(0)
        hh_rz, hh_n = hh[:, :, :2 * H].unbind(0), hh[:, :, 2 * H:].unbind(0)
        r, z = (t.unbind(0) for t in rz.view(T, D, 2, H, N).unbind(2))
        b_n = None if b_hh is None else b_hh[:, 2 * H:].unsqueeze(2)  # b_hr, b_hz are in a
        for t in range(T):
            torch.bmm(w_hh, h[t], out=hh_[t])  # W_hh h_{t-1}: the r, z and n parts …
            if b_n is not None:
                hh_n[t].add_(b_n)  # … and hn = W_hn h_{t-1} + b_hn
            torch.add(a_rz[t], hh_rz[t], out=rz_[t]).sigmoid_()  # r, z = σ(a + W_h h + b_h)
            torch.addcmul(a_n[t], r[t], hh_n[t], out=n[t]).tanh_()  # n = tanh(a_n + r ⊙ hn)
            torch.lerp(n[t], h[t], z[t], out=h[t + 1])  # h_t = n + z ⊙ (h_{t-1} − n)
        return hs, (hh[:, :, 2 * H:], rz, ns)

    def _through_time(self, g: Tensor, hs: Tensor, cache: tuple,
                      w_hh: Tensor) -> tuple[Tensor, Tensor]:
        hn, rz, n = cache
        T, D, H, N = g.shape
        r, z = rz.view(T, D, 2, H, N).unbind(2)
        # the factors of the chain rule that do not depend on the incoming gradient, gate by
        # gate (r, z, n): dL/da_t = dL/dh_t ⊙ da_dh, dL/d(W_hh h_{t-1} + b_hh) = dL/dh_t ⊙ dhh_dh
        da_dh, dhh_dh = g.new_empty(T, D, 3, H, N), g.new_empty(T, D, 3, H, N)
        dar_dh, daz_dh, dan_dh = da_dh.unbind(2)
        torch.mul(1 - z, 1 - n * n, out=dan_dh)     # h = (1 − z) n + …, n = tanh(a_n + r ⊙ hn)
        torch.mul(dan_dh * hn, r * (1 - r), out=dar_dh)  # r enters n's argument times hn, σ(a_r)
        torch.mul((hs[:-1] - n) * z, 1 - z, out=daz_dh)  # ∂h/∂z = h_{t-1} − n, z = σ(a_z)
        dhh_dh[:, :, :2] = da_dh[:, :, :2]          # r and z enter both sums alike;
        torch.mul(dan_dh, r, out=dhh_dh[:, :, 2])   # hn enters n's argument times r
        # written step by step into (D, 3H, T, N): every step side by side
        d_a, d_hh = g.new_empty(D, 3, H, T, N), g.new_empty(D, 3, H, T, N)
        w_hh_t = _transposed(w_hh)
        g_, z_, da_dh_, dhh_dh_ = (t.unbind(0) for t in (g, z, da_dh, dhh_dh))
        d_a_, d_hh_ = d_a.unbind(3), d_hh.unbind(3)
        d_hh_flat = d_hh.view(D, 3 * H, T, N).unbind(2)
        dh = g_[-1]  # dL/dh_{T-1}: from the output only
        for t in reversed(range(T)):
            dh_col = dh.unsqueeze(1)
            torch.mul(dh_col, da_dh_[t], out=d_a_[t])  # dL/da_t
            torch.mul(dh_col, dhh_dh_[t], out=d_hh_[t])  # dL/d(W_hh h_{t-1} + b_hh)
            if t:  # dL/dh_{t-1} = g_{t-1} + dL/dh_t ⊙ z + W_hhᵀ d_hh_t
                dh = torch.baddbmm(torch.addcmul(g_[t - 1], dh, z_[t]), w_hh_t, d_hh_flat[t])
        return d_a.view(D, 3 * H, T, N), d_hh.view(D, 3 * H, T, N)
