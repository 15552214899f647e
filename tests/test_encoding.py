"""lambeq k-mer circuits: the torch simulation against lambeq's own evaluation, the Hamming structure of
the encoding, determinism, the stairs composition, the on-disk outputs, the CLI and the launcher."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from quixer_rna import encoding
from quixer_rna.lambeq_sim import LambeqCircuit, simulate
from quixer_rna.encoding import (
    ANSATZE,
    KmerEncoder,
    encode_kmer_table,
    evaluate_with_lambeq,
    kmer_circuit,
    kmer_ids_to_digits,
    read_circuit,
    symbol_index,
)
from quixer_rna.formats.embeddings import load_embedding_dataset
from quixer_rna.formats.sentences import write_sentence_split
from quixer_rna.kmers import kmer_to_id

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
    template = encoding.template_circuit(3, "Sim14", 3, 1)
    names = sorted(symbol.name for symbol in template.free_symbols)
    weights = [name for name in names if not name.startswith("enc_")]
    assert len(weights) == 12 and weights[2].endswith("_s_10")  # string order puts _10 before _2
    assert sorted(g.param for g in encoder.word.gates if g.param is not None and g.param >= 6) == list(range(6, 18))

    def by_sorted_position(name: str) -> int:  # what zipping sorted symbols with the weight vector would do
        return symbol_index(name) if name.startswith("enc_") else 6 + weights.index(name)

    wrong = read_circuit(template, by_sorted_position)
    params = torch.cat((encoding.encoding_params(torch.tensor([kmer_to_id("ACG")]), 3), encoder.word_weights[None]), 1)
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
    before = simulate(encoded_only, encoding.encoding_params(ids, k))
    after = encoder.states(ids)
    torch.testing.assert_close(_overlaps(before), expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(_overlaps(after), expected, atol=1e-12, rtol=0)
    assert not torch.allclose(before, after)


def test_bases_beyond_the_qubits_compose_on_a_qubit_and_stay_distinct() -> None:
    table = encode_kmer_table(4, 8, "Sim14", 1, "amplitudes", seed=0)
    assert encoding.count_distinct_rows(table.double(), 1e-6) == 256


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
    ansatz = encoding.make_ansatz("Sim14", 2, 1, 3)
    for length in range(1, len(words) + 1):
        diagram = ansatz(stairs_reader.sentence2diagram(" ".join(words[:length])))
        reference = evaluate_with_lambeq(diagram, encoder.word_value)
        reference = reference / np.linalg.norm(reference)
        got = ours[length - 1].numpy()
        np.testing.assert_allclose(got[:4] + 1j * got[4:], reference, atol=1e-6, rtol=0)
    assert np.abs(ours[1].numpy() - ours[2].numpy()).max() > 1e-3


def _tiny_sentences(folder: Path, k: int = 3, length: int = 6) -> None:
    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("val", 4), ("test", 4)):
        windows = [["".join(rng.choice(list("ACGT"), k)) for _ in range(length)] for _ in range(count)]
        write_sentence_split(folder, split, windows, [f"NM_{split}_{i // 2}" for i in range(count)],
                             labels=list(range(count)))


def _run_main(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str]:
    import lambeq_encoder

    code = lambeq_encoder.main(list(argv))
    return code, capsys.readouterr().err


def test_compact_equals_dense_view_and_stairs_is_dense(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    sys.path.insert(0, str(ROOT))
    data = tmp_path / "data"
    _tiny_sentences(data)
    common = ["--data_dir", str(data), "--k", "3", "--max_kmers", "6", "--embedding_dim", "16", "--device", "cpu"]
    assert _run_main(capsys, *common, "--output_dir", str(tmp_path / "compact"))[0] == 0
    assert _run_main(capsys, *common, "--output_dir", str(tmp_path / "dense"), "--dense")[0] == 0
    compact, dense = load_embedding_dataset(tmp_path / "compact"), load_embedding_dataset(tmp_path / "dense")
    for split in ("train", "val", "test"):
        assert compact[split].is_compact and not dense[split].is_compact
        assert compact[split].dense().shape == (len(compact[split]), 6, 16)
        assert torch.equal(compact[split].dense(), dense[split].embeddings)
        assert torch.equal(compact[split].labels, torch.arange(len(compact[split])))
    assert compact["val"].sources[0] == "NM_val_0"

    code, _ = _run_main(capsys, *common[:-4], "--embedding_dim", "8", "--device", "cpu", "--context", "stairs",
                        "--output_dir", str(tmp_path / "stairs"))
    assert code == 0
    stairs = load_embedding_dataset(tmp_path / "stairs")["train"]
    assert not stairs.is_compact and stairs.embeddings.shape == (12, 6, 8)
    table = encode_kmer_table(3, 8, seed=0)
    torch.testing.assert_close(stairs.embeddings[:, 0], table[stairs.kmer_ids[:, 0]])
    assert (stairs.embeddings[:, 1] - table[stairs.kmer_ids[:, 1]]).abs().max() > 1e-3
    meta = json.loads((tmp_path / "stairs" / "metadata.json").read_text())
    assert meta["context"] == "stairs" and meta["format"] == "dense" and meta["qubits"] == 3


def test_contextual_chunks_in_worker_processes_match_one_process() -> None:
    encoder = KmerEncoder.build(3, 2, "Sim15", 1, "probabilities", seed=0, stairs=True)
    states = encoder.all_states()
    ids = torch.randint(0, 64, (6, 5), generator=torch.Generator().manual_seed(0))
    alone = encoding.contextual_embeddings(encoder, states, ids, workers=1, desc="one")
    split = encoding.contextual_embeddings(encoder, states, ids, workers=2, desc="two", chunk=3)
    torch.testing.assert_close(alone, split, atol=1e-7, rtol=0)


def test_parallel_reading_matches_sequential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _tiny_sentences(tmp_path)
    sequential = encoding.load_all_ids(str(tmp_path), ("train", "val", "test"), 3, 6, workers=1)
    monkeypatch.setattr(encoding, "PARALLEL_READ_BYTES", 0)
    parallel = encoding.load_all_ids(str(tmp_path), ("train", "val", "test"), 3, 6, workers=2)
    for split in sequential:
        assert torch.equal(sequential[split].ids, parallel[split].ids)
        assert sequential[split].sources == parallel[split].sources
    first = (tmp_path / "train" / "sentences.txt").read_text().split()[0]
    assert int(sequential["train"].ids[0, 0]) == kmer_to_id(first)


@pytest.mark.parametrize(("flags", "needle"), [
    (["--embedding_dim", "48"], "--embedding_dim 48"),
    (["--embedding_dim", "2", "--readout", "amplitudes"], "--embedding_dim 2"),
    (["--embedding_dim", "96", "--readout", "amplitudes"], "--embedding_dim 96"),
])
def test_bad_embedding_dim_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, flags: list[str], needle: str) -> None:
    sys.path.insert(0, str(ROOT))
    code, err = _run_main(capsys, "--data_dir", str(tmp_path), "--output_dir", str(tmp_path / "out"), *flags)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_bad_token_names_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    sys.path.insert(0, str(ROOT))
    _tiny_sentences(tmp_path / "data")
    path = tmp_path / "data" / "val" / "sentences.txt"
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace(lines[2][:3], "ANG", 1)
    path.write_text("\n".join(lines) + "\n")
    code, err = _run_main(capsys, "--data_dir", str(tmp_path / "data"), "--output_dir", str(tmp_path / "out"),
                          "--k", "3", "--max_kmers", "6", "--embedding_dim", "8")
    assert code == 2 and f"{path}:3:" in err and "'ANG'" in err and len(err.strip().splitlines()) == 1


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHON": sys.executable, "PYTHONWARNINGS": "ignore"}


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
    data, out = tmp_path / "data", tmp_path / "out"
    _tiny_sentences(data)
    result = subprocess.run(
        ["bash", str(LAUNCHER), str(data), str(out), "16", "2", "cpu", "--k", "3", "--max_kmers", "6", "--seed", "4"],
        env=_env(), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "run_lambeq_gpu.sh: device cpu, 2 worker(s)" in (out / "encode.log").read_text()
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["windows"] == {"train": 12, "val": 4, "test": 4} and meta["qubits"] == 4
    assert meta["table_rows"] == 64 and meta["distinct_embeddings"] == 64 and meta["lambeq_version"]
    assert json.loads((out / "args.json").read_text())["status"] == "completed"
    loaded = load_embedding_dataset(out)
    torch.testing.assert_close(loaded["train"].table, encode_kmer_table(3, 16, seed=4))
    again = subprocess.run(["bash", str(LAUNCHER), str(data), str(out), "16", "2", "cpu", "--k", "3"],
                           env=_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "--overwrite" in again.stderr



def test_windows_of_different_lengths_name_file_and_line(tmp_path: Path) -> None:
    write_sentence_split(tmp_path, "train", [["ACG", "TTT"], ["ACG", "TTT", "GGG"]], ["a", "b"])
    with pytest.raises(encoding.UserError, match=r"train/sentences.txt:2: 3 k-mers but line 1 has 2"):
        encoding.load_split_ids(str(tmp_path), "train", 3, 32)
