"""The j-th block encoding of M inside the polynomial: PREPARE_b, SELECT, PREPARE_b^dagger, acting only
where the degree register holds a power k >= j. Two constructions, both exact:

controlled (the first one built; 46,080 of the paper-sized model's 46,602 CNOTs):
    PREPARE_b on the index register as it is; SELECT's phase diagonal and each uniformly controlled
    rotation are also controlled by the degree bits that decide k >= j (s_j of them), and set to the
    identity where k < j. A rotation over c controls costs 2^c CNOTs, so every SELECT gate pays 2^s_j.

reduced (the default):
    needs an index code nothing uses (T < 2^m): u = 2^m - 1, whose SELECT angles are all 0 and phase 1,
    so SELECT applies the identity there. PREPARE_b becomes a conditional preparation: where k >= j the
    index register gets sum_t sqrt(|b_t|) |t>, where k < j it gets |u>. SELECT is then controlled by the
    index bits alone (and a CRX's data control): G * 2^m (RY) or 2^(m+1) (CRX) CNOTs per application
    instead of 2^s_j times that. Projecting the index register on |0> after PREPARE^dagger still leaves M
    where k >= j, and exactly the identity where k < j (PREPARE^dagger undoes |u>). The degree register's
    codes for k = 0..d are chosen so that few bits decide every "k >= j" (degree_codes: for d = 2 one
    bit each instead of two and one).

The conditional preparation is the Mottonen cascade of uniformly controlled RY rotations (level i: the
i-th index qubit, controlled by the deciding degree bits and index qubits 0..i-1), with the angles of
sqrt|b| where the condition holds and the angles that walk to u where it does not: 2^s (2^m - 1) CNOTs.
"""

from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np

from .params import degree_qubits, index_qubits

SELECTS = ("reduced", "controlled")
# degree_codes searches every injective code assignment up to this many; beyond it the binary codes are used
MAX_CODE_ASSIGNMENTS = 50_000


def unused_code(tokens: int) -> int | None:
    """The index code the reduced SELECT parks the register on when k < j, or None when every code is a
    token (T = 2^m, including T = 1): then only the controlled construction exists."""
    m = index_qubits(tokens)
    return 2**m - 1 if tokens < 2**m else None


def effective_select(select: str, tokens: int) -> str:
    """The construction actually built: 'reduced' falls back to 'controlled' without an unused code."""
    if select not in SELECTS:
        raise ValueError(f"select {select!r}: choose from {SELECTS}")
    return "controlled" if select == "reduced" and unused_code(tokens) is None else select


def degree_condition(application: int, degree: int,
                     codes: Sequence[int] | None = None) -> tuple[tuple[int, ...], np.ndarray]:
    """The fewest degree-register bits (positions, 0 = most significant) that decide k >= application
    for k = 0..degree held as codes[k] (binary k by default), and the truth table over their 2^s patterns
    (a pattern no valid code has gets the value for the integer with those bits and zeros elsewhere)."""
    r = degree_qubits(degree)
    codes = list(range(degree + 1)) if codes is None else list(codes)

    def bits(code: int, positions: Sequence[int]) -> int:
        return sum(((code >> (r - 1 - p)) & 1) << (len(positions) - 1 - i) for i, p in enumerate(positions))

    for size in range(1, r + 1):
        for positions in itertools.combinations(range(r), size):
            table: dict[int, bool] = {}
            if all(table.setdefault(bits(code, positions), k >= application) == (k >= application)
                   for k, code in enumerate(codes)):
                truth = np.zeros(2**size, dtype=bool)
                for pattern in range(2**size):
                    if pattern in table:
                        truth[pattern] = table[pattern]
                    else:
                        value = sum(((pattern >> (size - 1 - i)) & 1) << (r - 1 - p) for i, p in enumerate(positions))
                        truth[pattern] = value >= application
                return positions, truth
    raise AssertionError("unreachable: all bits always decide")


def degree_codes(degree: int, select: str = "reduced") -> tuple[int, ...]:
    """Codes of k = 0..d in the degree register. Binary for the controlled construction (as first built);
    for the reduced one the assignment that minimises sum_j 2^s_j, the CNOT weight of the conditional
    preparations (ties: binary first, i.e. the first in lexicographic order)."""
    binary = tuple(range(degree + 1))
    r = degree_qubits(degree)
    if select == "controlled" or degree < 1:
        return binary
    count = 1
    for i in range(degree + 1):
        count *= 2**r - i
    if count > MAX_CODE_ASSIGNMENTS:
        return binary
    best, best_cost = binary, None
    for codes in itertools.permutations(range(2**r), degree + 1):
        cost = sum(2 ** len(degree_condition(j, degree, codes)[0]) for j in range(1, degree + 1))
        if best_cost is None or cost < best_cost:
            best, best_cost = codes, cost
    return tuple(best)


def mottonen_angles(amplitudes: np.ndarray) -> list[np.ndarray]:
    """RY angles of the state-preparation cascade for real non-negative amplitudes [2^m] (wire 0 the most
    significant bit): level i holds 2^i angles, one per prefix of i bits, 2 atan2(|right|, |left|)."""
    m = int(np.log2(amplitudes.shape[0]))
    levels = []
    for i in range(m):
        blocks = (amplitudes**2).reshape(2**i, 2, -1).sum(-1)            # [prefix, next bit]
        levels.append(2.0 * np.arctan2(np.sqrt(blocks[:, 1]), np.sqrt(blocks[:, 0])))
    return levels


def conditional_prepare_angles(amplitudes: np.ndarray, truth: np.ndarray, code: int) -> list[np.ndarray]:
    """Per level i, the RY angles [2^s, 2^i] over (deciding degree bits, index prefix): sqrt|b|'s cascade
    where truth holds, and where it does not the walk to basis state `code` (pi where its bit is 1, on its
    own prefix; other prefixes are unreachable there and keep the first angles)."""
    m = int(np.log2(amplitudes.shape[0]))
    out = []
    for i, level in enumerate(mottonen_angles(amplitudes)):
        angles = np.repeat(level[None, :], truth.shape[0], axis=0)
        prefix, bit = code >> (m - i), (code >> (m - 1 - i)) & 1
        angles[~truth, prefix] = np.pi * bit
        out.append(angles)
    return out


def queue_conditional_prepare(amplitudes: np.ndarray, truth: np.ndarray, code: int, condition: Sequence[int],
                              register: Sequence[int], adjoint: bool = False) -> None:
    """Queue the conditional preparation (or its adjoint: the cascade reversed, angles negated)."""
    import pennylane as qml

    levels = list(enumerate(conditional_prepare_angles(amplitudes, truth, code)))
    for i, angles in (reversed(levels) if adjoint else levels):
        qml.SelectPauliRot((-angles if adjoint else angles).ravel(), control_wires=list(condition) + list(register[:i]),
                           target_wire=register[i], rot_axis="Y")


def queue_select(gates, angles: np.ndarray, phases: np.ndarray | None, controls: list[int], on: np.ndarray,
                 data: Sequence[int]) -> None:
    """SELECT over `controls` (whose basis states index `on`, True where U_t applies, flattened in control
    order): the phase diagonal (if any) and one uniformly controlled rotation per gate of circuit 14 with
    its angle where `on`, else 0. angles [T, G] are padded with zeros to on's last axis."""
    import pennylane as qml

    width = on.shape[-1]
    if phases is not None:
        qml.DiagonalQubitUnitary(np.where(on, phases[None, :], 1.0).ravel(), wires=controls)
    padded = np.zeros((width, angles.shape[1]))
    padded[: angles.shape[0]] = angles
    for g, (kind, p, q) in enumerate(gates):
        alpha = np.where(on, padded[None, :, g], 0.0)
        if kind == "ry":
            qml.SelectPauliRot(alpha.ravel(), control_wires=controls, target_wire=data[p], rot_axis="Y")
        else:  # CRX: the data control is the multiplexer's last control bit (angle 0 when it is 0)
            alpha = np.stack((np.zeros_like(alpha), alpha), axis=-1)
            qml.SelectPauliRot(alpha.ravel(), control_wires=controls + [data[p]], target_wire=data[q], rot_axis="X")


def queue_application(select: str, application: int, degree: int, codes: Sequence[int], degree_wires: Sequence[int],
                      register: Sequence[int], data: Sequence[int], gates, angles: np.ndarray,
                      index_amps: np.ndarray, phases: np.ndarray | None) -> None:
    """Queue the block encoding of M for application j = `application`, active where k >= j."""
    import pennylane as qml

    positions, truth = degree_condition(application, degree, codes)
    condition = [degree_wires[p] for p in positions]
    tokens = angles.shape[0]
    valid = np.arange(index_amps.shape[0]) < tokens
    if select == "reduced":
        code = unused_code(tokens)
        queue_conditional_prepare(index_amps, truth, code, condition, register)
        queue_select(gates, angles, phases, list(register), valid[None, :], data)
        queue_conditional_prepare(index_amps, truth, code, condition, register, adjoint=True)
        return
    controls = condition + list(register)
    if register:
        qml.StatePrep(index_amps, wires=list(register))
    queue_select(gates, angles, phases, controls, truth[:, None] & valid[None, :], data)
    if register:
        qml.adjoint(qml.StatePrep(index_amps, wires=list(register)))
