"""Nucleotides as numbers: letters -> base digits (A=0, C=1, G=2, T/U=3, anything else 4), k-mer ids and their
stretches, the nucleotides back from a stream of k-mer ids, and packed codes of every L-mer (L <= 32) for the
sequence comparisons of quixer_rna.grouping and quixer_rna.leak. Everything is vectorised over whole arrays.

Soft-masked repeats (lowercase in UCSC and Ensembl genomes) are either kept (read as their uppercase base) or
dropped (read as 4, so they end a stretch as N does)."""

from __future__ import annotations

import numpy as np

SOFT_MASKED = ("keep", "drop")
OTHER = 4  # the digit of any letter that is not a base
KMER_CHUNK = 1 << 22


def _digit_table(drop_lowercase: bool) -> np.ndarray:
    table = np.full(256, OTHER, dtype=np.uint8)
    for digit, bases in enumerate(("A", "C", "G", "TU")):
        for base in bases:
            table[ord(base)] = digit
            if not drop_lowercase:
                table[ord(base.lower())] = digit
    return table


_TABLES = {"keep": _digit_table(False), "drop": _digit_table(True)}
_LOWER = np.zeros(256, dtype=bool)
_LOWER[np.frombuffer(b"acgtu", dtype=np.uint8)] = True


def base_digits(letters: bytes | str, soft_masked: str = "keep") -> np.ndarray:
    """uint8 digit of every letter (4 for a letter that is not a base, or a lowercase one with 'drop')."""
    raw = letters.encode("ascii", errors="replace") if isinstance(letters, str) else letters
    return _TABLES[soft_masked][np.frombuffer(raw, dtype=np.uint8)]


def lowercase_bases(letters: bytes) -> int:
    """How many letters are lowercase bases (soft-masked)."""
    return int(_LOWER[np.frombuffer(letters, dtype=np.uint8)].sum())


def kmer_ids(sequence: str | bytes | np.ndarray, k: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """The ids (quixer_rna.kmers numbering) of the k-mers starting every `stride` nucleotides (a tail shorter than
    k is dropped), and whether each is over A, C, G, T only. `sequence` is letters or base digits."""
    digits = sequence if isinstance(sequence, np.ndarray) else base_digits(sequence)
    count = max(0, (len(digits) - k) // stride + 1)
    ids, valid = np.zeros(count, dtype=np.int64), np.zeros(count, dtype=bool)
    for begin in range(0, count, KMER_CHUNK):  # bounded temporaries, whatever the record's length
        end = min(count, begin + KMER_CHUNK)
        piece = digits[begin * stride: (end - 1) * stride + k]
        starts = np.arange(end - begin, dtype=np.int64) * stride
        bad = np.concatenate(([0], np.cumsum(piece == OTHER, dtype=np.int64)))
        valid[begin:end] = (bad[starts + k] - bad[starts]) == 0
        clipped = np.minimum(piece, 3).astype(np.int64)
        chunk = np.zeros(end - begin, dtype=np.int64)
        for offset in range(k):
            chunk = chunk * 4 + clipped[starts + offset]
        ids[begin:end] = chunk
    return ids, valid


def stretches(valid: np.ndarray) -> np.ndarray:
    """int64 [S, 4] rows (offset, length, transcript 0, first) of the maximal runs of valid k-mers."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], valid.astype(np.int8), [0]))))
    first, end = edges[::2], edges[1::2]
    rows = np.zeros((len(first), 4), dtype=np.int64)
    rows[:, 0], rows[:, 1], rows[:, 3] = first, end - first, first
    return rows


def nucleotides_of_kmers(ids: np.ndarray, lengths: np.ndarray, k: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """The nucleotide digits that runs of consecutive k-mer ids spell (stride <= k: each k-mer after a run's first
    adds its last `stride` bases), runs back to back; and each run's length in nucleotides. `lengths` gives the
    runs' sizes in k-mers (they tile `ids`)."""
    if stride > k:
        raise ValueError(f"stride {stride} > k {k}: the k-mers leave gaps and spell no sequence")
    ids = np.asarray(ids, dtype=np.int64)
    shifts = 2 * np.arange(k - 1, -1, -1, dtype=np.int64)
    digits = ((ids[:, None] >> shifts) & 3).astype(np.uint8)                        # [n, k]
    lengths = np.asarray(lengths, dtype=np.int64)
    nt_lengths = np.where(lengths > 0, k + (lengths - 1) * stride, 0)
    tail = digits[:, k - stride:].ravel()
    if stride == k or not len(lengths):
        return tail, nt_lengths
    firsts = np.concatenate(([0], np.cumsum(lengths)[:-1]))[lengths > 0]
    head = digits[firsts, : k - stride]                                              # [runs, k - stride]
    at = np.repeat(firsts * stride, k - stride)
    return np.insert(tail, at, head.ravel()), nt_lengths


def _code_dtype(bases: int) -> type:
    """The smallest unsigned type holding `bases` bases at 2 bits each."""
    return next(t for t, bits in ((np.uint8, 8), (np.uint16, 16), (np.uint32, 32), (np.uint64, 64)) if 2 * bases <= bits)


def packed_codes(digits: np.ndarray, length: int) -> np.ndarray:
    """uint64 code of the `length`-mer (length <= 32) starting at every position of `digits` (len - length + 1 of
    them), 2 bits a base, first base most significant. Digits of 4 are read as 3: callers mask such codes.
    Built by doubling (codes of 2, 4, 8, ... bases) in the smallest type each fits, to move little memory."""
    if not 1 <= length <= 32:
        raise ValueError(f"length {length}: packed codes hold 1 to 32 bases")
    n = len(digits) - length + 1
    if n <= 0:
        return np.zeros(0, dtype=np.uint64)
    powers = {1: np.minimum(digits, 3).astype(np.uint8)}
    size = 1
    while size * 2 <= length:
        wide = _code_dtype(size * 2)
        half = powers[size]
        powers[size * 2] = (half[:-size].astype(wide) << wide(2 * size)) | half[size:].astype(wide)
        size *= 2
    code, done = None, 0
    for size in sorted(powers, reverse=True):  # the length's binary digits, longest piece first
        if done + size <= length:
            piece = powers[size][done:done + n].astype(np.uint64)
            code = piece if code is None else (code << np.uint64(2 * size)) | piece
            done += size
    return code


def codes_inside_runs(digits: np.ndarray, run_lengths: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Packed codes of every `length`-mer lying wholly inside one run of `digits` (runs back to back, sizes
    `run_lengths`) and over bases only; and each code's position in `digits`."""
    codes = packed_codes(digits, length)
    if not len(codes):
        return codes, np.zeros(0, dtype=np.int64)
    ends = np.cumsum(run_lengths)
    starts = ends - run_lengths
    last = ends - length + 1  # one past the last start inside each run
    keep = last > starts
    inside = np.bincount(starts[keep], minlength=len(codes) + 1) \
        - np.bincount(np.minimum(last[keep], len(codes)), minlength=len(codes) + 1)
    ok = np.cumsum(inside[:-1]) > 0
    bad = np.concatenate(([0], np.cumsum(digits == OTHER, dtype=np.int64)))
    ok &= (bad[length:length + len(codes)] - bad[:len(codes)]) == 0
    positions = np.flatnonzero(ok)
    return codes[positions], positions
