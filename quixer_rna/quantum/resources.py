"""Gate counts and depth of a window's circuit after decomposition to CNOT + single-qubit rotations.

Two counters that must agree (tests/test_quixer_circuit.py checks it on small models):
- `full_resources`: PennyLane decomposes the whole tape (qml.transforms.decompose) and
  qml.resource.resources_from_tape (what qml.specs reports) counts gates and depth. Exact, but slow for
  the paper-sized circuit (hundreds of thousands of gates).
- `count_resources` (used by the stage): each uniformly controlled rotation (qml.SelectPauliRot) is
  decomposed once per (number of wires, axis) on a representative with generic angles and its gate list
  is reused with the wires mapped; every other operation (state preparations, diagonals, the readout
  gates) is decomposed as it is. Gate counts add up; the depth is computed exactly by streaming every
  decomposed gate through a per-wire layer counter (a gate starts after the last gate on any of its wires).

Gate set: CNOT, RX, RY, RZ (PennyLane's own decomposition rules; Hadamard and S from the X and Y
multiplexers' basis changes become RZ/RX rotations; global phases are dropped, as they are not gates; no
single-qubit gates are merged). The counts are those of generic angles: PennyLane drops a multiplexer
rotation whose angle is exactly 0, which a trained model's angles essentially never are.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Iterable

import numpy as np

from .circuit import Layout, circuit_tape, decompose_to_gate_set, make_layout
from .params import WindowCircuit, qubit_counts
from .select import degree_codes, effective_select

GATE_SET_TEXT = ("CNOT + single-qubit rotations RX, RY, RZ (PennyLane decompositions; global phases dropped; "
                 "single-qubit gates not merged; counts for generic angles)")
MID_MEASURE = "MidMeasureMP"


def decomposed_operations(wc: WindowCircuit, variant: str = "fresh", readout: bool = True,
                          select: str = "reduced") -> list:
    """The whole circuit as gate-set operations (slow for large circuits; for tests and default.mixed)."""
    tape = circuit_tape(wc, variant, readout, select)
    return decompose_to_gate_set(list(tape.operations))


def _representative(op):
    """A SelectPauliRot of the same shape on wires 0..c with generic angles."""
    import pennylane as qml

    controls = len(op.wires) - 1
    angles = np.random.default_rng(12345).uniform(0.3, 2.9, size=2**controls)
    return qml.SelectPauliRot(angles, control_wires=list(range(controls)), target_wire=controls,
                              rot_axis=op.hyperparameters["rot_axis"])


def _part(op, degree_wires: frozenset, data_wires: frozenset) -> str:
    """Which part of the circuit a high-level operation belongs to (for the per-part two-qubit counts)."""
    name = op.name
    on_degree = set(op.wires) <= degree_wires
    if name == "SelectPauliRot":
        return "select_rotations" if op.wires[-1] in data_wires else "prepare_index"
    if name == "DiagonalQubitUnitary":
        return "degree_signs" if on_degree else "select_phases"
    if "StatePrep" in name:
        return "prepare_degree" if on_degree else "prepare_index"
    if name == MID_MEASURE:
        return "measure_reset"
    return "readout"


def gate_stream(operations: Iterable, layout: Layout, cache: dict | None = None) -> Iterable[tuple[str, tuple, str]]:
    """(gate name, wires, part) of every decomposed gate of `operations` on `layout`, in order; mid-circuit
    measurements pass through as MidMeasureMP."""
    import pennylane as qml
    from pennylane.measurements import MidMeasureMP

    cache = {} if cache is None else cache
    degree_wires, data_wires = frozenset(layout.degree), frozenset(layout.data)
    for op in operations:
        part = _part(op, degree_wires, data_wires)
        if isinstance(op, MidMeasureMP):
            yield MID_MEASURE, tuple(op.wires), part
        elif isinstance(op, qml.SelectPauliRot):
            key = (len(op.wires), op.hyperparameters["rot_axis"])
            if key not in cache:
                cache[key] = [(g.name, tuple(g.wires)) for g in decompose_to_gate_set([_representative(op)])]
            wires = list(op.wires)
            for name, positions in cache[key]:
                yield name, tuple(wires[i] for i in positions), part
        else:
            for g in decompose_to_gate_set([op]):
                yield g.name, tuple(g.wires), part


def tally(stream: Iterable[tuple[str, tuple, str]]) -> dict:
    """Gate counts by type, one- and two-qubit counts (also per part), mid-circuit measurements and depth
    (every gate and measurement is one layer on its wires)."""
    counts: Counter = Counter()
    sizes: Counter = Counter()
    by_part: Counter = Counter()
    layer: dict = {}
    depth = 0
    for name, wires, part in stream:
        start = max((layer.get(w, 0) for w in wires), default=0) + 1
        for w in wires:
            layer[w] = start
        depth = max(depth, start)
        counts[name] += 1
        if name != MID_MEASURE:
            sizes[len(wires)] += 1
            by_part[part] += len(wires) == 2
    measurements = counts.pop(MID_MEASURE, 0)
    gates = dict(sorted(counts.items()))
    gates["total"] = sum(counts.values())
    return {
        "gates": gates,
        "two_qubit_gates": sizes.get(2, 0),
        "single_qubit_gates": sizes.get(1, 0),
        "depth": depth,
        "mid_circuit_measurements": measurements,
        "two_qubit_gates_by_part": dict(by_part),
    }


def count_resources(wc: WindowCircuit, variant: str = "fresh", readout: bool = True, select: str = "reduced") -> dict:
    """Gate counts, two-qubit count and depth of the window's circuit, by the cached-multiplexer counter."""
    tape = circuit_tape(wc, variant, readout, select)
    layout = make_layout(wc.qubits, wc.tokens, wc.degree, variant)
    return tally(gate_stream(tape.operations, layout))


def full_resources(wc: WindowCircuit, variant: str = "fresh", readout: bool = True, select: str = "reduced") -> dict:
    """The same numbers from PennyLane alone: the whole tape decomposed, counted by resources_from_tape."""
    import pennylane as qml

    ops = decomposed_operations(wc, variant, readout, select)
    specs = qml.resource.resources_from_tape(qml.tape.QuantumScript(ops))
    gates = {k: v for k, v in specs.gate_types.items() if k != MID_MEASURE}
    return {
        "gates": {**dict(sorted(gates.items())), "total": sum(gates.values())},
        "two_qubit_gates": specs.gate_sizes.get(2, 0),
        "depth": specs.depth,
    }


def circuit_resources(wc: WindowCircuit, select: str = "reduced") -> dict:
    """Everything resources.json reports about the circuit itself: qubits of both variants, gate counts,
    two-qubit gates and depth of both (the top-level numbers are the fresh-register circuit's with the
    chosen SELECT), the other SELECT construction's counts for comparison, and how long counting took."""
    started = time.perf_counter()
    built = effective_select(select, wc.tokens)
    fresh = count_resources(wc, "fresh", select=built)
    reset = count_resources(wc, "measure_reset", select=built)
    constructions = {}
    for other in dict.fromkeys(effective_select(s, wc.tokens) for s in ("controlled", "reduced")):
        counted = fresh if other == built else count_resources(wc, "fresh", select=other)
        constructions[other] = {"two_qubit_gates": counted["two_qubit_gates"], "depth": counted["depth"],
                                "gates": counted["gates"]["total"],
                                "select_two_qubit_gates": counted["two_qubit_gates_by_part"].get("select_rotations", 0)}
    seconds = time.perf_counter() - started
    return {
        "qubits": qubit_counts(wc.qubits, wc.tokens, wc.degree),
        "select": built,
        "degree_codes": list(degree_codes(wc.degree, built)),
        "select_constructions": constructions,
        "gates": fresh["gates"],
        "two_qubit_gates": fresh["two_qubit_gates"],
        "single_qubit_gates": fresh["single_qubit_gates"],
        "depth": fresh["depth"],
        "two_qubit_gates_by_part": fresh["two_qubit_gates_by_part"],
        "gate_set": GATE_SET_TEXT,
        "gate_counts_refer_to": "fresh index registers (qubits.total); the readout layer is included, the "
                                "final basis changes for the X and Y settings are not",
        "measure_reset": {
            "qubits": qubit_counts(wc.qubits, wc.tokens, wc.degree)["total_measure_reset"],
            "gates": reset["gates"],
            "two_qubit_gates": reset["two_qubit_gates"],
            "depth": reset["depth"],
            "mid_circuit_measurements": reset["mid_circuit_measurements"],
        },
        "counting_seconds": seconds,
    }
