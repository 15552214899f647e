"""A small batched statevector simulator for the gates lambeq's circuit ansätze use.

lambeq evaluates one circuit at a time by tensor contraction; the encoder needs the same circuit
template evaluated for thousands of parameter vectors at once (every k-mer, or every window of a
chunk), so it reads lambeq's circuit into a `LambeqCircuit` of `LambeqGate`s (quixer_rna.encoding does that) and
runs the whole batch here in torch, on CPU or CUDA. Conventions follow lambeq: qubit 0 is the most
significant bit of a basis index, rotation phases are in turns (1.0 = 2 pi), Rz(p) = diag(e^{-i pi p},
e^{i pi p}). The Quixer simulator (quixer_rna.quixer_sim) is a different one with other conventions:
DEVELOPERS.md, "Two simulators", sets them side by side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class LambeqGate:
    """One gate. `kind` is a rotation ("rx", "ry", "rz"), "fixed" (a constant 2x2 `matrix`, row = output)
    or "swap" (of `target` and `control`). A rotation's phase in turns is `scale * params[param]` when
    `param` is set, else the constant `value`. `control`, when set on a non-swap gate, makes it controlled."""

    kind: str
    target: int
    control: int | None = None
    param: int | None = None
    scale: float = 1.0
    value: float = 0.0
    matrix: tuple[tuple[complex, complex], tuple[complex, complex]] | None = None


@dataclass
class LambeqCircuit:
    """A gate list on `n_qubits` wires, started in |0...0> (or a given state); `postselect` maps a
    qubit to the bit it is projected on at the end (lambeq's Bra); the projected qubits are dropped."""

    n_qubits: int
    gates: list[LambeqGate] = field(default_factory=list)
    postselect: dict[int, int] = field(default_factory=dict)

    @property
    def n_params(self) -> int:
        used = [g.param for g in self.gates if g.param is not None]
        return max(used) + 1 if used else 0

    @property
    def kept_qubits(self) -> list[int]:
        return [q for q in range(self.n_qubits) if q not in self.postselect]


def complex_dtype(real: torch.dtype) -> torch.dtype:
    return torch.complex128 if real == torch.float64 else torch.complex64


def _rotation_entries(kind: str, phase: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(u00, u01, u10, u11) of a rotation by `phase` turns, each shaped like `phase`."""
    half = math.pi * phase
    cos = torch.cos(half).to(complex_dtype(phase.dtype))
    sin = torch.sin(half).to(complex_dtype(phase.dtype))
    zero = torch.zeros_like(cos)
    if kind == "rx":
        return cos, -1j * sin, -1j * sin, cos
    if kind == "ry":
        return cos, -sin, sin, cos
    if kind == "rz":
        return cos - 1j * sin, zero, zero, cos + 1j * sin
    raise ValueError(f"unknown rotation {kind!r}")


def _gate_entries(gate: LambeqGate, params: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Entries shaped [B] (or [1] when the gate is the same for the whole batch)."""
    if gate.kind == "fixed":
        dtype = complex_dtype(params.dtype)
        flat = [entry for row in gate.matrix for entry in row]
        return tuple(torch.tensor(e, dtype=dtype, device=params.device).reshape(1) for e in flat)
    if gate.param is None:
        phase = torch.tensor([gate.value], dtype=params.dtype, device=params.device)
    else:
        phase = params[:, gate.param] * gate.scale
    return _rotation_entries(gate.kind, phase)


def _apply_single(state: torch.Tensor, gate: LambeqGate, params: torch.Tensor, n_qubits: int) -> None:
    """Apply the gate in place on a view of `state` [B, 2^n]: the control = 1 half when controlled."""
    batch, t = state.shape[0], gate.target
    if gate.control is None:
        sub, axis = state.view(batch, 2**t, 2, 2 ** (n_qubits - t - 1)), 2
    else:
        c = gate.control
        low, high = min(c, t), max(c, t)
        view = state.view(batch, 2**low, 2, 2 ** (high - low - 1), 2, 2 ** (n_qubits - high - 1))
        if c < t:
            sub, axis = view[:, :, 1], 3
        else:
            sub, axis = view[:, :, :, :, 1], 2
    entries = _gate_entries(gate, params)
    if entries[0].numel() == 1 and gate.kind != "rz":
        # one matrix for the whole batch: a single matmul pass over the state
        matrix = torch.stack(entries).reshape(2, 2)
        moved = sub.movedim(axis, -2)
        moved.copy_(torch.matmul(matrix, moved))
        return
    u00, u01, u10, u11 = (u.reshape(-1, *([1] * (sub.dim() - 2))) for u in entries)
    zero, one = sub.select(axis, 0), sub.select(axis, 1)
    if gate.kind == "rz":
        zero.mul_(u00)
        one.mul_(u11)
        return
    new_zero = u00 * zero + u01 * one
    one.copy_(u10 * zero + u11 * one)
    zero.copy_(new_zero)


def _apply_swap(state: torch.Tensor, a: int, b: int, n_qubits: int) -> torch.Tensor:
    batch = state.shape[0]
    return state.reshape(batch, *([2] * n_qubits)).transpose(a + 1, b + 1).reshape(batch, -1)


def zero_amplitudes(batch: int, n_qubits: int, dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    state = torch.zeros(batch, 2**n_qubits, dtype=complex_dtype(dtype), device=device)
    state[:, 0] = 1
    return state


def simulate(circuit: LambeqCircuit, params: torch.Tensor, state: torch.Tensor | None = None) -> torch.Tensor:
    """Run `circuit` on a batch: `params` real [B, P] (or [1, P] shared by a given batch of states),
    `state` complex [B, 2^n] (default |0...0>). Returns the amplitudes [B, 2^m] over the kept qubits,
    unnormalised when qubits were post-selected (as lambeq's own evaluation)."""
    n = circuit.n_qubits
    if params.dim() != 2:
        raise ValueError("params must be [B, P]")
    state = zero_amplitudes(params.shape[0], n, params.dtype, params.device) if state is None else state.clone()
    for gate in circuit.gates:
        if gate.kind == "swap":
            state = _apply_swap(state, gate.target, gate.control, n)
        else:
            _apply_single(state, gate, params, n)
    if circuit.postselect:
        shaped = state.reshape(state.shape[0], *([2] * n))
        for qubit in sorted(circuit.postselect, reverse=True):
            shaped = shaped.select(qubit + 1, circuit.postselect[qubit])
        state = shaped.reshape(state.shape[0], -1)
    return state
