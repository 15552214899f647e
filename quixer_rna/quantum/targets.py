"""The device circuit compiled for three kinds of hardware with Qiskit's transpiler, and what it costs there.

Targets (all compiled with qiskit.transpile, optimization_level 3, a fixed seed):
    heron       IBM Heron r2 as qiskit-ibm-runtime's FakeMarrakesh carries it offline: 156 qubits on a
                heavy-hex coupling map, native CZ + SX, X, RZ, and that device's calibration (per-qubit and
                per-pair errors). Routing inserts SWAPs (as CZs) where the circuit needs non-neighbours.
    quantinuum  Quantinuum Helios: all-to-all, native RZZ(theta), U1q(theta, phi) (Qiskit's R gate) and
                RZ. Errors: 2.5e-5 per one-qubit gate, 7.9e-4 per two-qubit gate, 3.3e-4 per state
                preparation and measurement (averages over the device, Helios paper, arXiv:2511.05465).
    ionq        IonQ: all-to-all, native Molmer-Sorensen (Qiskit's RXX) with one-qubit R and RZ. Error:
                1e-4 per two-qubit gate, the R&D figure (no production device has it yet); one-qubit and
                measurement errors are not counted for lack of a published calibration.
Estimated success = the product over every gate, measurement and reset of (1 - its error): the probability
that nothing fails, reported with its log10 since it underflows for large circuits. Virtual RZ gates are
error-free (no calibration lists an error for them). Quantinuum's cost in HQC for C shots is
5 + C (N_1q + 10 N_2q + 5 N_meas) / 5000, with N_1q counting U1q and RZ gates and N_meas the measurements
(mid-circuit ones included).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

TARGETS = ("heron", "quantinuum", "ionq")
OPTIMIZATION_LEVEL = 3
IO_OPS = ("measure", "reset", "barrier")


@dataclass(frozen=True)
class Target:
    name: str
    device: str
    basis: tuple[str, ...] | None        # None: the fake backend's own
    two_qubit: str
    error_1q: float | None                # None: the backend's calibration
    error_2q: float | None
    error_measure: float | None
    source: str


SPECS = {
    "heron": Target("heron", "IBM Heron r2 (qiskit-ibm-runtime FakeMarrakesh: coupling map and calibration)",
                    None, "cz", None, None, None, "FakeMarrakesh calibration snapshot"),
    "quantinuum": Target("quantinuum", "Quantinuum Helios (all-to-all)", ("rzz", "r", "rz"), "rzz",
                         2.5e-5, 7.9e-4, 3.3e-4, "Helios averages, arXiv:2511.05465"),
    "ionq": Target("ionq", "IonQ (all-to-all, MS gate)", ("rxx", "r", "rz"), "rxx",
                   0.0, 1e-4, 0.0, "two-qubit 1e-4: IonQ's R&D figure; one-qubit and readout not counted"),
}


def _quiet_qiskit() -> None:
    """Qiskit logs every transpiler pass at INFO, which the stages' logging would print."""
    logging.getLogger("qiskit").setLevel(logging.WARNING)


def fake_backend():
    from qiskit_ibm_runtime.fake_provider import FakeMarrakesh

    _quiet_qiskit()
    return FakeMarrakesh()


def compile_for(circuit, name: str, seed: int = 0, backend=None):
    """The circuit transpiled for target `name` (routing and native gates)."""
    from qiskit import transpile

    _quiet_qiskit()
    spec = SPECS[name]
    if spec.basis is None:
        return transpile(circuit, backend=backend or fake_backend(), optimization_level=OPTIMIZATION_LEVEL,
                         seed_transpiler=seed)
    return transpile(circuit, basis_gates=list(spec.basis) + ["measure", "reset"],
                     optimization_level=OPTIMIZATION_LEVEL, seed_transpiler=seed)


def _log_success(compiled, spec: Target, backend) -> float:
    """Natural log of the product of (1 - error) over every operation."""
    total = 0.0
    for instruction in compiled.data:
        name = instruction.operation.name
        if name == "barrier":
            continue
        qubits = tuple(compiled.find_bit(q).index for q in instruction.qubits)
        if spec.basis is None:
            props = backend.target[name].get(qubits) if name in backend.target else None
            error = (props.error if props is not None and props.error is not None else 0.0)
        elif name in ("measure", "reset"):
            error = spec.error_measure if name == "measure" else 0.0
        elif name == "rz":
            error = 0.0
        else:
            error = spec.error_2q if len(qubits) == 2 else spec.error_1q
        total += math.log1p(-min(error, 1.0 - 1e-16))
    return total


def uses_only_target(compiled, name: str, backend=None) -> bool:
    """Whether every operation is native to the target and every two-qubit gate sits on a coupling edge."""
    spec = SPECS[name]
    allowed = set(IO_OPS) | (set(backend.operation_names) if spec.basis is None else set(spec.basis))
    for instruction in compiled.data:
        if instruction.operation.name not in allowed:
            return False
        if spec.basis is None and len(instruction.qubits) == 2:
            pair = tuple(compiled.find_bit(q).index for q in instruction.qubits)
            if pair not in backend.target[instruction.operation.name]:
                return False
    return True


def hqc(one_qubit: int, two_qubit: int, measurements: int, shots: float) -> float:
    """Quantinuum's HQC cost of `shots` shots of one circuit."""
    return 5.0 + shots * (one_qubit + 10 * two_qubit + 5 * measurements) / 5000.0


def target_costs(circuit, name: str, seed: int = 0) -> dict:
    """Compile for target `name` and count: native two-qubit gates, one-qubit gates, measurements, depth
    after routing, estimated success (and log10), compile time."""
    spec = SPECS[name]
    backend = fake_backend() if spec.basis is None else None
    started = time.perf_counter()
    compiled = compile_for(circuit, name, seed, backend)
    seconds = time.perf_counter() - started
    counts = dict(compiled.count_ops())
    two = sum(v for k, v in counts.items() if k == spec.two_qubit or k == "swap")
    one = sum(v for k, v in counts.items() if k not in IO_OPS and k != spec.two_qubit)
    log_success = _log_success(compiled, spec, backend)
    return {
        "target": name,
        "device": spec.device,
        "error_source": spec.source,
        "native_two_qubit_gate": spec.two_qubit,
        "native_two_qubit_gates": int(two),
        "one_qubit_gates": int(one),
        "measurements": int(counts.get("measure", 0)),
        "resets": int(counts.get("reset", 0)),
        "depth": int(compiled.depth()),
        "estimated_success": math.exp(log_success),
        "log10_estimated_success": log_success / math.log(10.0),
        "native_only": uses_only_target(compiled, name, backend),
        "counts": {k: int(v) for k, v in sorted(counts.items())},
        "compile_seconds": seconds,
    }
