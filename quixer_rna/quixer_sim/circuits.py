"""Circuit 14 as a gate list, the |0...0> start state, the views a gate reads through, and the plain-autograd
gates (apply_circuit: the reference every faster path is tested against, and the small readout circuit's
fallback).

Layout: a batch of n-qubit states is one real tensor [2, 2**n, B], plane 0 the real parts and plane 1 the
imaginary ones; wire 0 is the most significant bit of the amplitude index (PennyLane's order) and the batch
is the LAST axis, so a gate's per-state cos/sin vector [B] broadcasts along contiguous memory. A gate on
wire w only reshapes the state to [.., 2**w, 2, 2**(n-w-1), B] and mixes the two halves; CRX touches only
the control=1 half. No gate matrices are built and nothing is permuted.
"""

from __future__ import annotations

from typing import Sequence

import torch

# ("ry", wire, -1) or ("crx", control, target)
QuixerGate = tuple[str, int, int]

# (re/im, target bit) of the four quarters of a control half
QUARTERS = ((0, 0), (0, 1), (1, 0), (1, 1))


def circuit14_gates(qubits: int, layers: int) -> list[QuixerGate]:
    """QuixerGate order of circuit 14 (Sim et al. 2019), one angle per gate, in the order angles are consumed."""
    if qubits < 2:
        raise ValueError(f"circuit 14 needs at least 2 qubits, got {qubits}")
    if layers < 1:
        raise ValueError(f"circuit 14 needs at least 1 layer, got {layers}")
    n = qubits
    gates: list[QuixerGate] = []
    for _ in range(layers):
        gates += [("ry", w, -1) for w in range(n)]
        gates += [("crx", i, (i + 1) % n) for i in range(n - 1, -1, -1)]
        gates += [("ry", w, -1) for w in range(n)]
        gates += [("crx", i, (i - 1) % n) for i in [n - 1, *range(n - 1)]]
    return gates


def zero_planes(qubits: int, batch: int, dtype: torch.dtype = torch.float32,
                device: torch.device | str | None = None) -> torch.Tensor:
    """|0...0> for each of `batch` states, as [2, 2**qubits, batch]."""
    state = torch.zeros(2, 2**qubits, batch, dtype=dtype, device=device)
    state[0, 0].fill_(1.0)   # fill_ with a Python scalar: a kernel argument, no host tensor, no sync
    return state


# ----------------------------------------------------------------------------------------------------
# Views shared by the out-of-place gates below and the in-place kernels (quixer_sim.kernels).

def wire_view(x: torch.Tensor, n: int, wire: int) -> torch.Tensor:
    """[K, 2**n, B] -> [K, 2**wire, 2, 2**(n-wire-1), B]: dim 2 is the wire's bit."""
    return x.view(x.shape[0], 2**wire, 2, 2 ** (n - wire - 1), x.shape[-1])


def control_halves(x: torch.Tensor, n: int, control: int, target: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Split [2P, 2**n, B] (P re/im plane pairs) into its control=0 and control=1 views, each shaped
    [P, 2(re/im), ..., B] with the target bit at the returned dim."""
    lo, hi = sorted((control, target))
    view = x.view(x.shape[0] // 2, 2, 2**lo, 2, 2 ** (hi - lo - 1), 2, 2 ** (n - hi - 1), x.shape[-1])
    cdim, tdim = (3, 5) if control < target else (5, 3)
    return view.select(cdim, 0), view.select(cdim, 1), tdim if tdim < cdim else tdim - 1


def quarter(half: torch.Tensor, tdim: int, part: int, bit: int) -> torch.Tensor:
    """The re (part 0) or im (part 1) amplitudes of a control half with the target bit = `bit`."""
    return half.select(1, part).select(tdim - 1, bit)


# ----------------------------------------------------------------------------------------------------
# Out-of-place gates: differentiable by autograd.

def _ry(state: torch.Tensor, n: int, wire: int, c: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    v = wire_view(state, n, wire)
    a0, a1 = v[:, :, 0], v[:, :, 1]
    return torch.stack((c * a0 - s * a1, s * a0 + c * a1), dim=2).reshape(state.shape)


def _crx(state: torch.Tensor, n: int, control: int, target: int, c: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    # RX = [[c, -is], [-is, c]]: new a0 = c a0 - i s a1, new a1 = c a1 - i s a0 on the control=1 half.
    off, on, td = control_halves(state, n, control, target)
    r0, r1, m0, m1 = (quarter(on, td, part, bit) for part, bit in QUARTERS)
    re = torch.stack((c * r0 + s * m1, c * r1 + s * m0), dim=td - 1)
    im = torch.stack((c * m0 - s * r1, c * m1 - s * r0), dim=td - 1)
    cdim = 3 if control < target else 5
    return torch.stack((off, torch.stack((re, im), dim=1)), dim=cdim).reshape(state.shape)


def apply_circuit(state: torch.Tensor, angles: torch.Tensor, qubits: int, gates: Sequence[QuixerGate]) -> torch.Tensor:
    """Apply a circuit to [2, 2**n, B] states with per-state angles [len(gates), B] (or [len(gates), 1]
    shared); plain autograd, one intermediate state per gate, so keep it for small circuits."""
    cos, sin = torch.cos(angles / 2), torch.sin(angles / 2)
    for g, (kind, p, q) in enumerate(gates):
        if kind == "ry":
            state = _ry(state, qubits, p, cos[g], sin[g])
        else:
            state = _crx(state, qubits, p, q, cos[g], sin[g])
    return state
