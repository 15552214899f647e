"""resources.json: what quixer_circuit.py measured of a trained Quixer as a gate-level circuit, and what the
report reads of it. One typed object, `CircuitResources`, built by the stage, written through the shared
metadata writer and read back with every field checked (quixer_rna.formats.metadata): a missing or mistyped
field is one line naming the file and the field. The stage's metrics.json holds the same object.

    run, model                    where the model came from (RunInfo); its sizes (ModelSizes)
    windows                       the test-set indices used (--windows)
    qubits                        data, index_register (m), index_registers (d), index (d m), degree, ancillas,
                                  total (fresh index registers), ancillas_measure_reset, total_measure_reset
    select, degree_codes, select_constructions
                                  the SELECT construction counted and checked (--select; "reduced" falls back
                                  to "controlled" when T = 2^m), the degree register's codes for k = 0..d, and
                                  both constructions' two-qubit gates, depth and SELECT CNOTs (before/after)
    gates, two_qubit_gates, single_qubit_gates, depth, two_qubit_gates_by_part
                                  of the fresh-register circuit, readout included, after decomposition to
                                  gate_set; gate_counts_refer_to says so. Counted on the first selected window:
                                  only multiplexer angles differ between windows, and counts are for generic
                                  angles, so they hold for every window
    measure_reset                 qubits, gates, two_qubit_gates, depth, mid_circuit_measurements of the variant
                                  with one index register measured and reset
    counting_seconds              wall time of counting both variants
    success_probability           mean, std (population), min, max of ||psi||^2 over the windows (simulator)
    raw_shots_per_prediction      eps, at_mean_p = 3/(eps^2 mean p), mean_over_windows = mean of 3/(eps^2 p_w)
    exact                         cross_entropy, perplexity, accuracy, top5_accuracy (exact expectations),
                                  success_probability
    shots                         per --shots S: the same metrics from S kept shots per setting, and
                                  raw_shots_per_prediction = mean over windows of 3 S / p_w
    noise_model, noise            per --noise_2q p: p_2q, fidelity, success_probability, expectation_scale and
                                  the metrics under the global depolarising approximation
    unigram_cross_entropy         of the add-one-smoothed train target distribution on the same windows
    break_even_p2q, break_even_reason
                                  p at which the cross-entropy reaches the unigram's (null and a reason if none)
    check                         null without --check; circuit.check_windows' result, with
                                  noise_vs_default_mixed (small circuits); above CHECK_MAX_QUBITS fresh-register
                                  qubits, trajectories.check_measure_reset's (the measure-and-reset layout,
                                  "layout" says so) up to MEASURE_RESET_CHECK_MAX_QUBITS; beyond,
                                  {"status": "skipped", "reason"} (quixer_rna.quantum.stage)
    half_signal_p2q               p at which the expectations keep half their signal (global approximation)
    trajectories                  with --trajectories S: stratified Pauli-error trajectories on the
                                  measure-and-reset layout (quantum.noise_study): curve, break-even rate with a
                                  bootstrap interval, the global approximation's beside it and their ratio, per
                                  criterion ("unigram", "half_signal"; the unigram's also at the top level)
    qasm                          the OpenQASM 3 files of the first --qasm windows (folder qasm/, X/Y/Z settings)
    targets                       per --targets device: native two-qubit gates, depth, estimated success,
                                  shots, break-even native error rates, HQC (quantum.hardware, quantum.targets)
    device_runs                   with --device_shots: noisy end-to-end runs in qiskit-aer (quantum.device_run)
    fault_tolerant                logical qubits, T count, physical qubits and run time (quantum.fault_tolerant),
                                  or {"skipped": reason}
    sampling, window_weights      with --windows_per_transcript only: how the windows were drawn (stratified by
                                  transcript, seeded) and each window's weight; every metric is then the
                                  weighted mean, an estimate over all test windows

Every key the stage writes is a field without a default (null where its flag was off), so a reader can rely on
each; only sampling and window_weights, absent without --windows_per_transcript, default to None. The file has
no "format" or "version" key (its layout is older than this module). Sections nobody reads field by field
(check, device_runs, fault_tolerant, sampling, the trajectory curve) stay plain objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from ..errors import UserError
from ..runio import atomic_write_json, read_json
from .metadata import Place, decode, encode, rebuild_hint

RESOURCES_FILE = "resources.json"


class RunInfo(TypedDict):
    run_dir: str
    checkpoint: str
    model_name: str
    model_config: dict[str, Any]
    vocab_size: int
    context_length: int


class ModelSizes(TypedDict):
    qubits: int
    ansatz_layers: int
    degree: int
    tokens: int
    vocab_size: int


class QubitCounts(TypedDict):
    data: int
    index_register: int
    index_registers: int
    index: int
    degree: int
    ancillas: int
    total: int
    ancillas_measure_reset: int
    total_measure_reset: int


class SelectConstruction(TypedDict):
    two_qubit_gates: int
    depth: int
    gates: int
    select_two_qubit_gates: int


class MeasureReset(TypedDict):
    qubits: int
    gates: dict[str, int]
    two_qubit_gates: int
    depth: int
    mid_circuit_measurements: int


class Spread(TypedDict):
    mean: float
    std: float
    min: float
    max: float


class RawShots(TypedDict):
    eps: float
    at_mean_p: float
    mean_over_windows: float


class Scores(TypedDict):
    cross_entropy: float
    perplexity: float
    accuracy: float
    top5_accuracy: float


class ExactScores(Scores):
    success_probability: float


class ShotsRow(Scores):
    shots: int
    raw_shots_per_prediction: float


class NoiseRow(Scores):
    p_2q: float
    fidelity: float
    success_probability: float
    expectation_scale: float


class BreakEven(TypedDict):
    """One criterion of the trajectory study: its level, the trajectories' and the global approximation's
    break-even rates with bootstrap intervals (an end beyond every simulated rate is null), their ratio."""

    level: float
    break_even_p2q: float | None
    break_even_reason: str | None
    break_even_p2q_interval: list[float | None] | None
    replicates_without_break_even: int
    break_even_tail_mass: float | None
    global_break_even_p2q: float | None
    global_break_even_p2q_interval: list[float | None] | None
    global_over_trajectory: float | None
    global_over_trajectory_interval: list[float | None] | None


class Trajectories(BreakEven):
    """What --trajectories measured; the "unigram" criterion's fields also at the top level."""

    layout: str
    two_qubit_gates: int
    max_errors: int
    error_counts: list[int]
    per_stratum: int
    trajectories: int
    seconds: float
    max_exact_success_error: float
    max_exact_expectation_error: float
    unigram_cross_entropy: float
    curve: list[dict[str, Any]]
    bootstrap: int
    max_rate: float
    criteria: dict[str, BreakEven]


class QasmFiles(TypedDict):
    folder: str
    files: list[str]
    layout: str
    post_selection: str


class TargetCost(TypedDict):
    """One compiled device (quantum.targets.target_costs, then quantum.hardware.target_table)."""

    target: str
    device: str
    error_source: str
    native_two_qubit_gate: str
    native_two_qubit_gates: int
    one_qubit_gates: int
    measurements: int
    resets: int
    depth: int
    estimated_success: float
    log10_estimated_success: float
    native_only: bool
    counts: dict[str, int]
    compile_seconds: float
    logical_two_qubit_gates: int
    equivalent_p2q: float
    noise_source: str
    success_probability: float
    cross_entropy: float
    raw_shots_per_prediction: float
    break_even_criterion: str
    break_even_native_p2q: float | None
    global_break_even_native_p2q: float | None
    hqc_per_prediction: float | None


@dataclass(frozen=True, kw_only=True)
class CircuitResources:
    """resources.json (module docstring), the fields in the file's order."""

    run: RunInfo
    model: ModelSizes
    windows: list[int]
    qubits: QubitCounts
    select: str
    degree_codes: list[int]
    select_constructions: dict[str, SelectConstruction]
    gates: dict[str, int]
    two_qubit_gates: int
    single_qubit_gates: int
    depth: int
    two_qubit_gates_by_part: dict[str, int]
    gate_set: str
    gate_counts_refer_to: str
    measure_reset: MeasureReset
    counting_seconds: float
    success_probability: Spread
    raw_shots_per_prediction: RawShots
    exact: ExactScores
    shots: list[ShotsRow]
    noise_model: str
    noise: list[NoiseRow]
    unigram_cross_entropy: float
    break_even_p2q: float | None
    break_even_reason: str | None
    check: dict[str, Any] | None
    half_signal_p2q: float | None
    trajectories: Trajectories | None
    qasm: QasmFiles | None
    targets: dict[str, TargetCost] | None
    device_runs: list[dict[str, Any]] | None
    fault_tolerant: dict[str, Any]
    sampling: dict[str, Any] | None = None
    window_weights: list[float] | None = None

    def as_dict(self) -> dict[str, Any]:
        """The object as resources.json holds it."""
        return encode(self)

    def write(self, folder: str | Path) -> None:
        """resources.json written atomically into `folder`."""
        atomic_write_json(Path(folder) / RESOURCES_FILE, self.as_dict())

    @classmethod
    def read(cls, folder: str | Path) -> "CircuitResources":
        """A circuit stage's resources.json, every field checked: a missing or mistyped one is a one-line
        UserError naming the file and the field, and the command that rebuilds it."""
        folder = Path(folder)
        path = folder / RESOURCES_FILE
        data = read_json(path, f"{RESOURCES_FILE} of a circuit stage")
        where = Place(path, lambda: rebuild_hint(
            folder, f"quixer_circuit.py --run_dir RUN --data_dir DATA --output_dir {folder}"))
        if not isinstance(data, dict):
            raise UserError(f"{path}: not a JSON object; {where.hint()}")
        return decode(cls, data, where)
