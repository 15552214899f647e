"""prepare_autoregressive_data.py and quixer_rna.data: k-mers, windows, cleaning, the leak-free split,
bad input as one stderr line, and a run on real RefSeq mRNA when it is present."""

from __future__ import annotations

import csv
import gzip
import json
import random
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

import prepare_autoregressive_data as prep
from quixer_rna.data import SplitWindows, Transcript, assign_splits, clean_sequence, extract_kmers, valid_window_starts
from quixer_rna.errors import UserError
from quixer_rna.fasta import parse_header
from quixer_rna.formats.sentences import load_sentence_dataset

ROOT = Path(__file__).resolve().parents[1]
REAL_FASTA = Path(__file__).resolve().parents[2] / "shared" / "data" / "refseq_mrna_500.fa"


def random_dna(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("ACGT") for _ in range(n))


def write_genes_fasta(path: Path, n_genes: int = 12, isoforms: int = 2, seed: int = 1, length: int = 400) -> dict[str, str]:
    """Genes whose isoforms share most of their sequence (as real isoforms share exons); returns accession -> gene."""
    rng = random.Random(seed)
    gene_of = {}
    lines = []
    for g in range(n_genes):
        gene = f"GENE{g}"
        exons = [random_dna(rng, length // 4) for _ in range(5)]
        for i in range(isoforms):
            accession = f"NM_{g:04d}{i}.1"
            sequence = "".join(exon for j, exon in enumerate(exons) if j != i % 5)
            lines.append(f">{accession} Homo sapiens gene {g} ({gene}), transcript variant {i + 1}, mRNA\n{sequence}\n")
            gene_of[accession] = gene
    path.write_text("".join(lines))
    return gene_of


def read_splits_table(out: Path) -> list[dict[str, str]]:
    with open(out / "splits.tsv", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def run_main(argv: list[str], capsys) -> tuple[int, list[str]]:
    code = prep.main(argv)
    return code, capsys.readouterr().err.strip().splitlines()


# --- k-mers and windows -------------------------------------------------------------------------------

def test_kmers_non_overlapping_and_overlapping():
    assert extract_kmers("ACGTACGTAC", 3, 3) == ["ACG", "TAC", "GTA"]
    assert extract_kmers("ACGTAC", 3, 1) == ["ACG", "CGT", "GTA", "TAC"]
    assert extract_kmers("AC", 3, 1) == []


def test_window_step_one_makes_every_later_kmer_a_target_once():
    sequence = random_dna(random.Random(0), 200)
    k, window = 4, 8
    kmers = extract_kmers(sequence, k, k)
    starts, dropped = valid_window_starts(sequence, k, k, window, 1)
    assert dropped == 0
    split = SplitWindows([Transcript("T1", "G1", sequence, starts)], k, k, window)
    windows = list(split)
    assert [w[-1] for w in windows] == kmers[window - 1:]
    assert all(len(w) == window for w in windows)
    assert windows[5] == kmers[5:5 + window] == split[5]

    disjoint_starts, _ = valid_window_starts(sequence, k, k, window, window)
    disjoint = list(SplitWindows([Transcript("T1", "G1", sequence, disjoint_starts)], k, k, window))
    assert len(disjoint) == len(kmers) // window
    flat = [kmer for w in disjoint for kmer in w]
    assert flat == kmers[:len(flat)]


def test_overlapping_kmers_windows_with_stride_one():
    sequence = random_dna(random.Random(3), 60)
    starts, _ = valid_window_starts(sequence, 5, 1, 10, 1)
    windows = list(SplitWindows([Transcript("T", "G", sequence, starts)], 5, 1, 10))
    assert len(windows) == (60 - 5 + 1) - 10 + 1
    assert windows[0] == [sequence[i:i + 5] for i in range(10)]


def test_clean_sequence_uppercases_and_maps_u_to_t():
    assert clean_sequence("acguNu") == "ACGTNT"


def test_non_acgt_spoils_only_the_windows_that_contain_it():
    sequence = "A" * 40 + "N" + "C" * 59  # 100 nt, N at position 40
    starts, dropped = valid_window_starts(sequence, 4, 4, 5, 1)
    # k-mers start at 0,4,...,96 (25 k-mers); k-mer 10 (40..43) holds the N; windows 6..10 contain it.
    assert dropped == 5
    assert starts.tolist() == [s for s in range(21) if not 6 <= s <= 10]


def test_assign_splits_keeps_units_whole_and_is_seeded():
    units = {f"G{i}": 10 + i for i in range(40)}
    first = assign_splits(units, 0.1, 0.2, seed=7)
    assert first == assign_splits(units, 0.1, 0.2, seed=7)
    assert first != assign_splits(units, 0.1, 0.2, seed=8)
    held = Counter()
    for unit, split in first.items():
        held[split] += units[unit]
    total = sum(units.values())
    assert 0.2 * total <= held["test"] < 0.2 * total + 49
    assert 0.1 * total <= held["val"] < 0.1 * total + 49
    assert set(first) == set(units)
    with pytest.raises(UserError, match="too few"):
        assign_splits({"A": 5, "B": 5}, 0.1, 0.1, seed=0)
    assert sorted(assign_splits({"A": 5, "B": 5, "C": 100}, 0.1, 0.1, seed=0).values()) == ["test", "train", "val"]
    assert set(assign_splits({"A": 5, "B": 5}, 0.0, 0.1, seed=0).values()) == {"test", "train"}


def test_header_styles():
    assert parse_header("NM_000546.6 Homo sapiens tumor protein p53 (TP53), transcript variant 1, mRNA") == (
        "NM_000546.6", "TP53")
    assert parse_header("gi|371502114|ref|NM_000546.5| Homo sapiens tumor protein p53 (TP53), mRNA") == (
        "NM_000546.5", "TP53")
    assert parse_header(
        "ENST00000269305.9|ENSG00000141510.18|OTTHUMG00000162125.10|OTTHUMT00000367397.3|TP53-201|TP53|2512|"
        "protein_coding|") == ("ENST00000269305.9", "TP53")
    assert parse_header("gi|1|ref|NM_1.1| Homo sapiens spinster homolog 1 (Drosophila) (SPNS1), mRNA")[1] == "SPNS1"


# --- the stage through main() ---------------------------------------------------------------------------

def test_three_header_styles_group_one_gene(tmp_path, capsys):
    rng = random.Random(4)
    headers = [
        "NM_000546.6 Homo sapiens tumor protein p53 (TP53), transcript variant 1, mRNA",
        "gi|371502114|ref|NM_001126112.2| Homo sapiens tumor protein p53 (TP53), transcript variant 2, mRNA",
        "ENST00000269305.9|ENSG00000141510.18|OTTHUMG1|OTTHUMT1|TP53-201|TP53|2512|protein_coding|",
        "ENST00000000001.1|ENSG00000000002.1|-|-|BRCA1-201|BRCA1|300|protein_coding|",
        "NM_007294.4 Homo sapiens BRCA1 DNA repair associated (BRCA1), transcript variant 1, mRNA",
        "NM_000059.4 Homo sapiens BRCA2 DNA repair associated (BRCA2), mRNA",
        "gi|1|ref|NM_000038.6| Homo sapiens APC regulator of WNT signaling pathway (APC), mRNA",
    ]
    fasta = tmp_path / "mixed.fa"
    fasta.write_text("".join(f">{h}\n{random_dna(rng, 300)}\n" for h in headers))
    out = tmp_path / "out"
    assert run_main(["--fasta", str(fasta), "--output_dir", str(out), "--window_size", "8"], capsys)[0] == 0
    rows = read_splits_table(out)
    assert [row["accession"] for row in rows][:3] == ["NM_000546.6", "NM_001126112.2", "ENST00000269305.9"]
    split_of = defaultdict(set)
    for row in rows:
        split_of[row["gene"]].add(row["split"])
    assert set(split_of) == {"TP53", "BRCA1", "BRCA2", "APC"}
    assert all(len(s) == 1 for s in split_of.values())


def test_gene_split_keeps_isoforms_together_and_writes_valid_folder(tmp_path, capsys):
    fasta = tmp_path / "in.fa"
    gene_of = write_genes_fasta(fasta, n_genes=12, isoforms=3)
    out = tmp_path / "out"
    code, _ = run_main(["--fasta", str(fasta), "--output_dir", str(out), "--window_size", "8", "--seed", "3"], capsys)
    assert code == 0
    rows = read_splits_table(out)
    splits_of_gene = defaultdict(set)
    for row in rows:
        assert row["gene"] == gene_of[row["accession"]]
        splits_of_gene[row["gene"]].add(row["split"])
    assert all(len(s) == 1 for s in splits_of_gene.values())
    assert {s for ss in splits_of_gene.values() for s in ss} == {"train", "val", "test"}

    data = load_sentence_dataset(out, k=6, max_kmers=8)
    meta = json.loads((out / "metadata.json").read_text())
    for split, part in data.items():
        assert len(part) == meta["splits"][split]["windows"] > 0
        assert {gene_of[s] for s in part.sources} and len({gene_of[s] for s in part.sources}) == meta["splits"][split]["genes"]
    gene_sets = [{gene_of[s] for s in part.sources} for part in data.values()]
    assert not (gene_sets[0] & gene_sets[1]) and not (gene_sets[0] & gene_sets[2]) and not (gene_sets[1] & gene_sets[2])
    assert meta["genes_in_more_than_one_split"] == 0
    assert meta["sequences"] == 36 and meta["genes"] == 12
    assert (meta["k"], meta["stride"], meta["window_size"], meta["window_step"], meta["split_by"]) == (6, 6, 8, 1, "gene")
    assert meta["synthetic"] is False and len(meta["inputs"][0]["sha256"]) == 64
    assert all(label == 0 for part in data.values() for label in part.labels)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["windows"] == meta["windows"] and metrics["seconds"] >= 0
    assert json.loads((out / "args.json").read_text())["status"] == "completed"


def test_transcript_split_and_determinism(tmp_path, capsys):
    fasta = tmp_path / "in.fa"
    write_genes_fasta(fasta, n_genes=4, isoforms=4)
    args = ["--fasta", str(fasta), "--window_size", "8", "--split_by", "transcript", "--seed", "5"]
    assert prep.main(args + ["--output_dir", str(tmp_path / "a")]) == 0
    assert prep.main(args + ["--output_dir", str(tmp_path / "b")]) == 0
    for name in ("train/sentences.txt", "val/sources.txt", "test/sentences.txt", "splits.tsv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    meta = json.loads((tmp_path / "a" / "metadata.json").read_text())
    assert meta["split_by"] == "transcript" and sum(s["sequences"] for s in meta["splits"].values()) == 16
    assert all(meta["splits"][s]["sequences"] >= 1 for s in ("train", "val", "test"))
    assert prep.main(args[:-1] + ["6", "--output_dir", str(tmp_path / "c")]) == 0
    assert (tmp_path / "a" / "splits.tsv").read_text() != (tmp_path / "c" / "splits.tsv").read_text()


def test_cleaning_skips_and_counts(tmp_path, capsys):
    rng = random.Random(2)
    body = random_dna(rng, 300)
    spoiled = random_dna(rng, 400)
    spoiled = spoiled[:300] + "N" + spoiled[301:]
    records = [
        ("NM_1.1 a (GA), mRNA", body.lower().replace("T", "u").replace("t", "u")),
        ("NM_2.1 b (GB), mRNA", random_dna(rng, 300)),
        ("NM_3.1 c (GC), mRNA", random_dna(rng, 300)),
        ("NM_4.1 d (GD), mRNA [synthetic]", spoiled),
        ("NM_5.1 short (GE), mRNA", random_dna(rng, 100)),
        ("NM_6.1 allN (GF), mRNA", "N" * 300),
        ("NM_7.1 no window (GG), mRNA", random_dna(rng, 250)),
    ]
    first = tmp_path / "one.fa"
    first.write_text("".join(f">{h}\n{s}\n" for h, s in records))
    second = tmp_path / "two.fa.gz"
    with gzip.open(second, "wt") as handle:
        handle.write(f">NM_1.1 dup (GA), mRNA\n{random_dna(rng, 300)}\n>NM_8.1 e (GH), mRNA\n{random_dna(rng, 300)}\n")
    out = tmp_path / "out"
    code, _ = run_main(["--fasta", str(first), "--fasta", str(second), "--output_dir", str(out), "--k", "4",
                        "--window_size", "64", "--val_fraction", "0.2", "--test_fraction", "0.2"], capsys)
    assert code == 0
    meta = json.loads((out / "metadata.json").read_text())
    # A window spans (64-1)*4+4 = 256 nt: the 250-nt transcript has none, a 300-nt one 12. In the 400-nt one
    # (37 windows) the N is in k-mer 75, so windows 12..36 go; the all-N transcript loses all 12.
    assert meta["skipped"] == {"too_short": 1, "duplicate": 1, "no_windows": 1, "all_windows_non_acgt": 1,
                               "non_acgt_windows": 25 + 12}
    assert meta["synthetic"] is True and meta["sequences"] == 5
    assert len(meta["inputs"]) == 2
    data = load_sentence_dataset(out, k=4, max_kmers=64)
    windows_of = defaultdict(list)
    for part in data.values():
        for window, source in zip(part.kmers, part.sources):
            windows_of[source].append(window)
    assert windows_of["NM_4.1"] == [extract_kmers(spoiled[4 * s:4 * s + 256], 4, 4) for s in range(12)]
    assert windows_of["NM_1.1"][0] == extract_kmers(body[:256], 4, 4)
    assert sum(len(v) for v in windows_of.values()) == meta["windows"] == 4 * 12 + 12
    skipped = {row["accession"]: row["split"] for row in read_splits_table(out) if row["split"].startswith("skipped")}
    assert skipped == {"NM_5.1": "skipped:too_short", "NM_6.1": "skipped:all_windows_non_acgt",
                       "NM_7.1": "skipped:no_windows", "NM_1.1": "skipped:duplicate"}


def test_refuses_non_empty_output_without_overwrite(tmp_path, capsys):
    fasta = tmp_path / "in.fa"
    write_genes_fasta(fasta, n_genes=4, isoforms=1)
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("x")
    args = ["--fasta", str(fasta), "--output_dir", str(out), "--window_size", "8"]
    code, err = run_main(args, capsys)
    assert code == 2 and len(err) == 1 and "--overwrite" in err[0]
    assert run_main(args + ["--overwrite"], capsys)[0] == 0


def _bad_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    good = tmp / "good.fa"
    write_genes_fasta(good, n_genes=4, isoforms=1)
    (tmp / "empty.fa").write_text("")
    (tmp / "notfasta.fa").write_text("this is not a FASTA file\nACGT\n")
    (tmp / "noseq.fa").write_text(">NM_1.1 a (A), mRNA\n>NM_2.1 b (B), mRNA\nACGTACGT\n")
    blob = gzip.compress(good.read_bytes())
    (tmp / "trunc.fa.gz").write_bytes(blob[: len(blob) // 2])
    one_gene = tmp / "onegene.fa"
    write_genes_fasta(one_gene, n_genes=2, isoforms=3)
    g = ["--fasta", str(good), "--window_size", "8"]
    return {
        "empty": (["--fasta", str(tmp / "empty.fa")], "empty.fa"),
        "not_fasta": (["--fasta", str(tmp / "notfasta.fa")], "notfasta.fa"),
        "no_sequence": (["--fasta", str(tmp / "noseq.fa")], "no sequence"),
        "truncated_gz": (["--fasta", str(tmp / "trunc.fa.gz")], "trunc.fa.gz"),
        "missing": (["--fasta", str(tmp / "absent.fa")], "absent.fa"),
        "no_window": (["--fasta", str(good), "--window_size", "100"], "--window_size"),
        "too_short": (["--fasta", str(good), "--min_length", "5000"], "--min_length"),
        "k": (g + ["--k", "0"], "--k"),
        "stride": (g + ["--stride", "0"], "--stride"),
        "window_step": (g + ["--window_step", "0"], "--window_step"),
        "window_size": (["--fasta", str(good), "--window_size", "1"], "--window_size"),
        "val_fraction": (g + ["--val_fraction", "1.0"], "--val_fraction"),
        "test_fraction": (g + ["--test_fraction", "-0.1"], "--test_fraction"),
        "fraction_sum": (g + ["--val_fraction", "0.5", "--test_fraction", "0.5"], "sum"),
        "too_few_genes": (["--fasta", str(one_gene), "--window_size", "8"], "too few"),
    }


@pytest.mark.parametrize("case", ["empty", "not_fasta", "no_sequence", "truncated_gz", "missing", "no_window",
                                  "too_short", "k", "stride", "window_step", "window_size", "val_fraction",
                                  "test_fraction", "fraction_sum", "too_few_genes"])
def test_bad_input_is_one_stderr_line(tmp_path, capsys, case):
    argv, expected = _bad_inputs(tmp_path)[case]
    code, err = run_main(argv + ["--output_dir", str(tmp_path / "out")], capsys)
    assert code == 2
    assert len(err) == 1 and "error:" in err[0] and expected in err[0], err


def test_script_end_to_end_as_subprocess(tmp_path):
    fasta = tmp_path / "in.fa.gz"
    plain = tmp_path / "plain.fa"
    write_genes_fasta(plain, n_genes=6, isoforms=2)
    fasta.write_bytes(gzip.compress(plain.read_bytes()))
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(ROOT / "prepare_autoregressive_data.py"), "--fasta", str(fasta), "--output_dir",
         str(out), "--window_size", "16", "--stride", "1", "--window_step", "16"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["stride"] == 1 and meta["window_step"] == 16
    data = load_sentence_dataset(out, k=6, max_kmers=16)
    assert sum(len(p) for p in data.values()) == meta["windows"] > 0
    window = data["train"].kmers[0]
    assert all(a[1:] == b[:-1] for a, b in zip(window, window[1:]))


@pytest.mark.skipif(not REAL_FASTA.is_file(), reason="reference data refseq_mrna_500.fa is absent")
def test_real_refseq_mrna_split_by_gene(tmp_path, capsys):
    out = tmp_path / "real"
    assert run_main(["--fasta", str(REAL_FASTA), "--output_dir", str(out)], capsys)[0] == 0
    meta = json.loads((out / "metadata.json").read_text())
    rows = read_splits_table(out)
    splits_of_gene = defaultdict(set)
    for row in rows:
        splits_of_gene[row["gene"]].add(row["split"])
    assert all(len(s) == 1 for s in splits_of_gene.values())
    assert meta["sequences"] == 500 and meta["genes"] == len(splits_of_gene)
    for split in ("val", "test"):
        assert 0.09 < meta["window_fractions"][split] < 0.13
    train_sources = set((out / "train" / "sources.txt").read_text().split())
    gene_of = {row["accession"]: row["gene"] for row in rows}
    test_sources = set((out / "test" / "sources.txt").read_text().split())
    assert not {gene_of[s] for s in train_sources} & {gene_of[s] for s in test_sources}
    assert np.isclose(sum(meta["window_fractions"].values()), 1.0)
