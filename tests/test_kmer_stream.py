"""The k-mer stream (quixer_rna.formats.kmer_stream) against windows computed independently from the FASTA
by plain string slicing: window contents and order, contiguity within a transcript, counts per transcript,
leak-free splits, the checks of the memory-mapped loaders, window-position counts, gene fractions of token
windows, and the seeds' exports (sentences.txt, {split}.pt)."""

from __future__ import annotations

import json
import math
import random
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

import lambeq_encoder
import prepare_autoregressive_data as prep
import prepare_classical_benchmarks
import quantize_lambeq_embeddings
from fixtures import write_token_folder
from quixer_rna.errors import UserError
from quixer_rna.formats.embeddings import FORMAT as EMBEDDING_FORMAT, VERSION as EMBEDDING_VERSION
from quixer_rna.formats.kmer_stream import (
    HEADER,
    StreamMetadata,
    open_stream,
    open_stream_data,
    stream_reference,
    window_position_counts,
)
from quixer_rna.formats.tokens import open_tokens
from quixer_rna.kmers import kmer_to_id
from quixer_rna.runio import atomic_write_json

REAL_FASTA = Path(__file__).resolve().parents[2] / "shared" / "data" / "refseq_mrna_500.fa"
K, WINDOW, MIN_LENGTH = 6, 5, 10
ACGT = set("ACGT")


# ---- the synthetic FASTA and the independent reference ----------------------------------------------------------

def _dna(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("ACGT") for _ in range(n))


def synthetic_records() -> list[tuple[str, str, str]]:
    """(accession, gene, sequence as written): isoforms of one gene sharing exons (one in lowercase RNA
    letters), an N, an R and a run of Ns, lowercase and U, a short transcript, one below --min_length, one
    with only N, and plain ones."""
    rng = random.Random(5)
    records = []
    exons = [_dna(rng, 36) for _ in range(4)]
    for i in range(3):
        sequence = "".join(e for j, e in enumerate(exons) if j != i)
        if i == 1:
            sequence = sequence.lower().replace("t", "u")
        records.append((f"NM_100{i}.1", "ISO", sequence))
    with_n = _dna(rng, 120)
    records.append(("NM_2000.1", "GN", with_n[:50] + "N" + with_n[51:]))
    records.append(("NM_3000.1", "GLOW", "".join(c.lower() if rng.random() < 0.5 else c for c in _dna(rng, 90))
                    .replace("T", "U")))
    records.append(("NM_4000.1", "GSHORT", _dna(rng, 25)))  # windows at stride 3 only
    records.append(("NM_5000.1", "GTINY", _dna(rng, 8)))  # below --min_length
    messy = list(_dna(rng, 150))
    messy[20], messy[80], messy[81], messy[120] = "R", "N", "N", "n"
    records.append(("NM_6000.1", "GMESSY", "".join(messy)))
    records.append(("NM_7000.1", "GALLN", "N" * 60))
    for g in range(8):
        records.append((f"NM_8{g:03d}.1", f"GPLAIN{g}", _dna(rng, rng.randint(60, 140))))
    return records


def write_fasta(path: Path, records: list[tuple[str, str, str]]) -> Path:
    text = []
    for accession, gene, sequence in records:
        text.append(f">{accession} Homo sapiens test gene ({gene}), mRNA\n")
        text.extend(sequence[i:i + 50] + "\n" for i in range(0, len(sequence), 50))
    path.write_text("".join(text))
    return path


def reference_kmers(sequence: str, k: int, stride: int) -> list[str]:
    """k-mers every `stride` nt of the cleaned sequence, by string slicing."""
    clean = sequence.upper().replace("U", "T")
    return [clean[i:i + k] for i in range(0, len(clean) - k + 1, stride)]


def reference_windows(sequence: str, k: int, stride: int, window: int, step: int) -> list[tuple[int, list[str]]]:
    """(index of the first k-mer, k-mers) of every window over ACGT only, one every `step` k-mers."""
    kmers = reference_kmers(sequence, k, stride)
    found = []
    for start in range(0, len(kmers) - window + 1, step):
        chosen = kmers[start:start + window]
        if all(set(kmer) <= ACGT for kmer in chosen):
            found.append((start, chosen))
    return found


def to_strings(ids: np.ndarray, k: int) -> list[list[str]]:
    names = np.array(["".join(p) for p in np.array(np.meshgrid(*[list("ACGT")] * k, indexing="ij")).reshape(k, -1).T])
    return names[np.asarray(ids, dtype=np.int64)].tolist()


def stream_windows(part) -> tuple[list[list[str]], list[str]]:
    """Every window of a split as k-mer strings, and its transcript's accession."""
    if not part.num_windows:
        return [], []
    index = np.arange(part.num_windows)
    accessions = part.transcripts.accessions
    return to_strings(part.windows(index), part.k), [accessions[t] for t in part.window_transcripts(index)]


def transcript_index(part, index: np.ndarray) -> np.ndarray:
    """Index within its transcript of the first k-mer of windows `index`, from the stream's segments."""
    starts = part.starts(index)
    seg = np.searchsorted(part.segments[:, 0], starts, side="right") - 1
    assert (starts + part.window_size <= part.segments[seg, 0] + part.segments[seg, 1]).all(), "window leaves its stretch"
    return part.segments[seg, 3] + starts - part.segments[seg, 0]


def run_prepare(argv: list[str]) -> int:
    """prepare_autoregressive_data.py in this process, with the command line its run record keeps."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.argv", ["prepare_autoregressive_data.py", *argv])
        return prep.main(argv)


COMBOS = [(6, 1), (6, 4), (3, 1), (3, 4)]


@pytest.fixture(scope="module", params=COMBOS, ids=[f"stride{s}-step{w}" for s, w in COMBOS])
def prepared(request, tmp_path_factory):
    stride, step = request.param
    root = tmp_path_factory.mktemp(f"s{stride}w{step}")
    records = synthetic_records()
    fasta = write_fasta(root / "in.fa", records)
    out = root / "kmers"
    assert run_prepare(["--fasta", str(fasta), "--output_dir", str(out), "--k", str(K), "--stride", str(stride),
                      "--window_size", str(WINDOW), "--window_step", str(step), "--min_length", str(MIN_LENGTH),
                      "--val_fraction", "0.2", "--test_fraction", "0.2", "--write_sentences", "--seed", "1",
                      "--log_level", "warning"]) == 0
    return {"out": out, "records": records, "stride": stride, "step": step, "data": open_stream_data(out)}


# ---- (a) windows: stream == sentences.txt == string slicing of the FASTA -----------------------------------------

def test_stream_windows_equal_the_sentences_export_and_string_slicing(prepared):
    stride, step, out = prepared["stride"], prepared["step"], prepared["out"]
    expected = {acc: [w for _, w in reference_windows(seq, K, stride, WINDOW, step)]
                for acc, _, seq in prepared["records"] if len(seq) >= MIN_LENGTH}
    found: dict[str, list[list[str]]] = defaultdict(list)
    for split, part in prepared["data"].splits.items():
        windows, sources = stream_windows(part)
        lines = (out / split / "sentences.txt").read_text().splitlines()
        assert lines == [" ".join(w) for w in windows]
        assert (out / split / "sources.txt").read_text().splitlines() == sources
        assert (out / split / "labels.txt").read_text().splitlines() == ["0"] * len(windows)
        # Stream order: transcript by transcript (the split's transcripts.tsv order), start by start.
        rows = part.window_transcripts()
        assert (np.diff(rows) >= 0).all()
        for window, source in zip(windows, sources):
            found[source].append(window)
    assert dict(found) == {acc: windows for acc, windows in expected.items() if windows}
    # The fixture holds what the test is about: a spoiled window, a k-mer stretch split by a letter.
    assert any(len(reference_windows(seq, K, stride, WINDOW, step)) < len(range(0, len(reference_kmers(seq, K, stride))
               - WINDOW + 1, step)) for acc, _, seq in prepared["records"] if acc in found)
    assert ("NM_4000.1" in found) == (stride == 3)
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["windows"] == sum(len(w) for w in found.values())


# ---- (b) contiguity ------------------------------------------------------------------------------------------

def test_every_window_is_a_contiguous_stretch_of_its_transcript(prepared):
    stride, step = prepared["stride"], prepared["step"]
    sequence_of = {acc: seq for acc, _, seq in prepared["records"]}
    for part in prepared["data"].splits.values():
        if not part.num_windows:
            continue
        index = np.arange(part.num_windows)
        first = transcript_index(part, index)
        assert (first % step == 0).all()
        windows, sources = stream_windows(part)
        for start, window, source in zip(first.tolist(), windows, sources):
            kmers = reference_kmers(sequence_of[source], K, stride)
            assert window == kmers[start:start + WINDOW]


# ---- (c) counts per transcript ---------------------------------------------------------------------------------

def test_window_counts_per_transcript(prepared):
    stride, step = prepared["stride"], prepared["step"]
    for part in prepared["data"].splits.values():
        table = part.transcripts
        counts = np.bincount(part.window_transcripts(), minlength=len(table))
        for row, accession in enumerate(table.accessions):
            sequence = next(seq for acc, _, seq in prepared["records"] if acc == accession)
            n_kmers = (len(sequence) - K) // stride + 1
            assert table.kmers[row] == n_kmers and table.length_nt[row] == len(sequence)
            if set(sequence.upper().replace("U", "T")) <= ACGT:
                assert counts[row] == (n_kmers - WINDOW) // step + 1
                if step == 1:
                    assert counts[row] == n_kmers - WINDOW + 1
            else:
                assert counts[row] < (n_kmers - WINDOW) // step + 1


@pytest.mark.skipif(not REAL_FASTA.is_file(), reason="reference data refseq_mrna_500.fa is absent")
def test_real_data_windows_are_contiguous_and_counted(tmp_path):
    out = tmp_path / "real"
    assert prep.main(["--fasta", str(REAL_FASTA), "--output_dir", str(out), "--log_level", "warning"]) == 0
    sequences, accession = {}, None
    for line in REAL_FASTA.read_text().splitlines():
        if line.startswith(">"):
            fields = line[1:].split("|")
            accession = fields[3] if line.startswith(">gi|") else line[1:].split()[0]
            sequences[accession] = []
        else:
            sequences[accession].append(line.strip())
    sequences = {acc: "".join(parts).upper().replace("U", "T") for acc, parts in sequences.items()}
    data = open_stream_data(out)
    seen_genes, seen_transcripts = {}, {}
    for split, part in data.splits.items():
        index = np.arange(part.num_windows)
        first, rows = transcript_index(part, index), part.window_transcripts(index)
        windows = part.windows(index).astype(np.int64)
        counts = np.bincount(rows, minlength=len(part.transcripts))
        for row, acc in enumerate(part.transcripts.accessions):
            ids = np.array([kmer_to_id(km) for km in reference_kmers(sequences[acc], 6, 6)])
            assert counts[row] == len(ids) - 32 + 1
            mine = rows == row
            np.testing.assert_array_equal(windows[mine], ids[first[mine][:, None] + np.arange(32)])
            assert seen_transcripts.setdefault(acc, split) == split
        for gene in part.transcripts.genes:
            assert seen_genes.setdefault(gene, split) == split
    assert len(seen_transcripts) == 500 and len(seen_genes) == 492


# ---- (d) no transcript or gene in two splits -------------------------------------------------------------------

def test_no_transcript_or_gene_in_two_splits(prepared):
    gene_of = {acc: gene for acc, gene, _ in prepared["records"]}
    split_of_transcript, split_of_gene = {}, {}
    for split, part in prepared["data"].splits.items():
        table = part.transcripts
        for accession, gene in zip(table.accessions, table.genes):
            assert gene == gene_of[accession]
            assert split_of_transcript.setdefault(accession, split) == split
            assert split_of_gene.setdefault(gene, split) == split
        assert len(table) >= 1 and part.num_windows >= 1
    assert {acc for acc in split_of_transcript if gene_of[acc] == "ISO"} == {"NM_1000.1", "NM_1001.1", "NM_1002.1"}
    assert json.loads((prepared["out"] / "metadata.json").read_text())["genes_in_more_than_one_split"] == 0


# ---- (e) the loaders refuse damaged or old folders with one line ------------------------------------------------

@pytest.fixture(scope="module")
def small_stream(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("small")
    fasta = write_fasta(root / "in.fa", synthetic_records())
    out = root / "kmers"
    assert run_prepare(["--fasta", str(fasta), "--output_dir", str(out), "--window_size", str(WINDOW),
                      "--min_length", str(MIN_LENGTH), "--log_level", "warning"]) == 0
    return out


def copy_of(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / folder.name
    shutil.copytree(folder, target)
    return target


def refused(folder: Path, *fragments: str, opener=open_stream_data) -> str:
    with pytest.raises(UserError) as exc:
        opener(folder)
    message = str(exc.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_truncated_kmers_file_is_refused(small_stream, tmp_path):
    folder = copy_of(small_stream, tmp_path)
    path = folder / "train" / "kmers.bin"
    raw = path.read_bytes()
    path.write_bytes(raw[:-2])
    message = refused(folder, str(path), "truncated or damaged", "rebuild it: python prepare_autoregressive_data.py")
    assert "--overwrite" in message and f"--output_dir {small_stream}" in message
    path.write_bytes(raw[:20])
    refused(folder, str(path), "truncated", "no header")
    path.write_bytes(raw + b"\0\0")
    refused(folder, str(path), "truncated or damaged")


def test_wrong_versions_are_refused(small_stream, tmp_path):
    folder = copy_of(small_stream, tmp_path)
    path = folder / "val" / "kmers.bin"
    raw = bytearray(path.read_bytes())
    magic, version, itemsize, k, spare, count = HEADER.unpack(bytes(raw[:HEADER.size]))
    raw[:HEADER.size] = HEADER.pack(magic, version + 1, itemsize, k, spare, count)
    path.write_bytes(bytes(raw))
    refused(folder, str(path), f"stream version {version + 1}, this code reads {version}")
    raw[:HEADER.size] = HEADER.pack(b"NOTMAGIC", version, itemsize, k, spare, count)
    path.write_bytes(bytes(raw))
    refused(folder, str(path), "bad magic")
    raw[:HEADER.size] = HEADER.pack(magic, version, itemsize, k + 1, spare, count)
    path.write_bytes(bytes(raw))
    refused(folder, str(path), f"holds {k + 1}-mers")

    folder = copy_of(small_stream, tmp_path / "meta")
    meta = json.loads((folder / "metadata.json").read_text())
    atomic_write_json(folder / "metadata.json", {**meta, "version": 2})
    refused(folder, str(folder / "metadata.json"), "k-mer stream version 2, this code reads 1",
            "rebuild it: python prepare_autoregressive_data.py")
    atomic_write_json(folder / "metadata.json", {**meta, "format": "something else"})
    refused(folder, str(folder / "metadata.json"), "not a k-mer stream folder")


def test_segments_that_do_not_tile_the_stream_are_refused(small_stream, tmp_path):
    folder = copy_of(small_stream, tmp_path)
    path = folder / "train" / "segments.npy"
    segments = np.load(path)
    assert len(segments) >= 2
    shifted = segments.copy()
    shifted[1, 0] += 1
    np.save(path, shifted)
    refused(folder, str(path), "stretch offsets do not tile")
    longer = segments.copy()
    longer[-1, 1] += 3
    np.save(path, longer)
    refused(folder, str(path), "do not tile")
    np.save(path, segments.astype(np.int32))
    refused(folder, str(path), "expected int64 [S, 4]")
    beyond = segments.copy()
    beyond[-1, 2] = 10_000
    np.save(path, beyond)
    refused(folder, str(path), "transcript rows beyond")
    path.write_bytes(b"not numpy")
    refused(folder, str(path), "unreadable")


def test_legacy_prepare_folder_names_the_command_that_rebuilds_it(tmp_path, capsys):
    legacy = tmp_path / "sentences"
    (legacy / "train").mkdir(parents=True)
    (legacy / "train" / "sentences.txt").write_text("ACGTAC GGGTTT\n")
    atomic_write_json(legacy / "metadata.json", {"task": "autoregressive", "k": 6, "window_size": 2})
    refused(legacy, str(legacy), "earlier version", f"rebuild it: python prepare_autoregressive_data.py --fasta FASTA "
                                                    f"--output_dir {legacy} --overwrite", opener=StreamMetadata.read)
    atomic_write_json(legacy / "args.json", {"stage": "prepare_autoregressive_data", "command": [
        "prepare_autoregressive_data.py", "--fasta", "rna.fa", "--output_dir", "data/sentences", "--overwrite"]})
    message = refused(legacy, "rebuild it: python prepare_autoregressive_data.py --fasta rna.fa --output_dir "
                              "data/sentences --overwrite")
    assert message.count("--overwrite") == 1
    # Through a later stage's command line: one stderr line.
    assert lambeq_encoder.main(["--data_dir", str(legacy), "--output_dir", str(tmp_path / "emb")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "earlier version" in err[0] and "prepare_autoregressive_data.py --fasta rna.fa" in err[0]
    assert not (tmp_path / "emb").exists()


def test_legacy_token_folder_names_the_command_that_rebuilds_it(tmp_path):
    legacy = tmp_path / "tokens"
    legacy.mkdir()
    torch.save({"sequences": torch.zeros(3, 4, dtype=torch.int64), "vocab_size": 8}, legacy / "train.pt")
    refused(legacy, str(legacy), "earlier version", "prepare_autoregressive_data.py, then quantize_lambeq_embeddings.py",
            opener=open_tokens)
    atomic_write_json(legacy / "metadata.json", {"vocab_size": 8, "k": 6})
    atomic_write_json(legacy / "args.json", {"stage": "prepare_classical_benchmarks"})
    refused(legacy, str(legacy), "earlier version", "prepare_autoregressive_data.py, then prepare_classical_benchmarks.py",
            "run_classical_prep.sh", opener=open_tokens)


# ---- (f) window-position counts --------------------------------------------------------------------------------

def test_window_position_counts_equal_brute_force(prepared):
    for part in prepared["data"].splits.values():
        brute = np.bincount(part.windows(np.arange(part.num_windows)).astype(np.int64).ravel(), minlength=4**K)
        np.testing.assert_array_equal(window_position_counts(part, 4**K), brute)
        np.testing.assert_array_equal(window_position_counts(part, 4**K, chunk=7), brute)
        assert brute.sum() == part.num_windows * WINDOW
        # A view over some transcripts counts only its own windows.
        rows = np.arange(0, len(part.transcripts), 2)
        view = part.subset(rows)
        brute = np.bincount(view.windows(np.arange(view.num_windows)).astype(np.int64).ravel(), minlength=4**K)
        np.testing.assert_array_equal(window_position_counts(view, 4**K), brute)


# ---- (g) gene fractions of token windows ------------------------------------------------------------------------

def test_gene_fraction_keeps_whole_genes_and_nests(tmp_path):
    windows = torch.arange(48 * 3).reshape(48, 3) % 16
    transcripts = [f"T{i // 2}" for i in range(48)]  # 24 transcripts of 2 windows
    genes = [f"G{i // 4 % 12}" for i in range(48)]  # 12 genes of 2 transcripts
    folder = write_token_folder(tmp_path, {"train": windows, "val": windows[:4], "test": windows[:4]}, 16,
                                genes={"train": genes}, sources={"train": transcripts})
    train = open_tokens(folder)["train"]
    table = train.stream.transcripts
    window_genes = np.array([table.genes[t] for t in train.window_transcripts()])
    kept = {}
    for fraction in (0.2, 0.5, 0.75, 1.0):
        view, info = train.gene_fraction(fraction, seed=3)
        names = {table.genes[t] for t in view.window_transcripts()}
        assert info["genes"] == len(names) == math.ceil(fraction * 12) and info["genes_total"] == 12
        whole = np.flatnonzero(np.isin(window_genes, sorted(names)))
        assert view.num_windows == info["windows"] == len(whole)
        rows = view.stream.rows(np.arange(view.num_windows))
        np.testing.assert_array_equal(rows, whole)
        assert torch.equal(view.batch(torch.arange(view.num_windows)), windows[whole])
        assert torch.equal(view.targets(torch.arange(view.num_windows)), windows[whole, -1])
        kept[fraction] = names
    assert kept[0.2] < kept[0.5] < kept[0.75] < kept[1.0] == set(genes)
    assert train.gene_fraction(0.5, seed=3)[1] == train.gene_fraction(0.5, seed=3)[1]
    others = {frozenset(table.genes[t] for t in train.gene_fraction(0.25, seed=s)[0].window_transcripts())
              for s in range(6)}
    assert len(others) > 1


# ---- (h) the seeds' exports hold exactly the stream's windows ----------------------------------------------------

def test_classical_write_pt_holds_the_stream_windows(small_stream, tmp_path):
    out = tmp_path / "raw"
    assert prepare_classical_benchmarks.main(["--data_dir", str(small_stream), "--output_dir", str(out), "--write_pt",
                                              "--log_level", "warning"]) == 0
    stream = open_stream_data(small_stream)
    for split, part in stream.splits.items():
        saved = torch.load(out / f"{split}.pt", weights_only=True)
        expected = part.windows(np.arange(part.num_windows)).astype(np.int64)
        assert saved["sequences"].dtype == torch.int64
        np.testing.assert_array_equal(saved["sequences"].numpy(), expected)
        assert saved["vocab_size"] == 4**K and torch.equal(saved["labels"], torch.zeros(part.num_windows, dtype=torch.int64))
        assert saved["sources"] == [part.transcripts.accessions[t] for t in part.window_transcripts()]


def test_quantize_write_pt_holds_the_mapped_stream_windows(small_stream, tmp_path):
    stream = open_stream_data(small_stream)
    table = np.random.default_rng(0).normal(size=(4**K, 2)).astype(np.float32)
    emb = tmp_path / "emb"
    emb.mkdir()
    np.save(emb / "table.npy", table)
    atomic_write_json(emb / "metadata.json", {"format": EMBEDDING_FORMAT, "version": EMBEDDING_VERSION,
                                              "layout": "table", "embedding_dim": 2,
                                              "stream": stream_reference(stream, emb)})
    out = tmp_path / "tokens"
    assert quantize_lambeq_embeddings.main(["--embeddings_dir", str(emb), "--output_dir", str(out), "--n_clusters", "5",
                                            "--write_pt", "--log_level", "warning"]) == 0
    kmer_tokens = np.load(out / "kmer_tokens.npy")
    assert kmer_tokens.dtype == np.int32 and kmer_tokens.shape == (4**K,)
    for split, part in stream.splits.items():
        saved = torch.load(out / f"{split}.pt", weights_only=True)
        ids = part.windows(np.arange(part.num_windows)).astype(np.int64)
        np.testing.assert_array_equal(saved["sequences"].numpy(), kmer_tokens[ids])
        assert saved["sequences"].shape == (part.num_windows, WINDOW) and int(saved["sequences"].min()) >= 0
        assert saved["vocab_size"] == 5
        assert saved["sources"] == [part.transcripts.accessions[t] for t in part.window_transcripts()]
        # The token folder itself gives the same windows without the export.
        tokens = open_tokens(out)[split]
        assert torch.equal(tokens.batch(torch.arange(part.num_windows)), saved["sequences"])
    assert open_stream(small_stream, "train").num_windows == json.loads(
        (out / "metadata.json").read_text())["windows"]["train"]


def test_window_position_counts_of_a_view_without_stretches(small_stream):
    train = open_stream(small_stream, "train")
    empty = train.subset(np.array([], dtype=np.int64))
    assert empty.num_windows == 0
    np.testing.assert_array_equal(window_position_counts(empty, 4**K), np.zeros(4**K))
