"""prepare_autoregressive_data.py and quixer_rna.prepare: k-mer ids, stretches and windows, cleaning, the
leak-free split, the run record rules, bad input as one stderr line, and a run on real RefSeq mRNA when it
is present."""

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
from quixer_rna.errors import UserError
from quixer_rna.fasta import parse_header
from quixer_rna.formats import SPLITS
from quixer_rna.formats.kmer_stream import StreamMetadata, StreamWriter, open_stream, open_stream_data
from quixer_rna.kmers import id_to_kmer, kmer_to_id
from quixer_rna.prepare import assign_splits, clean_sequence, window_span
from quixer_rna.sequence import kmer_ids, stretches

ROOT = Path(__file__).resolve().parents[1]
REAL_FASTA = Path(__file__).resolve().parents[2] / "shared" / "data" / "refseq_mrna_500.fa"

HOLDER = """
import sys, time
from quixer_rna.stage import stage_run
with stage_run(sys.argv[1], "prepare_autoregressive_data", {}, role="prepare") as run:
    print("ready", flush=True)
    time.sleep(120)
"""


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
    """The script's exit code (a parser error exits through SystemExit) and its stderr lines."""
    try:
        code = prep.main(argv)
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err.strip().splitlines()


def kmer_strings(ids: np.ndarray, k: int) -> list[list[str]]:
    return [[id_to_kmer(int(i), k) for i in row] for row in np.atleast_2d(ids)]


def one_transcript_stream(folder: Path, sequence: str, k: int, stride: int, window: int, step: int):
    """A one-transcript k-mer stream written by StreamWriter, opened with the given window rules."""
    ids, valid = kmer_ids(sequence, k, stride)
    writer = StreamWriter(folder, "train", k)
    writer.add("T1", "G1", len(sequence), ids, valid)
    writer.close()
    return open_stream(folder, "train", StreamMetadata(k=k, stride=stride, window_size=window, window_step=step,
                                                       splits={}))


def all_windows(stream) -> list[list[str]]:
    return kmer_strings(stream.windows(np.arange(stream.num_windows)), stream.k) if stream.num_windows else []


# --- k-mers and windows -------------------------------------------------------------------------------

def test_kmer_ids_non_overlapping_and_overlapping():
    ids, valid = kmer_ids("ACGTACGTAC", 3, 3)
    assert ids.tolist() == [kmer_to_id(x) for x in ("ACG", "TAC", "GTA")] and valid.all()
    ids, valid = kmer_ids("ACGTAC", 3, 1)
    assert ids.tolist() == [kmer_to_id(x) for x in ("ACG", "CGT", "GTA", "TAC")]
    assert len(kmer_ids("AC", 3, 1)[0]) == 0
    ids, valid = kmer_ids("ACNTACG", 3, 1)
    assert valid.tolist() == [False, False, False, True, True]
    assert ids[3:].tolist() == [kmer_to_id("TAC"), kmer_to_id("ACG")]
    assert kmer_ids("AAAAAAAAAAAAAAAAAAAAT", 21, 21)[0].tolist() == [3]  # k > 10 keeps exact int64 ids


def test_stretches_are_the_runs_of_valid_kmers():
    valid = np.array([1, 1, 0, 0, 1, 1, 1, 0, 1], dtype=bool)
    assert stretches(valid).tolist() == [[0, 2, 0, 0], [4, 3, 0, 4], [8, 1, 0, 8]]
    assert stretches(np.zeros(3, dtype=bool)).shape == (0, 4)


def test_window_step_one_makes_every_later_kmer_a_target_once(tmp_path):
    sequence = random_dna(random.Random(0), 200)
    k, window = 4, 8
    kmers = [sequence[i:i + k] for i in range(0, len(sequence) - k + 1, k)]
    stream = one_transcript_stream(tmp_path / "a", sequence, k, k, window, 1)
    windows = all_windows(stream)
    assert [w[-1] for w in windows] == kmers[window - 1:]
    assert all(len(w) == window for w in windows)
    assert windows[5] == kmers[5:5 + window] == kmer_strings(stream.windows(np.array([5])), k)[0]
    assert stream.target_positions(0, stream.num_windows).tolist() == list(range(window - 1, len(kmers)))

    disjoint = one_transcript_stream(tmp_path / "b", sequence, k, k, window, window)
    assert disjoint.num_windows == len(kmers) // window
    flat = [kmer for w in all_windows(disjoint) for kmer in w]
    assert flat == kmers[:len(flat)]


def test_overlapping_kmers_windows_with_stride_one(tmp_path):
    sequence = random_dna(random.Random(3), 60)
    stream = one_transcript_stream(tmp_path, sequence, 5, 1, 10, 1)
    windows = all_windows(stream)
    assert len(windows) == (60 - 5 + 1) - 10 + 1
    assert windows[0] == [sequence[i:i + 5] for i in range(10)]
    assert window_span(5, 1, 10) == 14 and window_span(6, 6, 32) == 192


def test_clean_sequence_uppercases_and_maps_u_to_t():
    assert clean_sequence("acguNu") == "ACGTNT"


def test_non_acgt_spoils_only_the_windows_that_contain_it(tmp_path):
    sequence = "A" * 40 + "N" + "C" * 59  # 100 nt, N at position 40
    stream = one_transcript_stream(tmp_path, sequence, 4, 4, 5, 1)
    # k-mers start at 0,4,...,96 (25 k-mers); k-mer 10 (40..43) holds the N; windows 6..10 contain it.
    assert stream.num_windows == 21 - 5
    starts = stream.starts(np.arange(stream.num_windows))
    first = stream.segments[:, 3][np.searchsorted(stream.segments[:, 0], starts, side="right") - 1]
    offset = stream.segments[:, 0][np.searchsorted(stream.segments[:, 0], starts, side="right") - 1]
    assert (first + starts - offset).tolist() == [s for s in range(21) if not 6 <= s <= 10]
    assert stream.segments.tolist() == [[0, 10, 0, 0], [10, 14, 0, 11]]


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

    data = open_stream_data(out)
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["format"] == "quixer-rna-kmer-stream" and meta["version"] == 1
    gene_sets = []
    for split, part in data.splits.items():
        table = part.transcripts
        assert part.num_windows == meta["splits"][split]["windows"] > 0
        assert len(table) == meta["splits"][split]["transcripts"] == meta["splits"][split]["sequences"]
        assert part.num_kmers == meta["splits"][split]["kmers"] == len(part.kmers)
        assert all(gene_of[a] == g for a, g in zip(table.accessions, table.genes))
        genes = {table.genes[t] for t in part.window_transcripts()}
        assert len(genes) == meta["splits"][split]["genes"]
        gene_sets.append(genes)
        for row in rows:
            if row["split"] == split:
                assert int(row["windows"]) == int((part.window_transcripts() == table.accessions.index(row["accession"])).sum())
    assert not (gene_sets[0] & gene_sets[1]) and not (gene_sets[0] & gene_sets[2]) and not (gene_sets[1] & gene_sets[2])
    assert meta["genes_in_more_than_one_split"] == 0
    assert meta["sequences"] == 36 and meta["genes"] == 12
    assert (meta["k"], meta["stride"], meta["window_size"], meta["window_step"], meta["split_by"]) == (6, 6, 8, 1, "gene")
    assert meta["kmer_dtype"] == "uint16" and data.splits["train"].kmers.dtype == np.uint16
    assert meta["synthetic"] is False and len(meta["inputs"][0]["sha256"]) == 64
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["windows"] == meta["windows"] and metrics["seconds"] >= 0
    assert metrics["bytes_on_disk"] == sum((out / s / f).stat().st_size for s in SPLITS
                                           for f in ("kmers.bin", "segments.npy", "transcripts.tsv"))
    record = json.loads((out / "args.json").read_text())
    assert record["status"] == "completed" and record["role"] == "prepare"
    # No per-window files unless asked for.
    assert not (out / "train" / "sentences.txt").exists()


def test_transcript_split_and_determinism(tmp_path, capsys):
    fasta = tmp_path / "in.fa"
    write_genes_fasta(fasta, n_genes=4, isoforms=4)
    args = ["--fasta", str(fasta), "--window_size", "8", "--split_by", "transcript", "--seed", "5", "--write_sentences"]
    assert prep.main(args + ["--output_dir", str(tmp_path / "a")]) == 0
    assert prep.main(args + ["--output_dir", str(tmp_path / "b")]) == 0
    for name in ("train/kmers.bin", "train/segments.npy", "val/transcripts.tsv", "test/kmers.bin",
                 "train/sentences.txt", "val/sources.txt", "test/sentences.txt", "splits.tsv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    meta = json.loads((tmp_path / "a" / "metadata.json").read_text())
    assert meta["splits"] == json.loads((tmp_path / "b" / "metadata.json").read_text())["splits"]
    assert meta["split_by"] == "transcript" and sum(s["sequences"] for s in meta["splits"].values()) == 16
    assert all(meta["splits"][s]["sequences"] >= 1 for s in ("train", "val", "test"))
    assert prep.main(args[:7] + ["6"] + args[8:] + ["--output_dir", str(tmp_path / "c")]) == 0
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
    assert len(meta["inputs"]) == 2 and meta["inputs"][1]["records"] == 2
    data = open_stream_data(out)
    windows_of = defaultdict(list)
    for part in data.splits.values():
        accessions = part.transcripts.accessions
        for window, row in zip(all_windows(part), part.window_transcripts()):
            windows_of[accessions[row]].append(window)

    def kmers(text: str) -> list[str]:
        return [text[i:i + 4] for i in range(0, len(text) - 3, 4)]

    assert windows_of["NM_4.1"] == [kmers(spoiled[4 * s:4 * s + 256]) for s in range(12)]
    assert windows_of["NM_1.1"][0] == kmers(body[:256])
    assert sum(len(v) for v in windows_of.values()) == meta["windows"] == 4 * 12 + 12
    # The spoiled transcript keeps its k-mers after the N as a second stretch (no window fits in it).
    spoiled_split = next(p for p in data.splits.values() if "NM_4.1" in p.transcripts.accessions)
    row = spoiled_split.transcripts.accessions.index("NM_4.1")
    assert spoiled_split.segments[spoiled_split.segments[:, 2] == row][:, [1, 3]].tolist() == [[75, 0], [24, 76]]
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
    assert code == 2 and len(err) == 1 and "not empty" in err[0] and "--overwrite" in err[0]
    assert run_main(args + ["--overwrite"], capsys)[0] == 0
    # A completed run is refused too, and replaced with --overwrite.
    code, err = run_main(args, capsys)
    assert code == 2 and len(err) == 1 and "holds a completed run" in err[0]
    assert run_main(args + ["--overwrite", "--window_size", "6"], capsys)[0] == 0
    assert json.loads((out / "metadata.json").read_text())["window_size"] == 6


def test_failed_run_is_recorded_and_its_folder_reused(tmp_path, capsys):
    fasta = tmp_path / "in.fa"
    write_genes_fasta(fasta, n_genes=4, isoforms=1)
    out = tmp_path / "out"
    code, err = run_main(["--fasta", str(fasta), "--output_dir", str(out), "--window_size", "100"], capsys)
    assert code == 2 and len(err) == 1 and "--window_size" in err[0]
    record = json.loads((out / "args.json").read_text())
    assert record["status"] == "failed" and "--window_size" in record["error"]
    assert not (out / "metadata.json").exists() and not (out / "train" / "kmers.bin").exists()
    assert run_main(["--fasta", str(fasta), "--output_dir", str(out), "--window_size", "8"], capsys)[0] == 0
    record = json.loads((out / "args.json").read_text())
    assert record["status"] == "completed" and record["previous_run"] == "failed"


def test_folder_held_by_a_live_process_is_one_line_naming_it(tmp_path, capsys):
    fasta = tmp_path / "in.fa"
    write_genes_fasta(fasta, n_genes=4, isoforms=1)
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        code, err = run_main(["--fasta", str(fasta), "--output_dir", str(out), "--window_size", "8", "--overwrite"],
                             capsys)
        assert code == 2 and len(err) == 1 and f"process {holder.pid} on " in err[0] and "--output_dir" in err[0], err
    finally:
        holder.kill()
        holder.wait(timeout=30)
    # The holder died mid-run: its folder is reused without --overwrite.
    assert run_main(["--fasta", str(fasta), "--output_dir", str(out), "--window_size", "8"], capsys)[0] == 0
    assert json.loads((out / "args.json").read_text())["previous_run"] == "dead"


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
        "k": (g + ["--k", "0"], "argument --k: expected a whole number >= 1"),
        "k_too_long": (g + ["--k", "40"], "--k 40"),
        "stride": (g + ["--stride", "0"], "argument --stride"),
        "window_step": (g + ["--window_step", "0"], "argument --window_step"),
        "window_size": (["--fasta", str(good), "--window_size", "1"], "--window_size 1"),
        "val_fraction": (g + ["--val_fraction", "1.0"], "argument --val_fraction: expected a fraction in (0, 1)"),
        "test_fraction": (g + ["--test_fraction", "-0.1"], "--test_fraction"),
        "fraction_sum": (g + ["--val_fraction", "0.5", "--test_fraction", "0.5"], "sum"),
        "too_few_genes": (["--fasta", str(one_gene), "--window_size", "8"], "too few"),
        "split_by": (g + ["--split_by", "exon"], "argument --split_by"),
    }


@pytest.mark.parametrize("case", ["empty", "not_fasta", "no_sequence", "truncated_gz", "missing", "no_window",
                                  "too_short", "k", "k_too_long", "stride", "window_step", "window_size",
                                  "val_fraction", "test_fraction", "fraction_sum", "too_few_genes", "split_by"])
def test_bad_input_is_one_stderr_line(tmp_path, capsys, case):
    argv, expected = _bad_inputs(tmp_path)[case]
    code, err = run_main(argv + ["--output_dir", str(tmp_path / "out")], capsys)
    assert code == 2
    assert len(err) == 1 and "error:" in err[0] and expected in err[0], err
    assert not (tmp_path / "out" / "metadata.json").exists()


def test_script_end_to_end_as_subprocess(tmp_path):
    fasta = tmp_path / "in.fa.gz"
    plain = tmp_path / "plain.fa"
    write_genes_fasta(plain, n_genes=6, isoforms=2)
    fasta.write_bytes(gzip.compress(plain.read_bytes()))
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(ROOT / "prepare_autoregressive_data.py"), "--fasta", str(fasta), "--output_dir",
         str(out), "--window_size", "16", "--stride", "1", "--window_step", "16", "--write_sentences"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["stride"] == 1 and meta["window_step"] == 16 and meta["window_span_nt"] == 21
    data = open_stream_data(out)
    assert sum(p.num_windows for p in data.splits.values()) == meta["windows"] > 0
    window = all_windows(data.splits["train"])[0]
    assert all(a[1:] == b[:-1] for a, b in zip(window, window[1:]))
    assert (out / "train" / "sentences.txt").read_text().splitlines()[0] == " ".join(window)
    assert json.loads((out / "args.json").read_text())["command"][0] == "prepare_autoregressive_data.py"


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
    assert meta["sequences"] == 500 and meta["genes"] == len(splits_of_gene) == 492
    assert {s: meta["splits"][s]["windows"] for s in SPLITS} == {"train": 199_941, "val": 25_254, "test": 25_733}
    for split in ("val", "test"):
        assert 0.09 < meta["window_fractions"][split] < 0.13
    assert np.isclose(sum(meta["window_fractions"].values()), 1.0)
    data = open_stream_data(out)
    genes = {}
    for split, part in data.splits.items():
        assert part.num_windows == meta["splits"][split]["windows"]
        genes[split] = set(part.transcripts.genes)
        assert len(genes[split]) == meta["splits"][split]["genes"]
    assert not genes["train"] & genes["test"] and not genes["train"] & genes["val"] and not genes["val"] & genes["test"]
    # 6-mers of 2 bytes, stored once: about a third of the FASTA's nucleotides in bytes, not 32 x.
    kmers_bytes = sum((out / s / "kmers.bin").stat().st_size for s in SPLITS)
    assert kmers_bytes < meta["total_nucleotides"] / 2
