"""Test metrics against the two-qubit error rate from stratified Pauli trajectories, the break-even rate
with a bootstrap interval, and the global depolarising approximation beside it on the same windows.

`simulate_windows` runs quantum.trajectories on every selected window (measure-and-reset layout, seeded);
`trajectory_report` turns the result into resources.json's "trajectories" object:
    curve          per error rate: success probability and metrics under trajectories and under the
                   global approximation, and the tail mass beyond the largest stratum
    criteria       two break-even rates, each for trajectories and for the global approximation with a 95%
                   percentile bootstrap interval (an end of None: beyond the rates the simulated errors cover), and
                   their ratio global / trajectories (paired replicates):
                     unigram      the (weighted) cross-entropy reaches the unigram's (level): the gain is gone.
                                  Noise shrinks the expectations, which can first lower the cross-entropy of
                                  an overconfident head, and a head alone can beat the unigram: then there
                                  is no crossing, or a late one
                     half_signal  the expectations keep half their signal: signal_scale, the least-squares
                                  slope of the noisy expectations on the exact ones, falls to 0.5 (level of
                                  1 - scale); independent of the head, and what the global approximation's
                                  expectation_scale measures
                   (the "unigram" criterion's fields are repeated at the top level)
                   A replicate resamples the windows (with replacement) and, inside each window and
                   stratum, its trajectories.
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import torch

from ..progress import Progress
from .gatelist import GateListBuilder
from .noise import bisect_break_even, depolarized
from .params import QuixerStates, window_circuit
from .shots import HeadFn, score_metrics
from .trajectories import LightningRunner, TrajectoryStats, error_grid, simulate_strata

BREAK_EVEN_STEPS = 40
MAX_TAIL = 0.05     # trajectory break-even rates are searched where runs with > max_errors errors are <= 5%


def simulate_windows(states: QuixerStates, per_stratum: int, max_errors: int, seed: int,
                     select: str = "reduced") -> tuple[TrajectoryStats, dict]:
    """Stratified trajectories (k = 1..max_errors errors, per_stratum each) for every window of `states`."""
    builder = GateListBuilder()
    rng = np.random.default_rng(seed)
    errors = error_grid(max_errors)
    weights, weighted, exact_w, exact_f, gates = [], [], [], [], None
    started = time.perf_counter()
    with Progress(states.windows, "trajectories", unit="window") as progress:
        for pos in range(states.windows):
            gate_list = builder.build(window_circuit(states, pos), "measure_reset", readout=True, select=select)
            runner = LightningRunner(gate_list)
            gates = len(runner.two_qubit)
            w, wf, ew, ef = simulate_strata(runner, errors, per_stratum, rng)
            weights.append(w)
            weighted.append(wf)
            exact_w.append(ew)
            exact_f.append(ef)
            progress.update()
    stats = TrajectoryStats(gates, errors, np.stack(weights), np.stack(weighted), np.asarray(exact_w),
                            np.stack(exact_f))
    seconds = time.perf_counter() - started
    info = {
        "layout": "measure_reset",
        "two_qubit_gates": gates,
        "max_errors": max_errors,
        "error_counts": errors.tolist(),
        "per_stratum": per_stratum,
        "trajectories": int(states.windows * len(errors) * per_stratum),
        "seconds": seconds,
        # the simulated error-free run against the simulator the model was trained with
        "max_exact_success_error": float(np.abs(stats.exact_success - states.success).max()),
        "max_exact_expectation_error": float(np.abs(stats.exact_features - states.features).max()),
    }
    return stats, info


def _metrics_at(stats: TrajectoryStats, head: HeadFn, targets: torch.Tensor, weights: np.ndarray | None,
                p: float, windows: np.ndarray | None = None, samples: np.ndarray | None = None) -> tuple[float, dict]:
    success, features = stats.noisy(p, windows, samples)
    w = weights if windows is None or weights is None else weights[windows]
    t = targets if windows is None else targets[torch.as_tensor(windows)]
    return float(np.average(success, weights=w)), score_metrics(head(features), t, w)


def signal_scale(noisy: np.ndarray, exact: np.ndarray, weights: np.ndarray | None) -> float:
    """Least-squares slope of the noisy expectations on the exact ones, over windows (weighted): the share
    of the signal that survives (1 without noise, 0 when nothing is left)."""
    w = np.ones(len(exact)) if weights is None else weights
    return float((w * (noisy * exact).sum(-1)).sum() / (w * (exact * exact).sum(-1)).sum())


def global_half_signal_p2q(features: np.ndarray, success: np.ndarray, weights: np.ndarray | None,
                           two_qubit_gates: int, ancillas: int) -> float | None:
    """The rate at which the global approximation keeps half the expectations' signal (signal_scale 0.5)."""
    def loss(p: float) -> float:
        noisy = depolarized(features, success, p, two_qubit_gates, ancillas)[1]
        return 1.0 - signal_scale(noisy, features, weights)

    return bisect_break_even(loss, 0.5, steps=BREAK_EVEN_STEPS)[0]


def trajectory_report(stats: TrajectoryStats, head: HeadFn, targets: torch.Tensor, weights: np.ndarray | None,
                      unigram_nll: np.ndarray, global_gates: int, global_ancillas: int, rates: Sequence[float],
                      bootstrap: int, seed: int) -> dict:
    """Curve, break-even rates with intervals and their ratio, for two criteria (module docstring);
    unigram_nll [W] is the unigram's per-window loss (its weighted mean is the reference cross-entropy)."""
    exact_s, exact_f = stats.exact_success, stats.exact_features
    every = np.arange(stats.weights.shape[0])

    def wts(windows: np.ndarray) -> np.ndarray | None:
        return None if weights is None else weights[windows]

    def ce_of(features: np.ndarray, windows: np.ndarray) -> float:
        return score_metrics(head(features), targets[torch.as_tensor(windows)], wts(windows))["cross_entropy"]

    def global_features(p: float, windows: np.ndarray) -> np.ndarray:
        return depolarized(exact_f[windows], exact_s[windows], p, global_gates, global_ancillas)[1]

    # each criterion: (level, trajectory measure, global measure); a measure rises with p
    criteria_fns = {
        "unigram": (None,
                    lambda p, win, smp: _metrics_at(stats, head, targets, weights, p, win, smp)[1]["cross_entropy"],
                    lambda p, win: ce_of(global_features(p, win), win)),
        "half_signal": (0.5,
                        lambda p, win, smp: 1.0 - signal_scale(stats.noisy(p, win, smp)[1], exact_f[win], wts(win)),
                        lambda p, win: 1.0 - signal_scale(global_features(p, win), exact_f[win], wts(win))),
    }

    curve = []
    for p in rates:
        success, metrics = _metrics_at(stats, head, targets, weights, p)
        g_success, g_features, fidelity = depolarized(exact_f, exact_s, p, global_gates, global_ancillas)
        curve.append({"p_2q": float(p), "tail_mass": stats.strata(p)[1], "success_probability": success,
                      **metrics, "signal_scale": signal_scale(stats.noisy(p)[1], exact_f, weights),
                      "global_success_probability": float(np.average(g_success, weights=weights)),
                      "global_cross_entropy": ce_of(g_features, every),
                      "global_signal_scale": signal_scale(g_features, exact_f, weights), "global_fidelity": fidelity})
    high = stats.max_rate(MAX_TAIL)

    def break_evens(windows: np.ndarray, samples: np.ndarray | None) -> dict[str, tuple]:
        out = {}
        for name, (level, traj_fn, glob_fn) in criteria_fns.items():
            if level is None:
                level = float(np.average(unigram_nll[windows], weights=wts(windows)))
            traj, reason = bisect_break_even(lambda p: traj_fn(p, windows, samples), level, steps=BREAK_EVEN_STEPS,
                                             high=high)
            glob, _ = bisect_break_even(lambda p: glob_fn(p, windows), level, steps=BREAK_EVEN_STEPS)
            out[name] = (traj, glob, reason, level)
        return out

    point = break_evens(every, None)   # trajectory rates only up to stats.max_rate(): the tail stays <= 5%
    rng = np.random.default_rng(seed)
    replicates = []
    n_windows, k, s = stats.weights.shape
    # each replicate bisects both criteria over every window: minutes on hundreds of windows
    with Progress(bootstrap, "break-even bootstrap", unit="replicate") as progress:
        for _ in range(bootstrap):
            windows = rng.integers(0, n_windows, size=n_windows)
            replicates.append(break_evens(windows, rng.integers(0, s, size=(n_windows, k, s))))
            progress.update()

    def interval(values: list) -> list[float | None] | None:
        """2.5th and 97.5th percentiles; a replicate with no crossing counts as beyond every rate (+inf), so
        an end that falls there is None: "above the largest rate the simulated errors cover"."""
        if not bootstrap:
            return None
        ends = np.percentile([np.inf if v is None else v for v in values], [2.5, 97.5], method="inverted_cdf")
        return [None if not np.isfinite(e) else float(e) for e in ends]

    criteria = {}
    for name, (traj, glob, reason, level) in point.items():
        criteria[name] = {
            "level": level,
            "break_even_p2q": traj,
            "break_even_reason": reason,
            "break_even_p2q_interval": interval([r[name][0] for r in replicates]),
            "replicates_without_break_even": sum(r[name][0] is None for r in replicates),
            "break_even_tail_mass": None if traj is None else stats.strata(traj)[1],
            "global_break_even_p2q": glob,
            "global_break_even_p2q_interval": interval([r[name][1] for r in replicates]),
            "global_over_trajectory": None if traj is None or glob is None else glob / traj,
            "global_over_trajectory_interval": interval([None if r[name][0] is None or r[name][1] is None
                                                         else r[name][1] / r[name][0] for r in replicates]),
        }
    return {"unigram_cross_entropy": point["unigram"][3], "curve": curve, "bootstrap": bootstrap,
            "max_rate": high,
            "criteria": criteria, **criteria["unigram"]}
