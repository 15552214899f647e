#!/usr/bin/env python3
"""A trained Quixer run (train_quixer_hybrid.py) as a gate-level quantum circuit, built with PennyLane:
the block encoding of each window's LCU M = sum_t b_t U_t (PREPARE / SELECT / PREPARE-dagger on an index
register), the polynomial sum_k c_k M^k |0> over a degree register, post-selection of every ancilla on
|0>, the readout layer and X, Y, Z measurements. Writes resources.json into --output_dir: qubits of the
fresh-register and the measure-and-reset variant, gate counts, two-qubit gates and depth after
decomposition to CNOT + rotations, the post-selection success probability over the selected test
windows, raw shots per prediction for precision --eps, test metrics under --shots and under two-qubit
noise --noise_2q, and the error rate at which the model's gain over the unigram is gone. --check
simulates the circuit of each selected window with PennyLane and compares it with the simulator the
model was trained with (small models only)."""

from __future__ import annotations

import argparse

from quixer_rna.cli import config_from_args, run_cli
from quixer_rna.quantum import stage
from quixer_rna.quantum.config import CircuitConfig, build_parser as circuit_parser


def build_parser() -> argparse.ArgumentParser:
    return circuit_parser(__doc__, __file__)


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), lambda args: stage.run(config_from_args(CircuitConfig, args)), argv)


if __name__ == "__main__":
    raise SystemExit(main())
