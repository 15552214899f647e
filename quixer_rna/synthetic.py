"""Synthetic mRNA-like transcripts, so every stage can run offline and tests need no network.

Each gene is a 5' UTR (no ATG, ending in a Kozak context GCCACC), a coding region of codons drawn
with human codon usage from ATG to a stop codon, and a 3' UTR with the poly-A signal AATAAA and a
poly-A tail. The coding region is cut into exons; some genes have 2-3 isoforms (an internal exon
skipped, an alternative first exon, a shorter 3' UTR from a proximal poly-A site) that share the
other exons, so that a split by gene matters as it does for real RefSeq. Lengths follow log-normal
distributions shaped like RefSeq mRNA (median total about 2.4 kb; real NM_: about 2.6 kb).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .errors import UserError
from .fasta import format_record
from .download import STAGE, check_output
from .progress import Every, Progress
from .runio import atomic_open
from .stage import StageRun, stage_run

# Human codon usage, frequency per thousand codons (Kazusa codon usage database, Homo sapiens
# [gbpri] 93,487 CDS; CoCoPUTs human figures agree to within a few tenths).
HUMAN_CODON_USAGE: dict[str, float] = {
    "TTT": 17.6, "TCT": 15.2, "TAT": 12.2, "TGT": 10.6,
    "TTC": 20.3, "TCC": 17.7, "TAC": 15.3, "TGC": 12.6,
    "TTA": 7.7, "TCA": 12.2, "TAA": 1.0, "TGA": 1.6,
    "TTG": 12.9, "TCG": 4.4, "TAG": 0.8, "TGG": 13.2,
    "CTT": 13.2, "CCT": 17.5, "CAT": 10.9, "CGT": 4.5,
    "CTC": 19.6, "CCC": 19.8, "CAC": 15.1, "CGC": 10.4,
    "CTA": 7.2, "CCA": 16.9, "CAA": 12.3, "CGA": 6.2,
    "CTG": 39.6, "CCG": 6.9, "CAG": 34.2, "CGG": 11.4,
    "ATT": 16.0, "ACT": 13.1, "AAT": 17.0, "AGT": 12.1,
    "ATC": 20.8, "ACC": 18.9, "AAC": 19.1, "AGC": 19.5,
    "ATA": 7.5, "ACA": 15.1, "AAA": 24.4, "AGA": 12.2,
    "ATG": 22.0, "ACG": 6.1, "AAG": 31.9, "AGG": 12.0,
    "GTT": 11.0, "GCT": 18.4, "GAT": 21.8, "GGT": 10.8,
    "GTC": 14.5, "GCC": 27.7, "GAC": 25.1, "GGC": 22.2,
    "GTA": 7.1, "GCA": 15.8, "GAA": 29.0, "GGA": 16.5,
    "GTG": 28.1, "GCG": 7.4, "GAG": 39.6, "GGG": 16.5,
}
STOP_CODONS = ("TAA", "TAG", "TGA")
KOZAK = "GCCACC"
POLYA_SIGNAL = "AATAAA"
BASES = np.frombuffer(b"ACGT", dtype=np.uint8)
_C, _G, _A, _T = (ord(base) for base in "CGAT")



def _codon_table(codons: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Codons as a (n, 3) byte array and their usage as probabilities."""
    weights = np.array([HUMAN_CODON_USAGE[c] for c in codons])
    return np.frombuffer("".join(codons).encode("ascii"), dtype=np.uint8).reshape(-1, 3), weights / weights.sum()


_SENSE, _SENSE_P = _codon_table([c for c in HUMAN_CODON_USAGE if c not in STOP_CODONS])
# The codon after ATG starts with G in a strong Kozak context (gccaccATGG).
_SECOND, _SECOND_P = _codon_table([c for c in HUMAN_CODON_USAGE if c.startswith("G")])
_STOP, _STOP_P = _codon_table(list(STOP_CODONS))
_ATG = np.frombuffer(b"ATG", dtype=np.uint8).reshape(1, 3)
# Isoforms per gene: most genes one, some two or three.
_ISOFORM_P = (0.6, 0.25, 0.15)


@dataclass
class SyntheticTranscript:
    accession: str
    gene: str
    variant: int | None  # None for a gene with a single isoform
    sequence: str

    @property
    def header(self) -> str:
        variant = f", transcript variant {self.variant}" if self.variant is not None else ""
        return f"{self.accession} Synthetic transcript ({self.gene}){variant}, mRNA [synthetic]"


@dataclass
class _Gene:
    utr5: str
    alt_utr5: str
    coding_exons: list[str]  # ATG...stop split at codon boundaries; each exon a whole number of codons
    utr3_body: str
    polya_site_tail: str  # spacer after AATAAA and the poly-A tail
    proximal_cut: int  # where a shorter 3' UTR ends, for alternative polyadenylation


def _lognormal_int(rng: np.random.Generator, median: float, sigma: float, low: int, high: int) -> int:
    return min(high, max(low, round(median * float(np.exp(sigma * rng.standard_normal())))))


def _random_bases(rng: np.random.Generator, length: int, gc: float) -> str:
    """i.i.d. bases at a GC content, then CpG depleted as in human sequence (most CG -> TG or CA)."""
    p = np.array([(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2])
    seq = BASES[rng.choice(4, size=length, p=p)]
    cpg = np.flatnonzero((seq[:-1] == _C) & (seq[1:] == _G))
    cpg = cpg[rng.random(cpg.size) < 0.75]
    to_tg = rng.random(cpg.size) < 0.5
    seq[cpg[to_tg]] = _T
    seq[cpg[~to_tg] + 1] = _A
    return seq.tobytes().decode("ascii")


def _without_atg(seq: str) -> str:
    """Remove every ATG so the first ATG of the transcript is its start codon. Turning the A into C
    cannot make a new ATG (none of the three overlapping triplets can then read ATG)."""
    while (at := seq.find("ATG")) >= 0:
        seq = seq[:at] + "C" + seq[at + 1:]
    return seq


def _utr5(rng: np.random.Generator) -> str:
    body = _random_bases(rng, _lognormal_int(rng, 170, 0.55, 40, 1200), gc=0.6)
    return _without_atg(body + KOZAK)


def _coding_exons(rng: np.random.Generator) -> list[str]:
    n_codons = _lognormal_int(rng, 430, 0.6, 80, 3500)
    codons = np.concatenate([
        _ATG,
        _SECOND[rng.choice(len(_SECOND), size=1, p=_SECOND_P)],
        _SENSE[rng.choice(len(_SENSE), size=n_codons - 2, p=_SENSE_P)],
        _STOP[rng.choice(len(_STOP), size=1, p=_STOP_P)],
    ])
    exons: list[str] = []
    start = 0
    while start < len(codons):
        size = _lognormal_int(rng, 45, 0.45, 15, 200)
        if len(codons) - start - size < 15:
            size = len(codons) - start
        exons.append(codons[start:start + size].tobytes().decode("ascii"))
        start += size
    return exons


def _gene(rng: np.random.Generator) -> _Gene:
    utr3_body = _random_bases(rng, _lognormal_int(rng, 850, 0.8, 80, 6000), gc=0.42)
    spacer = _random_bases(rng, int(rng.integers(10, 26)), gc=0.42)
    tail = "A" * int(rng.integers(15, 41))
    return _Gene(
        utr5=_utr5(rng),
        alt_utr5=_utr5(rng),
        coding_exons=_coding_exons(rng),
        utr3_body=utr3_body,
        polya_site_tail=spacer + tail,
        proximal_cut=int(len(utr3_body) * rng.uniform(0.3, 0.6)),
    )


def _isoforms(gene: _Gene, rng: np.random.Generator) -> list[str]:
    """Variant 1 is the full transcript; variant 2 skips an internal coding exon (alternative first
    exon where there is none to skip); variant 3 ends at the proximal poly-A site."""
    count = int(rng.choice(len(_ISOFORM_P), p=_ISOFORM_P)) + 1
    utr3 = gene.utr3_body + POLYA_SIGNAL + gene.polya_site_tail
    isoforms = [gene.utr5 + "".join(gene.coding_exons) + utr3]
    if count >= 2:
        exons = gene.coding_exons
        if len(exons) >= 3:
            skip = int(rng.integers(1, len(exons) - 1))
            isoforms.append(gene.utr5 + "".join(exons[:skip] + exons[skip + 1:]) + utr3)
        else:
            isoforms.append(gene.alt_utr5 + "".join(exons) + utr3)
    if count >= 3:
        short_utr3 = gene.utr3_body[:gene.proximal_cut] + POLYA_SIGNAL + gene.polya_site_tail
        isoforms.append(gene.utr5 + "".join(gene.coding_exons) + short_utr3)
    return isoforms


def synthetic_transcripts(n: int, seed: int) -> Iterator[SyntheticTranscript]:
    """`n` transcripts. Gene i is drawn from its own generator seeded by (seed, i), so the first n
    of a larger run are the same (up to the isoforms of the last gene) and runs repeat exactly."""
    produced = 0
    gene_index = 0
    while produced < n:
        gene_index += 1
        rng = np.random.default_rng([seed % 2**63, gene_index])
        isoforms = _isoforms(_gene(rng), rng)
        name = f"SYNG{gene_index:04d}"
        for variant, sequence in enumerate(isoforms[: n - produced], start=1):
            produced += 1
            yield SyntheticTranscript(
                accession=f"SYN_{produced:06d}.1",
                gene=name,
                variant=variant if len(isoforms) > 1 else None,
                sequence=sequence,
            )


@dataclass(frozen=True)
class SyntheticConfig:
    """What `--source synthetic` takes (the flags of the same names, parsed once by the script)."""

    output: str
    max_sequences: int | None
    seed: int
    overwrite: bool
    log_every: Every


def run_synthetic(config: SyntheticConfig, record: dict[str, Any]) -> int:
    """Write config.max_sequences synthetic transcripts to config.output in NCBI's FASTA format; `record` is
    what the run record keeps as the run's arguments."""
    started = time.monotonic()
    if config.max_sequences is None or config.max_sequences < 1:
        raise UserError("--max_sequences: give how many transcripts to generate (a positive number) with --source synthetic")
    fasta = Path(config.output)
    check_output(fasta)
    with stage_run(fasta, STAGE, record, role="download", overwrite=config.overwrite, flag="--output",
                   single_file=True) as run:
        if fasta.exists() and run.previous is None and not config.overwrite:
            raise UserError(f"--output {fasta}: exists; pass --overwrite to replace it or choose another file")
        _write(config, run, fasta, started)
    return 0


def _write(config: SyntheticConfig, run: StageRun, fasta: Path, started: float) -> None:
    lengths: list[int] = []
    isoforms_per_gene: dict[str, int] = {}
    with atomic_open(fasta) as handle, Progress(config.max_sequences, "synthetic", unit="transcript",
                                                every=config.log_every) as progress:
        for transcript in synthetic_transcripts(config.max_sequences, config.seed):
            handle.write(format_record(transcript.header, transcript.sequence))
            progress.update()
            lengths.append(len(transcript.sequence))
            isoforms_per_gene[transcript.gene] = isoforms_per_gene.get(transcript.gene, 0) + 1
    seconds = time.monotonic() - started
    run.finish({
        "synthetic": True,
        "source": "synthetic",
        "requested": config.max_sequences,
        "written": len(lengths),
        "genes": len(isoforms_per_gene),
        "genes_with_isoforms": sum(1 for count in isoforms_per_gene.values() if count > 1),
        "nucleotides": sum(lengths),
        "length_median": statistics.median(lengths),
        "length_min": min(lengths),
        "length_max": max(lengths),
        "fraction_over_200_nt": sum(1 for length in lengths if length > 200) / len(lengths),
        "bytes_written": fasta.stat().st_size,
        "seconds": round(seconds, 3),
    })
