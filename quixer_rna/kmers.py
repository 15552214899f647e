"""The fixed k-mer numbering shared by every stage: base-4 digits A=0, C=1, G=2, T=3, first base most
significant, so `ACGT` -> 0b00011011 = 27. Ids depend on the k-mer alone, never on data or frequency."""

from __future__ import annotations

BASES = "ACGT"
_DIGIT = {base: i for i, base in enumerate(BASES)}


def kmer_to_id(kmer: str) -> int:
    value = 0
    for base in kmer:
        value = value * 4 + _DIGIT[base]
    return value


def id_to_kmer(index: int, k: int) -> str:
    digits = []
    for _ in range(k):
        index, digit = divmod(index, 4)
        digits.append(BASES[digit])
    return "".join(reversed(digits))


def all_kmers(k: int) -> list[str]:
    """All 4^k k-mers in id order."""
    return [id_to_kmer(i, k) for i in range(4**k)]
