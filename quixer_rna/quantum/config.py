"""The circuit stage's settings: CircuitConfig (every flag of quixer_circuit.py, with its help and type, in the
order and the --help groups of the command line) and the parser built from it."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field

from ..cli import (add_common_args, add_dataclass_args, make_parser, nonnegative_int, open_fraction, positive_float,
                   positive_int, rate)
from .circuit import CHECK_MAX_QUBITS
from .device_run import NOISY_TARGETS
from .noise import MIXED_MAX_QUBITS
from .select import SELECTS
from .targets import TARGETS

INPUTS, CIRCUIT, HARDWARE = "inputs and output", "circuit", "hardware"  # the --help groups (metadata "group")


@dataclass(frozen=True)
class CircuitConfig:
    """Everything quixer_circuit.py needs, built once from its flags (field metadata: each flag's help and type);
    the list flags hold tuples."""

    run_dir: str = field(metadata={
        "group": INPUTS, "required": True, "help": "output folder of train_quixer_hybrid.py (its checkpoints)"})
    data_dir: str = field(metadata={"group": INPUTS, "required": True, "help": "token folder the run was trained on"})
    output_dir: str = field(metadata={
        "group": INPUTS, "required": True, "help": "where resources.json, args.json and metrics.json go"})
    windows: str | None = field(default=None, metadata={
        "group": INPUTS, "help": "test windows to use: indices and ranges, e.g. 0:8 or 0,3,5:9 (default 0:8)"})
    windows_per_transcript: int | None = field(default=None, metadata={
        "group": INPUTS, "type": positive_int,
        "help": "instead of --windows: this many windows drawn from every test transcript (seeded by --seed); metrics "
                "are weighted to estimate the mean over all test windows"})

    device: str = field(default="default.qubit", metadata={
        "group": CIRCUIT, "help": "PennyLane state-vector device for --check"})
    select: str = field(default="reduced", metadata={
        "group": CIRCUIT, "choices": SELECTS,
        "help": "SELECT construction: reduced (index bits only; needs T < 2^m) or controlled (also the degree bits)"})
    check: bool = field(default=False, metadata={
        "group": CIRCUIT,
        "help": f"simulate the circuit of every selected window with PennyLane and compare with the simulator (up to "
                f"{CHECK_MAX_QUBITS} qubits; larger circuits get resources only); up to {MIXED_MAX_QUBITS} qubits also "
                f"default.mixed against the noise approximation"})
    shots: tuple[int, ...] = field(default=(10, 100, 1000, 10000), metadata={
        "group": CIRCUIT, "type": positive_int, "nargs": "+",
        "help": "kept shots per measurement setting (X, Y, Z) to sample test metrics with"})
    noise_2q: tuple[float, ...] = field(default=(1e-4, 1e-3, 1e-2), metadata={
        "group": CIRCUIT, "type": rate, "nargs": "+",
        "help": "two-qubit gate error rates for the noisy test metrics (global depolarising approximation)"})
    eps: float = field(default=0.01, metadata={
        "group": CIRCUIT, "type": positive_float, "help": "target precision of each expectation for the shot budget"})

    trajectories: int = field(default=0, metadata={
        "group": HARDWARE, "type": nonnegative_int,
        "help": "Pauli-error trajectories per window and number of errors (0: none)"})
    max_errors: int = field(default=8, metadata={
        "group": HARDWARE, "type": positive_int,
        "help": "largest number of errors per trajectory simulated (the tail beyond uses it)"})
    bootstrap: int = field(default=200, metadata={
        "group": HARDWARE, "type": nonnegative_int, "help": "bootstrap replicates for the break-even intervals"})
    qasm: int = field(default=1, metadata={
        "group": HARDWARE, "type": nonnegative_int,
        "help": "write the OpenQASM 3 device circuits of the first this many windows"})
    targets: tuple[str, ...] = field(default=TARGETS, metadata={
        "group": HARDWARE, "choices": TARGETS, "nargs": "*",
        "help": "devices to compile for and cost (none: give the flag no value)"})
    device_shots: int = field(default=0, metadata={
        "group": HARDWARE, "type": nonnegative_int,
        "help": "raw shots per measurement setting of the noisy end-to-end qiskit-aer run (0: none)"})
    device_windows: int = field(default=4, metadata={
        "group": HARDWARE, "type": positive_int,
        "help": "windows of the noisy end-to-end run (the first selected ones)"})
    device_targets: tuple[str, ...] = field(default=("heron",), metadata={
        "group": HARDWARE, "choices": NOISY_TARGETS, "nargs": "+", "help": "noise models of the end-to-end run"})
    ft_precision: float = field(default=1e-3, metadata={
        "group": HARDWARE, "type": open_fraction,
        "help": "rotation-synthesis precision of the fault-tolerant estimate"})

    seed: int = 0
    overwrite: bool = False

    def __post_init__(self) -> None:
        for name in ("shots", "noise_2q", "targets", "device_targets"):
            object.__setattr__(self, name, tuple(getattr(self, name)))


def build_parser(description: str, script: str | None = None) -> argparse.ArgumentParser:
    """quixer_circuit.py's parser: CircuitConfig's fields as flags in their --help groups, then the common ones
    (--seed, --log_level, --overwrite)."""
    parser = make_parser(description, script)
    groups = {item.name: item.metadata.get("group") for item in dataclasses.fields(CircuitConfig)}
    for title in (INPUTS, CIRCUIT, HARDWARE):
        add_dataclass_args(parser.add_argument_group(title), CircuitConfig,
                           skip=[name for name, group in groups.items() if group != title])
    add_common_args(parser)
    return parser
