"""The differentiable entry points: lcu_powers (M^k |0> for the LCU M of each window's token circuits),
polynomial_state (the polynomial of M applied to |0>) and run_circuit (one circuit per state, the readout
layer), each an autograd function whose backward is the adjoint method.

Memory. The forward of lcu_powers stores only each power's per-token circuit outputs (d * B * T * 2**n * 2
floats) and the backward runs every circuit in reverse while pulling the gradient back through the same
inverse gates (quixer_sim.kernels). Autograd never sees the ~4nL intermediate states per circuit, so memory
grows with B*T*2**n, not with the number of gates (quixer_sim.memory gives the budget). Windows are
simulated in chunks (quixer_sim.memory.chunk_windows) on one cached workspace (quixer_sim.workspace), whose
gate loops are CUDA graphs on CUDA (quixer_sim.graphs). No host sync happens in the steady-state forward
or backward (no .item(), no tensor-valued Python branches).
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence

import torch
from torch.autograd.function import once_differentiable

from .circuits import QuixerGate, apply_circuit, zero_planes
from .graphs import graphs_wanted
from .memory import chunk_windows, circuit_chunk
from .workspace import WORKSPACES, Workspace


@contextlib.contextmanager
def _device_context(device: torch.device) -> Iterator[None]:
    """Make `device` current on CUDA (streams, captures and replays then belong to it) and switch autocast
    off: the simulator runs in its inputs' dtype (autocast would move its matrix-vector products to
    half precision)."""
    if device.type in ("cuda", "cpu"):
        with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext(), \
                torch.autocast(device.type, enabled=False):
            yield
    else:
        yield


def _each_chunk(like: torch.Tensor, qubits: int, gates: tuple[QuixerGate, ...], chunk: int, tokens: int,
                total: int, body: Callable[[Workspace, int, int], None]) -> None:
    """body(workspace, first, count) for each chunk of `total` windows (or states), `chunk` at a time, all
    on one borrowed workspace of `chunk` x `tokens`, on `like`'s device with autocast off."""
    if total <= 0:
        return
    with _device_context(like.device), WORKSPACES.borrow(like, qubits, gates, chunk, tokens) as workspace:
        for first in range(0, total, chunk):
            body(workspace, first, min(total, first + chunk) - first)


class _LcuPowers(torch.autograd.Function):
    """angles [G, W, T], b_re/b_im [T] -> [d, 2, 2**n, W]: M^k |0> for k = 1..d, M = sum_t b_t U_t."""

    @staticmethod
    def forward(ctx, angles: torch.Tensor, b_re: torch.Tensor, b_im: torch.Tensor, qubits: int,
                gates: tuple[QuixerGate, ...], degree: int, chunk: int, graphs: bool, keep: bool) -> torch.Tensor:
        n, dim = qubits, 2**qubits
        num_gates, windows, tokens = angles.shape
        out = angles.new_empty(degree, 2, dim, windows)
        saved: list[torch.Tensor] = []

        def powers(workspace: Workspace, w0: int, nw: int) -> None:
            workspace.load_angles(angles[:, w0:w0 + nw], negate_sin=False)
            outputs = angles.new_empty(degree if keep else 1, 2, dim, nw, tokens)
            v = zero_planes(n, nw, angles.dtype, angles.device)
            for k in range(degree):
                workspace.x4[:, :, :nw].copy_(v.unsqueeze(-1))
                workspace.forward(graphs)
                per_power = outputs[k if keep else 0]
                per_power.copy_(workspace.x4[:, :, :nw])
                per_token = per_power.view(2, dim * nw, tokens)
                v_re = torch.addmv(torch.mv(per_token[0], b_re), per_token[1], b_im, alpha=-1)
                v_im = torch.addmv(torch.mv(per_token[0], b_im), per_token[1], b_re)
                v = torch.stack((v_re, v_im)).view(2, dim, nw)
                out[k, :, :, w0:w0 + nw] = v
            if keep:
                saved.append(outputs)

        _each_chunk(angles, n, gates, chunk, tokens, windows, powers)
        ctx.save_for_backward(angles, b_re, b_im, *saved)
        ctx.meta = (n, gates, degree, chunk, graphs)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        angles, b_re, b_im, *saved = ctx.saved_tensors
        n, gates, degree, chunk, graphs = ctx.meta
        dim = 2**n
        num_gates, windows, tokens = angles.shape
        grad_angles = angles.new_empty(num_gates, windows, tokens)
        grad_b = b_re.new_zeros(2, tokens)

        def pull_back(workspace: Workspace, w0: int, nw: int) -> None:
            workspace.load_angles(angles[:, w0:w0 + nw], negate_sin=True)
            outputs, xg4, grad_chunk = saved[w0 // chunk], workspace.xg4, grad_angles[:, w0:w0 + nw]
            carried = None
            for k in range(degree - 1, -1, -1):
                grad_v = grad_out[k, :, :, w0:w0 + nw]
                if carried is not None:
                    grad_v = grad_v + carried
                gr, gi = grad_v[0], grad_v[1]                                   # [D, nw]
                # v = sum_t b_t w_t: dL/db_t = sum conj(w_t) G in re/im parts; dL/dw_t = conj(b_t) G.
                w = outputs[k].view(2, dim * nw, tokens)
                gr_flat, gi_flat = gr.reshape(-1), gi.reshape(-1)
                grad_b[0].addmv_(w[0].t(), gr_flat).addmv_(w[1].t(), gi_flat)
                grad_b[1].addmv_(w[0].t(), gi_flat).addmv_(w[1].t(), gr_flat, alpha=-1)
                xg4[:2, :, :nw].copy_(outputs[k])
                g_re, g_im = xg4[2, :, :nw], xg4[3, :, :nw]
                torch.mul(gr.unsqueeze(-1), b_re, out=g_re).addcmul_(gi.unsqueeze(-1), b_im)
                torch.mul(gi.unsqueeze(-1), b_re, out=g_im).addcmul_(gr.unsqueeze(-1), b_im, value=-1)
                workspace.adjoint(graphs)
                if k == degree - 1:
                    grad_chunk.copy_(workspace.rows3[:, :nw])
                else:
                    grad_chunk.add_(workspace.rows3[:, :nw])
                if k > 0:
                    carried = xg4[2:, :, :nw].sum(-1)
            grad_chunk.mul_(0.5)

        _each_chunk(angles, n, gates, chunk, tokens, windows, pull_back)
        return grad_angles, grad_b[0], grad_b[1], None, None, None, None, None, None


@torch.compiler.disable  # eager by design: inductor's CPU code for these loops compiled for minutes and ran slower
def lcu_powers(angles: torch.Tensor, b_re: torch.Tensor, b_im: torch.Tensor, qubits: int,
               gates: Sequence[QuixerGate], degree: int, chunk: int | None = None, *,
               budget_bytes: float | None = None, use_cuda_graphs: bool | None = None) -> torch.Tensor:
    """M^k |0...0> for k = 1..degree, where M = sum_t b_t U(angles[:, w, t]) for each window w.

    angles: [len(gates), W, T] (gate-major; any strides, e.g. a permuted [W, T, G] tensor); b_re, b_im: [T].
    Returns [degree, 2, 2**qubits, W]. Gradients by the adjoint method (see the module docstring).
    `chunk` windows are simulated at a time (default chunk_windows(...) with `budget_bytes`: cache-sized on
    CPU, as many as the memory budget allows on CUDA). `use_cuda_graphs` (default graphs.USE_CUDA_GRAPHS)
    captures the gate loops into CUDA graphs on CUDA; elsewhere it changes nothing."""
    if angles.dim() != 3 or angles.shape[0] != len(gates):
        raise ValueError(f"angles must be [{len(gates)}, W, T], got {tuple(angles.shape)}")
    if len(gates) % 2:
        raise ValueError("the ping-pong buffers need an even number of gates (circuit 14 has 4n per layer)")
    windows, tokens = angles.shape[1], angles.shape[2]
    if chunk is None:
        chunk = chunk_windows(windows, qubits, tokens, degree, angles.dtype, angles.device, budget_bytes,
                              num_gates=len(gates))
    chunk = max(1, min(int(chunk), windows))
    # the per-power outputs are saved only when a backward can follow (not in evaluation)
    keep = torch.is_grad_enabled() and (angles.requires_grad or b_re.requires_grad or b_im.requires_grad)
    b_re, b_im = b_re.to(angles.dtype).contiguous(), b_im.to(angles.dtype).contiguous()
    return _LcuPowers.apply(angles, b_re, b_im, qubits, tuple(gates), degree, chunk, graphs_wanted(use_cuda_graphs),
                            keep)


def polynomial_state(angles: torch.Tensor, b_re: torch.Tensor, b_im: torch.Tensor, coeffs: torch.Tensor,
                     qubits: int, gates: Sequence[QuixerGate], chunk: int | None = None, *,
                     budget_bytes: float | None = None, use_cuda_graphs: bool | None = None) -> torch.Tensor:
    """psi = (sum_k c_k M^k |0...0>) / ||c||_1 for each window: [2, 2**qubits, W], not normalised (its
    squared norm is the post-selection probability). coeffs [d+1], c[0] the constant term."""
    windows = angles.shape[1]
    powers = lcu_powers(angles, b_re, b_im, qubits, gates, coeffs.shape[0] - 1, chunk,
                        budget_bytes=budget_bytes, use_cuda_graphs=use_cuda_graphs)
    psi = coeffs[0] * zero_planes(qubits, windows, angles.dtype, angles.device)
    psi = psi + torch.einsum("k,krnw->rnw", coeffs[1:], powers)
    return psi / coeffs.abs().sum()


class _Circuit(torch.autograd.Function):
    """state [2, D, B], angles [G, B] or [G, 1] -> the circuit applied to each state, by the workspace gate
    loops (CUDA graphs on CUDA); backward by the adjoint walk, which also returns the state's gradient."""

    @staticmethod
    def forward(ctx, state: torch.Tensor, angles: torch.Tensor, qubits: int, gates: tuple[QuixerGate, ...],
                chunk: int, graphs: bool) -> torch.Tensor:
        batch = state.shape[-1]
        per_state = angles.expand(len(gates), batch)
        out = state.new_empty(state.shape)

        def run_chunk(workspace: Workspace, w0: int, nw: int) -> None:
            workspace.load_angles(per_state[:, w0:w0 + nw].unsqueeze(-1), negate_sin=False)
            workspace.x4[:, :, :nw, 0].copy_(state[:, :, w0:w0 + nw])
            workspace.forward(graphs)
            out[:, :, w0:w0 + nw] = workspace.x4[:, :, :nw, 0]

        _each_chunk(state, qubits, gates, chunk, 1, batch, run_chunk)
        ctx.save_for_backward(angles, out)
        ctx.meta = (qubits, gates, chunk, graphs)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        angles, out = ctx.saved_tensors
        qubits, gates, chunk, graphs = ctx.meta
        batch = out.shape[-1]
        per_state = angles.expand(len(gates), batch)
        grad_state = out.new_empty(out.shape)
        grad_rows = out.new_empty(len(gates), batch)

        def pull_back(workspace: Workspace, w0: int, nw: int) -> None:
            workspace.load_angles(per_state[:, w0:w0 + nw].unsqueeze(-1), negate_sin=True)
            workspace.xg4[:2, :, :nw, 0].copy_(out[:, :, w0:w0 + nw])
            workspace.xg4[2:, :, :nw, 0].copy_(grad_out[:, :, w0:w0 + nw])
            workspace.adjoint(graphs)
            grad_state[:, :, w0:w0 + nw] = workspace.xg4[2:, :, :nw, 0]
            grad_rows[:, w0:w0 + nw] = workspace.rows3[:, :nw, 0]

        _each_chunk(out, qubits, gates, chunk, 1, batch, pull_back)
        grad_angles = grad_rows.mul_(0.5)
        if angles.shape[-1] != batch:          # shared angles [G, 1]: sum over the states
            grad_angles = grad_angles.sum(-1, keepdim=True)
        return grad_state, grad_angles, None, None, None, None


@torch.compiler.disable  # the workspace cache and CUDA graphs are eager machinery, like lcu_powers'
def run_circuit(state: torch.Tensor, angles: torch.Tensor, qubits: int, gates: Sequence[QuixerGate], *,
                chunk: int | None = None, budget_bytes: float | None = None,
                use_cuda_graphs: bool | None = None) -> torch.Tensor:
    """apply_circuit's result and gradients (state [2, 2**n, B], angles [len(gates), B] or [len(gates), 1]
    shared) by the adjoint method on a cached workspace: two gate loops, captured as CUDA graphs on CUDA,
    instead of apply_circuit's ~10 autograd kernels per gate forward and ~25 backward. Use it for the
    readout circuit of a training step; an odd number of gates falls back to apply_circuit."""
    if angles.dim() != 2 or angles.shape[0] != len(gates) or angles.shape[1] not in (1, state.shape[-1]):
        raise ValueError(f"angles must be [{len(gates)}, {state.shape[-1]} or 1], got {tuple(angles.shape)}")
    if len(gates) % 2:
        return apply_circuit(state, angles, qubits, gates)
    batch = state.shape[-1]
    if chunk is None:
        chunk = circuit_chunk(batch, qubits, state.dtype, state.device, budget_bytes, len(gates))
    chunk = max(1, min(int(chunk), batch))
    return _Circuit.apply(state, angles, qubits, tuple(gates), chunk, graphs_wanted(use_cuda_graphs))
