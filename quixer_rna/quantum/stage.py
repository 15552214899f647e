"""quixer_circuit.py: a trained Quixer run as a gate-level circuit - qubits, gates, depth, shots per
prediction, test metrics under finite shots and two-qubit noise, and (with --check) the circuit simulated
with PennyLane against the simulator the model was trained with.

OUT/resources.json (metrics.json holds the same object; args.json is the run record):
    run, model                    where the model came from; its sizes (qubits, ansatz_layers, degree, tokens,
                                  vocab_size)
    windows                       the test-set indices used (--windows)
    qubits                        data, index_register (m), index_registers (d), index (d m), degree, ancillas,
                                  total (fresh index registers), ancillas_measure_reset, total_measure_reset
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
    half_signal_p2q               p at which the expectations keep half their signal (global approximation)
    check                         null without --check; circuit.check_windows' result, with
                                  noise_vs_default_mixed (small circuits); above CHECK_MAX_QUBITS fresh-register
                                  qubits, trajectories.check_measure_reset's (the measure-and-reset layout,
                                  "layout" says so) up to MEASURE_RESET_CHECK_MAX_QUBITS; beyond,
                                  {"status": "skipped", "reason"} (one warning line, exit 0: resources only).
                                  A failed check still writes everything and exits 1.
    select, degree_codes, select_constructions
                                  the SELECT construction counted and checked (--select; "reduced" falls back
                                  to "controlled" when T = 2^m), the degree register's codes for k = 0..d, and
                                  both constructions' two-qubit gates, depth and SELECT CNOTs (before/after)
    sampling, window_weights      with --windows_per_transcript: how the windows were drawn (stratified by
                                  transcript, seeded) and each window's weight; every metric is then the
                                  weighted mean, an estimate over all test windows (null / absent otherwise)
    trajectories                  with --trajectories S: stratified Pauli-error trajectories on the
                                  measure-and-reset layout (quantum.noise_study): curve, break-even rate with a
                                  bootstrap interval, the global approximation's beside it and their ratio
    qasm                          the OpenQASM 3 files of the first --qasm windows (folder qasm/, X/Y/Z settings)
    targets                       per --targets device: native two-qubit gates, depth, estimated success,
                                  shots, break-even native error rates, HQC (quantum.hardware, quantum.targets)
    device_runs                   with --device_shots: noisy end-to-end runs in qiskit-aer (quantum.device_run)
    fault_tolerant                logical qubits, T count, physical qubits and run time (quantum.fault_tolerant)
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..cli import add_common_args, make_parser, nonnegative_int, open_fraction, positive_float, positive_int, rate
from ..errors import UserError
from ..metrics import unigram_log_probs
from ..runio import atomic_write_json
from ..stage import stage_run
from .circuit import CHECK_MAX_QUBITS, check_windows, make_device
from .device_run import NOISY_TARGETS
from .hardware import hardware_sections
from .io import load_test_windows, load_trained_quixer, sample_test_windows, train_target_counts
from .noise import MIXED_MAX_QUBITS, break_even_p2q, mixed_state_comparison, noise_table
from .params import QuixerStates, quixer_states, qubit_counts, window_circuit
from .resources import circuit_resources
from .select import SELECTS, effective_select
from .shots import head_function, raw_shots, score_metrics, shots_table
from .targets import TARGETS
from .trajectories import check_measure_reset

LOG = logging.getLogger("quixer_rna.quantum")
STAGE = "quixer_circuit"
RESOURCES_FILE = "resources.json"
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


def build_parser(description: str | None = None, script: str | None = None) -> argparse.ArgumentParser:
    parser = make_parser(description or __doc__, script)
    group = parser.add_argument_group("inputs and output")
    group.add_argument("--run_dir", required=True, help="output folder of train_quixer_hybrid.py (its checkpoints)")
    group.add_argument("--data_dir", required=True, help="token folder the run was trained on")
    group.add_argument("--output_dir", required=True, help="where resources.json, args.json and metrics.json go")
    group.add_argument("--windows", default=None,
                       help="test windows to use: indices and ranges, e.g. 0:8 or 0,3,5:9 (default 0:8)")
    group.add_argument("--windows_per_transcript", type=positive_int, default=None,
                       help="instead of --windows: this many windows drawn from every test transcript (seeded by "
                            "--seed); metrics are weighted to estimate the mean over all test windows")
    group = parser.add_argument_group("circuit")
    group.add_argument("--device", default="default.qubit", help="PennyLane state-vector device for --check")
    group.add_argument("--select", choices=SELECTS, default="reduced",
                       help="SELECT construction: reduced (index bits only; needs T < 2^m) or controlled (also the "
                            "degree bits)")
    group.add_argument("--check", action="store_true",
                       help=f"simulate the circuit of every selected window with PennyLane and compare with the "
                            f"simulator (up to {CHECK_MAX_QUBITS} qubits; larger circuits get resources only); "
                            f"up to {MIXED_MAX_QUBITS} qubits also default.mixed against the noise approximation")
    group.add_argument("--shots", type=positive_int, nargs="+", default=[10, 100, 1000, 10000],
                       help="kept shots per measurement setting (X, Y, Z) to sample test metrics with")
    group.add_argument("--noise_2q", type=rate, nargs="+", default=[1e-4, 1e-3, 1e-2],
                       help="two-qubit gate error rates for the noisy test metrics (global depolarising approximation)")
    group.add_argument("--eps", type=positive_float, default=0.01,
                       help="target precision of each expectation for the shot budget")
    group = parser.add_argument_group("hardware")
    group.add_argument("--trajectories", type=nonnegative_int, default=0,
                       help="Pauli-error trajectories per window and number of errors (0: none)")
    group.add_argument("--max_errors", type=positive_int, default=8,
                       help="largest number of errors per trajectory simulated (the tail beyond uses it)")
    group.add_argument("--bootstrap", type=nonnegative_int, default=200,
                       help="bootstrap replicates for the break-even intervals")
    group.add_argument("--qasm", type=nonnegative_int, default=1,
                       help="write the OpenQASM 3 device circuits of the first this many windows")
    group.add_argument("--targets", nargs="*", choices=TARGETS, default=list(TARGETS),
                       help="devices to compile for and cost (none: give the flag no value)")
    group.add_argument("--device_shots", type=nonnegative_int, default=0,
                       help="raw shots per measurement setting of the noisy end-to-end qiskit-aer run (0: none)")
    group.add_argument("--device_windows", type=positive_int, default=4,
                       help="windows of the noisy end-to-end run (the first selected ones)")
    group.add_argument("--device_targets", nargs="+", choices=NOISY_TARGETS, default=["heron"],
                       help="noise models of the end-to-end run")
    group.add_argument("--ft_precision", type=open_fraction, default=1e-3,
                       help="rotation-synthesis precision of the fault-tolerant estimate")
    add_common_args(parser)
    return parser


def _validate(args: argparse.Namespace) -> list[int] | None:
    """The --windows selection (None with --windows_per_transcript, which is drawn once the data is open)."""
    if args.windows is not None and args.windows_per_transcript is not None:
        raise UserError("--windows and --windows_per_transcript: give one of them")
    make_device(args.device, 2)
    if args.windows_per_transcript is not None:
        return None
    return parse_windows("0:8" if args.windows is None else args.windows)


def _unigram_nll(counts: torch.Tensor, vocab: int, targets: torch.Tensor) -> np.ndarray:
    """Per-window loss on `targets` of the add-one-smoothed train target distribution over the model's vocabulary."""
    counts = torch.nn.functional.pad(counts[:vocab], (0, max(0, vocab - counts.shape[0])))
    return (-unigram_log_probs(counts)[targets]).double().numpy()


def evaluate(model: torch.nn.Module, tokens: torch.Tensor, counts: torch.Tensor, args: argparse.Namespace,
             windows: list[int], weights: np.ndarray | None = None,
             out_dir: Path | None = None) -> tuple[dict[str, Any], bool]:
    """Everything resources.json holds, for windows [B, T+1] (weighted means when `weights` are given);
    and whether the check (if any) passed."""
    T = model.context_length
    context, targets = tokens[:, :T], tokens[:, T]
    states = quixer_states(model, context)
    head = head_function(model)
    resources = circuit_resources(window_circuit(states, 0), args.select)
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
        "raw_shots_per_prediction": {"eps": args.eps, "at_mean_p": 3.0 / (args.eps**2 * mean_success),
                                     "mean_over_windows": raw_shots(1.0 / args.eps**2, success, weights)},
        "exact": exact,
        "shots": shots_table(head, states.readout_state, success, states.qubits, targets, args.shots, args.seed,
                             weights),
        "noise_model": "every two-qubit gate fails with probability p_2q; global depolarising approximation: "
                       "F = (1-p)^two_qubit_gates, success F p + (1-F) 2^-ancillas, expectations scaled by "
                       "F p / success",
        "noise": noise_table(head, states.features, success, targets, n2q, ancillas, args.noise_2q, weights),
        "unigram_cross_entropy": unigram_ce,
        "break_even_p2q": break_even,
        "break_even_reason": reason,
        "check": None,
    }
    result.update(hardware_sections(states, head, targets, weights, unigram_nll, args, out_dir or Path("."),
                                    windows, n2q, ancillas, sizes))
    passed = True
    if args.check:
        result["check"], passed = _check(states, args, windows)
    return result, passed


def _check(states: QuixerStates, args: argparse.Namespace, windows: list[int]) -> tuple[dict[str, Any], bool]:
    """Circuit against simulator on every selected window; on small circuits also the noise approximation
    against default.mixed on the first MIXED_CHECK_WINDOWS. Too large a circuit: a one-line note, no check."""
    counts = qubit_counts(states.qubits, states.tokens, states.degree)
    total, reset = counts["total"], counts["total_measure_reset"]
    started = time.perf_counter()
    if total > CHECK_MAX_QUBITS and reset <= MEASURE_RESET_CHECK_MAX_QUBITS:
        check = check_measure_reset(states, range(states.windows), effective_select(args.select, states.tokens))
        for window, row in zip(windows, check["per_window"]):
            row["window"] = window
        check["seconds"] = time.perf_counter() - started
        return check, check["status"] == "passed"
    if total > CHECK_MAX_QUBITS:
        reason = (f"the circuit has {total} qubits ({reset} measuring and resetting), more than the "
                  f"{CHECK_MAX_QUBITS} ({MEASURE_RESET_CHECK_MAX_QUBITS}) this check simulates; resources only")
        LOG.warning("check skipped: %s", reason)
        return {"status": "skipped", "reason": reason}, True
    check = check_windows(states, range(states.windows), args.device, select=args.select)
    for window, row in zip(windows, check["per_window"]):
        row["window"] = window
    if total <= MIXED_MAX_QUBITS:
        positions = list(range(min(MIXED_CHECK_WINDOWS, states.windows)))
        check["noise_vs_default_mixed"] = {
            "windows": [windows[pos] for pos in positions],
            "note": NOISE_TOLERANCE_NOTE,
            "rows": [{"window": windows[pos], **row} for pos in positions
                     for row in mixed_state_comparison(window_circuit(states, pos), float(states.success[pos]),
                                                       states.features[pos], args.noise_2q, args.select)],
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


def run(args: argparse.Namespace) -> int:
    windows = _validate(args)
    model, info = load_trained_quixer(args.run_dir)
    weights, sampling = None, None
    if windows is None:
        windows, weights, sampling = sample_test_windows(args.data_dir, args.windows_per_transcript, args.seed)
    tokens = load_test_windows(args.data_dir, windows)
    T = model.context_length
    if tokens.shape[1] != T + 1:
        raise UserError(f"--data_dir {args.data_dir}: test windows hold {tokens.shape[1]} tokens but the model "
                        f"reads {T} context tokens + 1 target; pass the data the run was trained on")
    if int(tokens.max()) >= model.vocab_size:
        raise UserError(f"--data_dir {args.data_dir}: token id {int(tokens.max())} is outside the model's "
                        f"vocabulary of {model.vocab_size}")
    counts = train_target_counts(args.data_dir)
    with stage_run(args.output_dir, STAGE, vars(args), role="circuit", overwrite=args.overwrite) as record:
        torch.manual_seed(args.seed)
        result, passed = evaluate(model, tokens, counts, args, windows, weights, record.output_dir)
        result = {"run": info, **result}
        if sampling is not None:
            result.update({"sampling": sampling, "window_weights": weights.tolist()})
        atomic_write_json(record.output_dir / RESOURCES_FILE, result)
        print(format_report(result))
        record.finish(result, "completed" if passed else "failed")
    if not passed:
        print(f"{STAGE}: check failed: the circuit differs from the simulator by more than "
              f"{result['check']['tolerance']:g} (see {record.output_dir / RESOURCES_FILE})", file=sys.stderr)
        return 1
    return 0
