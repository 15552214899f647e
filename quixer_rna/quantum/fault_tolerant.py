"""A fault-tolerant estimate of one prediction: logical qubits and T count from PennyLane's resource
estimator (pennylane.estimator), then physical qubits and run time under a stated surface-code model.

The logical circuit is the measure-and-reset layout of the reduced construction, gate for gate as
quantum.circuit builds it, as estimator operators: per application the conditional preparation (RY
multiplexers over the deciding degree bits and the index prefix) and its adjoint, the phase diagonal (a
cascade of RZ multiplexers), one multiplexed rotation per circuit-14 gate, then the readout layer; the two
degree-register preparations are general unitaries on r qubits. Two ways to make the multiplexers
fault-tolerant, both the estimator's own decompositions:
    rotations       Mottonen: 2^c CNOTs and 2^c single-qubit rotations, each synthesised into Clifford+T at
                    `precision` (the estimator's rotation-synthesis T count)
    phase_gradient  O'Brien and Sunderhauf (2025): angles loaded by QROM and added into a phase-gradient
                    register (Toffolis, extra zeroed qubits; the phase-gradient state itself not counted)
A Toffoli counts as 4 T (magic states) for the run time.

Surface-code model (Fowler et al. 2012; Litinski 2019), its assumptions stated in the output:
    physical error rate p = 1e-3, code cycle 1 us, logical error per qubit per cycle 0.1 (p / 0.01)^((d+1)/2);
    logical qubits laid out with as many routing patches again (x2), 2 d^2 physical qubits per patch;
    one 15-to-1 magic-state factory (4,620 physical qubits, output error 4.5e-8 per T at p = 1e-3) that
    delivers one T state per logical time step of d cycles, T gates consumed one per step (Cliffords free);
    d = the smallest odd distance keeping the memory error of one shot below 1%.
Run time per prediction = time per shot x raw shots per prediction (3 settings x 1/eps^2 kept shots / p).
Only the reduced construction is estimated (it needs an unused index code, T < 2^m).
"""

from __future__ import annotations


from .params import degree_qubits, index_qubits
from .select import degree_codes, degree_condition

PHYSICAL_ERROR = 1e-3
THRESHOLD = 1e-2
CYCLE_SECONDS = 1e-6
ROUTING_FACTOR = 2
FACTORY_QUBITS = 4620
FACTORY_T_ERROR = 4.5e-8
SHOT_ERROR_BUDGET = 0.01
T_PER_TOFFOLI = 4
GATE_SET = {"T", "Toffoli", "CNOT", "Hadamard", "S", "X", "Y", "Z"}
MODEL_TEXT = ("surface code, physical error 1e-3, 1 us cycle, logical error 0.1 (p/0.01)^((d+1)/2) per qubit "
              "and cycle, x2 routing patches of 2 d^2 qubits, one 15-to-1 factory (4,620 qubits, 4.5e-8 per T) "
              "delivering one T per d cycles, Cliffords free, d for < 1% memory error per shot")


def _queue_logical_circuit(qubits: int, layers: int, degree: int, tokens: int, precision: float) -> None:
    import pennylane.estimator as qre

    m, r = index_qubits(tokens), degree_qubits(degree)
    data = list(range(qubits))
    index = list(range(qubits, qubits + m))
    degree_wires = list(range(qubits + m, qubits + m + r))
    codes = degree_codes(degree, "reduced")
    qre.QubitUnitary(r, precision=precision, wires=degree_wires)
    for j in range(1, degree + 1):
        condition = [degree_wires[p] for p in degree_condition(j, degree, codes)[0]]
        for _ in range(2):          # the conditional preparation and its adjoint
            for i in range(m):
                qre.SelectPauliRot("Y", len(condition) + i, precision=precision,
                                   wires=condition + index[:i] + [index[i]])
        for i in range(1, m):       # the phase diagonal: RZ multiplexers over the index prefix
            qre.SelectPauliRot("Z", i, precision=precision, wires=index[:i] + [index[i]])
        for _ in range(layers):
            for _ in range(2 * qubits):
                qre.SelectPauliRot("Y", m, precision=precision, wires=index + [data[0]])
            for _ in range(2 * qubits):
                qre.SelectPauliRot("X", m + 1, precision=precision, wires=index + data[:2])
    qre.QubitUnitary(r, precision=precision, wires=degree_wires)
    for q in range(2 * qubits):     # the readout layer: one circuit-14 layer, 2n RY and 2n CRX
        qre.RY(precision=precision, wires=data[q % qubits])
        qre.CRX(wires=[data[q % qubits], data[(q + 1) % qubits]])


def logical_resources(qubits: int, layers: int, degree: int, tokens: int, precision: float,
                      method: str = "rotations") -> dict:
    """Logical qubits, T and Toffoli counts of one shot (PennyLane's estimator)."""
    import pennylane.estimator as qre

    config = qre.ResourceConfig()
    if method == "phase_gradient":
        config.set_decomp(qre.SelectPauliRot, qre.SelectPauliRot.phase_grad_resource_decomp)
    res = qre.estimate(lambda: _queue_logical_circuit(qubits, layers, degree, tokens, precision),
                       gate_set=GATE_SET, config=config)()
    counts = {str(k): int(v) for k, v in res.gate_counts.items()}
    return {
        "method": method,
        "logical_qubits": int(res.total_wires),
        "algorithmic_qubits": int(res.algo_wires),
        "T": counts.get("T", 0),
        "Toffoli": counts.get("Toffoli", 0),
        "CNOT": counts.get("CNOT", 0),
        "magic_states": counts.get("T", 0) + T_PER_TOFFOLI * counts.get("Toffoli", 0),
    }


def surface_code_cost(logical_qubits: int, magic_states: int, shots_per_prediction: float) -> dict:
    """Physical qubits and run time under the module's surface-code model."""
    patches = ROUTING_FACTOR * logical_qubits
    distance = 3
    while True:
        cycles = magic_states * distance
        error = 0.1 * (PHYSICAL_ERROR / THRESHOLD) ** ((distance + 1) / 2) * patches * max(cycles, 1)
        if error < SHOT_ERROR_BUDGET or distance > 99:
            break
        distance += 2
    seconds_per_shot = magic_states * distance * CYCLE_SECONDS
    return {
        "code_distance": distance,
        "physical_qubits": int(patches * 2 * distance**2 + FACTORY_QUBITS),
        "memory_error_per_shot": error,
        "magic_state_error_per_shot": magic_states * FACTORY_T_ERROR,
        "seconds_per_shot": seconds_per_shot,
        "shots_per_prediction": shots_per_prediction,
        "seconds_per_prediction": seconds_per_shot * shots_per_prediction,
    }


def fault_tolerant_estimate(qubits: int, layers: int, degree: int, tokens: int, precision: float,
                            shots_per_prediction: float) -> dict:
    """Both multiplexer methods, each with its surface-code cost."""
    rows = []
    for method in ("rotations", "phase_gradient"):
        logical = logical_resources(qubits, layers, degree, tokens, precision, method)
        rows.append({**logical, **surface_code_cost(logical["logical_qubits"], logical["magic_states"],
                                                    shots_per_prediction)})
    return {"rotation_precision": precision, "surface_code_model": MODEL_TEXT, "methods": rows}
