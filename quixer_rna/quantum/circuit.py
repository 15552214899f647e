"""The gate-level circuit of one window of a trained Quixer model, built with PennyLane, and its check
against the simulator.

Registers (wire numbers, wire 0 the most significant bit of an amplitude index as everywhere here):
data 0..n-1; index register j = 1..d (m = ceil(log2 T) qubits each) next; the degree register
(r = ceil(log2(d+1)) qubits) last. In the "measure_reset" variant there is one index register, measured,
kept on outcome 0 and reset after each application of M (same gates, fewer qubits).

    PREPARE_c      degree register |0> -> sum_k sqrt(|c_k| / ||c||_1) |code_k>   (qml.StatePrep)
    signs          diag(sign c_k) on the degree register                          (qml.DiagonalQubitUnitary)
    for j = 1..d, the j-th block encoding of M, acting only where the degree k >= j (quantum.select):
      PREPARE_b    index register j -> sum_t sqrt(|b_t|) |t> (where k < j: the unused code, "reduced")
      SELECT       phases diag(e^{i arg b_t}); then, for every gate g of circuit 14, one uniformly
                   controlled rotation (qml.SelectPauliRot) on its data target with angle theta_g(t),
                   controlled by index j (and the CRX's data control; "controlled": also the degree bits)
      PREPARE_b^dagger
    PREPARE_c^dagger
    [post-select every ancilla on |0>]  readout circuit-14 layer (RY, CRX)  [measure X, Y or Z on data]

Projecting index register j on |0> leaves sum_t |b_t| e^{i arg b_t} U_t = M where k >= j, and exactly the
identity where k < j, so projecting every ancilla on |0> leaves (1/||c||_1) sum_k c_k M^k |0> = the
simulator's psi, with probability ||psi||^2. `select` picks the construction: "reduced" (default; SELECT
controlled by the index bits only) or "controlled" (SELECT also controlled by the degree bits: the first
construction, kept to show what the reduction saves and as a second exact circuit).

Why multiplexed rotations rather than qml.Select / qml.PrepSelPrep: every U_t has the same gates with
other angles, so SELECT is G uniformly controlled rotations (2^c CNOTs and 2^c RZ each for c controls)
instead of T*G multi-controlled rotations with m + r + 1 controls each (tens of CNOTs apiece).

The measure-and-reset variant ends each application with qml.measure(wire, postselect=0, reset=True) on
every index wire (same gates, d*m mid-circuit measurements); it is what a device runs (quantum.export) and
what the trajectory simulation runs (quantum.trajectories, which projects instead of measuring).

The check (`check_windows`) runs PennyLane's decomposition of the fresh-register circuit into the counted
gate set, global phases kept, on a state-vector device, projects the ancillas on |0> and compares with the
simulator. Global phase: the circuit is exact including its global phase, so the post-selected amplitudes
are compared with psi directly (reported as state_error / amplitude_error); passing requires the
phase-aligned error (state after multiplying by the best global phase), since a global phase is
unobservable and a device may drop GlobalPhase gates. On default.qubit both are ~1e-15.
"""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from ..errors import UserError
from .params import QuixerStates, WindowCircuit, degree_qubits, index_qubits, window_circuit
from .select import degree_codes, effective_select, queue_application

VARIANTS = ("fresh", "measure_reset")
# A check simulates the whole statevector (2**total amplitudes) gate by gate; above this many qubits it
# is skipped with a one-line note (resources are still counted).
CHECK_MAX_QUBITS = 16
CHECK_TOLERANCE = 1e-6
# The gate set circuits are decomposed to (for counting, the check and default.mixed); GlobalPhase is kept
# only where a simulation needs the exact phase, and is never counted as a gate.
GATE_SET = ("CNOT", "RX", "RY", "RZ")


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Small matrices gain nothing from BLAS threads, and on a shared, loaded machine OpenBLAS threads
    spinning for a busy core made default.qubit 20x slower: one thread while PennyLane simulates."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def decompose_to_gate_set(operations: Sequence, keep_global_phase: bool = False) -> list:
    """PennyLane's decomposition of `operations` into CNOT, RX, RY, RZ (and GlobalPhase when kept)."""
    import pennylane as qml

    target = set(GATE_SET) | {"GlobalPhase", "MidMeasureMP"}      # mid-circuit measurements pass through
    (tape,), _ = qml.transforms.decompose(qml.tape.QuantumScript(list(operations)), gate_set=target)
    return [op for op in tape.operations if keep_global_phase or op.name != "GlobalPhase"]


@dataclass(frozen=True)
class Layout:
    """Wire numbers of each register."""

    variant: str
    data: tuple[int, ...]
    index: tuple[tuple[int, ...], ...]   # the index register of application j = 1..d (position j-1)
    degree: tuple[int, ...]

    @property
    def total(self) -> int:
        return len(self.data) + len(set(itertools.chain(*self.index))) + len(self.degree)

    @property
    def ancillas(self) -> tuple[int, ...]:
        return tuple(range(len(self.data), self.total))


def make_layout(qubits: int, tokens: int, degree: int, variant: str = "fresh") -> Layout:
    if variant not in VARIANTS:
        raise ValueError(f"variant {variant!r}: choose from {VARIANTS}")
    m, r = index_qubits(tokens), degree_qubits(degree)
    data = tuple(range(qubits))
    if variant == "fresh":
        index = tuple(tuple(range(qubits + j * m, qubits + (j + 1) * m)) for j in range(degree))
        first_degree = qubits + degree * m
    else:
        index = tuple(tuple(range(qubits, qubits + m)) for _ in range(degree))
        first_degree = qubits + m
    return Layout(variant, data, index, tuple(range(first_degree, first_degree + r)))


def _padded(values: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros(size, dtype=values.dtype)
    out[: values.shape[0]] = values
    return out


def queue_circuit(wc: WindowCircuit, variant: str = "fresh", readout: bool = True, select: str = "reduced") -> Layout:
    """Queue the window's circuit (no measurements) in the active PennyLane context; returns its layout."""
    import pennylane as qml

    n, T, d = wc.qubits, wc.tokens, wc.degree
    lay = make_layout(n, T, d, variant)
    m, r = index_qubits(T), degree_qubits(d)
    select = effective_select(select, T)
    codes = degree_codes(d, select)

    c = np.asarray(wc.poly, dtype=np.float64)
    degree_amps = np.zeros(2**r)
    degree_amps[list(codes)] = np.sqrt(np.abs(c) / np.abs(c).sum())
    degree_amps /= np.linalg.norm(degree_amps)
    degree_wires = list(lay.degree)
    qml.StatePrep(degree_amps, wires=degree_wires)
    if np.any(c < 0):
        signs = np.ones(2**r)
        signs[list(codes)] = np.where(c < 0, -1.0, 1.0)
        qml.DiagonalQubitUnitary(signs, wires=degree_wires)

    b = np.asarray(wc.lcu, dtype=np.complex128)
    index_amps = _padded(np.sqrt(np.abs(b)), 2**m)
    index_amps /= np.linalg.norm(index_amps)
    phases = _padded(np.exp(1j * np.angle(b)), 2**m) if np.any(np.abs(np.angle(b)) > 0) else None
    angles = np.asarray(wc.angles, dtype=np.float64)
    for j in range(1, d + 1):
        register = list(lay.index[j - 1])
        queue_application(select, j, d, codes, degree_wires, register, lay.data, wc.gates, angles, index_amps, phases)
        if m and variant == "measure_reset":
            for wire in register:
                qml.measure(wire, reset=True, postselect=0)
    qml.adjoint(qml.StatePrep(degree_amps, wires=degree_wires))
    if readout:
        queue_readout(wc, lay.data)
    return lay


def queue_readout(wc: WindowCircuit, data: Sequence[int]) -> None:
    import pennylane as qml

    for (kind, p, q), angle in zip(wc.readout_gates, wc.readout_angles):
        if kind == "ry":
            qml.RY(float(angle), wires=data[p])
        else:
            qml.CRX(float(angle), wires=[data[p], data[q]])


def circuit_tape(wc: WindowCircuit, variant: str = "fresh", readout: bool = True, select: str = "reduced"):
    """The window's circuit as a PennyLane QuantumScript (no measurements)."""
    import pennylane as qml

    with qml.queuing.AnnotatedQueue() as queue:
        queue_circuit(wc, variant, readout, select)
    return qml.tape.QuantumScript.from_queue(queue)


def make_device(name: str, wires: int):
    """A PennyLane device by name; an unknown or unusable one is a one-line UserError."""
    import pennylane as qml

    try:
        return qml.device(name, wires=wires)
    except Exception as exc:  # DeviceError for unknown names; plugins raise their own types
        raise UserError(f"--device {name}: not a usable PennyLane device ({str(exc).splitlines()[0][:160]})") from exc


def postselected_amplitudes(wc: WindowCircuit, device_name: str = "default.qubit",
                            decompose: bool = True, select: str = "reduced") -> np.ndarray:
    """Run the fresh-register circuit without readout on `device_name` and return the data-register
    amplitudes with every ancilla projected on |0> (not renormalised: their squared norm is the
    post-selection success probability). decompose=True runs PennyLane's decomposition into the counted
    gate set (global phases kept), i.e. exactly the gates that are counted, and is the faster way to
    simulate it; decompose=False hands the templates to the device as they are."""
    import pennylane as qml

    lay = make_layout(wc.qubits, wc.tokens, wc.degree, "fresh")
    device = make_device(device_name, lay.total)
    operations = list(circuit_tape(wc, "fresh", readout=False, select=select).operations)
    if decompose:
        operations = decompose_to_gate_set(operations, keep_global_phase=True)
    with single_threaded_blas():
        (state,) = qml.execute([qml.tape.QuantumScript(operations, [qml.state()])], device)
    state = np.asarray(state)
    if state.shape != (2**lay.total,):
        raise UserError(f"--device {device_name}: returned no state vector; use a state-vector simulator "
                        "such as default.qubit or lightning.qubit")
    return state.reshape(2**wc.qubits, -1)[:, 0].copy()


def readout_expectations(wc: WindowCircuit, state: np.ndarray, device_name: str = "default.qubit") -> np.ndarray:
    """<X_i>, <Y_i>, <Z_i> (X_0..X_{n-1}, Y.., Z..) after the readout layer on a normalised data state."""
    import pennylane as qml

    n = wc.qubits
    device = make_device(device_name, n)

    @qml.qnode(device)
    def run():
        qml.StatePrep(state, wires=range(n))
        queue_readout(wc, range(n))
        return [qml.expval(pauli(w)) for pauli in (qml.PauliX, qml.PauliY, qml.PauliZ) for w in range(n)]

    with single_threaded_blas():
        return np.asarray(run(), dtype=np.float64)


def check_windows(states: QuixerStates, positions: Sequence[int], device_name: str = "default.qubit",
                  tolerance: float = CHECK_TOLERANCE, select: str = "reduced") -> dict:
    """Circuit against simulator for the windows at `positions` of `states`: the post-selected,
    renormalised data state (compared directly, and after aligning global phases), the success
    probability and the 3n expectations after the readout layer."""
    rows = []
    for pos in positions:
        wc = window_circuit(states, pos)
        amps = postselected_amplitudes(wc, device_name, select=select)
        success = float(np.vdot(amps, amps).real)
        circuit_state = amps / np.sqrt(success)
        sim_state = states.psi[pos] / np.sqrt(states.success[pos])
        overlap = np.vdot(circuit_state, sim_state)
        aligned = circuit_state * (overlap / abs(overlap)) if abs(overlap) > 0 else circuit_state
        features = readout_expectations(wc, circuit_state, device_name)
        rows.append({
            "state_error": float(np.abs(circuit_state - sim_state).max()),
            "state_error_phase_aligned": float(np.abs(aligned - sim_state).max()),
            "amplitude_error": float(np.abs(amps - states.psi[pos]).max()),
            "success_probability_circuit": success,
            "success_probability_simulator": float(states.success[pos]),
            "success_probability_error": abs(success - float(states.success[pos])),
            "expectation_error": float(np.abs(features - states.features[pos]).max()),
        })
    worst = {key: max(row[key] for row in rows) for key in
             ("state_error", "state_error_phase_aligned", "amplitude_error", "success_probability_error",
              "expectation_error")}
    # Global phase is unobservable: passing needs the phase-aligned state; the direct errors are reported.
    passed = all(worst[key] <= tolerance for key in
                 ("state_error_phase_aligned", "success_probability_error", "expectation_error"))
    return {
        "status": "passed" if passed else "failed",
        "device": device_name,
        "select": effective_select(select, states.tokens),
        "tolerance": tolerance,
        "global_phase": "state_error and amplitude_error compare without any phase freedom (the circuit keeps "
                        "every phase); passing requires state_error_phase_aligned (after the best global "
                        "phase), success_probability_error and expectation_error within the tolerance",
        "windows_checked": len(rows),
        **{f"max_{key}": value for key, value in worst.items()},
        "per_window": rows,
    }
