"""The readout: <X_i>, <Y_i>, <Z_i> of every wire of [2, 2**n, B] states, all wires at once."""

from __future__ import annotations

import functools

import torch
from torch.autograd.function import once_differentiable


class _FlipBits(torch.autograd.Function):
    """[2, D, B] -> [2, n, D, B]: for each wire i the state with amplitude k moved to k XOR (wire i's bit), one
    gather; backward gathers back and sums over the wires (each flip is its own inverse). Deterministic,
    unlike index_put/index_add backward."""

    @staticmethod
    def forward(ctx, state: torch.Tensor, flipped: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(flipped)
        wires, dim = flipped.shape
        return state.index_select(1, flipped.reshape(-1)).view(2, wires, dim, state.shape[-1])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        (flipped,) = ctx.saved_tensors
        wires, dim = flipped.shape
        # grad_state[:, j] = sum_i grad[:, i, flipped[i, j]]: the flat position of (i, flipped[i, j])
        offsets = flipped + dim * torch.arange(wires, device=flipped.device).unsqueeze(1)
        gathered = grad.reshape(2, wires * dim, grad.shape[-1]).index_select(1, offsets.reshape(-1))
        return gathered.view(2, wires, dim, grad.shape[-1]).sum(1), None


@functools.cache
def _pauli_tables(qubits: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """flipped [n, D]: amplitude index with wire i's bit flipped; sign [n, D]: +1 where that bit is 0, -1
    where it is 1. Built on the device by arithmetic (no host tensor, no copy) and cached."""
    with torch.inference_mode(False), torch.no_grad():
        index = torch.arange(2**qubits, device=device)
        bit = torch.pow(2, qubits - 1 - torch.arange(qubits, device=device)).unsqueeze(1)   # wire 0 = MSB
        flipped = torch.bitwise_xor(index, bit)
        sign = 1 - 2 * (torch.bitwise_and(index, bit) > 0).to(dtype)
    return flipped, sign


def clear_pauli_tables() -> None:
    """Forget the cached index and sign tables (they hold device memory)."""
    _pauli_tables.cache_clear()


def pauli_expectations(state: torch.Tensor, qubits: int) -> torch.Tensor:
    """<X_i>, <Y_i>, <Z_i> of normalised [2, 2**n, B] states -> [3n, B] ordered X_0..X_{n-1}, Y_.., Z_...
    All wires at once (a few dozen kernels forward and backward, whatever n): with f_i the state with wire
    i's bit flipped and s_i = +-1 that bit's sign, X_i = sum Re(conj(psi) f_i), Y_i = sum s_i Im(conj(psi) f_i),
    Z_i = sum s_i |psi|^2."""
    flipped, sign = _pauli_tables(qubits, state.dtype, state.device)
    moved = _FlipBits.apply(state, flipped)                     # [2, n, D, B]
    re, im, f_re, f_im = state[0], state[1], moved[0], moved[1]
    xs = (re * f_re + im * f_im).sum(1)
    ys = (sign.unsqueeze(-1) * (re * f_im - im * f_re)).sum(1)
    zs = (sign.unsqueeze(-1) * (re * re + im * im)).sum(1)   # not a matmul: TF32 must not touch it
    return torch.cat((xs, ys, zs))
