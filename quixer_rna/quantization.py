"""Embeddings -> discrete tokens: k-means fitted on the train split, every k-mer (or, for contextual
embeddings, every window position) mapped to the id of its nearest centre.

A k-mer table (context-free embeddings) is clustered as its distinct vectors, each weighted by how often
its k-mer occurs over the train windows' positions (counted from the k-mer stream): Lloyd's algorithm on
weighted points has the same fixed points as on the expanded occurrences, at the cost of ~4^k points
instead of N*L. Every table row (k-mers unseen in train included) is assigned once, and the result is a
k-mer -> token map: windows are never materialised. Per-window embeddings [N, L, D] (--context stairs) are
clustered with mini-batch k-means by default, or with the same weighted k-means over their distinct
vectors on request, and give per-window tokens.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .cli import check_repeated, config_record, every, positive_int
from .errors import UserError
from .formats import SPLITS
from .formats.embeddings import EmbeddingData, WindowArrayWriter, open_embeddings, save_npy
from .formats.kmer_stream import stream_reference, window_position_counts
from .formats.tokens import MAP_FILE, TokenMetadata, open_tokens, token_dtype, window_tokens_file
from .kmers import id_to_kmer
from .progress import Every, Progress
from .runio import atomic_open, atomic_torch_save, sha256_file
from .stage import stage_run

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
    "unseen_kmer_positions": "window positions of each split whose k-mer never occurs in train (k-mer table input)",
}


@dataclass(frozen=True)
class QuantizeConfig:
    """Everything stage 4 needs, built once from its flags (field metadata: each flag's help and type)."""

    embeddings_dir: str = field(metadata={"required": True, "help": "folder written by lambeq_encoder.py"})
    output_dir: str = field(metadata={"required": True, "help": "folder for the token map, centres and metadata"})
    n_clusters: int = field(default=512, metadata={"type": positive_int,
                                                   "help": "number of k-means clusters = token vocabulary size"})
    seq_len: int | None = field(default=None, metadata={
        "type": positive_int, "help": "positions per window; read from the k-mer stream, an error when it differs"})
    algorithm: str = field(default="auto", metadata={
        "choices": ALGORITHMS,
        "help": "'kmeans': full k-means over the distinct train vectors weighted by their counts; 'minibatch': "
                "mini-batch k-means; 'auto': kmeans for a k-mer table, minibatch for per-window embeddings"})
    batch_size: int = field(default=4096, metadata={"type": positive_int,
                                                    "help": "mini-batch size of mini-batch k-means"})
    n_init: int = field(default=3, metadata={"type": positive_int,
                                             "help": "k-means++ restarts; the lowest-inertia run is kept"})
    max_iter: int = field(default=300, metadata={
        "type": positive_int,
        "help": "most Lloyd iterations (kmeans) or passes over the data (minibatch, which also stops early)"})
    write_pt: bool = field(default=False, metadata={
        "help": "also export the seeds' {split}.pt token files (sequences [N, L]); no stage reads them"})
    log_every: Every = field(default=Every(seconds=60), metadata={
        "type": every, "help": "without a terminal, log progress every N windows or every Ns seconds"})
    seed: int = 0
    overwrite: bool = False


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
        x = torch.tensor(np.asarray(vectors[start : start + ASSIGN_CHUNK]), dtype=torch.float64)
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


def resolve_algorithm(choice: str, data: EmbeddingData) -> str:
    if choice == "auto":
        return "kmeans" if data.layout == "table" else "minibatch"
    return choice


@dataclass
class TableFit:
    """What clustering a k-mer table gives: a token and squared distance per table row."""

    fit: Fit
    ids: np.ndarray  # k-mer id of each table row
    counts: np.ndarray  # train window positions of each table row's k-mer
    tokens: np.ndarray
    dist2: np.ndarray


def _fit(config: QuantizeConfig, points: np.ndarray, weights: np.ndarray | None,
         algorithm: str) -> tuple[np.ndarray, int]:
    return fit_centres(points, weights, config.n_clusters, algorithm, seed=config.seed, n_init=config.n_init,
                       max_iter=config.max_iter, batch_size=config.batch_size)


def fit_table(config: QuantizeConfig, data: EmbeddingData) -> TableFit:
    """Weighted k-means over the distinct train k-mer embeddings, then every table row assigned."""
    k = data.stream.k
    ids = np.arange(4**k) if data.table_kmers is None else data.table_kmers
    counts = window_position_counts(data.stream.splits["train"], 4**k)[ids]
    present = np.flatnonzero(counts)
    points, weights = distinct_weighted(data.table[present], counts[present])
    if len(points) < config.n_clusters:
        raise UserError(
            f"{data.folder}: only {len(points)} distinct embedding vectors in the train windows, fewer than "
            f"--n_clusters {config.n_clusters}; lower --n_clusters"
        )
    algorithm = resolve_algorithm(config.algorithm, data)
    LOG.info("fitting %s with %d clusters on %d distinct train vectors", algorithm, config.n_clusters, len(points))
    centres, n_iter = _fit(config, points, weights, algorithm)
    tokens, dist2 = nearest_centres(data.table, centres)
    return TableFit(Fit(centres, algorithm, n_iter, len(points)), ids, counts, tokens, dist2)


def fit_windows(config: QuantizeConfig, data: EmbeddingData) -> Fit:
    """Clusters of per-window (contextual) train embeddings."""
    vectors = np.asarray(data.window_embeddings("train")).reshape(-1, data.dim)
    algorithm = resolve_algorithm(config.algorithm, data)
    unique, counts = distinct_weighted(vectors)
    if len(unique) < config.n_clusters:
        raise UserError(f"{data.folder}: only {len(unique)} distinct train embedding vectors, fewer than --n_clusters "
                        f"{config.n_clusters}; lower --n_clusters")
    points, weights = (unique, counts) if algorithm == "kmeans" else (vectors, None)
    centres, n_iter = _fit(config, points, weights, algorithm)
    return Fit(centres, algorithm, n_iter, len(unique))


def write_kmer_tokens(out: Path, kmer_tokens: np.ndarray, k: int) -> dict[str, str]:
    """kmer_tokens.npy (the map trainers read) and kmer_tokens.tsv (for people); returns their checksums."""
    files = {MAP_FILE: save_npy(out / MAP_FILE, kmer_tokens.astype(np.int32))}
    with atomic_open(out / "kmer_tokens.tsv") as handle:
        handle.write("kmer\ttoken\n")
        for index, token in enumerate(kmer_tokens.tolist()):
            if token >= 0:
                handle.write(f"{id_to_kmer(index, k)}\t{token}\n")
    files["kmer_tokens.tsv"] = sha256_file(out / "kmer_tokens.tsv")
    return files


def export_token_pt(folder: Path, chunk: int = 1 << 16) -> None:
    """The seeds' layout {split}.pt (sequences int64 [N, L], labels [N], vocab_size, sources), an export no
    stage reads; it materialises every window, so it is written only on request."""
    data = open_tokens(folder)
    for name, split in data.splits.items():
        rows = [tokens for _, tokens in split.iter_batches(chunk)]
        sequences = torch.cat(rows) if rows else torch.zeros(0, split.window_size, dtype=torch.int64)
        accessions = np.asarray(split.stream.transcripts.accessions, dtype=object)
        atomic_torch_save({
            "sequences": sequences,
            "labels": torch.zeros(len(sequences), dtype=torch.int64),
            "vocab_size": data.vocab_size,
            "sources": accessions[split.window_transcripts()].tolist(),
        }, folder / f"{name}.pt")


def run_quantize(config: QuantizeConfig) -> int:
    """The stage: fit on train, assign every k-mer (or window position), write the token folder."""
    started = time.perf_counter()
    data = open_embeddings(config.embeddings_dir)
    check_repeated("seq_len", config.seq_len, data.stream.window_size,
                   f"the windows of {data.stream.folder} hold {data.stream.window_size} k-mers",
                   data.stream.folder / "metadata.json")
    k = data.stream.k
    with stage_run(config.output_dir, "quantize_lambeq_embeddings", config_record(config), role="quantize",
                   overwrite=config.overwrite) as run:
        out = run.output_dir
        loaded = time.perf_counter()
        hamming = shuffled = unseen = None
        if data.layout == "table":
            table = fit_table(config, data)
            fit = table.fit
            fitted = time.perf_counter()
            kmer_tokens = np.full(4**k, -1, dtype=np.int64)
            kmer_tokens[table.ids] = table.tokens
            sizes = np.bincount(table.tokens, weights=table.counts,
                                minlength=config.n_clusters).round().astype(np.int64)
            inertia = float((table.counts * table.dist2).sum())
            files = write_kmer_tokens(out, kmer_tokens, k)
            present = table.ids[table.counts > 0]
            hamming = hamming_neighbour_share(kmer_tokens, present, k)
            shuffled = shuffled_hamming_share(kmer_tokens, present, k, config.seed)
            train_counts = np.zeros(4**k)
            train_counts[table.ids] = table.counts
            unseen = {name: int(window_position_counts(split, 4**k)[train_counts == 0].sum())
                      for name, split in data.stream.splits.items()}
            kind = "kmer_map"
        else:
            fit = fit_windows(config, data)
            fitted = time.perf_counter()
            files = {}
            sizes = np.zeros(config.n_clusters, dtype=np.int64)
            inertia = 0.0
            for name in SPLITS:
                vectors = data.window_embeddings(name)
                n, width = vectors.shape[:2]
                writer = WindowArrayWriter(window_tokens_file(out, name), (n, width), token_dtype(config.n_clusters))
                with Progress(n, f"assign {name}", unit="window", every=config.log_every) as progress:
                    for begin in range(0, n, ASSIGN_CHUNK):
                        block = np.asarray(vectors[begin:begin + ASSIGN_CHUNK]).reshape(-1, data.dim)
                        labels, dist2 = nearest_centres(block, fit.centres)
                        writer.array[begin:begin + ASSIGN_CHUNK] = labels.reshape(-1, width)
                        if name == "train":
                            sizes += np.bincount(labels, minlength=config.n_clusters)
                            inertia += float(dist2.sum())
                        progress.update(len(block) // width)
                files[window_tokens_file(out, name).name] = writer.close()
            kind = "windows"
        assigned_at = time.perf_counter()
        atomic_torch_save(torch.from_numpy(fit.centres).float().contiguous(), out / "cluster_centers.pt")
        entropy = entropy_bits(sizes)
        # metadata.json last: a token folder that has one is whole.
        windows = {name: split.num_windows for name, split in data.stream.splits.items()}
        seconds = {
            "load": round(loaded - started, 3),
            "fit": round(fitted - loaded, 3),
            "assign": round(assigned_at - fitted, 3),
            "total": round(time.perf_counter() - started, 3),
        }
        metrics = {
            "n_clusters": config.n_clusters,
            "vocab_size": config.n_clusters,
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
        TokenMetadata(
            tokenizer="clusters", kind=kind, vocab_size=config.n_clusters, k=k, window_size=data.stream.window_size,
            stream=stream_reference(data.stream, out), files=files,
            **{key: value for key, value in metrics.items() if key != "vocab_size"},
            input_layout=data.layout,
            embedding_dim=data.dim,
            n_iter=fit.n_iter,
            distinct_train_vectors=fit.distinct_points,
            train_positions=int(sizes.sum()),
            cluster_sizes=sizes.tolist(),
            unseen_kmer_positions=unseen,
            seed=config.seed,
            embeddings_dir=str(config.embeddings_dir),
            definitions=DEFINITIONS,
        ).write(out)
        if config.write_pt:
            export_token_pt(out)
        run.finish(metrics)
    if metrics["empty_clusters"]:
        LOG.warning(
            "%d of %d tokens have no train position (near-duplicate train vectors?); consider a lower --n_clusters",
            metrics["empty_clusters"],
            config.n_clusters,
        )
    LOG.info(
        "%d tokens (%d empty), train entropy %.3f bits (perplexity %.1f), inertia %.4g; wrote %s",
        config.n_clusters,
        metrics["empty_clusters"],
        entropy,
        metrics["token_perplexity"],
        inertia,
        out,
    )
    return 0
