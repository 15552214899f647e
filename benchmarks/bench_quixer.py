#!/usr/bin/env python3
"""Forward+backward speed and peak memory of the Quixer model (simulator + head) per training step.

Each (vocab size, batch size) configuration runs in its own subprocess, so the peak memory it reports belongs
to that configuration alone: resident memory (ru_maxrss) on CPU, torch.cuda.max_memory_allocated on CUDA.
Prints a table of wall ms per window, windows per second, CPU ms per window (process CPU time of all
threads: on a shared, loaded machine the one-thread CPU time is the steadier number), peak memory, the
simulator's own estimate (quixer_sim.simulation_total_bytes at the chunk it chose) and, on CUDA, whether
its gate loops ran as CUDA graphs. Defaults: the paper's Penn Treebank setting (n=6, L=4, d=3, T=32,
E=512, V=9924) and this project's V=512, at batch 32 and 1024 on CPU (one thread) and 32, 256, 1024 and
4096 on CUDA. On CUDA every step ends with torch.cuda.synchronize, the clock starts after a synchronised
warm-up (which includes the one-off CUDA graph capture), and a configuration that fails (out of memory)
is reported as such while the others still run.

    python benchmarks/bench_quixer.py --device cpu --vocab_sizes 512 --batch_sizes 32 256 --steps 3
    python benchmarks/bench_quixer.py --device cuda                      # 32 .. 4096 windows
    python benchmarks/bench_quixer.py --device cuda --qubits 10 --vocab_sizes 512
    python benchmarks/bench_quixer.py --device cuda --cuda_graphs off    # the eager launch-bound baseline
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from quixer_rna.cli import add_common_args, make_parser, resolve_device, run_cli

CPU_BATCHES = [32, 1024]
CUDA_BATCHES = [32, 256, 1024, 4096]


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("--vocab_sizes", type=int, nargs="+", default=[9924, 512], help="vocabulary sizes V to time")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=None,
                        help=f"windows per step to time (default {CPU_BATCHES} on CPU, {CUDA_BATCHES} on CUDA)")
    parser.add_argument("--context_length", type=int, default=32, help="tokens per window T")
    parser.add_argument("--embedding_dim", type=int, default=512, help="embedding size E")
    parser.add_argument("--qubits", type=int, default=6, help="qubits n")
    parser.add_argument("--ansatz_layers", type=int, default=4, help="circuit-14 layers L per token")
    parser.add_argument("--qsvt_degree", type=int, default=3, help="polynomial degree d")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="model and simulator dtype")
    parser.add_argument("--cuda_graphs", choices=("on", "off"), default="on",
                        help="capture the simulator's gate loops in CUDA graphs on CUDA "
                             "(quixer_sim.graphs.USE_CUDA_GRAPHS)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per configuration")
    parser.add_argument("--warmup_steps", type=int, default=None,
                        help="untimed steps first (default 1 on CPU; on CUDA quixer_sim.GRAPH_WARMUP_CALLS + 1, so "
                             "that even a loop called once per step is captured before the clock starts)")
    parser.add_argument("--compile", action="store_true", help="wrap the model in torch.compile")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows (one dict each) to this file")
    parser.add_argument("--single", type=int, nargs=2, metavar=("V", "B"), help=argparse.SUPPRESS)
    add_common_args(parser, device=True, overwrite=False)
    return parser


def _time_one(args: argparse.Namespace, vocab: int, batch: int) -> dict:
    """Time `args.steps` forward+backward steps of one configuration in this process."""
    import torch

    from quixer_rna import quixer_sim
    from quixer_rna.models import build_model

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    dtype = getattr(torch, args.dtype)
    quixer_sim.graphs.USE_CUDA_GRAPHS = args.cuda_graphs == "on"
    model = build_model("quixer", vocab, args.context_length, {
        "embedding_dim": args.embedding_dim, "qubits": args.qubits, "ansatz_layers": args.ansatz_layers,
        "qsvt_degree": args.qsvt_degree}).to(device=device, dtype=dtype)
    step_model = torch.compile(model) if args.compile else model
    tokens = torch.randint(0, vocab, (batch, args.context_length), device=device)
    targets = torch.randint(0, vocab, (batch,), device=device)
    cuda = device.type == "cuda"

    def step() -> None:
        model.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(step_model(tokens), targets)
        loss.backward()
        if cuda:
            torch.cuda.synchronize(device)

    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    warmup = quixer_sim.GRAPH_WARMUP_CALLS + 1 if cuda else 1
    for _ in range(args.warmup_steps if args.warmup_steps is not None else warmup):
        step()
    if cuda:
        torch.cuda.synchronize(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(args.steps):
        step()
    seconds = (time.perf_counter() - start) / args.steps
    cpu_seconds = (time.process_time() - cpu_start) / args.steps
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if cuda:
        peak_mib = torch.cuda.max_memory_allocated(device) / 2**20
    chunk = quixer_sim.chunk_windows(batch, args.qubits, args.context_length, args.qsvt_degree, dtype, device,
                                     num_gates=len(model.gates))
    estimate = quixer_sim.simulation_total_bytes(batch, args.qubits, args.context_length, args.qsvt_degree, dtype,
                                                 num_gates=len(model.gates), chunk=chunk)
    loops = {state for info in quixer_sim.simulator_cache_info() for state in (info["forward"], info["adjoint"])}
    return {"vocab": vocab, "batch": batch, "qubits": args.qubits, "dtype": args.dtype,
            "ms_per_step": 1000 * seconds, "ms_per_window": 1000 * seconds / batch,
            "cpu_ms_per_window": 1000 * cpu_seconds / batch, "windows_per_s": batch / seconds,
            "peak_mib": peak_mib, "sim_estimate_mib": estimate / 2**20, "chunk": chunk,
            "graph_loops": ",".join(sorted(loops)) if cuda else "-", "device": str(device)}


def run_benchmark(args: argparse.Namespace) -> int:
    if args.single:
        print(json.dumps(_time_one(args, *args.single)))
        return 0
    device = resolve_device(args.device)
    batches = args.batch_sizes or (CUDA_BATCHES if device.type == "cuda" else CPU_BATCHES)
    passthrough = [f"--context_length={args.context_length}", f"--embedding_dim={args.embedding_dim}",
                   f"--qubits={args.qubits}", f"--ansatz_layers={args.ansatz_layers}",
                   f"--qsvt_degree={args.qsvt_degree}", f"--threads={args.threads}", f"--steps={args.steps}",
                   f"--dtype={args.dtype}", f"--cuda_graphs={args.cuda_graphs}",
                   f"--device={args.device}", f"--seed={args.seed}"] + (["--compile"] if args.compile else [])
    if args.warmup_steps is not None:
        passthrough.append(f"--warmup_steps={args.warmup_steps}")
    print(f"Quixer fwd+bwd: n={args.qubits} L={args.ansatz_layers} d={args.qsvt_degree} T={args.context_length} "
          f"E={args.embedding_dim} {args.dtype} threads={args.threads} compile={args.compile} "
          f"cuda_graphs={args.cuda_graphs} load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    mem = "GPU MiB" if device.type == "cuda" else "RSS MiB"
    print(f"{'V':>6} {'batch':>6} {'ms/step':>9} {'ms/window':>10} {'windows/s':>10} {'cpu ms/win':>10} "
          f"{'peak ' + mem:>14} {'sim est MiB':>11} {'chunk':>6}  graphs  device")
    rows, failed = [], 0
    for vocab in args.vocab_sizes:
        for batch in batches:
            result = subprocess.run([sys.executable, __file__, "--single", str(vocab), str(batch), *passthrough],
                                    capture_output=True, text=True)
            lines = result.stdout.strip().splitlines()
            if result.returncode != 0 or not lines:
                failed += 1
                reason = (result.stderr.strip().splitlines() or ["no output"])[-1]
                rows.append({"vocab": vocab, "batch": batch, "error": reason})
                print(f"{vocab:>6} {batch:>6}  failed: {reason}", flush=True)
                continue
            row = json.loads(lines[-1])
            rows.append(row)
            print(f"{vocab:>6} {batch:>6} {row['ms_per_step']:>9.2f} {row['ms_per_window']:>10.4f} "
                  f"{row['windows_per_s']:>10.1f} {row['cpu_ms_per_window']:>10.4f} {row['peak_mib']:>14.0f} "
                  f"{row['sim_estimate_mib']:>11.1f} {row['chunk']:>6}  {row['graph_loops']:<6}  {row['device']}",
                  flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), run_benchmark, argv)


if __name__ == "__main__":
    raise SystemExit(main())
