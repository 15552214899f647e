"""How much of val and test is already in train: the leak figure prepare writes for every split.

For each val and test transcript, the L-mers (L = --leak_length, 24 nt by default) starting at each of its k-mers
(every `stride` nucleotides, wherever L bases fit inside a stretch) are looked up among ALL L-mers of the train
split, at every position. The share found is the split's leak figure; per transcript it says which test
transcripts are mostly copies of training sequence (isoforms split apart, paralogs, repeats). Random sequence
of this length almost never recurs (4^24 = 2.8e14 possible 24-mers against 10^9 train positions at full RefSeq
scale), so a share of a few percent means shared ancestry, not chance.

The sequence is the one the models see: the nucleotides the stream's k-mers spell (stride <= k). Memory is
bounded: at most MAX_QUERIES query codes are held (a seeded uniform sample beyond that, so a genome costs what
RefSeq does), and train is streamed in chunks of CHUNK_NUCLEOTIDES, each sorted once and searched with the sorted
queries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from .formats.kmer_stream import LENGTH, OFFSET, TRANSCRIPT, KmerStream
from .sequence import codes_inside_runs, nucleotides_of_kmers

MAX_QUERIES = 1 << 24
CHUNK_NUCLEOTIDES = 1 << 24
QUERY_SPLITS = ("val", "test")


@dataclass
class SplitLeak:
    """One query split: per transcript (rows of its transcripts.tsv) the L-mers looked up and those found."""

    queries: np.ndarray
    shared: np.ndarray

    @property
    def share(self) -> float:
        total = int(self.queries.sum())
        return float(self.shared.sum() / total) if total else 0.0

    def summary(self) -> dict:
        with np.errstate(invalid="ignore", divide="ignore"):
            per = np.where(self.queries > 0, self.shared / np.maximum(self.queries, 1), 0.0)
        return {"queries": int(self.queries.sum()), "shared": int(self.shared.sum()), "share": self.share,
                "transcripts": int(len(self.queries)), "transcripts_over_half_shared": int((per > 0.5).sum()),
                "median_transcript_share": float(np.median(per[self.queries > 0])) if (self.queries > 0).any() else 0.0}


def _chunks(stream: KmerStream, budget: int) -> Iterator[np.ndarray]:
    """Consecutive runs of the stream's stretches (row indices) holding about `budget` k-mers each."""
    ends = np.cumsum(stream.segments[:, LENGTH])
    first = 0
    while first < len(ends):
        base = int(ends[first - 1]) if first else 0
        stop = max(first + 1, int(np.searchsorted(ends, base + budget, side="right")))
        yield np.arange(first, stop)
        first = stop


def _packed_from_kmers(ids: np.ndarray, lengths: np.ndarray, k: int, length: int,
                       phases: int) -> tuple[np.ndarray, np.ndarray]:
    """With stride == k, the `length`-mers starting at nucleotide `phase` (0 <= phase < `phases`) of every k-mer,
    read straight from the ids: a word of m = ceil(length / k) + 1 consecutive ids holds every such length-mer
    as a bit field, so no per-nucleotide array is built. Returns the codes (phase-major) and each one's run."""
    m = -(-length // k) + 1
    n = len(ids)
    padded = np.concatenate((np.asarray(ids, dtype=np.uint64), np.zeros(m, dtype=np.uint64)))
    word = np.zeros(n, dtype=np.uint64)
    for j in range(m):
        word = (word << np.uint64(2 * k)) | padded[j:j + n]
    run = np.repeat(np.arange(len(lengths)), lengths)
    left = np.repeat(np.cumsum(lengths), lengths) - np.arange(n)  # k-mers from each one to its run's end
    mask = np.uint64((1 << (2 * length)) - 1)
    codes, owners = [], []
    for phase in range(phases):
        fits = left >= -(-(phase + length) // k)  # the k-mers the length-mer touches all lie in the run
        codes.append((word[fits] >> np.uint64(2 * (m * k - length - phase))) & mask)
        owners.append(run[fits])
    return np.concatenate(codes), np.concatenate(owners)


def _codes(stream: KmerStream, rows: np.ndarray, length: int, every_phase: bool) -> tuple[np.ndarray, np.ndarray]:
    """Codes of the `length`-mers inside the stretches `rows` - at every nucleotide (`every_phase`) or at every
    k-mer start - and the stretch (row of segments) of each."""
    segments = stream.segments[rows]
    begin, end = int(segments[0, OFFSET]), int(segments[-1, OFFSET] + segments[-1, LENGTH])
    ids, lengths, k, stride = np.asarray(stream.kmers[begin:end]), segments[:, LENGTH], stream.k, stream.stride
    if stride == k and (-(-length // k) + 1) * k <= 32:
        codes, run = _packed_from_kmers(ids, lengths, k, length, k if every_phase else 1)
        return codes, rows[run]
    digits, nt_lengths = nucleotides_of_kmers(ids, lengths, k, stride)
    codes, positions = codes_inside_runs(digits, nt_lengths, length)
    starts = np.cumsum(nt_lengths) - nt_lengths
    run = np.searchsorted(starts, positions, side="right") - 1
    if not every_phase:  # a k-mer starts every `stride` nucleotides from its stretch's start
        at_kmer = (positions - starts[run]) % stride == 0
        codes, run = codes[at_kmer], run[at_kmer]
    return codes, rows[run]


def leak_figure(train: KmerStream, queries: dict[str, KmerStream], length: int, seed: int = 0,
                progress: Callable[[int], None] | None = None) -> tuple[dict[str, SplitLeak], bool]:
    """The leak figure of each query split against `train` (streams with stride <= k), and whether the queries
    are a sample (more than MAX_QUERIES)."""
    step = train.stride
    expected = sum(_query_count(stream, length) for stream in queries.values())
    keep = min(1.0, MAX_QUERIES / max(1, expected))
    rng = np.random.default_rng(seed)
    codes, owners, splits = [], [], []
    for number, (name, stream) in enumerate(queries.items()):
        for rows in _chunks(stream, CHUNK_NUCLEOTIDES // step):
            chunk_codes, stretch = _codes(stream, rows, length, every_phase=False)
            if keep < 1.0:
                sampled = rng.random(len(chunk_codes)) < keep
                chunk_codes, stretch = chunk_codes[sampled], stretch[sampled]
            codes.append(chunk_codes)
            owners.append(stream.segments[stretch, TRANSCRIPT].astype(np.int32))
            splits.append(np.full(len(chunk_codes), number, dtype=np.int8))
    code = np.concatenate(codes) if codes else np.zeros(0, dtype=np.uint64)
    unique, inverse = np.unique(code, return_inverse=True)
    found = np.zeros(len(unique), dtype=bool)
    for rows in _chunks(train, CHUNK_NUCLEOTIDES // step):
        train_codes = np.sort(_codes(train, rows, length, every_phase=True)[0])
        if len(train_codes) and len(unique):
            at = np.minimum(np.searchsorted(train_codes, unique), len(train_codes) - 1)
            found |= train_codes[at] == unique
        if progress is not None:
            progress(len(rows))
    hit = found[inverse]
    owner = np.concatenate(owners) if owners else np.zeros(0, dtype=np.int32)
    split = np.concatenate(splits) if splits else np.zeros(0, dtype=np.int8)
    result = {}
    for number, (name, stream) in enumerate(queries.items()):
        mine = split == number
        size = len(stream.transcripts)
        result[name] = SplitLeak(np.bincount(owner[mine], minlength=size),
                                 np.bincount(owner[mine], weights=hit[mine], minlength=size).astype(np.int64))
    return result, keep < 1.0


def _query_count(stream: KmerStream, length: int) -> int:
    """Query positions of a stream: k-mer starts with `length` bases of the stretch from there."""
    nt = stream.k + (stream.segments[:, LENGTH] - 1) * stream.stride
    return int(np.maximum(0, (nt - length) // stream.stride + 1).sum())
