"""lambeq k-mer circuits: the torch simulation against lambeq's own evaluation, the Hamming structure of
the encoding, determinism, the stairs composition, the embedding folder written from a k-mer stream (table,
--dense export, --context stairs, k > 10), the CLI and the launcher."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from quixer_rna.lambeq_sim import LambeqCircuit, simulate
from quixer_rna.encoding.circuits import (
    ANSATZE,
    evaluate_with_lambeq,
    kmer_circuit,
    make_ansatz,
    symbol_index,
    template_circuit,
)
from quixer_rna.encoding.encoder import (
    KmerEncoder,
    contextual_embeddings,
    count_distinct_rows,
    encode_kmer_table,
    encoding_params,
    kmer_ids_to_digits,
    readout_of,
)
from quixer_rna.encoding.translate import read_circuit
from fixtures import write_token_folder
from quixer_rna.errors import UserError
from quixer_rna.formats.embeddings import open_embeddings
from quixer_rna.formats.kmer_stream import open_stream_data
from quixer_rna.kmers import kmer_to_id
from quixer_rna.progress import Progress

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "lambeq_encoder.py"
LAUNCHER = ROOT / "run_lambeq_gpu.sh"

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning")


def _lambeq_amplitudes(encoder: KmerEncoder, kmer: str) -> np.ndarray:
    circuit = kmer_circuit(kmer, encoder.ansatz, encoder.n_qubits, encoder.layers)
    return evaluate_with_lambeq(circuit, lambda name: encoder.word_value(name, kmer))


@pytest.mark.parametrize("ansatz", ANSATZE)
@pytest.mark.parametrize(("n_qubits", "kmers"), [(3, ["ACG", "TTA", "GCA"]), (2, ["ACGT", "TGCA"])])
def test_torch_simulation_matches_lambeq(ansatz: str, n_qubits: int, kmers: list[str]) -> None:
    encoder = KmerEncoder.build(len(kmers[0]), n_qubits, ansatz, 2, "amplitudes", seed=3)
    ours = encoder.states(torch.tensor([kmer_to_id(kmer) for kmer in kmers])).numpy()
    for row, kmer in zip(ours, kmers):
        reference = _lambeq_amplitudes(encoder, kmer)
        assert np.abs(reference).sum() > 0.5
        np.testing.assert_allclose(row, reference, atol=1e-6, rtol=0)
        np.testing.assert_allclose(np.abs(row) ** 2, np.abs(reference) ** 2, atol=1e-6, rtol=0)


def test_symbols_map_by_parsed_index_not_sorted_name() -> None:
    encoder = KmerEncoder.build(3, 3, "Sim14", 1, "amplitudes", seed=0)
    template = template_circuit(3, "Sim14", 3, 1)
    names = sorted(symbol.name for symbol in template.free_symbols)
    weights = [name for name in names if not name.startswith("enc_")]
    assert len(weights) == 12 and weights[2].endswith("_s_10")  # string order puts _10 before _2
    assert sorted(g.param for g in encoder.word.gates if g.param is not None and g.param >= 6) == list(range(6, 18))

    def by_sorted_position(name: str) -> int:  # what zipping sorted symbols with the weight vector would do
        return symbol_index(name) if name.startswith("enc_") else 6 + weights.index(name)

    wrong = read_circuit(template, by_sorted_position)
    params = torch.cat((encoding_params(torch.tensor([kmer_to_id("ACG")]), 3), encoder.word_weights[None]), 1)
    reference = _lambeq_amplitudes(encoder, "ACG")
    assert np.abs(simulate(wrong, params)[0].numpy() - reference).max() > 1e-3
    np.testing.assert_allclose(simulate(encoder.word, params)[0].numpy(), reference, atol=1e-6)
    np.testing.assert_allclose(encoder.states(torch.tensor([kmer_to_id("ACG")]))[0].numpy(), reference, atol=1e-6)
    assert symbol_index("ACG__s_10") == 10


def _overlaps(states: torch.Tensor) -> torch.Tensor:
    return (states.conj() @ states.T).abs() ** 2


def test_overlap_is_one_third_to_the_hamming_distance_before_and_after_shared_layers() -> None:
    k = n = 4
    ids = torch.arange(4**k)
    digits = kmer_ids_to_digits(ids, k)
    hamming = (digits[:, None, :] != digits[None, :, :]).sum(-1)
    expected = (1 / 3) ** hamming.double()
    encoder = KmerEncoder.build(k, n, "Sim14", 2, "amplitudes", seed=1)
    encoded_only = LambeqCircuit(n, encoder.word.gates[: 2 * k])
    assert all(g.param is not None and g.param < 2 * k for g in encoded_only.gates)
    before = simulate(encoded_only, encoding_params(ids, k))
    after = encoder.states(ids)
    torch.testing.assert_close(_overlaps(before), expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(_overlaps(after), expected, atol=1e-12, rtol=0)
    assert not torch.allclose(before, after)


def test_bases_beyond_the_qubits_compose_on_a_qubit_and_stay_distinct() -> None:
    table = encode_kmer_table(4, 8, "Sim14", 1, "amplitudes", seed=0)
    assert count_distinct_rows(table.double(), 1e-6) == 256


def test_table_is_deterministic_for_a_seed_and_changes_with_it() -> None:
    first = encode_kmer_table(3, 8, seed=5)
    assert first.shape == (64, 8) and first.dtype == torch.float32
    torch.testing.assert_close(first.sum(1), torch.ones(64), atol=1e-6, rtol=0)
    assert torch.equal(first, encode_kmer_table(3, 8, seed=5))
    assert (first - encode_kmer_table(3, 8, seed=6)).abs().max() > 1e-3


def test_stairs_steps_match_lambeq_stairs_diagrams() -> None:
    from lambeq.text2diagram.linear_reader import stairs_reader

    words = ["ACG", "TTG", "CAT", "GGA"]
    encoder = KmerEncoder.build(3, 2, "Sim14", 1, "amplitudes", seed=2, stairs=True)
    states = encoder.all_states()
    ours = encoder.contextual(torch.tensor([[kmer_to_id(w) for w in words]]), states)[0].double()
    ansatz = make_ansatz("Sim14", 2, 1, 3)
    for length in range(1, len(words) + 1):
        diagram = ansatz(stairs_reader.sentence2diagram(" ".join(words[:length])))
        reference = evaluate_with_lambeq(diagram, encoder.word_value)
        reference = reference / np.linalg.norm(reference)
        got = ours[length - 1].numpy()
        np.testing.assert_allclose(got[:4] + 1j * got[4:], reference, atol=1e-6, rtol=0)
    assert np.abs(ours[1].numpy() - ours[2].numpy()).max() > 1e-3


SPLIT_SIZES = {"train": 12, "val": 4, "test": 4}


def tiny_stream(root: Path, length: int = 6) -> Path:
    """A k-mer stream of 3-mers (root/kmers): 12 / 4 / 4 random windows of `length`, two per transcript."""
    g = torch.Generator().manual_seed(0)
    windows = {split: torch.randint(0, 64, (n, length), generator=g) for split, n in SPLIT_SIZES.items()}
    sources = {split: [f"NM_{split}_{i // 2}" for i in range(n)] for split, n in SPLIT_SIZES.items()}
    write_token_folder(root, windows, 64, sources=sources)
    return root / "kmers"


def _run_main(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str]:
    import lambeq_encoder

    try:
        code = lambeq_encoder.main(list(argv))
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def all_windows(stream, split: str) -> np.ndarray:
    part = stream.splits[split]
    return part.windows(np.arange(part.num_windows)).astype(np.int64)


def test_table_equals_dense_export_and_stairs_writes_windows(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = tiny_stream(tmp_path)
    stream = open_stream_data(data)
    common = ["--data_dir", str(data), "--embedding_dim", "16", "--device", "cpu"]
    assert _run_main(capsys, *common, "--output_dir", str(tmp_path / "table"))[0] == 0
    assert _run_main(capsys, *common, "--k", "3", "--max_kmers", "6", "--output_dir", str(tmp_path / "dense"),
                     "--dense")[0] == 0
    table = open_embeddings(tmp_path / "table")
    expected = encode_kmer_table(3, 16, seed=0).numpy()
    assert table.layout == "table" and table.dim == 16 and table.table_kmers is None
    np.testing.assert_array_equal(table.table, expected)
    assert not (tmp_path / "table" / "table_kmers.npy").exists() and not (tmp_path / "table" / "train.pt").exists()
    assert (tmp_path / "table" / "table.npy").read_bytes() == (tmp_path / "dense" / "table.npy").read_bytes()
    for split in SPLIT_SIZES:
        dense = torch.load(tmp_path / "dense" / f"{split}.pt", weights_only=True)
        assert dense["embeddings"].shape == (SPLIT_SIZES[split], 6, 16)
        np.testing.assert_array_equal(dense["embeddings"].numpy(), expected[all_windows(stream, split)])
        assert torch.equal(dense["labels"], torch.zeros(SPLIT_SIZES[split], dtype=torch.int64))
    meta = json.loads((tmp_path / "table" / "metadata.json").read_text())
    assert meta["format"] == "quixer-rna-embeddings" and meta["layout"] == "table" and meta["k"] == 3
    assert meta["window_size"] == 6 and "window_length" not in meta and meta["windows"] == SPLIT_SIZES and meta["table_rows"] == 64
    assert meta["stream"]["path"] == str(data.resolve()) and meta["stream"]["sha256"] == stream.checksums()
    assert json.loads((tmp_path / "table" / "args.json").read_text())["role"] == "encode"

    code, _ = _run_main(capsys, "--data_dir", str(data), "--embedding_dim", "8", "--device", "cpu", "--context", "stairs",
                        "--output_dir", str(tmp_path / "stairs"))
    assert code == 0
    stairs = open_embeddings(tmp_path / "stairs")
    assert stairs.layout == "windows" and stairs.table is None
    train = np.asarray(stairs.window_embeddings("train"))
    assert train.shape == (12, 6, 8)
    small = encode_kmer_table(3, 8, seed=0).numpy()
    ids = all_windows(stream, "train")
    np.testing.assert_allclose(train[:, 0], small[ids[:, 0]], atol=1e-6)
    assert np.abs(train[:, 1] - small[ids[:, 1]]).max() > 1e-3
    meta = json.loads((tmp_path / "stairs" / "metadata.json").read_text())
    assert meta["context"] == "stairs" and meta["layout"] == "windows" and meta["qubits"] == 3
    assert not (tmp_path / "stairs" / "table.npy").exists()

    # The stream rewritten after encoding: the embedding folder no longer matches it.
    g = torch.Generator().manual_seed(1)
    write_token_folder(tmp_path, {s: torch.randint(0, 64, (n, 6), generator=g) for s, n in SPLIT_SIZES.items()}, 64)
    with pytest.raises(UserError, match="rewritten after this folder was made") as exc:
        open_embeddings(tmp_path / "table")
    assert "\n" not in str(exc.value)


def test_long_kmers_get_rows_for_the_occurring_ones_only(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import prepare_autoregressive_data

    rng = np.random.default_rng(2)
    fasta = tmp_path / "in.fa"
    fasta.write_text("".join(f">NM_{i}.1 test ({'G' + str(i)}), mRNA\n{''.join(rng.choice(list('ACGT'), 80))}\n"
                             for i in range(6)))
    data = tmp_path / "kmers"
    assert prepare_autoregressive_data.main(["--fasta", str(fasta), "--output_dir", str(data), "--k", "11",
                                             "--window_size", "3", "--min_length", "10", "--log_level", "warning"]) == 0
    stream = open_stream_data(data)
    out = tmp_path / "emb"
    assert _run_main(capsys, "--data_dir", str(data), "--output_dir", str(out), "--embedding_dim", "4",
                     "--device", "cpu", "--dense")[0] == 0
    emb = open_embeddings(out)
    present = np.unique(np.concatenate([np.asarray(part.kmers, dtype=np.int64) for part in stream.splits.values()]))
    np.testing.assert_array_equal(emb.table_kmers, present)
    encoder = KmerEncoder.build(11, 2, "Sim14", 1, "probabilities", seed=0)
    expected = readout_of(encoder.states_of(torch.from_numpy(present)), "probabilities").float().numpy()
    np.testing.assert_allclose(emb.table, expected, atol=1e-6)
    for split in SPLIT_SIZES:
        ids = all_windows(stream, split)
        dense = torch.load(out / f"{split}.pt", weights_only=True)["embeddings"].numpy()
        np.testing.assert_array_equal(dense, emb.table[np.searchsorted(present, ids)])
    assert json.loads((out / "metadata.json").read_text())["table_holds"] == "the k-mers that occur in any split"
    code, err = _run_main(capsys, "--data_dir", str(data), "--output_dir", str(tmp_path / "st"), "--embedding_dim", "4",
                          "--device", "cpu", "--context", "stairs")
    assert code == 2 and "--context stairs" in err and len(err.strip().splitlines()) == 1


def test_contextual_chunks_in_worker_processes_match_one_process(tmp_path: Path) -> None:
    encoder = KmerEncoder.build(3, 2, "Sim15", 1, "probabilities", seed=0, stairs=True)
    states = encoder.all_states()
    g = torch.Generator().manual_seed(0)
    write_token_folder(tmp_path, {s: torch.randint(0, 64, (6, 5), generator=g) for s in SPLIT_SIZES}, 64)
    train = open_stream_data(tmp_path / "kmers").splits["train"]
    alone, split = np.zeros((6, 5, 4), np.float32), np.zeros((6, 5, 4), np.float32)
    contextual_embeddings(encoder, states, train, alone, 1, Progress(6, "one", enabled=False))
    contextual_embeddings(encoder, states, train, split, 2, Progress(6, "two", enabled=False), chunk=3)
    np.testing.assert_allclose(alone, split, atol=1e-7, rtol=0)
    ids = torch.from_numpy(train.windows(np.arange(6)).astype(np.int64))
    np.testing.assert_allclose(alone, encoder.contextual(ids, states).numpy(), atol=1e-7, rtol=0)
    assert np.abs(alone).sum() > 0


@pytest.mark.parametrize(("flags", "needle"), [
    (["--embedding_dim", "48"], "--embedding_dim 48"),
    (["--embedding_dim", "2", "--readout", "amplitudes"], "--embedding_dim 2"),
    (["--embedding_dim", "96", "--readout", "amplitudes"], "--embedding_dim 96"),
    (["--embedding_dim", "0"], "argument --embedding_dim: expected a whole number >= 1"),
    (["--layers", "-1"], "argument --layers"),
    (["--ansatz", "QAOA"], "argument --ansatz: invalid choice"),
])
def test_bad_embedding_dim_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, flags: list[str], needle: str) -> None:
    code, err = _run_main(capsys, "--data_dir", str(tmp_path), "--output_dir", str(tmp_path / "out"), *flags)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_flags_that_contradict_the_stream_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = tiny_stream(tmp_path)
    base = ["--data_dir", str(data), "--embedding_dim", "8", "--device", "cpu"]
    cases = [
        (["--k", "4"], f"--k 4: the k-mer stream in {data} holds 3-mers"),
        (["--max_kmers", "5"], f"--max_kmers 5: windows in {data} hold 6 k-mers"),
    ]
    for extra, needle in cases:
        code, err = _run_main(capsys, *base, *extra, "--output_dir", str(tmp_path / "out"))
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    code, err = _run_main(capsys, "--data_dir", str(tmp_path / "absent"), "--output_dir", str(tmp_path / "out"))
    assert code == 2 and "folder not found" in err and len(err.strip().splitlines()) == 1
    code, err = _run_main(capsys, "--data_dir", str(tmp_path / "tokens"), "--output_dir", str(tmp_path / "out"))
    assert code == 2 and "not a k-mer stream folder" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHON": sys.executable, "PYTHONWARNINGS": "ignore"}


@pytest.mark.parametrize("args", [
    ["only", "two"],
    ["data", "out", "6x", "2", "cpu"],
    ["data", "out", "16", "0", "cpu"],
    ["data", "out", "16", "2", "gpu"],
    ["data", "out", "16", "2", "cuda:x"],
])
def test_launcher_prints_usage_on_bad_arguments(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "data").mkdir()
    result = subprocess.run(["bash", str(LAUNCHER), *args], cwd=tmp_path, env=_env(), capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.startswith("usage: ")
    assert not (tmp_path / "out").exists()


def test_launcher_runs_the_script_end_to_end_on_cpu(tmp_path: Path) -> None:
    data, out = tiny_stream(tmp_path), tmp_path / "out"
    result = subprocess.run(
        ["bash", str(LAUNCHER), str(data), str(out), "16", "2", "cpu", "--k", "3", "--max_kmers", "6", "--seed", "4"],
        env=_env(), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "run_lambeq_gpu.sh: device cpu, 2 worker(s)" in (out / "encode.log").read_text()
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["windows"] == SPLIT_SIZES and meta["qubits"] == 4
    assert meta["table_rows"] == 64 and meta["distinct_embeddings"] == 64 and meta["lambeq_version"]
    record = json.loads((out / "args.json").read_text())
    assert record["status"] == "completed" and record["command"][0] == "lambeq_encoder.py"
    np.testing.assert_array_equal(open_embeddings(out).table, encode_kmer_table(3, 16, seed=4).numpy())
    again = subprocess.run(["bash", str(LAUNCHER), str(data), str(out), "16", "2", "cpu", "--k", "3"],
                           env=_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "--overwrite" in again.stderr
