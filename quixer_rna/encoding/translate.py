"""lambeq circuit diagrams -> the gate lists of quixer_rna.lambeq_sim, which evaluates a whole batch of
parameter vectors at once (lambeq contracts one circuit at a time)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

import numpy as np

from ..lambeq_sim import LambeqCircuit, LambeqGate


def read_circuit(diagram: Any, param_of: Callable[[str], int]) -> LambeqCircuit:
    """lambeq circuit -> gate list. Wires are tracked through Kets and Bras, and qubits are relabelled so
    that the kept wires are 0..m-1 in lambeq's output order (post-selected qubits come after them)."""
    from lambeq.backend.quantum import Bra, Controlled, Gate as LambeqBoxGate, Ket, Rotation, Swap
    from lambeq.backend.symbol import Symbol

    wires = list(range(len(diagram.dom)))
    n_total = len(wires)
    gates: list[LambeqGate] = []
    post: dict[int, int] = {}
    removed: list[int] = []

    def phase_fields(phase: Any) -> dict[str, Any]:
        if isinstance(phase, Symbol):
            return {"param": param_of(phase.name), "scale": float(phase.scale)}
        return {"value": float(phase)}

    def fixed(box: Any) -> tuple:
        matrix = np.asarray(box.array, dtype=np.complex128).reshape(2, 2).T
        return tuple(tuple(complex(v) for v in row) for row in matrix)

    for layer in diagram.layers:
        box, offset = layer.box, len(layer.left)
        if isinstance(box, Ket):
            wires.insert(offset, n_total)
            if box.bit:
                gates.append(LambeqGate("fixed", n_total, matrix=((0, 1), (1, 0))))
            n_total += 1
        elif isinstance(box, Bra):
            qubit = wires.pop(offset)
            post[qubit] = box.bit
            removed.append(qubit)
        elif isinstance(box, Swap):
            gates.append(LambeqGate("swap", wires[offset], control=wires[offset + 1]))
        elif isinstance(box, Controlled):
            info = LambeqBoxGate.from_box(box, offset)
            inner = box.controlled
            if isinstance(inner, Controlled) or len(info.control) != 1:
                raise ValueError(f"unsupported multi-controlled gate {box.name}")
            target, control = wires[info.gate_q], wires[info.control[0]]
            if isinstance(inner, Rotation):
                gates.append(LambeqGate(type(inner).__name__.lower(), target, control=control, **phase_fields(inner.phase)))
            else:
                gates.append(LambeqGate("fixed", target, control=control, matrix=fixed(inner)))
        elif isinstance(box, Rotation):
            gates.append(LambeqGate(type(box).__name__.lower(), wires[offset], **phase_fields(box.phase)))
        elif len(box.dom) == 1 and len(box.cod) == 1 and not box.free_symbols:
            gates.append(LambeqGate("fixed", wires[offset], matrix=fixed(box)))
        else:
            raise ValueError(f"unsupported box {box.name!r} in a lambeq circuit")

    order = wires + removed
    relabel = {qubit: position for position, qubit in enumerate(order)}
    remapped = [
        replace(g, target=relabel[g.target], control=None if g.control is None else relabel[g.control]) for g in gates
    ]
    return LambeqCircuit(n_total, remapped, {relabel[q]: bit for q, bit in post.items()})
