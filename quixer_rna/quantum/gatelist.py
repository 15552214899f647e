"""A window's circuit as a flat list of gate-set gates with their angles, fast enough for every window.

PennyLane's decomposition of the whole paper-sized circuit takes ~10 s, and the trajectory simulation,
the QASM export and the device compilers need the gates of tens of windows. Windows differ only in the
angles of the uniformly controlled rotations (qml.SelectPauliRot), whose decomposition is affine in
their angles: the gate sequence is fixed by (number of wires, axis) and every rotation angle is
A @ alpha + b. `GateListBuilder` finds A and b once per shape by decomposing a generic representative
and one probe per angle (and checks the map on a further random vector), then maps each multiplexer
of each window without decomposing it again. Every other operation (state preparations, diagonals,
the readout layer) is decomposed by PennyLane as it is. The result is exactly PennyLane's decomposition
into CNOT, RX, RY, RZ (global phases dropped), with mid-circuit measurements as MEASURE_RESET entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .circuit import Layout, circuit_tape, decompose_to_gate_set, make_layout
from .params import WindowCircuit

MEASURE_RESET = "MEASURE_RESET"   # measure the wire, keep the run on outcome 0 (post-selection), reset it
TWO_QUBIT = "CNOT"


@dataclass(frozen=True)
class Gate:
    name: str                    # CNOT, RX, RY, RZ or MEASURE_RESET
    wires: tuple[int, ...]
    angle: float | None = None   # radians, PennyLane's convention RX(t) = exp(-i t X / 2)


@dataclass
class GateList:
    """The gates of one window's circuit on `layout`, in order."""

    layout: Layout
    gates: list[Gate]

    @property
    def two_qubit_positions(self) -> np.ndarray:
        """Positions in `gates` of the two-qubit gates (where the noise model puts its errors)."""
        return np.array([i for i, g in enumerate(self.gates) if g.name == TWO_QUBIT], dtype=np.int64)

    def count(self, name: str) -> int:
        return sum(g.name == name for g in self.gates)


class _AffineMultiplexer:
    """The decomposition of a SelectPauliRot of one shape as names, wire positions and an affine angle map."""

    def __init__(self, controls: int, axis: str, seed: int = 12345):
        import pennylane as qml

        size = 2**controls
        rng = np.random.default_rng(seed)

        def decompose(alpha: np.ndarray) -> list:
            op = qml.SelectPauliRot(alpha, control_wires=list(range(controls)), target_wire=controls, rot_axis=axis)
            return decompose_to_gate_set([op])

        base_alpha = rng.uniform(0.3, 2.9, size=size)
        base = decompose(base_alpha)
        self.names = [g.name for g in base]
        self.positions = [tuple(int(w) for w in g.wires) for g in base]
        self.rotating = np.array([bool(g.parameters) for g in base])
        base_params = np.array([float(g.parameters[0]) if g.parameters else 0.0 for g in base])
        self.matrix = np.zeros((len(base), size))
        for i in range(size):
            probe = base_alpha.copy()
            probe[i] += 0.37
            self.matrix[:, i] = (self._params(decompose(probe)) - base_params) / 0.37
        self.offset = base_params - self.matrix @ base_alpha
        check = rng.uniform(-3.0, 3.0, size=size)
        if not np.allclose(self._params(decompose(check)), self.angles(check), atol=1e-9):
            raise AssertionError("PennyLane's SelectPauliRot decomposition is not affine in its angles")

    def _params(self, ops: list) -> np.ndarray:
        if [g.name for g in ops] != self.names:
            raise AssertionError("PennyLane's SelectPauliRot decomposition changed shape between angle sets")
        return np.array([float(g.parameters[0]) if g.parameters else 0.0 for g in ops])

    def angles(self, alpha: np.ndarray) -> np.ndarray:
        return self.matrix @ np.asarray(alpha, dtype=np.float64) + self.offset


class GateListBuilder:
    """Builds GateLists, reusing each multiplexer shape's affine map across windows."""

    def __init__(self) -> None:
        self._maps: dict[tuple[int, str], _AffineMultiplexer] = {}

    def _multiplexer(self, op) -> Iterator[Gate]:
        key = (len(op.wires) - 1, op.hyperparameters["rot_axis"])
        if key not in self._maps:
            self._maps[key] = _AffineMultiplexer(*key)
        shape = self._maps[key]
        wires = list(op.wires)
        angles = shape.angles(np.asarray(op.parameters[0]))
        for name, positions, rotating, angle in zip(shape.names, shape.positions, shape.rotating, angles):
            yield Gate(name, tuple(int(wires[i]) for i in positions), float(angle) if rotating else None)

    def build(self, wc: WindowCircuit, variant: str = "measure_reset", readout: bool = True,
              select: str = "reduced") -> GateList:
        import pennylane as qml
        from pennylane.measurements import MidMeasureMP

        gates: list[Gate] = []
        for op in circuit_tape(wc, variant, readout, select).operations:
            if isinstance(op, MidMeasureMP):
                gates.append(Gate(MEASURE_RESET, tuple(int(w) for w in op.wires)))
            elif isinstance(op, qml.SelectPauliRot):
                gates.extend(self._multiplexer(op))
            else:
                gates.extend(Gate(g.name, tuple(int(w) for w in g.wires),
                                  float(g.parameters[0]) if g.parameters else None)
                             for g in decompose_to_gate_set([op]))
        return GateList(make_layout(wc.qubits, wc.tokens, wc.degree, variant), gates)
