"""A window's circuit as a Qiskit QuantumCircuit and as OpenQASM 3, the form a device's SDK accepts.

Wires keep their numbers (PennyLane wire w is Qiskit qubit w); Qiskit orders a statevector with qubit 0
as the least significant bit, so `statevector_msb` reverses it to this package's order (wire 0 the most
significant). RX, RY, RZ have the same convention in both (R(t) = exp(-i t P / 2)); global phases are
dropped, as in the counted circuit.

What a device runs (`device_circuit`, the measure-and-reset layout): the gates; at each MEASURE_RESET the
wire is measured into the classical register "post" and reset; at the end the degree register is measured
into "post" too, then the data qubits are rotated into the setting's basis (X: H; Y: S-dagger then H; Z:
nothing) and measured into "data". A shot is kept when every "post" bit is 0 (post-selection in
post-processing; the device runs every shot to the end).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..runio import atomic_write_text
from .gatelist import MEASURE_RESET, GateList

SETTINGS = ("X", "Y", "Z")


def to_qiskit(gate_list: GateList, setting: str | None = None):
    """The GateList as a QuantumCircuit; with a setting, the device's measurements (module docstring)."""
    from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister

    layout = gate_list.layout
    qreg = QuantumRegister(layout.total, "q")
    circuit = QuantumCircuit(qreg)
    post = data = None
    if setting is not None:
        if setting not in SETTINGS:
            raise ValueError(f"setting {setting!r}: choose from {SETTINGS}")
        mid = gate_list.count(MEASURE_RESET)
        post = ClassicalRegister(mid + len(layout.degree), "post")
        data = ClassicalRegister(len(layout.data), "data")
        circuit.add_register(post, data)
    bit = 0
    for gate in gate_list.gates:
        if gate.name == MEASURE_RESET:
            if post is None:
                raise ValueError("a circuit with mid-circuit measurements needs a measurement setting")
            for wire in gate.wires:
                circuit.measure(qreg[wire], post[bit])
                circuit.reset(qreg[wire])
                bit += 1
        elif gate.name == "CNOT":
            circuit.cx(qreg[gate.wires[0]], qreg[gate.wires[1]])
        else:
            getattr(circuit, gate.name.lower())(gate.angle, qreg[gate.wires[0]])
    if setting is not None:
        for wire in layout.degree:
            circuit.measure(qreg[wire], post[bit])
            bit += 1
        for i, wire in enumerate(layout.data):
            if setting == "Y":
                circuit.sdg(qreg[wire])
            if setting in ("X", "Y"):
                circuit.h(qreg[wire])
            circuit.measure(qreg[wire], data[i])
    return circuit


def statevector_msb(circuit) -> np.ndarray:
    """The statevector of a measurement-free circuit, wire 0 the most significant bit."""
    from qiskit.quantum_info import Statevector

    return np.asarray(Statevector(circuit).reverse_qargs().data)


def to_qasm3(circuit) -> str:
    from qiskit import qasm3

    return qasm3.dumps(circuit)


def from_qasm3(text: str):
    """Qiskit's OpenQASM 3 importer (qiskit-qasm3-import)."""
    from qiskit import qasm3

    return qasm3.loads(text)


def write_qasm(gate_list: GateList, folder: Path, name: str) -> list[str]:
    """One OpenQASM 3 file per measurement setting, `name`_X.qasm ...; returns the file names."""
    files = []
    for setting in SETTINGS:
        path = folder / f"{name}_{setting}.qasm"
        atomic_write_text(path, to_qasm3(to_qiskit(gate_list, setting)))
        files.append(path.name)
    return files
