"""quantize_lambeq_embeddings.py and quixer_rna.quantization: weighted k-means (weights: window positions of
the train stream), assignment of every k-mer or window position, the token folder and its metadata, bad
inputs, and an end-to-end run of the script."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import quantize_lambeq_embeddings
from fixtures import write_token_folder
from quixer_rna import quantization as q
from quixer_rna.formats import SPLITS
from quixer_rna.formats.embeddings import FORMAT as EMBEDDING_FORMAT, VERSION as EMBEDDING_VERSION
from quixer_rna.formats.kmer_stream import (
    FORMAT as STREAM_FORMAT,
    VERSION as STREAM_VERSION,
    StreamWriter,
    open_stream_data,
    stream_reference,
)
from quixer_rna.formats.tokens import open_tokens
from quixer_rna.runio import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]


def write_embeddings(folder: Path, stream_dir: Path, table: np.ndarray, layout: str = "table") -> Path:
    """An embedding folder as lambeq_encoder.py writes it: the k-mer table (layout "table"), or one embedding
    per window position, the table rows of the windows' k-mers (layout "windows", what --context stairs writes)."""
    stream = open_stream_data(stream_dir)
    folder.mkdir(parents=True)
    table = np.asarray(table, dtype=np.float32)
    if layout == "table":
        np.save(folder / "table.npy", table)
    else:
        for name, part in stream.splits.items():
            ids = part.windows(np.arange(part.num_windows)).astype(np.int64)
            np.save(folder / f"{name}_embeddings.npy", table[ids])
    atomic_write_json(folder / "metadata.json", {
        "format": EMBEDDING_FORMAT, "version": EMBEDDING_VERSION, "layout": layout, "k": stream.k,
        "embedding_dim": int(table.shape[1]), "stream": stream_reference(stream, folder),
    })
    return folder


@pytest.fixture(scope="module")
def random_data(tmp_path_factory) -> dict:
    """k=3, D=4, random table; train uses only k-mers with ids < 48 so 16 k-mers are unseen in train."""
    g = torch.Generator().manual_seed(7)
    k, dim, seq_len = 3, 4, 32
    table = torch.randn(4**k, dim, generator=g)
    ids = {
        "train": torch.randint(0, 48, (40, seq_len), generator=g),
        "val": torch.randint(0, 64, (10, seq_len), generator=g),
        "test": torch.randint(0, 64, (10, seq_len), generator=g),
    }
    base = tmp_path_factory.mktemp("emb")
    sources = {name: [f"{name}_tx{i // 3}" for i in range(len(w))] for name, w in ids.items()}
    write_token_folder(base, ids, 64, sources=sources)
    return {
        "k": k,
        "table": table,
        "ids": ids,
        "compact": write_embeddings(base / "table", base / "kmers", table.numpy()),
        "dense": write_embeddings(base / "windows", base / "kmers", table.numpy(), layout="windows"),
    }


def run_main(embeddings: Path, out: Path, *extra: str) -> int:
    return quantize_lambeq_embeddings.main(
        ["--embeddings_dir", str(embeddings), "--output_dir", str(out), "--seq_len", "32", "--log_level", "warning",
         *extra]
    )


def tokens_of(out: Path) -> dict[str, torch.Tensor]:
    data = open_tokens(out)
    return {name: data[name].batch(torch.arange(data[name].num_windows)) for name in SPLITS}


def test_weighted_kmeans_equals_kmeans_on_expanded_occurrences():
    rng = np.random.default_rng(3)
    points = np.concatenate([rng.normal(c, 0.6, size=(5, 2)) for c in ((0, 0), (4, 0), (0, 4))])
    counts = rng.integers(1, 6, size=len(points))
    expanded = np.repeat(points, counts, axis=0)
    init = points[[0, 5, 10]]
    settings = dict(seed=0, n_init=1, max_iter=100, batch_size=8, init=init)
    weighted, _ = q.fit_centres(points, counts.astype(float), 3, "kmeans", **settings)
    plain, _ = q.fit_centres(expanded, None, 3, "kmeans", **settings)
    np.testing.assert_allclose(weighted, plain, atol=1e-6)
    labels_weighted, _ = q.nearest_centres(points, weighted)
    labels_plain, _ = q.nearest_centres(expanded, plain)
    np.testing.assert_array_equal(np.repeat(labels_weighted, counts), labels_plain)
    assert len(set(labels_weighted.tolist())) == 3


def test_distinct_weighted_merges_equal_rows_and_sums_weights():
    rows = np.array([[1.0, 2.0], [0.5, 0.5], [1.0, 2.0], [3.0, 3.0]], dtype=np.float32)
    unique, weights = q.distinct_weighted(rows, np.array([2.0, 1.0, 5.0, 1.0]))
    as_dict = {tuple(u.tolist()): w for u, w in zip(unique, weights)}
    assert as_dict == {(1.0, 2.0): 7.0, (0.5, 0.5): 1.0, (3.0, 3.0): 1.0}
    shuffled, _ = q.distinct_weighted(rows[::-1])
    np.testing.assert_array_equal(shuffled, unique)


def test_entropy_and_hamming_share_by_hand():
    assert q.entropy_bits(np.array([2, 1, 1, 0])) == pytest.approx(1.5)
    assert q.entropy_bits(np.array([5, 5, 5, 5])) == pytest.approx(2.0)
    # k=2: AA(0) and AC(1) share token 0, CA(4) differs from all its neighbours, TT(15) shares with GT(11).
    tokens = np.arange(16) + 10
    tokens[[0, 1]] = 0
    tokens[[11, 15]] = 1
    assert q.hamming_neighbour_share(tokens, np.array([0, 1, 4, 15]), 2) == pytest.approx(0.75)
    assert q.hamming_neighbour_share(tokens, np.array([4, 5]), 2) == 0.0


def test_deterministic_for_a_seed(random_data, tmp_path):
    for layout, extra in (("compact", ["--n_init", "2"]), ("dense", ["--batch_size", "256"])):
        first, second = tmp_path / f"{layout}1", tmp_path / f"{layout}2"
        for out in (first, second):
            assert run_main(random_data[layout], out, "--n_clusters", "8", "--seed", "5", *extra) == 0
        for name in SPLITS:
            assert torch.equal(tokens_of(first)[name], tokens_of(second)[name])
        assert torch.equal(torch.load(first / "cluster_centers.pt"), torch.load(second / "cluster_centers.pt"))
    assert (tmp_path / "compact1" / "kmer_tokens.npy").read_bytes() == (tmp_path / "compact2" / "kmer_tokens.npy").read_bytes()
    assert run_main(random_data["compact"], tmp_path / "other", "--n_clusters", "8", "--seed", "6", "--n_init", "1") == 0
    assert not torch.equal(torch.load(tmp_path / "compact1" / "cluster_centers.pt"),
                           torch.load(tmp_path / "other" / "cluster_centers.pt"))


def test_table_and_window_embeddings_give_the_same_tokens_with_full_kmeans(random_data, tmp_path):
    assert run_main(random_data["compact"], tmp_path / "c", "--n_clusters", "8") == 0
    assert run_main(random_data["dense"], tmp_path / "d", "--n_clusters", "8", "--algorithm", "kmeans") == 0
    compact, dense = tokens_of(tmp_path / "c"), tokens_of(tmp_path / "d")
    for name in SPLITS:
        assert torch.equal(compact[name], dense[name])
    meta_c = json.loads((tmp_path / "c" / "metadata.json").read_text())
    meta_d = json.loads((tmp_path / "d" / "metadata.json").read_text())
    assert meta_c["algorithm"] == meta_d["algorithm"] == "kmeans"
    assert (meta_c["kind"], meta_d["kind"]) == ("kmer_map", "windows")
    assert meta_c["cluster_sizes"] == meta_d["cluster_sizes"]
    assert meta_c["inertia"] == pytest.approx(meta_d["inertia"], rel=1e-9)
    assert meta_c["distinct_train_vectors"] == meta_d["distinct_train_vectors"] == 48
    assert not (tmp_path / "d" / "kmer_tokens.npy").exists() and (tmp_path / "d" / "val_tokens.npy").is_file()
    assert not (tmp_path / "c" / "val_tokens.npy").exists() and not (tmp_path / "c" / "val.pt").exists()


def test_window_minibatch_runs_and_tokens_are_valid(random_data, tmp_path):
    out = tmp_path / "mb"
    assert run_main(random_data["dense"], out, "--n_clusters", "8", "--batch_size", "256") == 0
    data = open_tokens(out)
    for name in SPLITS:
        seq = data[name].batch(torch.arange(data[name].num_windows))
        assert seq.dtype == torch.int64 and seq.shape == random_data["ids"][name].shape
        assert int(seq.min()) >= 0 and int(seq.max()) < 8 and data.vocab_size == 8
        assert torch.equal(data[name].targets(torch.arange(len(seq))), seq[:, -1])
    assert np.load(out / "train_tokens.npy").dtype == np.uint16
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["algorithm"] == "minibatch" and meta["input_layout"] == "windows" and meta["kind"] == "windows"
    assert sum(meta["cluster_sizes"]) == meta["train_positions"] == 40 * 32 and len(meta["cluster_sizes"]) == 8


def test_every_kmer_gets_its_nearest_centre_unseen_ones_included(random_data, tmp_path):
    out = tmp_path / "c"
    assert run_main(random_data["compact"], out, "--n_clusters", "8") == 0
    centres = torch.load(out / "cluster_centers.pt", weights_only=True)
    assert centres.dtype == torch.float32 and centres.shape == (8, 4)
    nearest = torch.cdist(random_data["table"].double(), centres.double()).argmin(dim=1)
    kmer_tokens = np.load(out / "kmer_tokens.npy")
    assert kmer_tokens.dtype == np.int32 and kmer_tokens.shape == (64,)
    np.testing.assert_array_equal(kmer_tokens, nearest.numpy())
    data = open_tokens(out)
    val_ids = random_data["ids"]["val"]
    assert bool((val_ids >= 48).any())
    assert torch.equal(data["val"].batch(torch.arange(10)), nearest[val_ids])
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["unseen_kmer_positions"] == {
        "train": 0,
        "val": int((val_ids >= 48).sum()),
        "test": int((random_data["ids"]["test"] >= 48).sum()),
    }
    accessions = data["val"].stream.transcripts.accessions
    assert [accessions[t] for t in data["val"].window_transcripts()] == [f"val_tx{i // 3}" for i in range(10)]
    assert data.meta.stream["sha256"] == open_stream_data(random_data["compact"].parent / "kmers").checksums()


@pytest.fixture()
def hand_made(tmp_path) -> Path:
    """k=1: A=(0,0), C=(3,0) close together, G and T far away; train holds A x4, C x2, G x1, T x1."""
    table = np.array([[0.0, 0.0], [3.0, 0.0], [100.0, 0.0], [0.0, 100.0]])
    ids = {
        "train": torch.tensor([[0, 0, 1, 2], [0, 0, 1, 3]]),
        "val": torch.tensor([[3, 2, 1, 0]]),
        "test": torch.tensor([[1, 1, 1, 1]]),
    }
    write_token_folder(tmp_path / "hand", ids, 4)
    return write_embeddings(tmp_path / "hand" / "emb", tmp_path / "hand" / "kmers", table)


def test_metadata_numbers_on_a_hand_made_case(hand_made, tmp_path):
    out = tmp_path / "out"
    args = ["--embeddings_dir", str(hand_made), "--output_dir", str(out), "--seq_len", "4", "--n_clusters", "3"]
    assert quantize_lambeq_embeddings.main(args) == 0
    meta = json.loads((out / "metadata.json").read_text())
    # The optimum merges A and C (centre (1, 0), weighted by 4 and 2): inertia 4*1^2 + 2*2^2 = 12.
    assert meta["inertia"] == pytest.approx(12.0)
    assert sorted(meta["cluster_sizes"]) == [1, 1, 6]
    entropy = -(0.75 * math.log2(0.75) + 2 * 0.125 * math.log2(0.125))
    assert meta["token_entropy_bits"] == pytest.approx(entropy)
    assert meta["token_perplexity"] == pytest.approx(2**entropy)
    assert meta["hamming_neighbour_share"] == pytest.approx(0.5)
    assert meta["empty_clusters"] == 0 and meta["vocab_size"] == 3 and meta["k"] == 1
    assert meta["embedding_dim"] == 2 and meta["distinct_train_vectors"] == 4 and meta["window_size"] == 4
    assert "seq_len" not in meta
    assert meta["windows"] == {"train": 2, "val": 1, "test": 1}
    assert meta["format"] == "quixer-rna-tokens" and meta["kind"] == "kmer_map" and meta["tokenizer"] == "clusters"
    assert "Hamming distance 1" in meta["definitions"]["hamming_neighbour_share"]
    rows = [line.split("\t") for line in (out / "kmer_tokens.tsv").read_text().splitlines()]
    assert rows[0] == ["kmer", "token"] and [r[0] for r in rows[1:]] == ["A", "C", "G", "T"]
    token = {kmer: int(t) for kmer, t in rows[1:]}
    assert token["A"] == token["C"] and len({token["A"], token["G"], token["T"]}) == 3
    assert np.load(out / "kmer_tokens.npy").tolist() == [token[b] for b in "ACGT"]
    assert open_tokens(out)["val"].batch(torch.tensor([0])).tolist() == [[token[b] for b in "TGCA"]]
    centres = torch.load(out / "cluster_centers.pt", weights_only=True)
    assert sorted(centres.tolist()) == [[0.0, 100.0], [1.0, 0.0], [100.0, 0.0]]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["inertia"] == pytest.approx(12.0)
    record = json.loads((out / "args.json").read_text())
    assert record["status"] == "completed" and record["role"] == "quantize"


def write_stream(folder: Path, k: int, window: int, transcripts: dict[str, list[list[int]]]) -> Path:
    """A k-mer stream whose transcripts are the given k-mer id lists, windows every k-mer (step 1)."""
    per_split = {}
    for split, members in transcripts.items():
        writer = StreamWriter(folder, split, k)
        for i, ids in enumerate(members):
            ids = np.asarray(ids, dtype=np.int64)
            writer.add(f"{split}{i}", f"{split}{i}", len(ids) * k, ids, np.ones(len(ids), dtype=bool))
        written = writer.close()
        per_split[split] = {"transcripts": written["transcripts"], "sha256": written["sha256"]}
    atomic_write_json(folder / "metadata.json", {"format": STREAM_FORMAT, "version": STREAM_VERSION, "k": k,
                                                 "stride": k, "window_size": window, "window_step": 1,
                                                 "splits": per_split})
    return folder


def test_kmeans_weights_are_window_positions_not_kmer_counts(tmp_path):
    # Train is one transcript AAAACG with windows of 4: AAAA, AAAC, AACG. A sits at 1+2+3+3 = 9 window
    # positions, C at 2, G at 1 (as k-mers of the stream: 4, 1, 1). T occurs only in val.
    stream = write_stream(tmp_path / "kmers", 1, 4, {"train": [[0, 0, 0, 0, 1, 2]], "val": [[3, 3, 2, 1, 0]],
                                                     "test": [[1, 1, 1, 1]]})
    emb = write_embeddings(tmp_path / "emb", stream, np.array([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0], [20.0, 0.0]]))
    out = tmp_path / "out"
    assert quantize_lambeq_embeddings.main(["--embeddings_dir", str(emb), "--output_dir", str(out), "--n_clusters", "2",
                                            "--log_level", "warning"]) == 0
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["train_positions"] == 12 and sorted(meta["cluster_sizes"]) == [1, 11]
    assert meta["windows"] == {"train": 3, "val": 2, "test": 1}
    centres = sorted(torch.load(out / "cluster_centers.pt", weights_only=True)[:, 0].tolist())
    assert centres == pytest.approx([2 / 11, 10.0])  # (9 * 0 + 2 * 1) / 11, not (4 * 0 + 1 * 1) / 5
    assert meta["inertia"] == pytest.approx(9 * (2 / 11) ** 2 + 2 * (9 / 11) ** 2)
    assert meta["unseen_kmer_positions"] == {"train": 0, "val": 2 + 1, "test": 0}  # T at val positions 0 (1x), 1 (2x)


def test_a_table_of_the_occurring_kmers_maps_only_those(tmp_path):
    # lambeq_encoder.py writes table_kmers.npy for k > 10; the map is the same at any k (k = 5 keeps this fast).
    k = 5
    rng = np.random.default_rng(4)
    transcripts = {s: [rng.integers(0, 4**k, 6).tolist() for _ in range(2)] for s in SPLITS}
    stream = write_stream(tmp_path / "kmers", k, 3, transcripts)
    present = np.unique(np.concatenate([ids for members in transcripts.values() for ids in members]))
    emb = tmp_path / "emb"
    emb.mkdir()
    np.save(emb / "table.npy", rng.normal(size=(len(present), 2)).astype(np.float32))
    np.save(emb / "table_kmers.npy", present.astype(np.int64))
    atomic_write_json(emb / "metadata.json", {"format": EMBEDDING_FORMAT, "version": EMBEDDING_VERSION,
                                              "layout": "table", "embedding_dim": 2,
                                              "stream": stream_reference(open_stream_data(stream), emb)})
    out = tmp_path / "out"
    assert quantize_lambeq_embeddings.main(["--embeddings_dir", str(emb), "--output_dir", str(out), "--n_clusters", "3",
                                            "--n_init", "1", "--log_level", "warning"]) == 0
    kmer_tokens = np.load(out / "kmer_tokens.npy")
    assert kmer_tokens.shape == (4**k,) and (kmer_tokens[present] >= 0).all()
    assert (np.delete(kmer_tokens, present) == -1).all()
    data = open_tokens(out)
    for split in SPLITS:
        ids = data[split].stream.windows(np.arange(data[split].num_windows)).astype(np.int64)
        assert torch.equal(data[split].batch(torch.arange(len(ids))), torch.from_numpy(kmer_tokens[ids].astype(np.int64)))
    assert len((out / "kmer_tokens.tsv").read_text().splitlines()) == len(present) + 1


def expect_one_line_error(capsys, argv: list[str], *fragments: str) -> None:
    try:
        code = quantize_lambeq_embeddings.main(argv)
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    for fragment in fragments:
        assert fragment in err[0], err


def test_bad_inputs_are_one_line_errors(hand_made, tmp_path, capsys):
    def argv(folder: Path, *extra: str) -> list[str]:
        out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
        return ["--embeddings_dir", str(folder), "--output_dir", str(out), "--seq_len", "4", *extra]

    expect_one_line_error(capsys, argv(hand_made, "--n_clusters", "5"), "only 4 distinct", "--n_clusters 5")
    expect_one_line_error(capsys, argv(hand_made, "--n_clusters", "2", "--seq_len", "5"), "--seq_len 5",
                          "hold 4 k-mers")
    expect_one_line_error(capsys, argv(hand_made, "--n_clusters", "0"), "argument --n_clusters")
    expect_one_line_error(capsys, argv(tmp_path / "absent", "--n_clusters", "2"), "folder not found")

    meta = json.loads((hand_made / "metadata.json").read_text())
    atomic_write_json(hand_made / "metadata.json", {**meta, "embedding_dim": 3})
    expect_one_line_error(capsys, argv(hand_made, "--n_clusters", "2"), "table.npy", "expected float32 [R, 3]")
    atomic_write_json(hand_made / "metadata.json", meta)

    windows = write_embeddings(tmp_path / "windows", hand_made.parent / "kmers", np.eye(4), layout="windows")
    np.save(windows / "train_embeddings.npy", np.zeros((2, 4, 3), dtype=np.float32))
    expect_one_line_error(capsys, argv(windows, "--n_clusters", "2"), "train_embeddings.npy", "shape (2, 4, 3)")
    (windows / "train_embeddings.npy").unlink()
    expect_one_line_error(capsys, argv(windows, "--n_clusters", "2"), "train_embeddings.npy: missing")

    (hand_made / "table.npy").unlink()
    expect_one_line_error(capsys, argv(hand_made, "--n_clusters", "2"), "table.npy: missing", "lambeq_encoder.py")


def test_script_end_to_end(random_data, tmp_path, capsys):
    out = tmp_path / "tokens"
    cmd = [
        sys.executable,
        str(ROOT / "quantize_lambeq_embeddings.py"),
        "--embeddings_dir",
        str(random_data["compact"]),
        "--output_dir",
        str(out),
        "--n_clusters",
        "6",
        "--log_level",
        "warning",
    ]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    data = open_tokens(out)
    assert {name: split.num_windows for name, split in data.splits.items()} == {"train": 40, "val": 10, "test": 10}
    assert data.vocab_size == 6 and data.meta.kind == "kmer_map"
    assert json.loads((out / "metrics.json").read_text())["windows"]["train"] == 40
    assert json.loads((out / "args.json").read_text())["command"][0] == "quantize_lambeq_embeddings.py"
    expect_one_line_error(capsys, cmd[2:], "holds a completed run", "--overwrite")
