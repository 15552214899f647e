"""quixer_circuit.py's stage: a trained Quixer run as a gate-level circuit - qubits, gates, depth, shots per
prediction, test metrics under finite shots and two-qubit noise, the hardware sections and (with --check) the
circuit simulated with PennyLane against the simulator the model was trained with. It writes OUT/resources.json
(quixer_rna.formats.resources: CircuitResources, which describes every key; metrics.json holds the same object)
inside quixer_rna.stage.stage_run. A failed check still writes everything and exits 1; a circuit too large to
check gets resources only, with one warning line (exit 0).
"""

from __future__ import annotations

import logging
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..cli import config_record
from ..errors import UserError
from ..formats.resources import RESOURCES_FILE, CircuitResources
from ..metrics import unigram_log_probs
from ..stage import stage_run
from .circuit import CHECK_MAX_QUBITS, check_windows, make_device
from .config import CircuitConfig
from .hardware import hardware_sections
from .io import load_test_windows, load_trained_quixer, sample_test_windows, train_target_counts
from .noise import MIXED_MAX_QUBITS, break_even_p2q, mixed_state_comparison, noise_table
from .params import QuixerStates, quixer_states, qubit_counts, window_circuit
from .resources import circuit_resources
from .select import effective_select
from .shots import head_function, raw_shots, score_metrics, shots_table
from .trajectories import check_measure_reset

LOG = logging.getLogger("quixer_rna.quantum")
STAGE = "quixer_circuit"
MIXED_CHECK_WINDOWS = 2
# Above CHECK_MAX_QUBITS fresh-register qubits the check runs the measure-and-reset layout (one trajectory
# per window on lightning.qubit's kernels) up to this many qubits
MEASURE_RESET_CHECK_MAX_QUBITS = 20
NOISE_TOLERANCE_NOTE = (
    "local two-qubit depolarising noise (default.mixed) vs the global approximation, for the first windows: "
    "the approximation assumes every failure scrambles the whole register, so it is pessimistic (lower success "
    "probability, smaller expectations); tests require both differences within 1 - F, the probability that "
    "some gate fails (measured 0.12 to 0.54 of it)")
_WINDOW_ITEM = re.compile(r"^(\d+)(?::(\d+))?$")


def parse_windows(spec: str) -> list[int]:
    """'0:8' -> 0..7; '3' -> 3; comma-separated items combine ('0:4,10,12:14'); repeats are dropped."""
    indices: list[int] = []
    items = [item.strip() for item in str(spec).split(",")]
    for item in items:
        match = _WINDOW_ITEM.match(item)
        if not match:
            raise UserError(f"--windows {spec}: expected indices and ranges such as 0:8 or 0,3,5:9 (end exclusive)")
        start = int(match.group(1))
        stop = int(match.group(2)) if match.group(2) is not None else start + 1
        if stop <= start:
            raise UserError(f"--windows {spec}: the range {item} is empty (end exclusive)")
        indices.extend(range(start, stop))
    return list(dict.fromkeys(indices))


def _validate(config: CircuitConfig) -> list[int] | None:
    """The --windows selection (None with --windows_per_transcript, which is drawn once the data is open)."""
    if config.windows is not None and config.windows_per_transcript is not None:
        raise UserError("--windows and --windows_per_transcript: give one of them")
    make_device(config.device, 2)
    if config.windows_per_transcript is not None:
        return None
    return parse_windows("0:8" if config.windows is None else config.windows)


def _unigram_nll(counts: torch.Tensor, vocab: int, targets: torch.Tensor) -> np.ndarray:
    """Per-window loss on `targets` of the add-one-smoothed train target distribution over the model's vocabulary."""
    counts = torch.nn.functional.pad(counts[:vocab], (0, max(0, vocab - counts.shape[0])))
    return (-unigram_log_probs(counts)[targets]).double().numpy()


def evaluate(model: torch.nn.Module, tokens: torch.Tensor, counts: torch.Tensor, config: CircuitConfig,
             windows: list[int], weights: np.ndarray | None = None,
             out_dir: Path | None = None) -> tuple[dict[str, Any], bool]:
    """The fields of CircuitResources that describe the circuit and its test metrics (all but "run" and the
    sampling), for windows [B, T+1] (weighted means when `weights` are given); and whether the check (if any)
    passed."""
    T = model.context_length
    context, targets = tokens[:, :T], tokens[:, T]
    states = quixer_states(model, context)
    head = head_function(model)
    resources = circuit_resources(window_circuit(states, 0), config.select)
    qubits = resources["qubits"]
    success = states.success
    mean_success = float(np.average(success, weights=weights))
    exact = {**score_metrics(head(states.features), targets, weights), "success_probability": mean_success}
    unigram_nll = _unigram_nll(counts, model.vocab_size, targets)
    unigram_ce = float(np.average(unigram_nll, weights=weights))
    n2q, ancillas = resources["two_qubit_gates"], qubits["ancillas"]
    break_even, reason = break_even_p2q(head, states.features, success, targets, n2q, ancillas, unigram_ce,
                                        weights=weights)
    sizes = {"qubits": states.qubits, "ansatz_layers": model.ansatz_layers, "degree": states.degree,
             "tokens": states.tokens, "vocab_size": model.vocab_size}
    result: dict[str, Any] = {
        "model": sizes,
        "windows": windows,
        **resources,
        # spread over the selected windows (std: population, ddof 0); the mean weighted when sampled
        "success_probability": {"mean": mean_success, "std": float(success.std()),
                                "min": float(success.min()), "max": float(success.max())},
        "raw_shots_per_prediction": {"eps": config.eps, "at_mean_p": 3.0 / (config.eps**2 * mean_success),
                                     "mean_over_windows": raw_shots(1.0 / config.eps**2, success, weights)},
        "exact": exact,
        "shots": shots_table(head, states.readout_state, success, states.qubits, targets, config.shots, config.seed,
                             weights),
        "noise_model": "every two-qubit gate fails with probability p_2q; global depolarising approximation: "
                       "F = (1-p)^two_qubit_gates, success F p + (1-F) 2^-ancillas, expectations scaled by "
                       "F p / success",
        "noise": noise_table(head, states.features, success, targets, n2q, ancillas, config.noise_2q, weights),
        "unigram_cross_entropy": unigram_ce,
        "break_even_p2q": break_even,
        "break_even_reason": reason,
        "check": None,
    }
    result.update(hardware_sections(states, head, targets, weights, unigram_nll, config, out_dir or Path("."),
                                    windows, n2q, ancillas, sizes))
    passed = True
    if config.check:
        result["check"], passed = _check(states, config, windows)
    return result, passed


def _check(states: QuixerStates, config: CircuitConfig, windows: list[int]) -> tuple[dict[str, Any], bool]:
    """Circuit against simulator on every selected window; on small circuits also the noise approximation
    against default.mixed on the first MIXED_CHECK_WINDOWS. Too large a circuit: a one-line note, no check."""
    counts = qubit_counts(states.qubits, states.tokens, states.degree)
    total, reset = counts["total"], counts["total_measure_reset"]
    started = time.perf_counter()
    if total > CHECK_MAX_QUBITS and reset <= MEASURE_RESET_CHECK_MAX_QUBITS:
        check = check_measure_reset(states, range(states.windows), effective_select(config.select, states.tokens))
        for window, row in zip(windows, check["per_window"]):
            row["window"] = window
        check["seconds"] = time.perf_counter() - started
        return check, check["status"] == "passed"
    if total > CHECK_MAX_QUBITS:
        reason = (f"the circuit has {total} qubits ({reset} measuring and resetting), more than the "
                  f"{CHECK_MAX_QUBITS} ({MEASURE_RESET_CHECK_MAX_QUBITS}) this check simulates; resources only")
        LOG.warning("check skipped: %s", reason)
        return {"status": "skipped", "reason": reason}, True
    check = check_windows(states, range(states.windows), config.device, select=config.select)
    for window, row in zip(windows, check["per_window"]):
        row["window"] = window
    if total <= MIXED_MAX_QUBITS:
        positions = list(range(min(MIXED_CHECK_WINDOWS, states.windows)))
        check["noise_vs_default_mixed"] = {
            "windows": [windows[pos] for pos in positions],
            "note": NOISE_TOLERANCE_NOTE,
            "rows": [{"window": windows[pos], **row} for pos in positions
                     for row in mixed_state_comparison(window_circuit(states, pos), float(states.success[pos]),
                                                       states.features[pos], config.noise_2q, config.select)],
        }
    else:
        check["noise_vs_default_mixed"] = {"skipped": f"more than {MIXED_MAX_QUBITS} qubits for default.mixed"}
    check["seconds"] = time.perf_counter() - started
    return check, check["status"] == "passed"


def _fmt(value: Any, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def format_report(result: dict[str, Any]) -> str:
    q, model = result["qubits"], result["model"]
    gates = ", ".join(f"{k} {v}" for k, v in result["gates"].items() if k != "total")
    sp = result["success_probability"]
    shots = result["raw_shots_per_prediction"]
    lines = [
        f"Quixer circuit: n={model['qubits']} data qubits, {model['ansatz_layers']} layer(s), T={model['tokens']} "
        f"tokens, degree {model['degree']}; {len(result['windows'])} test window(s)",
        f"qubits          {q['total']} with fresh index registers ({q['data']} data + {q['index']} index + "
        f"{q['degree']} degree); {q['total_measure_reset']} with one index register measured and reset",
        f"gates           {result['gates']['total']} ({gates})",
        f"two-qubit gates {result['two_qubit_gates']}   depth {result['depth']}   "
        f"(measure-and-reset: {result['measure_reset']['two_qubit_gates']}, depth {result['measure_reset']['depth']})",
        f"success prob.   mean {sp['mean']:.4f}  std {sp['std']:.4f}  min {sp['min']:.4f}  max {sp['max']:.4f}",
        f"raw shots/pred. eps={shots['eps']:g}: {shots['at_mean_p']:.3g} at mean p, "
        f"{shots['mean_over_windows']:.3g} mean over windows",
        "",
        f"{'shots':>8} {'CE':>8} {'acc':>7} {'top5':>7} {'raw shots/pred':>15}",
        f"{'exact':>8} {result['exact']['cross_entropy']:8.4f} {result['exact']['accuracy']:7.4f} "
        f"{result['exact']['top5_accuracy']:7.4f} {'-':>15}",
    ]
    for row in result["shots"]:
        lines.append(f"{row['shots']:>8} {row['cross_entropy']:8.4f} {row['accuracy']:7.4f} "
                     f"{row['top5_accuracy']:7.4f} {row['raw_shots_per_prediction']:15.4g}")
    lines += ["", f"{'p_2q':>8} {'fidelity':>9} {'success':>8} {'CE':>8} {'acc':>7} {'top5':>7}"]
    for row in result["noise"]:
        lines.append(f"{row['p_2q']:8.1e} {row['fidelity']:9.4f} {row['success_probability']:8.4f} "
                     f"{row['cross_entropy']:8.4f} {row['accuracy']:7.4f} {row['top5_accuracy']:7.4f}")
    be, half = result["break_even_p2q"], result["half_signal_p2q"]
    lines.append(f"unigram CE {result['unigram_cross_entropy']:.4f}; break-even two-qubit error rate: "
                 + (f"{be:.3g}" if be is not None else f"none ({result['break_even_reason']})")
                 + (f"; half the signal left at {half:.3g}" if half is not None else ""))
    lines += _hardware_lines(result)
    check = result["check"]
    if check is not None:
        if check["status"] == "skipped":
            lines.append(f"check skipped: {check['reason']}")
        else:
            direct = check.get("max_state_error")
            lines.append(f"check {check['status']} on {check['windows_checked']} window(s) ({check['device']}"
                         f"{', ' + check['layout'] + ' layout' if 'layout' in check else ''}): state error "
                         + (f"{direct:.2e} (phase-aligned " if direct is not None else "(phase-aligned ")
                         + f"{check['max_state_error_phase_aligned']:.2e}), success probability error "
                         f"{check['max_success_probability_error']:.2e}, expectations "
                         f"{check['max_expectation_error']:.2e}")
            mixed = check.get("noise_vs_default_mixed") or {}
            rows = mixed.get("rows")
            if mixed.get("skipped"):
                lines.append(f"noise approximation vs default.mixed skipped: {mixed['skipped']}")
            if rows:
                worst = max(rows, key=lambda r: r["p_2q"])
                lines.append(f"noise approximation vs default.mixed at p={worst['p_2q']:g}: success "
                             f"{worst['success_probability_approx']:.4f} vs {worst['success_probability_mixed']:.4f}, "
                             f"max expectation difference {worst['max_expectation_error']:.4f}")
    return "\n".join(lines)


def _interval(values: list | None) -> str:
    if not values:
        return ""
    return " [" + ", ".join("beyond" if v is None else f"{v:.3g}" for v in values) + "]"


def _hardware_lines(result: dict[str, Any]) -> list[str]:
    built = result["select_constructions"]
    lines = ["select: " + result["select"] + " (degree codes " + ",".join(map(str, result["degree_codes"])) + "); "
             + ", ".join(f"{name} {row['two_qubit_gates']} CNOTs" for name, row in built.items())]
    traj = result.get("trajectories")
    if traj:
        lines.append(f"trajectories: {traj['trajectories']} ({len(traj['error_counts'])} error counts up to "
                     f"{traj['max_errors']} x {traj['per_stratum']} per window, {traj['seconds']:.0f} s)")
        for name, row in traj["criteria"].items():
            be, glob = row["break_even_p2q"], row["global_break_even_p2q"]
            lines.append(f"  break-even ({name}, level {row['level']:.4f}): trajectories "
                         + (f"{be:.3g}{_interval(row['break_even_p2q_interval'])}" if be is not None
                            else f"none ({row['break_even_reason']})")
                         + (f", global approximation {glob:.3g}{_interval(row['global_break_even_p2q_interval'])}"
                            if glob is not None else "")
                         + (f", ratio {row['global_over_trajectory']:.3g}"
                            f"{_interval(row['global_over_trajectory_interval'])}"
                            if row["global_over_trajectory"] is not None else ""))
    for name, row in (result.get("targets") or {}).items():
        hqc = row["hqc_per_prediction"]
        lines.append(f"{name:>10}: {row['native_two_qubit_gates']} {row['native_two_qubit_gate']}, "
                     f"depth {row['depth']}, "
                     f"estimated success {row['estimated_success']:.3g}, success {row['success_probability']:.3g}, "
                     f"CE {row['cross_entropy']:.4f}, {row['raw_shots_per_prediction']:.3g} shots/prediction"
                     + (f", {hqc:.3g} HQC/prediction" if hqc is not None else ""))
    for run_ in result.get("device_runs") or []:
        lines.append(f"noisy {run_['target']} run ({run_['windows']} windows x {run_['shots_per_setting']} "
                     f"shots/setting): "
                     f"kept {run_['success_probability']:.3g} (exact {run_['exact_success_probability']:.3g}), CE "
                     f"{run_['noisy']['cross_entropy']:.4f} vs exact {run_['exact']['cross_entropy']:.4f} "
                     f"(same kept shots: {run_['exact_with_same_kept_shots']['cross_entropy']:.4f})")
    ft = result.get("fault_tolerant") or {}
    for row in ft.get("methods", []):
        lines.append(f"fault-tolerant ({row['method']}): {row['logical_qubits']} logical qubits, {row['magic_states']} "
                     f"T states/shot, d={row['code_distance']}, {row['physical_qubits']} physical qubits, "
                     f"{row['seconds_per_prediction']:.3g} s/prediction")
    return lines


def run(config: CircuitConfig) -> int:
    windows = _validate(config)
    model, info = load_trained_quixer(config.run_dir)
    weights, sampling = None, None
    if windows is None:
        windows, weights, sampling = sample_test_windows(config.data_dir, config.windows_per_transcript, config.seed)
    tokens = load_test_windows(config.data_dir, windows)
    T = model.context_length
    if tokens.shape[1] != T + 1:
        raise UserError(f"--data_dir {config.data_dir}: test windows hold {tokens.shape[1]} tokens but the model "
                        f"reads {T} context tokens + 1 target; pass the data the run was trained on")
    if int(tokens.max()) >= model.vocab_size:
        raise UserError(f"--data_dir {config.data_dir}: token id {int(tokens.max())} is outside the model's "
                        f"vocabulary of {model.vocab_size}")
    counts = train_target_counts(config.data_dir)
    with stage_run(config.output_dir, STAGE, config_record(config), role="circuit",
                   overwrite=config.overwrite) as record:
        torch.manual_seed(config.seed)
        fields, passed = evaluate(model, tokens, counts, config, windows, weights, record.output_dir)
        sampled = {} if sampling is None else {"sampling": sampling, "window_weights": weights.tolist()}
        resources = CircuitResources(run=info, **fields, **sampled)
        resources.write(record.output_dir)
        result = resources.as_dict()
        print(format_report(result))
        record.finish(result, "completed" if passed else "failed")
    if not passed:
        print(f"{STAGE}: check failed: the circuit differs from the simulator by more than "
              f"{result['check']['tolerance']:g} (see {record.output_dir / RESOURCES_FILE})", file=sys.stderr)
        return 1
    return 0
