#!/usr/bin/env python3
"""Cost of the data stages at a given data size: download (synthetic), prepare, encode, quantize and the
n-gram each run as their own process (under an address-space limit, so one bad run cannot take the
machine down), and a trainer probe. Prints, per stage, wall time, peak resident memory (the child's
ru_maxrss) and disk bytes per window; for the trainer, seconds from launch to its first optimiser step, the
median step time, and its peak resident memory.

    python benchmarks/bench_scale.py --transcripts 2000 20000 184491 --work_dir /tmp/scale
    python benchmarks/bench_scale.py --transcripts 184491 --family     # also prepare --split_by family
    python benchmarks/bench_scale.py --genome_mbp 3100                 # a genome-sized FASTA, --split_by region

--genome_mbp writes a synthetic genome instead of transcripts: chromosomes with hg38's relative sizes, N runs
(telomeres, a centromere gap, scattered gaps: about 5% of the bases, as in hg38) and soft-masked lowercase
stretches over about half the bases (UCSC's repeat masking covers about half of hg38), 41% GC. Prepare then splits
by region. Prepare's own metrics give the time of its phases (reading, grouping, writing, the leak figure).

It prints figures; it asserts nothing. The 184,491 transcripts are the size of NCBI's GRCh38 RNA summary.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from quixer_rna.cli import add_common_args, make_parser, positive_int, run_cli
from quixer_rna.formats.kmer_stream import StreamMetadata

ROOT = Path(__file__).resolve().parents[1]  # the stage scripts, run by path from here

GIB = 2**30
# hg38's chromosome lengths in Mbp (chr1..chr22, chrX, chrY, chrM): the synthetic genome keeps their proportions.
HG38_MBP = (248.96, 242.19, 198.30, 190.21, 181.54, 170.81, 159.35, 145.14, 138.39, 133.80, 135.09, 133.28, 114.36,
            107.04, 101.99, 90.34, 83.26, 80.37, 58.62, 64.44, 46.71, 50.82, 156.04, 57.23, 0.0166)


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__, __file__)
    parser.add_argument("--transcripts", type=positive_int, nargs="*", default=[2000],
                        help="data sizes to measure (synthetic transcripts)")
    parser.add_argument("--genome_mbp", type=positive_int, nargs="*", default=[],
                        help="also measure synthetic genomes of these sizes in Mbp (hg38: 3100), split by region")
    parser.add_argument("--family", action="store_true",
                        help="also time prepare --split_by family (grouping by shared sequence) on the transcripts")
    parser.add_argument("--work_dir", default="/tmp/quixer_rna_scale", help="scratch folder (emptied per size)")
    parser.add_argument("--memory_limit_gib", type=positive_int, default=16,
                        help="address-space limit of every stage process (ulimit -v)")
    parser.add_argument("--trainer_steps", type=positive_int, default=30, help="optimiser steps the trainer probe times")
    parser.add_argument("--batch_size", type=positive_int, default=64, help="windows per step of the trainer probe")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folders")
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    add_common_args(parser, overwrite=False)
    return parser


def _limit(gib: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (gib * GIB, gib * GIB))
    return apply


def _stage(argv: list[str], limit_gib: int, log: Path) -> dict:
    """Run one stage process; its wall time, CPU time (user + system of that child: the figure that holds on a
    loaded machine) and peak RSS (ru_maxrss of that child alone)."""
    started = time.perf_counter()
    with open(log, "w") as handle:
        proc = subprocess.Popen([sys.executable, *argv], cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT,
                                preexec_fn=_limit(limit_gib), env=dict(os.environ, OMP_NUM_THREADS="2"))
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"bench_scale: {' '.join(argv[:1])} failed; see {log}")
    return {"seconds": seconds, "cpu_seconds": usage.ru_utime + usage.ru_stime, "peak_rss_mib": usage.ru_maxrss / 1024}


def _lowercase_runs(n: int, rng) -> "np.ndarray":
    """A mask of alternating uppercase and lowercase runs of exponential length (mean 300 nt) over n bases."""
    import numpy as np

    runs = rng.exponential(300, size=n // 150 + 64).astype(np.int64) + 1
    while runs.sum() < n:
        runs = np.concatenate((runs, rng.exponential(300, size=n // 300 + 64).astype(np.int64) + 1))
    lower = (np.arange(runs.size) % 2).astype(bool) ^ bool(rng.integers(0, 2))
    return np.repeat(lower, runs)[:n]


def write_genome(path: Path, mbp: int, seed: int, chunk: int = 1 << 23) -> int:
    """A genome-shaped FASTA (see the module docstring), written chunk by chunk; returns its bases."""
    import numpy as np

    rng = np.random.default_rng(seed)
    letters = np.frombuffer(b"ACGT", dtype=np.uint8)
    scale = mbp / sum(HG38_MBP)
    names = [f"chr{i}" for i in range(1, 23)] + ["chrX", "chrY", "chrM"]
    total = 0
    with open(path, "wb") as handle:
        for name, size in zip(names, HG38_MBP):
            length = max(20_000, int(size * scale * 1e6))
            handle.write(f">{name}\n".encode())
            gaps = [(0, 10_000), (length - 10_000, length)]
            if length > 1_000_000:
                middle = length // 2
                gaps.append((middle, middle + int(0.03 * length)))
                gaps += [(int(g), int(g) + int(rng.integers(50, 50_000))) for g in rng.integers(0, length, length // 2_000_000)]
            written = 0
            while written < length:
                n = min(chunk, length - written)
                bases = letters[np.searchsorted([0.295, 0.5, 0.705], rng.random(n))].copy()
                bases[_lowercase_runs(n, rng)] += 32
                for start, end in gaps:
                    a, b = max(start, written), min(end, written + n)
                    if a < b:
                        bases[a - written:b - written] = ord("N")
                full = n // 60 * 60
                rows = np.concatenate((bases[:full].reshape(-1, 60), np.full((full // 60, 1), 10, np.uint8)), axis=1)
                handle.write(rows.tobytes())
                if full < n:
                    handle.write(bases[full:].tobytes() + b"\n")
                written += n
            total += length
    return total


def _disk(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))


def probe(tokens: str, steps: int, batch: int) -> None:
    """In its own process: open the tokens and train an LSTM for `steps` steps; print launch-to-first-step,
    step times and peak RSS as JSON (the launch time is this process's start)."""
    started = time.perf_counter()
    import torch

    from quixer_rna.formats.tokens import open_tokens
    from quixer_rna.models.classical import LSTMConfig
    from quixer_rna.training import TrainConfig, Trainer, setup_distributed

    torch.set_num_threads(1)
    data = open_tokens(tokens)
    config = TrainConfig(epochs=1, batch_size=batch, max_steps_per_epoch=steps + 1, device="cpu", checkpoint_every=0,
                         val_windows=1000)
    marks: list[float] = []

    class Done(Exception):
        pass

    def step(global_step: int) -> None:
        marks.append(time.perf_counter())
        if global_step >= steps:
            raise Done

    trainer = Trainer("lstm", LSTMConfig(embedding_dim=32, num_layers=1), data, config,
                      Path(tokens).parent / "probe_run", setup_distributed("cpu"), resume=False)
    try:
        trainer.run(step_callback=step)
    except Done:
        pass
    gaps = sorted(b - a for a, b in zip(marks, marks[1:]))
    print(json.dumps({"first_step_s": marks[0] - started, "median_step_ms": 1000 * gaps[len(gaps) // 2],
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "train_windows": data["train"].num_windows}))


def measure(n: int, args: argparse.Namespace, genome_mbp: int = 0) -> dict:
    """Every stage on `n` synthetic transcripts, or on a synthetic genome of `genome_mbp` Mbp."""
    work = Path(args.work_dir) / (f"genome{genome_mbp}" if genome_mbp else str(n))
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    logs = work / "logs"
    logs.mkdir()
    fasta, prepare, encode, quantize, ngram = (work / name for name in ("rna.fasta", "prepare", "encode", "quantize",
                                                                        "ngram"))
    rows: dict[str, dict] = {}
    if genome_mbp:
        started = time.perf_counter()
        fasta = work / "genome.fa"
        write_genome(fasta, genome_mbp, args.seed)
        rows["genome"] = {"seconds": time.perf_counter() - started, "cpu_seconds": float("nan"), "peak_rss_mib": float("nan"),
                          "disk_bytes": fasta.stat().st_size}
        prepare_argv = ["--split_by", "region"]
        first = []
    else:
        prepare_argv = []
        first = [("download", ["download_rna_sequences.py", "--source", "synthetic", "--max_sequences", str(n),
                               "--output", str(fasta), "--seed", str(args.seed)], fasta)]
    family = [("prepare_family", ["prepare_autoregressive_data.py", "--fasta", str(fasta), "--output_dir",
                                  str(work / "prepare_family"), "--split_by", "family"], work / "prepare_family")] \
        if args.family and not genome_mbp else []
    steps = first + family + [
        ("prepare", ["prepare_autoregressive_data.py", "--fasta", str(fasta), "--output_dir", str(prepare),
                     *prepare_argv], prepare),
        ("encode", ["lambeq_encoder.py", "--data_dir", str(prepare), "--output_dir", str(encode), "--device", "cpu"],
         encode),
        ("quantize", ["quantize_lambeq_embeddings.py", "--embeddings_dir", str(encode), "--output_dir", str(quantize)],
         quantize),
        ("ngram", ["train_classical_baselines.py", "--model", "ngram", "--data_dir", str(quantize), "--output_dir",
                   str(ngram)], ngram),
    ]
    for name, argv, output in steps:
        rows[name] = _stage(argv, args.memory_limit_gib, logs / f"{name}.log")
        rows[name]["disk_bytes"] = _disk(output)
        if name.startswith("prepare"):
            rows[name]["phases"] = json.loads((output / "metrics.json").read_text())["seconds_by_phase"]
        print(f"  {n}: {name} {rows[name]['seconds']:.1f} s, peak {rows[name]['peak_rss_mib']:.0f} MiB "
              f"{rows[name].get('phases', '')}", flush=True)
        if name == "prepare_family":
            shutil.rmtree(output, ignore_errors=True)
    windows = StreamMetadata.read(prepare).windows
    for row in rows.values():
        row["bytes_per_window"] = row["disk_bytes"] / windows
    proc = subprocess.run([sys.executable, __file__, "--probe", str(quantize), "--trainer_steps", str(args.trainer_steps),
                           "--batch_size", str(args.batch_size)], cwd=ROOT, capture_output=True, text=True,
                          preexec_fn=_limit(args.memory_limit_gib))
    if proc.returncode != 0:
        raise SystemExit(f"bench_scale: the trainer probe failed: {proc.stderr[-1500:]}")
    trainer = json.loads(proc.stdout.strip().splitlines()[-1])
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    label = f"{genome_mbp} Mbp" if genome_mbp else f"{n:,}"
    return {"transcripts": n, "genome_mbp": genome_mbp, "label": label, "windows": windows, "stages": rows,
            "trainer": trainer}


def run(args: argparse.Namespace) -> int:
    if args.probe:
        probe(args.probe, args.trainer_steps, args.batch_size)
        return 0
    print(f"bench_scale: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, limit {args.memory_limit_gib} GiB "
          "per process")
    results = [measure(n, args) for n in args.transcripts] + [measure(0, args, mbp) for mbp in args.genome_mbp]
    print(f"\n{'data':>11} {'windows':>11} {'stage':<14} {'wall s':>8} {'cpu s':>8} {'peak MiB':>9} {'disk MB':>9} "
          f"{'B/window':>9}")
    for result in results:
        for name, row in result["stages"].items():
            print(f"{result['label']:>11} {result['windows']:>11,} {name:<14} {row['seconds']:>8.1f} "
                  f"{row['cpu_seconds']:>8.1f} {row['peak_rss_mib']:>9.0f} {row['disk_bytes'] / 1e6:>9.1f} {row['bytes_per_window']:>9.2f}")
            if "phases" in row:
                print(f"{'':>11} {'':>11} {'':<14} " + ", ".join(f"{k} {v:.1f} s" for k, v in row["phases"].items()))
        data = [result["stages"][s] for s in ("prepare", "encode", "quantize", "ngram")]
        print(f"{'':>11} {'':>11} {'4 stages':<14} {sum(r['seconds'] for r in data):>8.1f} "
              f"{sum(r['cpu_seconds'] for r in data):>8.1f}  (prepare + encode + quantize + n-gram)")
        t = result["trainer"]
        print(f"{'':>11} {'':>11} {'trainer':<14} first step {t['first_step_s']:.1f} s after launch, median step "
              f"{t['median_step_ms']:.1f} ms, peak {t['peak_rss_mib']:.0f} MiB")
    print(json.dumps(results))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
