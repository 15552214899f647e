"""quantize_lambeq_embeddings.py and quixer_rna.quantization: weighted k-means, assignment, metadata,
bad inputs, and an end-to-end run of the script."""

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
from quixer_rna import quantization as q
from quixer_rna.formats.embeddings import save_embedding_split
from quixer_rna.formats.tokens import load_token_dataset, load_token_split

ROOT = Path(__file__).resolve().parents[1]
SPLITS = ("train", "val", "test")


def write_split(folder: Path, name: str, k: int, ids: torch.Tensor, table: torch.Tensor, dense: bool) -> None:
    n = ids.shape[0]
    common = dict(k=k, labels=torch.arange(n) % 2, sources=[f"{name}_tx{i // 3}" for i in range(n)], kmer_ids=ids)
    if dense:
        save_embedding_split(folder / f"{name}.pt", embeddings=table[ids], **common)
    else:
        save_embedding_split(folder / f"{name}.pt", table=table, **common)


def write_dataset(folder: Path, k: int, table: torch.Tensor, ids: dict[str, torch.Tensor], dense: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, split_ids in ids.items():
        write_split(folder, name, k, split_ids, table, dense)
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
    return {
        "k": k,
        "table": table,
        "ids": ids,
        "compact": write_dataset(base / "compact", k, table, ids),
        "dense": write_dataset(base / "dense", k, table, ids, dense=True),
    }


def run_main(embeddings: Path, out: Path, *extra: str) -> int:
    return quantize_lambeq_embeddings.main(
        ["--embeddings_dir", str(embeddings), "--output_dir", str(out), "--seq_len", "32", *extra]
    )


def tokens_of(out: Path) -> dict[str, torch.Tensor]:
    return {name: load_token_split(out / f"{name}.pt").sequences for name in SPLITS}


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
    for fmt, extra in (("compact", ["--n_init", "2"]), ("dense", ["--batch_size", "256"])):
        first, second = tmp_path / f"{fmt}1", tmp_path / f"{fmt}2"
        for out in (first, second):
            assert run_main(random_data[fmt], out, "--n_clusters", "8", "--seed", "5", *extra) == 0
        for name in SPLITS:
            assert torch.equal(tokens_of(first)[name], tokens_of(second)[name])
        assert torch.equal(torch.load(first / "cluster_centers.pt"), torch.load(second / "cluster_centers.pt"))


def test_compact_and_dense_give_the_same_tokens_with_full_kmeans(random_data, tmp_path):
    assert run_main(random_data["compact"], tmp_path / "c", "--n_clusters", "8") == 0
    assert run_main(random_data["dense"], tmp_path / "d", "--n_clusters", "8", "--algorithm", "kmeans") == 0
    compact, dense = tokens_of(tmp_path / "c"), tokens_of(tmp_path / "d")
    for name in SPLITS:
        assert torch.equal(compact[name], dense[name])
    meta_c = json.loads((tmp_path / "c" / "metadata.json").read_text())
    meta_d = json.loads((tmp_path / "d" / "metadata.json").read_text())
    assert meta_c["algorithm"] == meta_d["algorithm"] == "kmeans"
    assert meta_c["cluster_sizes"] == meta_d["cluster_sizes"]
    assert meta_c["inertia"] == pytest.approx(meta_d["inertia"], rel=1e-9)
    assert not (tmp_path / "d" / "kmer_tokens.pt").exists()


def test_dense_minibatch_runs_and_tokens_are_valid(random_data, tmp_path):
    out = tmp_path / "mb"
    assert run_main(random_data["dense"], out, "--n_clusters", "8", "--batch_size", "256") == 0
    data = load_token_dataset(out)
    for name in SPLITS:
        seq = data[name].sequences
        assert seq.dtype == torch.int64 and seq.shape == random_data["ids"][name].shape
        assert int(seq.min()) >= 0 and int(seq.max()) < 8 and data[name].vocab_size == 8
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["algorithm"] == "minibatch" and meta["input_format"] == "dense"
    assert sum(meta["cluster_sizes"]) == 40 * 32 and len(meta["cluster_sizes"]) == 8


def test_every_kmer_gets_its_nearest_centre_unseen_ones_included(random_data, tmp_path):
    out = tmp_path / "c"
    assert run_main(random_data["compact"], out, "--n_clusters", "8") == 0
    centres = torch.load(out / "cluster_centers.pt", weights_only=True)
    assert centres.dtype == torch.float32 and centres.shape == (8, 4)
    nearest = torch.cdist(random_data["table"].double(), centres.double()).argmin(dim=1)
    kmer_tokens = torch.load(out / "kmer_tokens.pt", weights_only=True)
    assert kmer_tokens.dtype == torch.int64 and torch.equal(kmer_tokens, nearest)
    val = load_token_split(out / "val.pt")
    val_ids = random_data["ids"]["val"]
    assert bool((val_ids >= 48).any())
    assert torch.equal(val.sequences, nearest[val_ids])
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["unseen_kmer_positions"] == {
        "train": 0,
        "val": int((val_ids >= 48).sum()),
        "test": int((random_data["ids"]["test"] >= 48).sum()),
    }
    assert val.sources == [f"val_tx{i // 3}" for i in range(10)]
    assert val.labels.tolist() == [i % 2 for i in range(10)]


@pytest.fixture()
def hand_made(tmp_path) -> Path:
    """k=1: A=(0,0), C=(3,0) close together, G and T far away; train holds A x4, C x2, G x1, T x1."""
    table = torch.tensor([[0.0, 0.0], [3.0, 0.0], [100.0, 0.0], [0.0, 100.0]])
    ids = {
        "train": torch.tensor([[0, 0, 1, 2], [0, 0, 1, 3]]),
        "val": torch.tensor([[3, 2, 1, 0]]),
        "test": torch.tensor([[1, 1, 1, 1]]),
    }
    return write_dataset(tmp_path / "hand", 1, table, ids)


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
    assert meta["embedding_dim"] == 2 and meta["distinct_train_vectors"] == 4
    assert meta["windows"] == {"train": 2, "val": 1, "test": 1}
    assert "Hamming distance 1" in meta["definitions"]["hamming_neighbour_share"]
    rows = [line.split("\t") for line in (out / "kmer_tokens.tsv").read_text().splitlines()]
    assert rows[0] == ["kmer", "token"] and [r[0] for r in rows[1:]] == ["A", "C", "G", "T"]
    token = {kmer: int(t) for kmer, t in rows[1:]}
    assert token["A"] == token["C"] and len({token["A"], token["G"], token["T"]}) == 3
    assert load_token_split(out / "val.pt").sequences.tolist() == [[token[b] for b in "TGCA"]]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["inertia"] == pytest.approx(12.0)
    assert json.loads((out / "args.json").read_text())["status"] == "completed"


def expect_one_line_error(capsys, argv: list[str], *fragments: str) -> None:
    assert quantize_lambeq_embeddings.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    for fragment in fragments:
        assert fragment in err[0]


def test_bad_inputs_are_one_line_errors(hand_made, tmp_path, capsys):
    def argv(folder: Path, *extra: str) -> list[str]:
        out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
        return ["--embeddings_dir", str(folder), "--output_dir", str(out), "--seq_len", "4", *extra]

    expect_one_line_error(capsys, argv(hand_made, "--n_clusters", "5"), "only 4 distinct", "--n_clusters 5")
    expect_one_line_error(capsys, argv(hand_made, "--n_clusters", "2", "--seq_len", "5"), "train.pt", "--seq_len 5")

    wide = write_dataset(tmp_path / "wide", 1, torch.eye(4), {"val": torch.tensor([[0, 1, 2, 3]])})
    for name in ("train", "test"):
        (wide / f"{name}.pt").write_bytes((hand_made / f"{name}.pt").read_bytes())
    expect_one_line_error(capsys, argv(wide, "--n_clusters", "2"), "different embedding widths")

    (hand_made / "test.pt").unlink()
    expect_one_line_error(capsys, argv(hand_made, "--n_clusters", "2"), "missing split", "test.pt")


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
    data = load_token_dataset(out)
    assert {name: len(split) for name, split in data.items()} == {"train": 40, "val": 10, "test": 10}
    assert all(split.vocab_size == 6 for split in data.values())
    assert json.loads((out / "metrics.json").read_text())["windows"]["train"] == 40
    expect_one_line_error(capsys, cmd[2:], "--overwrite")
