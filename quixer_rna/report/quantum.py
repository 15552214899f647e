"""The report's quantum-cost section, self-contained so it can follow the circuit stage (quixer_circuit.py):
its record, read from resources.json through its format (quixer_rna.formats.resources: a missing or mistyped
field is one line naming the file and the field), and its markdown."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..formats.resources import CircuitResources
from ..quantum.summary import cost_table_rows, select_rows
from .fmt import number, table
from .strict import Strict

if TYPE_CHECKING:
    from .collect import StageRecord

SHOTS_SHOWN = 1000  # the test CE column: at this many shots when measured, else at the most measured


@dataclass(frozen=True)
class QuantumCost:
    folder: str
    run: str  # the trained Quixer run the circuit was made from
    qubits: int
    two_qubit_gates: int
    depth: int
    success_probability: float
    raw_shots_per_prediction: float
    eps: float
    shots: int | None  # the shot count of `cross_entropy_at_shots`
    cross_entropy_at_shots: float | None
    break_even_p2q: float | None
    device_rows: tuple[str, ...] = ()  # per compiled target (quixer_rna.quantum.summary), markdown table lines
    select_rows: tuple[str, ...] = ()  # the SELECT constructions before and after the reduction


def read_cost(stage: "StageRecord", runs_dir: Path) -> QuantumCost:
    """resources.json of one circuit stage, every field checked."""
    res = CircuitResources.read(stage.folder)
    by_shots = {row["shots"]: row["cross_entropy"] for row in res.shots}
    shots = SHOTS_SHOWN if SHOTS_SHOWN in by_shots else max(by_shots, default=None)
    per_prediction = res.raw_shots_per_prediction
    return QuantumCost(
        folder=stage.folder.relative_to(runs_dir).as_posix(),
        run=Strict(stage.args, stage.path, "args.").text("run_dir"),
        qubits=res.qubits["total"], two_qubit_gates=res.two_qubit_gates, depth=res.depth,
        success_probability=res.success_probability["mean"],
        raw_shots_per_prediction=per_prediction["mean_over_windows"], eps=per_prediction["eps"],
        shots=shots, cross_entropy_at_shots=None if shots is None else by_shots[shots],
        break_even_p2q=res.break_even_p2q,
        device_rows=tuple(cost_table_rows(res)), select_rows=tuple(select_rows(res)),
    )


def read_costs(stages: list["StageRecord"], runs_dir: Path) -> tuple[QuantumCost, ...]:
    """Every completed circuit stage's cost."""
    return tuple(read_cost(s, runs_dir) for s in stages if s.role == "circuit" and s.status == "completed")


def markdown(costs: tuple[QuantumCost, ...]) -> list[str]:
    """The section's lines (none without a circuit stage)."""
    if not costs:
        return []
    lines = [[f"`{c.folder}` ({Path(c.run).name})", f"{c.qubits:,}", f"{c.two_qubit_gates:,}", f"{c.depth:,}",
              f"{c.success_probability:.3f}", f"{c.raw_shots_per_prediction:.3g}",
              "-" if c.cross_entropy_at_shots is None else f"{c.cross_entropy_at_shots:.4f} ({c.shots:,} shots)",
              "none" if c.break_even_p2q is None else f"{c.break_even_p2q:.3g}"] for c in costs]
    eps = ", ".join(sorted({number(c.eps, 3) for c in costs}))
    return ["## Quantum cost", "",
            "The trained Quixer as a circuit a device could run (quixer_circuit.py: PennyLane, checked against the "
            "simulator). Raw shots per prediction: three measurement settings, each 1/eps^2 kept shots at eps = "
            f"{eps}, divided by the post-selection success probability (mean over windows). Break-even: the "
            "two-qubit error rate at which the gain over the unigram is gone (global depolarizing approximation; "
            "none: no rate reaches the unigram).", "",
            table(("circuit (trained run)", "qubits", "two-qubit gates", "depth", "mean success probability",
                   "raw shots per prediction", "CE at shots (its windows)", "break-even p (2q)"), lines), "",
            *_devices(costs)]


def _devices(costs: tuple[QuantumCost, ...]) -> list[str]:
    """Per circuit: its cost on each compiled device and the SELECT constructions (when the stage measured them)."""
    out: list[str] = []
    for cost in costs:
        if cost.device_rows:
            out += [f"On devices (`{cost.folder}`): native two-qubit gates and depth after routing, estimated "
                    "fidelity (product of calibrated gate fidelities), shots per prediction at it, the native error "
                    "rate at which the expectations keep half their signal, and Quantinuum's HQC cost.", "",
                    *cost.device_rows, ""]
        if cost.select_rows:
            out += [*cost.select_rows, ""]
    return out
