"""Grouping transcripts that must share a split (gene map, header, locus, shared sequence), the leak figure, long
records split by region, soft-masked bases, and FASTA read in pieces."""

from __future__ import annotations

import csv
import io
import json
import random
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

import prepare_autoregressive_data as prep
from quixer_rna.errors import UserError
from quixer_rna.fasta import _pieces, header_info, iter_fasta, parse_header
from quixer_rna.formats.kmer_stream import open_stream_data, read_leak_table
from quixer_rna.grouping import Member, anchor_length, batch_anchors, read_gene_map, sliding_min
from quixer_rna.sequence import base_digits, codes_inside_runs, kmer_ids, nucleotides_of_kmers

REFSEQ_4000 = Path(__file__).resolve().parents[2] / "shared" / "data" / "refseq_mrna_4000.fa.gz"


def dna(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("ACGT") for _ in range(n))


def isoform_fasta(path: Path, genes: int = 30, seed: int = 0, named: bool = False) -> dict[str, str]:
    """Genes of 2 isoforms sharing 3 of 4 exons (120 nt each); headers give ids only unless `named`."""
    rng = random.Random(seed)
    gene_of, text = {}, []
    for g in range(genes):
        exons = [dna(rng, 120) for _ in range(4)]
        for i in range(2):
            accession = f"ENST{g:05d}{i}.1"
            description = f" Homo sapiens gene (G{g}), mRNA" if named else ""
            text.append(f">{accession}{description}\n{''.join(e for j, e in enumerate(exons) if j != 1 + i)}\n")
            gene_of[accession] = f"G{g}"
    path.write_text("".join(text))
    return gene_of


def splits_table(out: Path) -> list[dict[str, str]]:
    with open(out / "splits.tsv", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def run(argv: list[str], capsys) -> tuple[int, str]:
    code = prep.main(argv)
    return code, capsys.readouterr().err


# ---- headers, gene maps, FASTA pieces ---------------------------------------------------------------------------

def test_header_info_reads_ensembl_genes_and_loci():
    ensembl = header_info("ENST00000335137.4 cdna chromosome:GRCh38:1:69091:70008:-1 gene:ENSG00000186092.6 "
                          "gene_biotype:protein_coding gene_symbol:OR4F5")
    assert ensembl.gene == "ENSG00000186092" and (ensembl.locus.chrom, ensembl.locus.strand) == ("1", "-")
    ucsc = header_info("hg19_ct_UserTrack_3545_NM_173083 range=chr1:226418850-226497204 5'pad=0 strand=- x")
    assert ucsc.gene is None and ucsc.locus.start == 226418850 and ucsc.locus.end == 226497204
    assert header_info("NM_1.1 Homo sapiens x (TP53), mRNA").gene == "TP53"
    assert parse_header("ENST00000001.2") == ("ENST00000001.2", "ENST00000001")  # no gene: itself, no version


def test_gene_map_columns_and_errors(tmp_path):
    table = tmp_path / "map.tsv"
    table.write_text("header_id\trefseq\tentrez_gene_id\tsymbol\nT1.1\tNM_1\t11\tAA\nT2\tNM_2\t\t\nT3\tNM_3\t11\tAA\n")
    genes = read_gene_map(table)
    assert genes.get("T1.1") == "11" and genes.get("T1") == "11" and genes.get("T3.4") == "11"
    assert genes.get("T2") is None  # an empty gene falls back
    assert read_gene_map(table, "symbol").get("T1.1") == "AA"
    plain = tmp_path / "plain.tsv"
    plain.write_text("T1\tGENE1\nT2\tGENE2\n")
    assert read_gene_map(plain).get("T2") == "GENE2"
    with pytest.raises(UserError, match="no column named 'gene_name'"):
        read_gene_map(table, "gene_name")
    clash = tmp_path / "clash.tsv"
    clash.write_text("id\tgene\nT1\tA\nT1\tB\n")
    with pytest.raises(UserError, match="clash.tsv:3: T1 maps to two genes"):
        read_gene_map(clash)


def test_fasta_pieces_give_the_same_records_at_any_piece_size():
    rng = random.Random(5)
    records = [(f"r{i} note", "".join(rng.choice("ACGTNacgt") for _ in range(rng.randint(1, 300)))) for i in range(40)]
    text = "".join(f">{h}\n" + "\n".join(s[j:j + 61] for j in range(0, len(s), 61)) + "\n" for h, s in records)
    for size in (1, 3, 64, 1 << 20):
        joined: dict[int, list] = {}
        for number, header, piece in _pieces(io.BytesIO(text.encode()), "x", size):
            joined.setdefault(number, [header, b""])[1] += piece
        assert [(h, p.decode()) for h, p in joined.values()] == records


# ---- sequence anchors ------------------------------------------------------------------------------------------

def test_sliding_min_and_nucleotides_back_from_kmers():
    values = np.random.default_rng(0).integers(0, 1000, 101).astype(np.uint64)
    for width in (1, 2, 7, 101):
        assert sliding_min(values, width).tolist() == [int(values[i:i + width].min()) for i in range(102 - width)]
    sequence = dna(random.Random(1), 40)
    for k, stride in ((6, 6), (6, 2), (3, 1)):
        ids, _ = kmer_ids(sequence, k, stride)
        digits, lengths = nucleotides_of_kmers(ids, np.array([len(ids)]), k, stride)
        assert "".join("ACGT"[d] for d in digits) == sequence[: lengths[0]]
    codes, positions = codes_inside_runs(base_digits("ACGTNACG"), np.array([4, 4]), 3)
    assert positions.tolist() == [0, 1, 5]  # no 3-mer across the run boundary or over the N


def test_a_shared_run_of_min_run_bases_always_shares_an_anchor():
    rng = random.Random(2)
    min_run = 40
    for trial in range(20):
        shared = dna(rng, min_run)
        a, b = dna(rng, 90) + shared + dna(rng, 70), dna(rng, 33) + shared + dna(rng, 50)
        members = []
        for accession, sequence in (("A", a), ("B", b)):
            ids, _ = kmer_ids(sequence, 1, 1)
            members.append(Member(accession, None, None, ids, np.array([[0, len(ids)]])))
        values, owners = batch_anchors(members, [0, 1], 1, 1, min_run)
        assert set(values[owners == 0].tolist()) & set(values[owners == 1].tolist()), trial
    assert anchor_length(48) == (32, 17) and anchor_length(20) == (20, 1)


# ---- grouping and the leak figure, end to end ---------------------------------------------------------------------

def test_isoforms_without_gene_names_share_a_split_and_the_leak_is_near_zero(tmp_path, capsys):
    fasta = tmp_path / "ids_only.fa"
    gene_of = isoform_fasta(fasta)
    out = tmp_path / "gene"
    code, err = run(["--fasta", str(fasta), "--output_dir", str(out), "--window_size", "8"], capsys)
    assert code == 0 and "leak" not in err
    rows = splits_table(out)
    split_of_gene = defaultdict(set)
    for row in rows:
        split_of_gene[gene_of[row["accession"]]].add(row["split"])
        assert row["gene_source"] == "sequence"
    assert all(len(s) == 1 for s in split_of_gene.values())
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["genes"] == 30 and meta["gene_sources"]["total"] == {"sequence": 60}
    assert meta["leak"]["test"]["share"] < 0.005 and meta["leak"]["above_threshold"] is False


def test_a_leaky_split_is_measured_and_warned_about(tmp_path, capsys):
    fasta = tmp_path / "ids_only.fa"
    isoform_fasta(fasta)
    out = tmp_path / "transcript"
    code, err = run(["--fasta", str(fasta), "--output_dir", str(out), "--window_size", "8", "--split_by",
                     "transcript"], capsys)
    assert code == 0
    meta = json.loads((out / "metadata.json").read_text())
    leak = meta["leak"]
    assert leak["above_threshold"] and max(leak["val"]["share"], leak["test"]["share"]) > 0.3
    warnings = [line for line in err.splitlines() if "WARNING" in line and "leak" in line]
    assert len(warnings) == 1 and "--split_by gene" in warnings[0]


def test_leak_figure_from_the_stream_equals_one_from_the_fasta(tmp_path, capsys):
    fasta = tmp_path / "ids_only.fa"
    isoform_fasta(fasta, genes=12, seed=3)
    out = tmp_path / "out"
    assert run(["--fasta", str(fasta), "--output_dir", str(out), "--window_size", "8", "--split_by", "transcript",
                "--leak_length", "20", "--stride", "3", "--k", "6"], capsys)[0] == 0
    split_of = {row["accession"]: row["split"] for row in splits_table(out)}
    sequences = {record.accession: record.sequence for record in iter_fasta(fasta)}
    train = {s[i:i + 20] for a, s in sequences.items() if split_of[a] == "train" for i in range(len(s) - 19)}
    table = read_leak_table(out)
    meta = json.loads((out / "metadata.json").read_text())
    data = open_stream_data(out)
    for split in ("val", "test"):
        accessions = data.splits[split].transcripts.accessions
        for row, accession in enumerate(accessions):
            s = sequences[accession]
            used = 6 + (len(s) - 6) // 3 * 3  # the bases the k-mers spell
            queries = [s[i:i + 20] for i in range(0, used - 19, 3)]
            assert table[split]["queries"][row] == len(queries)
            assert table[split]["shared"][row] == sum(q in train for q in queries)
        assert meta["leak"][split]["shared"] == int(table[split]["shared"].sum())


def test_gene_map_keeps_every_isoform_together_and_states_its_fallback(tmp_path, capsys):
    fasta = tmp_path / "ids_only.fa"
    gene_of = isoform_fasta(fasta, genes=20, seed=4)
    table = tmp_path / "genes.tsv"
    mapped = sorted(gene_of)[:-2]  # the last gene's two isoforms are missing from the map
    table.write_text("transcript\tgene\n" + "".join(f"{a.split('.')[0]}\t{gene_of[a]}\n" for a in mapped))
    out = tmp_path / "out"
    code, err = run(["--fasta", str(fasta), "--output_dir", str(out), "--window_size", "8", "--gene_map", str(table)],
                    capsys)
    assert code == 0 and "2 of 40 transcripts are not in it" in err
    rows = splits_table(out)
    split_of_gene = defaultdict(set)
    for row in rows:
        split_of_gene[gene_of[row["accession"]]].add(row["split"])
        assert row["gene_source"] == ("map" if row["accession"] in mapped else "sequence")
    assert all(len(s) == 1 for s in split_of_gene.values())
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["gene_sources"]["total"] == {"map": 38, "sequence": 2}
    none = tmp_path / "none.tsv"
    none.write_text("transcript\tgene\nNOPE\tX\n")
    code, err = run(["--fasta", str(fasta), "--output_dir", str(tmp_path / "none"), "--window_size", "8",
                     "--gene_map", str(none)], capsys)
    assert code == 2 and err.strip().splitlines()[-1].endswith("or their accession)")


def test_family_split_joins_genes_sharing_sequence(tmp_path, capsys):
    rng = random.Random(6)
    domain = dna(rng, 200)
    text = "".join(f">NM_{g}.1 gene (P{g}), mRNA\n{dna(rng, 150)}{domain if g < 4 else dna(rng, 200)}{dna(rng, 150)}\n"
                   for g in range(16))
    fasta = tmp_path / "paralogs.fa"
    fasta.write_text(text)
    out = tmp_path / "family"
    assert run(["--fasta", str(fasta), "--output_dir", str(out), "--window_size", "8", "--split_by", "family"],
               capsys)[0] == 0
    groups = {row["accession"]: row["group"] for row in splits_table(out)}
    assert len({groups[f"NM_{g}.1"] for g in range(4)}) == 1 and len(set(groups.values())) == 13
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["genes"] == 13 and meta["leak"]["test"]["share"] < 0.01


# ---- chromosomes: region split and soft-masked repeats -----------------------------------------------------------

def chromosome_fasta(path: Path, length: int = 400_000, seed: int = 7) -> str:
    """A chromosome-shaped record (N runs, lowercase stretches) and a chrM record."""
    rng = np.random.default_rng(seed)
    letters = np.frombuffer(b"ACGT", dtype=np.uint8)[rng.integers(0, 4, length)].copy()
    for start in rng.integers(0, length - 5000, 12):
        letters[start:start + rng.integers(200, 4000)] += 32  # lowercase
    letters[:3000] = ord("N")
    letters[200_000:203_000] = ord("N")
    chrom = letters.tobytes().decode()
    mito = "".join(random.Random(seed).choice("ACGT") for _ in range(16_569))
    path.write_text(f">chr1\n{chrom}\n>chrM\n{mito}\n")
    return chrom


def test_a_chromosome_splits_by_region_with_guards(tmp_path, capsys):
    fasta = tmp_path / "chr.fa"
    chromosome_fasta(fasta)
    code, err = run(["--fasta", str(fasta), "--output_dir", str(tmp_path / "gene"), "--window_size", "8"], capsys)
    assert code == 2 and "--split_by region" in err
    out = tmp_path / "region"
    assert run(["--fasta", str(fasta), "--output_dir", str(out), "--split_by", "region", "--block_size", "10000"],
               capsys)[0] == 0
    meta = json.loads((out / "metadata.json").read_text())
    assert all(meta["splits"][s]["windows"] > 0 for s in ("train", "val", "test"))
    rows = [r for r in splits_table(out) if not r["split"].startswith("skipped")]
    assert rows[0]["accession"] == "chr1:1-10000" and rows[-1]["accession"].startswith("chrM:")
    guard = meta["guard_nt"]
    assert guard == 31 * 6 + 6
    data = open_stream_data(out)
    where = {}
    for split, stream in data.splits.items():
        for row, accession in enumerate(stream.transcripts.accessions):
            first = stream.segments[stream.segments[:, 2] == row][:, 3]
            where[accession] = (split, int(first.min()) if len(first) else None)
    changes = 0
    for before, after in zip(rows, rows[1:]):
        same_record = before["accession"].split(":")[0] == after["accession"].split(":")[0]
        if same_record and before["split"] != after["split"] and after["accession"] in where:
            changes += 1
            assert where[after["accession"]][1] * 6 >= guard  # the block's first window span is left out
    assert changes > 0 and meta["bases_left_out"]["guard"] == guard * changes


def test_soft_masked_drop_removes_exactly_the_lowercase_bases(tmp_path, capsys):
    rng = np.random.default_rng(8)
    records = {}
    for i in range(12):
        letters = np.frombuffer(b"ACGT", dtype=np.uint8)[rng.integers(0, 4, 3000)].copy()
        for start in rng.integers(0, 2800, 3):
            letters[start:start + rng.integers(20, 200)] |= 32  # lowercase
        letters[1500:1510] = ord("N")
        records[f"r{i}"] = letters.tobytes().decode()
    fasta = tmp_path / "masked.fa"
    fasta.write_text("".join(f">{name}\n{seq}\n" for name, seq in records.items()))
    metas = {}
    for rule in ("keep", "drop"):
        out = tmp_path / rule
        assert run(["--fasta", str(fasta), "--output_dir", str(out), "--split_by", "transcript", "--soft_masked",
                    rule, "--k", "1", "--window_size", "2"], capsys)[0] == 0
        metas[rule] = json.loads((out / "metadata.json").read_text())
    lower = sum(c.islower() for seq in records.values() for c in seq)
    kmers = {rule: sum(m["splits"][s]["kmers"] for s in ("train", "val", "test")) for rule, m in metas.items()}
    assert kmers["keep"] - kmers["drop"] == lower == metas["drop"]["bases_left_out"]["soft_masked"]
    assert metas["keep"]["bases_left_out"] == {"non_acgt": 120, "guard": 0, "soft_masked": 0}
    assert metas["keep"]["soft_masked_bases"] == lower and metas["drop"]["soft_masked"] == "drop"
    for stream in open_stream_data(tmp_path / "drop").splits.values():
        for offset, length, row, first in stream.segments.tolist():
            text = records[stream.transcripts.accessions[row]][first:first + length]
            assert text.isupper() and "N" not in text


@pytest.mark.skipif(not REFSEQ_4000.is_file(), reason="../shared/data is not here")
def test_real_refseq_4000_without_gene_names_groups_isoforms(tmp_path, capsys):
    out = tmp_path / "out"
    assert run(["--fasta", str(REFSEQ_4000), "--output_dir", str(out)], capsys)[0] == 0
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["genes"] < 3600 and meta["grouping"]["largest_group"] < 100
    assert meta["leak"]["test"]["share"] < 0.02
