"""A trained Quixer model as a gate-level circuit: build it with PennyLane, check it against the
simulator, count what it costs (qubits, gates, depth, shots) and measure how finite shots and
two-qubit noise change its test metrics.

Modules: `params` (what a window's circuit needs, taken from a model; register sizes), `circuit`
(the PennyLane circuit and its check against the simulator), `resources` (gate counts and depth after
decomposition), `shots` (finite-shot estimates of the 3n expectations, test metrics), `noise` (global
depolarising approximation, its check against default.mixed, break-even error rate), `io` (the only
module that reads run folders and token files) and `stage` (the quixer_circuit.py command line).
"""
