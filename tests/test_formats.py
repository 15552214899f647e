"""Format metadata (quixer_rna.formats.metadata and each format's dataclass): what is written reads back equal,
and a folder that is not of this format, of this version or whole is one line naming the file (and the field)
and the command that rebuilds it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quixer_rna.errors import UserError
from quixer_rna.formats.embeddings import EmbeddingMetadata
from quixer_rna.formats.kmer_stream import SplitCounts, StreamMetadata, StreamReference
from quixer_rna.formats.tokens import TokenMetadata
from quixer_rna.runio import atomic_write_json

CHECKSUMS = {"kmers.bin": "a" * 64, "segments.npy": "b" * 64, "transcripts.tsv": "c" * 64}


def stream_metadata(**changes) -> StreamMetadata:
    """What prepare_autoregressive_data.py records (--split_by region, so the region-only fields are set)."""
    splits = {split: SplitCounts(sequences=n, transcripts=n, genes=n - 1, windows=10 * n, nucleotides=100 * n,
                                 kmers=20 * n, segments=n, sha256=CHECKSUMS)
              for split, n in (("train", 8), ("val", 2), ("test", 3))}
    fields = dict(task="autoregressive", k=6, kmer_dtype="uint16", stride=6, window_size=32, window_step=1,
                  window_span_nt=192, min_length=200, split_by="region", split_rule="whole blocks",
                  val_fraction=0.1, test_fraction=0.1, seed=0, synthetic=True,
                  inputs=[{"path": "a.fa", "sha256": "d" * 64, "records": 13}], total_nucleotides=1300,
                  soft_masked="keep", soft_masked_bases=0, bases_left_out={"non_acgt": 0, "guard": 0, "soft_masked": 0},
                  sequences=13, genes=10, gene_sources={"total": {"region": 13}, "train": {"region": 8}},
                  grouping={"groups": 13, "gene_map": None},
                  windows=130, splits=splits, window_fractions={"train": 0.6, "val": 0.2, "test": 0.2},
                  genes_in_more_than_one_split=0, skipped={"too_short": 1}, block_size=100_000, guard_nt=192,
                  leak={"length": 24, "threshold": 0.02, "computed": False, "reason": "a test"})
    return StreamMetadata(**{**fields, **changes})


def reference() -> StreamReference:
    return StreamReference(path="/data/prepare", relative="../prepare", k=6, window_size=32,
                           sha256={split: CHECKSUMS for split in ("train", "val", "test")})


def token_metadata() -> TokenMetadata:
    """Cluster tokens of per-window embeddings: no Hamming share (None), so those fields stay out of the file."""
    return TokenMetadata(tokenizer="clusters", kind="windows", vocab_size=4, k=6, window_size=32, stream=reference(),
                         files={"train_tokens.npy": "e" * 64}, n_clusters=4, algorithm="minibatch", inertia=1.5,
                         token_entropy_bits=2, cluster_sizes=[3, 2, 1, 0], windows={"train": 6},
                         seconds={"fit": 0.25}, definitions={"inertia": "a sum"})


def embedding_metadata() -> EmbeddingMetadata:
    return EmbeddingMetadata(layout="table", stage="lambeq_encoder", stream=reference(), files={"table.npy": "f" * 64},
                             lambeq_version="0.5.0", qubits=6, k=6, embedding_dim=64, window_size=32,
                             encoding={"angles_turns": {"A": [0.1, 0.2]}}, distinct_tolerance=1e-9)


@pytest.mark.parametrize("make", [stream_metadata, token_metadata, embedding_metadata])
def test_metadata_written_reads_back_equal(tmp_path, make):
    written = make()
    written.write(tmp_path)
    assert type(written).read(tmp_path) == written
    on_disk = json.loads((tmp_path / "metadata.json").read_text())
    assert list(on_disk)[:2] == ["format", "version"] and None not in on_disk.values()
    assert "window_size" in on_disk and not {"window_length", "seq_len"} & set(on_disk)
    if isinstance(written, TokenMetadata):  # a field never set is left out of the file and reads as its default
        assert "hamming_neighbour_share" not in on_disk and "seen_kmers" not in on_disk


def test_a_hand_made_stream_needs_only_what_later_stages_read(tmp_path):
    splits = {split: SplitCounts(transcripts=1, sha256=CHECKSUMS) for split in ("train", "val", "test")}
    written = StreamMetadata(k=3, stride=3, window_size=4, window_step=1, splits=splits)
    written.write(tmp_path)
    assert set(json.loads((tmp_path / "metadata.json").read_text())) == {
        "format", "version", "k", "stride", "window_size", "window_step", "splits"}
    read = StreamMetadata.read(tmp_path)
    assert read == written and read.synthetic is None and read.checksums()["val"] == CHECKSUMS


def refused(read, folder: Path, *fragments: str) -> str:
    with pytest.raises(UserError) as exc:
        read(folder)
    message = str(exc.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def rewrite(folder: Path, change) -> None:
    data = json.loads((folder / "metadata.json").read_text())
    change(data)
    atomic_write_json(folder / "metadata.json", data)


STREAM_DAMAGE = [
    (lambda d: d.pop("window_step"), "no 'window_step'"),
    (lambda d: d["splits"].pop("val"), "no 'splits.val'"),
    (lambda d: d["splits"]["train"].pop("sha256"), "no 'splits.train.sha256'"),
    (lambda d: d.update(k="6"), "'k' is '6', expected an integer"),
    (lambda d: d.update(k=True), "'k' is True, expected an integer"),
    (lambda d: d.update(synthetic=1), "'synthetic' is 1, expected true or false"),
    (lambda d: d["splits"]["test"].update(windows=2.5), "'splits.test.windows' is 2.5, expected an integer"),
    (lambda d: d["gene_sources"]["train"].update(region="8"),
     "'gene_sources.train.region' is '8', expected an integer"),
    (lambda d: d.update(inputs={"path": "a.fa"}), "'inputs' is {'path': 'a.fa'}, expected a list"),
]


@pytest.mark.parametrize("change, fragment", STREAM_DAMAGE, ids=[fragment for _, fragment in STREAM_DAMAGE])
def test_a_missing_or_mistyped_stream_field_is_one_line_naming_file_and_field(tmp_path, change, fragment):
    stream_metadata().write(tmp_path)
    rewrite(tmp_path, change)
    refused(StreamMetadata.read, tmp_path, f"{tmp_path / 'metadata.json'}: {fragment}",
            "rebuild it: python prepare_autoregressive_data.py")


def test_a_missing_or_mistyped_field_of_a_later_stage_names_file_and_field(tmp_path):
    token_metadata().write(tmp_path / "tokens")
    rewrite(tmp_path / "tokens", lambda d: d["stream"].pop("sha256"))
    refused(TokenMetadata.read, tmp_path / "tokens", "metadata.json: no 'stream.sha256'",
            "rebuild it: python quantize_lambeq_embeddings.py")
    rewrite(tmp_path / "tokens", lambda d: d.update(kind="dense", stream=reference()))
    refused(TokenMetadata.read, tmp_path / "tokens",
            "metadata.json: 'kind' is 'dense', expected one of 'kmer_map', 'identity', 'windows'")
    embedding_metadata().write(tmp_path / "emb")
    rewrite(tmp_path / "emb", lambda d: d.pop("embedding_dim"))
    refused(EmbeddingMetadata.read, tmp_path / "emb", "metadata.json: no 'embedding_dim'",
            "rebuild it: python lambeq_encoder.py --data_dir PREPARE_DIR")


def test_another_version_names_the_command_that_rebuilds_the_folder(tmp_path):
    folder = tmp_path / "prepare"
    stream_metadata().write(folder)
    rewrite(folder, lambda d: d.update(version=2))
    atomic_write_json(folder / "args.json", {"command": ["prepare_autoregressive_data.py", "--fasta", "rna.fa",
                                                         "--output_dir", "data", "--overwrite"]})
    message = refused(StreamMetadata.read, folder, f"{folder / 'metadata.json'}: k-mer stream version 2, this code "
                      "reads 1; rebuild it: python prepare_autoregressive_data.py --fasta rna.fa --output_dir data")
    assert message.count("--overwrite") == 1
    # An embedding folder of version 1 said "window_length": it is upgraded (a renamed key), not refused and not
    # read with the window size missing; version 0 has no upgrade and is refused.
    embedding_metadata().write(tmp_path / "emb")
    rewrite(tmp_path / "emb", lambda d: d.update(version=1, window_length=d.pop("window_size")))
    assert EmbeddingMetadata.read(tmp_path / "emb") == embedding_metadata()
    rewrite(tmp_path / "emb", lambda d: d.update(version=0))
    refused(EmbeddingMetadata.read, tmp_path / "emb", "embedding format version 0, this code reads 2",
            f"rebuild it: python lambeq_encoder.py --data_dir PREPARE_DIR --output_dir {tmp_path / 'emb'} --overwrite")
    token_metadata().write(tmp_path / "tokens")
    rewrite(tmp_path / "tokens", lambda d: d.update(version=0))
    refused(TokenMetadata.read, tmp_path / "tokens", "token format version 0, this code reads 1")


def test_folders_that_are_not_of_the_format_say_what_to_give(tmp_path):
    refused(TokenMetadata.read, tmp_path / "absent", f"--data_dir {tmp_path / 'absent'}: folder not found")
    refused(EmbeddingMetadata.read, tmp_path, f"--embeddings_dir {tmp_path}: no metadata.json; give the output "
                                              "folder of lambeq_encoder.py")
    (tmp_path / "metadata.json").write_text("{not json")
    refused(StreamMetadata.read, tmp_path, "metadata.json: not valid JSON")
    atomic_write_json(tmp_path / "metadata.json", ["a list"])
    refused(StreamMetadata.read, tmp_path, "metadata.json: not a k-mer stream folder (format None)")
    embedding_metadata().write(tmp_path)
    refused(TokenMetadata.read, tmp_path, "not a token folder (format 'quixer-rna-embeddings'); give the output "
                                          "folder of quantize_lambeq_embeddings.py or prepare_classical_benchmarks.py")


@pytest.mark.parametrize("read, layout, fragments", [
    (StreamMetadata.read, {"train/sentences.txt": "ACGTAC GGGTTT\n", "metadata.json": '{"k": 6}'},
     ("written by an earlier version (one line of k-mers per window)", "prepare_autoregressive_data.py")),
    (TokenMetadata.read, {"train.pt": ""},
     ("written by an earlier version (one row of tokens per window)", "then quantize_lambeq_embeddings.py")),
    (EmbeddingMetadata.read, {"train.pt": "", "metadata.json": '{"format": "dense"}'},
     ("written by an earlier version (per-window .pt files)", "rerun lambeq_encoder.py")),
])
def test_a_folder_of_the_first_layout_names_the_command_that_rebuilds_it(tmp_path, read, layout, fragments):
    for name, text in layout.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    refused(read, tmp_path, str(tmp_path), *fragments)
