#!/usr/bin/env python3
"""Time the encode -> quantize path for 10k and 100k windows of 32 six-mers.

Per window count it times (a) building the k-mer embedding table with
quixer_rna.encoding.encode_kmer_table (its first, cold call - lambeq import and circuit building - is
printed separately), (b) turning the windows' k-mer strings into ids and materialising the dense view
[N, L, D], (c) weighted k-means to 512 clusters on the distinct train k-mer embeddings, (d) assigning
every table row to its nearest centre and looking the windows up. With --with_dense it also times what
dense input costs: mini-batch k-means over every vector and the assignment of every vector.

Windows are sampled at seeded random offsets from /work/shared/data/refseq_mrna_500.fa when present
(non-overlapping k-mers inside each window), otherwise drawn as uniformly random k-mers. It prints
figures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
import sys

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quixer_rna.cli import add_common_args, make_parser, resolve_device, run_cli  # noqa: E402
from quixer_rna.encoding import ANSATZE, DEFAULT_ANSATZ, DEFAULT_LAYERS  # noqa: E402
from quixer_rna.errors import UserError  # noqa: E402

DEFAULT_FASTA = Path(__file__).resolve().parents[2] / "shared" / "data" / "refseq_mrna_500.fa"


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("--windows", type=int, nargs="+", default=[10000, 100000], help="window counts to time")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch and scikit-learn (default: torch's)")
    parser.add_argument("--k", type=int, default=6, help="k-mer length")
    parser.add_argument("--seq_len", type=int, default=32, help="k-mers per window")
    parser.add_argument("--embedding_dim", type=int, default=64, help="embedding width D of the k-mer table (lambeq_encoder.py's default)")
    parser.add_argument("--ansatz", choices=ANSATZE, default=DEFAULT_ANSATZ, help="lambeq ansatz of the k-mer circuits")
    parser.add_argument("--layers", type=int, default=DEFAULT_LAYERS, help="ansatz layers (as lambeq_encoder.py)")
    parser.add_argument("--n_clusters", type=int, default=512, help="k-means clusters")
    parser.add_argument("--n_init", type=int, default=3, help="k-means++ restarts (the quantizer's default)")
    parser.add_argument("--max_iter", type=int, default=300, help="most Lloyd iterations / mini-batch passes")
    parser.add_argument("--batch_size", type=int, default=4096, help="mini-batch size for --with_dense")
    parser.add_argument("--fasta", type=Path, default=DEFAULT_FASTA, help="FASTA to sample windows from, when present")
    parser.add_argument("--synthetic", action="store_true", help="use uniformly random k-mers even if --fasta exists")
    parser.add_argument("--with_dense", action="store_true", help="also time the dense-input path (mini-batch k-means)")
    add_common_args(parser, device=True, overwrite=False)
    return parser


def sample_windows(args: argparse.Namespace, count: int, rng) -> list[list[str]]:
    """`count` windows of seq_len k-mer strings, from the FASTA at random offsets or uniformly random."""
    import numpy as np

    from quixer_rna.kmers import id_to_kmer

    span = args.k * args.seq_len
    if args.synthetic or not args.fasta.is_file():
        ids = rng.integers(0, 4**args.k, size=(count, args.seq_len))
        names = [id_to_kmer(i, args.k) for i in range(4**args.k)]
        return [[names[i] for i in row] for row in ids.tolist()]
    from quixer_rna.fasta import iter_fasta

    sequences = [r.sequence.upper().replace("U", "T") for r in iter_fasta(args.fasta)]
    sequences = [s for s in sequences if len(s) >= span]
    if not sequences:
        raise UserError(f"--fasta {args.fasta}: no sequence of {span} nt or more; pass --synthetic")
    starts_per_seq = np.array([len(s) - span + 1 for s in sequences], dtype=np.float64)
    windows: list[list[str]] = []
    while len(windows) < count:
        which = rng.choice(len(sequences), size=count - len(windows), p=starts_per_seq / starts_per_seq.sum())
        for index in which.tolist():
            start = int(rng.integers(0, starts_per_seq[index]))
            text = sequences[index][start : start + span]
            if set(text) <= set("ACGT"):
                windows.append([text[j : j + args.k] for j in range(0, span, args.k)])
    return windows


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_one(args: argparse.Namespace, device, windows: list[list[str]]) -> dict[str, float]:
    import numpy as np
    import torch

    from quixer_rna import quantization as q
    from quixer_rna.encoding import encode_kmer_table
    from quixer_rna.kmers import windows_to_ids

    row: dict[str, float] = {}
    t0 = time.perf_counter()
    table = encode_kmer_table(
        args.k, args.embedding_dim, ansatz=args.ansatz, layers=args.layers, seed=args.seed, device=device
    )
    _sync(device)
    row["a_table"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    ids = windows_to_ids(windows)
    row["b_ids"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    table_on = table.to(device)
    dense = table_on[ids.to(device)]
    _sync(device)
    row["b_dense"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    table_np = table.cpu().numpy()
    counts = np.bincount(ids.reshape(-1).numpy(), minlength=4**args.k)
    present = np.flatnonzero(counts)
    points, weights = q.distinct_weighted(table_np[present], counts[present])
    centres, n_iter = q.fit_centres(
        points,
        weights,
        args.n_clusters,
        "kmeans",
        seed=args.seed,
        n_init=args.n_init,
        max_iter=args.max_iter,
        batch_size=args.batch_size,
    )
    row["c_kmeans"] = time.perf_counter() - t0
    row["iters"] = n_iter
    row["distinct"] = len(points)

    t0 = time.perf_counter()
    kmer_tokens, _ = q.nearest_centres(table_np, centres)
    tokens = torch.from_numpy(kmer_tokens)[ids]
    row["d_assign"] = time.perf_counter() - t0
    row["total"] = row["a_table"] + row["b_ids"] + row["b_dense"] + row["c_kmeans"] + row["d_assign"]
    row["tokens_used"] = int(torch.unique(tokens).numel())

    if args.with_dense:
        vectors = dense.reshape(-1, table.shape[1]).cpu().numpy()
        t0 = time.perf_counter()
        dense_centres, _ = q.fit_centres(
            vectors,
            None,
            args.n_clusters,
            "minibatch",
            seed=args.seed,
            n_init=args.n_init,
            max_iter=args.max_iter,
            batch_size=args.batch_size,
        )
        row["dense_fit"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        q.nearest_centres(vectors, dense_centres)
        row["dense_assign"] = time.perf_counter() - t0
    return row


def run_bench(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from threadpoolctl import threadpool_limits

    from quixer_rna.encoding import encode_kmer_table

    threads = args.threads or torch.get_num_threads()
    if threads < 1 or min(args.windows) < 1:
        raise UserError("--threads and --windows must be positive")
    torch.set_num_threads(threads)
    device = resolve_device(args.device)
    source = "uniform random k-mers" if args.synthetic or not args.fasta.is_file() else f"windows sampled from {args.fasta}"
    with threadpool_limits(threads):
        t0 = time.perf_counter()
        encode_kmer_table(
            args.k, args.embedding_dim, ansatz=args.ansatz, layers=args.layers, seed=args.seed, device=device
        )
        _sync(device)
        cold = time.perf_counter() - t0
        rng = np.random.default_rng(args.seed)
        rows = []
        for count in args.windows:
            windows = sample_windows(args, count, rng)
            rows.append((count, time_one(args, device, windows)))

    print(f"device: {device} | threads: {threads} | torch {torch.__version__}")
    print(
        f"k={args.k} L={args.seq_len} D={args.embedding_dim} {args.ansatz} x{args.layers} "
        f"clusters={args.n_clusters} n_init={args.n_init} | {source}"
    )
    print(f"(a) first, cold encode_kmer_table call (lambeq import, circuit building): {cold:.2f} s")
    header = ["windows", "(a) table s", "(b) ids s", "(b) dense s", "(c) kmeans s", "iters", "(d) assign s", "total s"]
    header += ["k-mers", "tokens used"]
    keys = ["a_table", "b_ids", "b_dense", "c_kmeans", "iters", "d_assign", "total", "distinct", "tokens_used"]
    if args.with_dense:
        header += ["dense fit s", "dense assign s"]
        keys += ["dense_fit", "dense_assign"]
    widths = [max(len(h), 9) for h in header]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    for count, row in rows:
        cells = [str(count)] + [
            str(int(row[key])) if key in ("iters", "distinct", "tokens_used") else f"{row[key]:.3f}" for key in keys
        ]
        print("  ".join(c.rjust(w) for c, w in zip(cells, widths)))
    return 0


def main(argv=None) -> int:
    return run_cli(build_parser(), run_bench, argv)


if __name__ == "__main__":
    raise SystemExit(main())
