#!/usr/bin/env python3
"""Forward+backward speed and peak memory of the Quixer model (simulator + head) per training step.

Each (vocab size, batch size) configuration runs in its own subprocess, so the peak resident memory it
reports (ru_maxrss) belongs to that configuration alone. Prints a table of wall ms per window, windows per
second, CPU ms per window (process CPU time of all threads: on a shared, loaded machine the one-thread
CPU time is the steadier number) and peak memory. Defaults: the paper's Penn Treebank setting (n=6, L=4, d=3, T=32, E=512,
V=9924) and this project's V=512, at batch 32 and 1024, on one CPU thread.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quixer_rna.cli import add_common_args, make_parser, resolve_device, run_cli  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("--vocab_sizes", type=int, nargs="+", default=[9924, 512], help="vocabulary sizes V to time")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[32, 1024], help="windows per step to time")
    parser.add_argument("--context_length", type=int, default=32, help="tokens per window T")
    parser.add_argument("--embedding_dim", type=int, default=512, help="embedding size E")
    parser.add_argument("--qubits", type=int, default=6, help="qubits n")
    parser.add_argument("--ansatz_layers", type=int, default=4, help="circuit-14 layers L per token")
    parser.add_argument("--qsvt_degree", type=int, default=3, help="polynomial degree d")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per configuration (after one warm-up)")
    parser.add_argument("--compile", action="store_true", help="wrap the model in torch.compile")
    parser.add_argument("--single", type=int, nargs=2, metavar=("V", "B"), help=argparse.SUPPRESS)
    add_common_args(parser, device=True, overwrite=False)
    return parser


def _time_one(args: argparse.Namespace, vocab: int, batch: int) -> dict:
    """Time `args.steps` forward+backward steps of one configuration in this process."""
    import torch

    from quixer_rna.models import build_model

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model = build_model("quixer", vocab, args.context_length, {
        "embedding_dim": args.embedding_dim, "qubits": args.qubits, "ansatz_layers": args.ansatz_layers,
        "qsvt_degree": args.qsvt_degree}).to(device)
    step_model = torch.compile(model) if args.compile else model
    tokens = torch.randint(0, vocab, (batch, args.context_length), device=device)
    targets = torch.randint(0, vocab, (batch,), device=device)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(step_model(tokens), targets)
        loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    step()
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(args.steps):
        step()
    seconds = (time.perf_counter() - start) / args.steps
    cpu_seconds = (time.process_time() - cpu_start) / args.steps
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        peak_mib = torch.cuda.max_memory_allocated(device) / 2**20
    return {"vocab": vocab, "batch": batch, "ms_per_window": 1000 * seconds / batch,
            "cpu_ms_per_window": 1000 * cpu_seconds / batch,
            "windows_per_s": batch / seconds, "peak_mib": peak_mib, "device": str(device)}


def run_benchmark(args: argparse.Namespace) -> int:
    if args.single:
        print(json.dumps(_time_one(args, *args.single)))
        return 0
    passthrough = [f"--context_length={args.context_length}", f"--embedding_dim={args.embedding_dim}",
                   f"--qubits={args.qubits}", f"--ansatz_layers={args.ansatz_layers}",
                   f"--qsvt_degree={args.qsvt_degree}", f"--threads={args.threads}", f"--steps={args.steps}",
                   f"--device={args.device}", f"--seed={args.seed}"] + (["--compile"] if args.compile else [])
    print(f"Quixer fwd+bwd: n={args.qubits} L={args.ansatz_layers} d={args.qsvt_degree} T={args.context_length} "
          f"E={args.embedding_dim} threads={args.threads} compile={args.compile} "
          f"load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'V':>6} {'batch':>6} {'ms/window':>10} {'windows/s':>10} {'cpu ms/win':>10} {'peak MiB':>9}  device")
    for vocab in args.vocab_sizes:
        for batch in args.batch_sizes:
            result = subprocess.run([sys.executable, __file__, "--single", str(vocab), str(batch), *passthrough],
                                    capture_output=True, text=True, check=True)
            row = json.loads(result.stdout.strip().splitlines()[-1])
            mem_label = "peak GPU MiB" if row["device"].startswith("cuda") else ""
            print(f"{vocab:>6} {batch:>6} {row['ms_per_window']:>10.3f} {row['windows_per_s']:>10.1f} "
                  f"{row['cpu_ms_per_window']:>10.3f} {row['peak_mib']:>9.0f}  {row['device']} {mem_label}".rstrip(), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), run_benchmark, argv)


if __name__ == "__main__":
    raise SystemExit(main())
