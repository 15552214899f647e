"""benchmarks/quixer_init.py on a tiny token folder: a row per seed and angle spread, with the trainer's own
validation curve and a plateau verdict, --poly reaching the model that is measured and trained, and
--normalise_features changing the head's input, not the draws."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from fixtures import counting_windows, write_token_folder

pytestmark = pytest.mark.usefixtures("one_thread")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "quixer_init.py"
TINY = ["--embedding_dim", "8", "--qubits", "2", "--ansatz_layers", "1", "--qsvt_degree", "2", "--windows", "16",
        "--batch_size", "8", "--val_windows", "16", "--device", "cpu"]


def _benchmark():
    spec = importlib.util.spec_from_file_location("quixer_init", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tokens(tmp_path) -> str:
    splits = {name: counting_windows(n, length=8, seed=i) for i, (name, n) in
              enumerate((("train", 64), ("val", 16), ("test", 16)))}
    return str(write_token_folder(tmp_path, splits, 7))


def _rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.split() and line.split()[0].isdigit()]


def test_rows_per_seed_and_spread_with_a_training_curve_and_verdict(tokens, capsys):
    bench = _benchmark()
    assert bench.main(["--data_dir", tokens, "--seeds", "0", "1", "--init_std", "0.1", "0.3", "--steps", "4",
                       "--eval_every", "2", *TINY]) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    assert [(row[0], row[1]) for row in rows] == [("0", "0.10"), ("0", "0.30"), ("1", "0.10"), ("1", "0.30")]
    spread = {(row[0], row[1]): float(row[6]) for row in rows}
    assert spread["0", "0.30"] > spread["0", "0.10"]  # wider angles: features that follow the tokens more
    assert all(row[2:5] == rows[0][2:5] for row in rows[:2])  # one seed draws one polynomial at any spread
    assert all("on the plateau through step 4" in line or "left the plateau by step" in line
               for line in out.splitlines() if line.split() and line.split()[0].isdigit())


def test_poly_sets_every_seeds_coefficients_and_a_wrong_count_is_one_line(tokens, capsys):
    bench = _benchmark()
    assert bench.main(["--data_dir", tokens, "--seeds", "0", "1", "--poly", "0.5,0.25,0", *TINY]) == 0
    assert [row[2:5] for row in _rows(capsys.readouterr().out)] == [["0.500", "0.250", "0.000"]] * 2
    assert bench.main(["--data_dir", tokens, "--poly", "1,2", *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["quixer_init.py: error: --poly: 2 coefficients for --qsvt_degree 2; give 3"]


def test_normalised_features_keep_the_draws_and_change_the_training(tokens, capsys):
    bench = _benchmark()
    steps = ["--seeds", "0", "--steps", "2", "--eval_every", "2", *TINY]
    assert bench.main(["--data_dir", tokens, *steps]) == 0
    plain = _rows(capsys.readouterr().out)[0]
    assert bench.main(["--data_dir", tokens, "--normalise_features", *steps]) == 0
    normalised = _rows(capsys.readouterr().out)[0]
    # Measured in evaluation mode, where a fresh norm is the identity: the same draws, spread and loss ...
    assert normalised[:9] == plain[:9]
    assert normalised[9] != plain[9]  # ... but trained on standardised features: another validation curve
