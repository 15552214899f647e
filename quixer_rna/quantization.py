"""Embeddings -> discrete tokens: k-means on the train split, every window of every split mapped to the
id of its nearest centre.

Compact input (a k-mer table plus k-mer ids) is clustered as its distinct vectors, each weighted by
how often it occurs in train: Lloyd's algorithm on weighted points has the same fixed points as on the
expanded occurrences, at the cost of ~4^k points instead of N*L. Every table row (k-mers unseen in train
included) is then assigned once and windows are looked up. Dense input [N, L, D] is clustered with
mini-batch k-means by default, or with the same weighted k-means over its distinct vectors on request.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .errors import UserError
from .formats import SPLITS
from .formats.embeddings import EmbeddingSplit, load_embedding_dataset
from .formats.tokens import save_token_split
from .kmers import id_to_kmer
from .runio import (
    RunRecord,
    atomic_open,
    atomic_torch_save,
    atomic_write_json,
    prepare_output_dir,
)

LOG = logging.getLogger(__name__)

ALGORITHMS = ("auto", "kmeans", "minibatch")
ASSIGN_CHUNK = 16384
SHUFFLE_ROUNDS = 20

DEFINITIONS = {
    "inertia": "sum over every train position of the squared Euclidean distance to its nearest centre",
    "cluster_sizes": "train positions assigned to each token id",
    "empty_clusters": "token ids that no train position is assigned to",
    "token_entropy_bits": "Shannon entropy (bits) of the token distribution over all train positions",
    "token_perplexity": "2 ** token_entropy_bits",
    "hamming_neighbour_share": (
        "over the distinct k-mers occurring in train, the fraction for which at least one of the 3k k-mers at "
        "Hamming distance 1 (seen in train or not) gets the same token"
    ),
    "hamming_neighbour_share_shuffled": (
        f"the same fraction with the k-mer -> token map randomly permuted, averaged over {SHUFFLE_ROUNDS} "
        "seeded permutations: the chance level to compare against"
    ),
    "unseen_kmer_positions": "positions of each split whose k-mer never occurs in train (compact input)",
}


@dataclass
class Fit:
    """Centres fitted on train plus what the fit saw."""

    centres: np.ndarray  # float64 [n_clusters, D]
    algorithm: str
    n_iter: int
    distinct_points: int


def distinct_weighted(vectors: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Collapse equal rows into one row carrying their summed weight, in a canonical (byte) order, so
    compact and dense inputs of the same data hand k-means the very same points in the same order."""
    rows = np.ascontiguousarray(vectors, dtype=np.float32)
    keys = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).reshape(-1)
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    summed = np.bincount(
        inverse.reshape(-1), weights=np.ones(len(rows)) if weights is None else weights, minlength=len(first)
    )
    return rows[first], summed


def fit_centres(
    points: np.ndarray,
    weights: np.ndarray | None,
    n_clusters: int,
    algorithm: str,
    *,
    seed: int,
    n_init: int,
    max_iter: int,
    batch_size: int,
    init: str | np.ndarray = "k-means++",
) -> tuple[np.ndarray, int]:
    """Fit `n_clusters` centres; returns them as float64 with the iterations used.

    Full k-means runs with tol=0 (to strict convergence or max_iter): scikit-learn scales tol by the
    unweighted variance of the points, so a positive tol would stop weighted and expanded fits at
    different places."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    if algorithm == "kmeans":
        model = KMeans(
            n_clusters=n_clusters, init=init, n_init=n_init, max_iter=max_iter, tol=0.0, random_state=seed
        )
        model.fit(np.asarray(points, dtype=np.float64), sample_weight=weights)
    elif algorithm == "minibatch":
        model = MiniBatchKMeans(
            n_clusters=n_clusters,
            init=init,
            n_init=n_init,
            max_iter=max_iter,
            batch_size=batch_size,
            random_state=seed,
        )
        model.fit(points, sample_weight=weights)
    else:
        raise ValueError(f"unknown algorithm {algorithm!r}")
    return np.asarray(model.cluster_centers_, dtype=np.float64), int(model.n_iter_)


def nearest_centres(
    vectors: np.ndarray | torch.Tensor, centres: np.ndarray, desc: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Id of the nearest centre (squared Euclidean, in float64) of every row and that squared
    distance, in chunks so memory stays bounded for millions of dense vectors."""
    c = torch.as_tensor(centres, dtype=torch.float64)
    c_sq = (c * c).sum(1)
    n = int(vectors.shape[0])
    labels = np.empty(n, dtype=np.int64)
    dist2 = np.empty(n, dtype=np.float64)
    starts = range(0, n, ASSIGN_CHUNK)
    for start in tqdm(starts, desc=desc, unit="chunk", disable=desc is None or len(starts) < 2, leave=False):
        x = torch.as_tensor(vectors[start : start + ASSIGN_CHUNK], dtype=torch.float64)
        d = (x * x).sum(1, keepdim=True) - 2.0 * (x @ c.T) + c_sq
        best = d.min(dim=1)
        labels[start : start + len(x)] = best.indices.numpy()
        dist2[start : start + len(x)] = best.values.clamp_min(0.0).numpy()
    return labels, dist2


def entropy_bits(counts: np.ndarray) -> float:
    """Shannon entropy in bits of the distribution given by non-negative counts."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        return float("nan")
    p = counts[counts > 0] / total
    return float(-(p * np.log2(p)).sum())


def hamming_neighbour_share(kmer_tokens: np.ndarray, kmer_ids: np.ndarray, k: int) -> float:
    """Fraction of `kmer_ids` with at least one Hamming-distance-1 k-mer of the same token (see
    DEFINITIONS); ids follow quixer_rna.kmers, base-4 digits with the first base most significant."""
    ids = np.asarray(kmer_ids, dtype=np.int64)
    if ids.size == 0:
        return float("nan")
    own = kmer_tokens[ids]
    shared = np.zeros(ids.shape, dtype=bool)
    for position in range(k):
        weight = 4 ** (k - 1 - position)
        digit = (ids // weight) % 4
        for shift in (1, 2, 3):
            neighbour = ids + (((digit + shift) % 4) - digit) * weight
            shared |= kmer_tokens[neighbour] == own
    return float(shared.mean())


def shuffled_hamming_share(kmer_tokens: np.ndarray, kmer_ids: np.ndarray, k: int, seed: int) -> float:
    """Chance level of hamming_neighbour_share: the same map with tokens permuted across k-mers."""
    rng = np.random.default_rng(seed)
    shares = [hamming_neighbour_share(rng.permutation(kmer_tokens), kmer_ids, k) for _ in range(SHUFFLE_ROUNDS)]
    return float(np.mean(shares))


def _split_path(embeddings_dir: Path, name: str) -> Path:
    return embeddings_dir / f"{name}.pt"


def check_splits(data: dict[str, EmbeddingSplit], seq_len: int, embeddings_dir: Path) -> int:
    """Window length, k and table size agree across splits and with the flags; returns k."""
    ks = {name: split.k for name, split in data.items()}
    if len(set(ks.values())) != 1:
        raise UserError(f"--embeddings_dir {embeddings_dir}: splits disagree on k {ks}")
    k = ks["train"]
    for name, split in data.items():
        path = _split_path(embeddings_dir, name)
        if split.seq_len != seq_len:
            raise UserError(
                f"{path}: windows of {split.seq_len} positions but --seq_len {seq_len}; pass --seq_len {split.seq_len} "
                "or re-encode with matching windows"
            )
        if split.is_compact and split.table.shape[0] != 4**k:
            raise UserError(f"{path}: table has {split.table.shape[0]} rows but k={k} needs 4^{k} = {4**k}")
        values = split.table if split.is_compact else split.embeddings
        if not bool(torch.isfinite(values).all()):
            raise UserError(f"{path}: embeddings contain NaN or infinite values; re-run lambeq_encoder.py")
    if len(data["train"]) == 0:
        raise UserError(f"{_split_path(embeddings_dir, 'train')}: no windows to fit the clusters on")
    return k


def resolve_algorithm(choice: str, train: EmbeddingSplit) -> str:
    if choice == "auto":
        return "kmeans" if train.is_compact else "minibatch"
    return choice


def train_kmer_counts(train: EmbeddingSplit, k: int) -> np.ndarray | None:
    """Occurrences of every k-mer id in train, or None when train carries no k-mer ids."""
    if train.kmer_ids is None:
        return None
    return np.bincount(train.kmer_ids.reshape(-1).numpy(), minlength=4**k)


def fit_on_train(args: argparse.Namespace, train: EmbeddingSplit, counts: np.ndarray | None, train_path: Path) -> Fit:
    algorithm = resolve_algorithm(args.algorithm, train)
    if train.is_compact:
        present = np.flatnonzero(counts)
        points, weights = distinct_weighted(train.table.numpy()[present], counts[present])
        distinct = len(points)
    else:
        vectors = train.embeddings.reshape(-1, train.dim).numpy()
        unique, weights = distinct_weighted(vectors)
        distinct = len(unique)
        points, weights = (unique, weights) if algorithm == "kmeans" else (vectors, None)
    if distinct < args.n_clusters:
        raise UserError(
            f"{train_path}: only {distinct} distinct embedding vectors in the train windows, fewer than "
            f"--n_clusters {args.n_clusters}; lower --n_clusters"
        )
    LOG.info(
        "fitting %s with %d clusters on %d points (%d distinct train vectors)",
        algorithm,
        args.n_clusters,
        len(points),
        distinct,
    )
    centres, n_iter = fit_centres(
        points,
        weights,
        args.n_clusters,
        algorithm,
        seed=args.seed,
        n_init=args.n_init,
        max_iter=args.max_iter,
        batch_size=args.batch_size,
    )
    return Fit(centres=centres, algorithm=algorithm, n_iter=n_iter, distinct_points=distinct)


@dataclass
class Assigned:
    """Tokens of one split and, for compact input, the per-k-mer map they came from."""

    sequences: torch.Tensor  # int64 [N, L]
    dist2: np.ndarray  # squared distance to the chosen centre: per table row (compact) or per position (dense)
    kmer_tokens: np.ndarray | None


TableCache = list[tuple[torch.Tensor, tuple[np.ndarray, np.ndarray]]]


def assign_split(name: str, split: EmbeddingSplit, centres: np.ndarray, cache: TableCache) -> Assigned:
    """Tokens for one split; compact tables identical to one already assigned are not assigned again."""
    if split.is_compact:
        hit = next((found for table, found in cache if torch.equal(table, split.table)), None)
        if hit is None:
            hit = nearest_centres(split.table, centres)
            cache.append((split.table, hit))
        kmer_tokens, dist2 = hit
        sequences = torch.from_numpy(kmer_tokens)[split.kmer_ids]
        return Assigned(sequences=sequences, dist2=dist2, kmer_tokens=kmer_tokens)
    n, length, dim = split.embeddings.shape
    labels, dist2 = nearest_centres(split.embeddings.reshape(-1, dim), centres, desc=f"assign {name}")
    return Assigned(sequences=torch.from_numpy(labels).reshape(n, length), dist2=dist2, kmer_tokens=None)


def write_kmer_tokens(out: Path, kmer_tokens: np.ndarray, k: int) -> None:
    atomic_torch_save(torch.from_numpy(kmer_tokens.astype(np.int64)), out / "kmer_tokens.pt")
    with atomic_open(out / "kmer_tokens.tsv") as handle:
        handle.write("kmer\ttoken\n")
        for index, token in enumerate(kmer_tokens.tolist()):
            handle.write(f"{id_to_kmer(index, k)}\t{token}\n")


def run_quantize(args: argparse.Namespace) -> int:
    for flag, value, low in (
        ("--n_clusters", args.n_clusters, 1),
        ("--seq_len", args.seq_len, 1),
        ("--batch_size", args.batch_size, 1),
        ("--n_init", args.n_init, 1),
        ("--max_iter", args.max_iter, 1),
    ):
        if value < low:
            raise UserError(f"{flag} {value}: must be at least {low}")
    started = time.perf_counter()
    embeddings_dir = Path(args.embeddings_dir)
    out = prepare_output_dir(args.output_dir, args.overwrite)
    record = RunRecord(out, "quantize_lambeq_embeddings", vars(args))

    data = load_embedding_dataset(embeddings_dir)
    k = check_splits(data, args.seq_len, embeddings_dir)
    train = data["train"]
    counts = train_kmer_counts(train, k)
    loaded = time.perf_counter()

    fit = fit_on_train(args, train, counts, _split_path(embeddings_dir, "train"))
    fitted = time.perf_counter()

    cache: TableCache = []
    assigned = {name: assign_split(name, split, fit.centres, cache) for name, split in data.items()}
    assigned_at = time.perf_counter()

    train_tokens = assigned["train"]
    sizes = np.bincount(train_tokens.sequences.reshape(-1).numpy(), minlength=args.n_clusters)
    inertia = float((counts * train_tokens.dist2).sum()) if train.is_compact else float(train_tokens.dist2.sum())
    entropy = entropy_bits(sizes)
    hamming = shuffled = None
    if train_tokens.kmer_tokens is not None:
        present = np.flatnonzero(counts)
        hamming = hamming_neighbour_share(train_tokens.kmer_tokens, present, k)
        shuffled = shuffled_hamming_share(train_tokens.kmer_tokens, present, k, args.seed)
    unseen = None
    if counts is not None:
        unseen = {
            name: int((counts[split.kmer_ids.reshape(-1).numpy()] == 0).sum())
            for name, split in data.items()
            if split.kmer_ids is not None
        }

    for name in SPLITS:
        split = data[name]
        save_token_split(
            out / f"{name}.pt",
            assigned[name].sequences,
            vocab_size=args.n_clusters,
            labels=split.labels,
            sources=split.sources,
        )
    atomic_torch_save(torch.from_numpy(fit.centres).float().contiguous(), out / "cluster_centers.pt")
    if train_tokens.kmer_tokens is not None:
        write_kmer_tokens(out, train_tokens.kmer_tokens, k)

    windows = {name: len(split) for name, split in data.items()}
    seconds = {
        "load": round(loaded - started, 3),
        "fit": round(fitted - loaded, 3),
        "assign": round(assigned_at - fitted, 3),
        "total": round(time.perf_counter() - started, 3),
    }
    metrics = {
        "n_clusters": args.n_clusters,
        "vocab_size": args.n_clusters,
        "algorithm": fit.algorithm,
        "inertia": inertia,
        "token_entropy_bits": entropy,
        "token_perplexity": 2.0**entropy,
        "empty_clusters": int((sizes == 0).sum()),
        "hamming_neighbour_share": hamming,
        "hamming_neighbour_share_shuffled": shuffled,
        "windows": windows,
        "seconds": seconds,
    }
    metadata = {
        **metrics,
        "input_format": "compact" if train.is_compact else "dense",
        "embedding_dim": train.dim,
        "k": k,
        "seq_len": args.seq_len,
        "n_iter": fit.n_iter,
        "distinct_train_vectors": fit.distinct_points,
        "train_positions": int(sizes.sum()),
        "cluster_sizes": sizes.tolist(),
        "unseen_kmer_positions": unseen,
        "seed": args.seed,
        "definitions": DEFINITIONS,
    }
    atomic_write_json(out / "metadata.json", metadata)
    record.finish(metrics)
    if metrics["empty_clusters"]:
        LOG.warning(
            "%d of %d tokens have no train position (near-duplicate train vectors?); consider a lower --n_clusters",
            metrics["empty_clusters"],
            args.n_clusters,
        )
    LOG.info(
        "%d tokens (%d empty), train entropy %.3f bits (perplexity %.1f), inertia %.4g; wrote %s",
        args.n_clusters,
        metrics["empty_clusters"],
        entropy,
        metrics["token_perplexity"],
        inertia,
        out,
    )
    return 0
