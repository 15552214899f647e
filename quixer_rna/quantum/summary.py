"""Markdown rows of the quantum cost table for the report, from a circuit stage's resources.json
(quixer_rna.formats.resources.CircuitResources).

`cost_table_rows`: one row per compiled target (quantum.hardware's "targets"): native two-qubit gates, depth
after routing, estimated success (product of calibrated fidelities), shots per prediction at that fidelity,
break-even rate of the native two-qubit gate (trajectories / global approximation; the rate at which the
expectations keep half their signal), Quantinuum's HQC per prediction; a last row for the logical circuit
(CNOT + rotations) with the break-even rates themselves.
`select_rows`: two-qubit gates and depth of the SELECT constructions (before / after the reduction).
Both return [] when the stage measured no such section.
"""

from __future__ import annotations

import math

from typing import Any

from ..formats.resources import CircuitResources, TargetCost

COST_HEADER = ["| target | native 2q gates | depth | estimated fidelity | shots / prediction | "
               "2q error at half signal (trajectories / global) | HQC / prediction |",
               "|---|---|---|---|---|---|---|"]


def _number(value: Any, spec: str = ".3g") -> str:
    return "-" if value is None else format(value, spec)


def _fidelity(row: TargetCost) -> str:
    """The estimated success; below 1e-3 from its log10 (a product of many fidelities underflows a float)."""
    if row["estimated_success"] >= 1e-3:
        return f"{row['estimated_success']:.3g}"
    exponent = math.floor(row["log10_estimated_success"])
    return f"{10 ** (row['log10_estimated_success'] - exponent):.1f}e{exponent}"


def cost_table_rows(resources: CircuitResources) -> list[str]:
    if not resources.targets:
        return []
    rows = list(COST_HEADER)
    for row in resources.targets.values():
        rows.append(f"| {row['device']} | {row['native_two_qubit_gates']:,} {row['native_two_qubit_gate'].upper()} | "
                    f"{row['depth']:,} | {_fidelity(row)} | {_number(row['raw_shots_per_prediction'])} | "
                    f"{_number(row['break_even_native_p2q'])} / {_number(row['global_break_even_native_p2q'])} | "
                    f"{_number(row['hqc_per_prediction'])} |")
    trajectories = resources.trajectories
    traj_rate = trajectories["criteria"]["half_signal"]["break_even_p2q"] if trajectories else None
    rows.append(f"| logical circuit (CNOT + rotations, {resources.select} SELECT) | "
                f"{resources.two_qubit_gates:,} CNOT | {resources.depth:,} | - | "
                f"{_number(resources.raw_shots_per_prediction['mean_over_windows'])} (noiseless) | "
                f"{_number(traj_rate)} / {_number(resources.half_signal_p2q)} | - |")
    return rows


def select_rows(resources: CircuitResources) -> list[str]:
    if not resources.select_constructions:
        return []
    rows = ["| SELECT construction | two-qubit gates | of them in SELECT | depth |", "|---|---|---|---|"]
    for name, row in resources.select_constructions.items():
        rows.append(f"| {name} | {row['two_qubit_gates']:,} | {row['select_two_qubit_gates']:,} | {row['depth']:,} |")
    return rows
