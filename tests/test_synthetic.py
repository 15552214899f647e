"""Synthetic transcripts: mRNA-like (ATG...stop in frame, human codon usage, AATAAA and a poly-A
tail, RefSeq-like lengths), seeded, with genes that have isoforms sharing exons; and the CLI path."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

import download_rna_sequences
from quixer_rna.fasta import iter_fasta, parse_header
from quixer_rna.synthetic import HUMAN_CODON_USAGE, POLYA_SIGNAL, STOP_CODONS, synthetic_transcripts

ROOT = Path(__file__).resolve().parents[1]
REAL_FASTA = Path(__file__).resolve().parents[2] / "shared" / "data" / "refseq_mrna_500.fa"


def orf(sequence: str) -> tuple[int, int]:
    """(start, end) of the reading frame from the first ATG to the first in-frame stop, end after the stop."""
    start = sequence.find("ATG")
    assert start >= 0, "no ATG"
    for i in range(start, len(sequence) - 2, 3):
        if sequence[i:i + 3] in STOP_CODONS:
            return start, i + 3
    raise AssertionError("no in-frame stop codon after the first ATG")


def test_each_transcript_is_mrna_like() -> None:
    transcripts = list(synthetic_transcripts(150, seed=7))
    assert len(transcripts) == 150
    lengths = []
    for t in transcripts:
        seq = t.sequence
        assert set(seq) <= set("ACGT")
        start, end = orf(seq)
        assert seq[start - 6:start] == "GCCACC" and seq[start + 3] == "G"  # Kozak gccaccATGG
        # the first in-frame stop ends the designed CDS (>= 80 codons; an isoform that skips an exon
        # keeps at least its first and last coding exons), not a stray stop
        assert (end - start) // 3 >= (81 if t.variant in (None, 1) else 30)
        assert len(seq) - end >= 20 + len(POLYA_SIGNAL) + 10 + 15  # 3' UTR, signal, spacer, tail
        assert POLYA_SIGNAL in seq[end:]
        tail = len(seq) - len(seq.rstrip("A"))
        assert tail >= 15 and POLYA_SIGNAL in seq[-tail - 40:-tail]  # signal 10-30 nt before the tail
        lengths.append(len(seq))
    assert sum(length > 200 for length in lengths) / len(lengths) > 0.95
    assert 1000 <= statistics.median(lengths) <= 4000


def test_codon_usage_follows_the_human_table() -> None:
    counts: Counter[str] = Counter()
    for t in synthetic_transcripts(80, seed=1):
        start, end = orf(t.sequence)
        counts.update(t.sequence[i:i + 3] for i in range(start + 6, end - 3, 3))
    sense = [c for c in HUMAN_CODON_USAGE if c not in STOP_CODONS and c != "ATG"]
    observed = np.array([counts[c] for c in sense], dtype=float)
    expected = np.array([HUMAN_CODON_USAGE[c] for c in sense])
    assert np.corrcoef(observed, expected)[0, 1] > 0.98
    assert counts["CTG"] > 4 * counts["CTA"]  # leucine's strong human preference


def test_seeded_and_prefix_stable() -> None:
    a = [(t.header, t.sequence) for t in synthetic_transcripts(40, seed=3)]
    b = [(t.header, t.sequence) for t in synthetic_transcripts(40, seed=3)]
    c = [(t.header, t.sequence) for t in synthetic_transcripts(40, seed=4)]
    longer = [(t.header, t.sequence) for t in synthetic_transcripts(80, seed=3)]
    assert a == b and a != c
    genes = [parse_header(h)[1] for h, _ in a]
    complete = [i for i, g in enumerate(genes) if g != genes[-1]]
    assert [a[i] for i in complete] == [longer[i] for i in complete]


def test_headers_parse_to_genes_with_isoforms_sharing_exons() -> None:
    transcripts = list(synthetic_transcripts(120, seed=11))
    by_gene: dict[str, list[str]] = defaultdict(list)
    for t in transcripts:
        accession, gene = parse_header(t.header)
        assert accession == t.accession and gene == t.gene and gene.startswith("SYNG")
        assert t.header.startswith(f"{accession} ") and "synthetic" in t.header
        by_gene[gene].append(t.sequence)
    multi = {g: seqs for g, seqs in by_gene.items() if len(seqs) > 1}
    assert len(multi) >= 10 and any(len(seqs) == 3 for seqs in multi.values())

    def kmers(seq: str, k: int = 40) -> set[str]:
        return {seq[i:i + k] for i in range(len(seq) - k + 1)}

    for seqs in multi.values():
        first = kmers(seqs[0])
        for other in seqs[1:]:
            assert other != seqs[0] and len(first & kmers(other)) / len(kmers(other)) > 0.5
    genes = list(by_gene)
    assert not kmers(by_gene[genes[0]][0]) & kmers(by_gene[genes[1]][0])


def test_cli_writes_refuses_and_overwrites(tmp_path: Path, capsys) -> None:
    output = tmp_path / "syn" / "rna.fasta"
    argv = ["--source", "synthetic", "--max_sequences", "25", "--output", str(output), "--seed", "5", "--log_level", "warning"]
    assert download_rna_sequences.main(argv) == 0
    records = list(iter_fasta(output))
    assert len(records) == 25
    assert all(len(line) <= 70 for line in output.read_text().splitlines() if not line.startswith(">"))
    metrics = json.loads((output.parent / f"{output.name}.metrics.json").read_text())
    assert metrics["synthetic"] is True and metrics["written"] == 25 and metrics["genes_with_isoforms"] >= 1
    first = output.read_bytes()
    assert download_rna_sequences.main(argv) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert download_rna_sequences.main([*argv[:-4], "--seed", "6", "--overwrite"]) == 0
    assert output.read_bytes() != first and len(list(iter_fasta(output))) == 25
    assert download_rna_sequences.main(["--source", "synthetic", "--output", str(tmp_path / "x.fa")]) == 2
    assert "--max_sequences" in capsys.readouterr().err


def test_cli_as_a_subprocess_is_deterministic(tmp_path: Path) -> None:
    outputs = []
    for name in ("a", "b"):
        output = tmp_path / name / "rna.fasta"
        subprocess.run([sys.executable, str(ROOT / "download_rna_sequences.py"), "--source", "synthetic",
                        "--max_sequences", "30", "--output", str(output), "--seed", "9"], cwd=ROOT, check=True,
                       capture_output=True)
        outputs.append(output.read_bytes())
    assert outputs[0] == outputs[1]


@pytest.mark.skipif(not REAL_FASTA.is_file(), reason="shared reference data absent")
def test_lengths_resemble_real_refseq_mrna() -> None:
    real = [len(r.sequence) for r in iter_fasta(REAL_FASTA)]
    synthetic = [len(t.sequence) for t in synthetic_transcripts(500, seed=0)]
    for q in (0.1, 0.5, 0.9):
        ratio = np.quantile(synthetic, q) / np.quantile(real, q)
        assert 0.5 < ratio < 2.0, (q, ratio)
