"""A trained Quixer model as a gate-level circuit: build it with PennyLane, check it against the
simulator, count what it costs (qubits, gates, depth, shots), measure how finite shots and two-qubit
noise change its test metrics, and say what it would take on hardware.

Modules: `params` (what a window's circuit needs, taken from a model; register sizes), `select` (the block
encoding of M: the reduced and the controlled SELECT), `circuit` (the PennyLane circuit and its check
against the simulator), `resources` (gate counts and depth after decomposition), `gatelist` (a window's
decomposed gates with their angles, fast), `shots` (finite-shot estimates of the 3n expectations, test
metrics), `noise` (global depolarising approximation, its check against default.mixed, break-even error
rate), `trajectories` and `noise_study` (Pauli-error trajectories, break-even rates with intervals),
`export` (Qiskit circuits, OpenQASM 3), `targets` (compiling for IBM Heron, Quantinuum, IonQ), `device_run`
(noisy end-to-end runs in qiskit-aer), `fault_tolerant` (logical and surface-code estimate), `hardware`
(the stage's hardware sections), `summary` (the report's cost table), `io` (the only module that reads
run folders and token files), `config` (the stage's settings, CircuitConfig, and the parser built from them) and
`stage` (the quixer_circuit.py stage; it writes resources.json through quixer_rna.formats.resources).
"""
