"""tune_quixer_hybrid.py on tiny data: every output, a rerun continues the study, two processes share one,
failed, pruned and killed trials are recorded (a killed one is retried), best_params.json trains, and bad
input is one stderr line."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

import train_quixer_hybrid
import tune_quixer_hybrid as script
from fixtures import counting_windows, write_token_folder
from quixer_rna import tuning

ROOT = Path(__file__).resolve().parents[1]
TINY_QUIXER = '{"qubits": 2, "ansatz_layers": 1, "embedding_dim": 8, "qsvt_degree": 2}'
TINY_LSTM = '{"embedding_dim": 8, "hidden_dim": 8, "num_layers": 1}'


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tokens")
    windows = {name: counting_windows(n, vocab=5, length=4, seed=i) for i, (name, n) in
               enumerate((("train", 32), ("val", 16), ("test", 16)))}
    return write_token_folder(root, windows, 5)


def tune_argv(data: Path, out: Path, *extra: str, space: str = TINY_QUIXER) -> list[str]:
    return [
        "--data_dir", str(data), "--output_dir", str(out), "--epochs_per_trial", "2", "--batch_size", "16",
        "--max_steps_per_epoch", "2", "--device", "cpu", "--search_space", space, "--log_level", "warning", *extra,
    ]  # fmt: skip


def stored_trials(out: Path, name: str = "tune_quixer") -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{out / 'study.db'}").trials


def one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and "%|" not in line]
    assert len(err) == 1, err
    assert ": error: " in err[0]
    return err[0]


def test_study_writes_every_output_continues_on_rerun_and_best_params_train(data_dir, tmp_path, capsys):
    out = tmp_path / "tune"
    seeds = ("--init_strategy", "small_gaussian", "--use_layerwise_training")
    assert script.main(tune_argv(data_dir, out, "--n_trials", "3", *seeds)) == 0
    assert "best val loss" in capsys.readouterr().out
    for name in ("best_params.json", "trials.csv", "args.json", "metrics.json", "study.db"):
        assert (out / name).is_file(), name
    for name in ("optimization_history.png", "param_importances.png"):
        assert (out / name).stat().st_size > 1000
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert [r["number"] for r in rows] == ["0", "1", "2"] and {r["state"] for r in rows} == {"COMPLETE"}
    assert set(json.loads(rows[0]["params"])) == {"lr", "weight_decay", "dropout", "init_std"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["trials_by_state"]["COMPLETE"] == 3 and metrics["n_trials_with_value"] == 3
    assert metrics["best_value"] == min(float(r["value"]) for r in rows)
    assert metrics["budget"] == {"trials": 3, "epochs_per_trial": 2, "max_steps_per_epoch": 2, "batch_size": 16}
    assert set(metrics["param_importances"]) == {"lr", "weight_decay", "dropout", "init_std"}
    best = json.loads((out / "best_params.json").read_text())
    assert best == metrics["best_params"]
    assert (best["qubits"], best["init_strategy"], best["use_layerwise_training"], best["batch_size"]) == (
        2, "small_gaussian", True, 16
    )  # fmt: skip
    assert best["lr"] == json.loads(rows[metrics["best_trial"]]["params"])["lr"]
    trial = out / "trials" / str(metrics["best_trial"])
    trial_metrics = json.loads((trial / "metrics.json").read_text())
    assert trial_metrics["val"]["loss"] == metrics["best_value"] and trial_metrics["epochs_run"] == 2
    assert json.loads((trial / "args.json").read_text())["role"] == "trial"
    assert json.loads((out / "args.json").read_text())["status"] == "completed"

    # The same command with a larger budget continues the study instead of starting again.
    assert script.main(tune_argv(data_dir, out, "--n_trials", "5", *seeds)) == 0
    trials = stored_trials(out)
    assert [t.number for t in trials] == [0, 1, 2, 3, 4]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert len({t.params["lr"] for t in trials}) == 5, "a rerun repeated an earlier draw"
    assert json.loads((out / "metrics.json").read_text())["trials_run_by_this_process"] == 2
    # Other trial settings in the same study are refused rather than mixed.
    capsys.readouterr()
    assert script.main(tune_argv(data_dir, out, "--n_trials", "6")) == 2
    assert "use_layerwise_training: True -> False" in one_error_line(capsys)

    # best_params.json is a valid --config of the trainer; the command line still overrides it.
    best = json.loads((out / "best_params.json").read_text())
    run = tmp_path / "final"
    argv = ["--config", str(out / "best_params.json"), "--data_dir", str(data_dir), "--output_dir", str(run)]
    assert train_quixer_hybrid.main([*argv, "--epochs", "1", "--device", "cpu", "--batch_size", "32"]) == 0
    final = json.loads((run / "metrics.json").read_text())
    assert final["model_config"]["qubits"] == 2 and final["model_config"]["init_std"] == best["init_std"]
    assert final["train_config"]["lr"] == best["lr"] and final["train_config"]["batch_size"] == 32


def test_two_processes_share_one_study(data_dir, tmp_path):
    """Two workers on one database: together they run the study to --n_trials (a trial running in the other
    worker counts, so they do not overshoot) and never draw the same parameters."""
    storage = f"sqlite:///{tmp_path / 'shared' / 'study.db'}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    procs = []
    for name in ("machine_a", "machine_b"):
        argv = tune_argv(data_dir, tmp_path / name, space=TINY_LSTM)
        argv += ["--model", "lstm", "--n_trials", "4", "--storage", storage]
        procs.append(subprocess.Popen([sys.executable, str(ROOT / "tune_quixer_hybrid.py"), *argv], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))  # fmt: skip
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in results]
    trials = optuna.load_study(study_name="tune_lstm", storage=storage).trials
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == len(trials) and 4 <= len(trials) <= 5  # a 5th only if both asked in the same instant
    ran = [json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("machine_a", "machine_b")]
    assert sum(m["trials_run_by_this_process"] for m in ran) == len(trials)
    assert len({t.params["lr"] for t in trials}) == len(trials), "two processes drew the same parameters"
    best = json.loads((tmp_path / "machine_a" / "best_params.json").read_text())
    assert best["model"] == "lstm" and best["hidden_dim"] == 8 and "init_strategy" not in best


def test_journal_storage_continues_a_study(data_dir, tmp_path):
    journal = tmp_path / "nfs" / "study.journal"
    argv = [*tune_argv(data_dir, tmp_path / "a", space=TINY_LSTM), "--model", "lstm", "--storage", str(journal)]
    assert script.main([*argv, "--n_trials", "2"]) == 0
    assert script.main([*argv, "--n_trials", "3"]) == 0
    storage = optuna.storages.journal.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    assert len(optuna.load_study(study_name="tune_lstm", storage=storage).trials) == 3


def fake_trainer(losses: dict[int, float], crash: int):
    """Stands in for train_model: reports the trial's scripted val loss at each step, or crashes."""

    def train(model_name, model_config, data, config, output_dir, on_evaluation=None, resume=True, **_):
        number = int(Path(output_dir).name)
        if number == crash:
            import torch

            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        for step in range(1, config.epochs + 1):
            on_evaluation({"step": step, "epoch": step, "val_loss": losses[number]})
        return {"model": model_name, "seed": 0, "tokens": {"folder": "x", "tokenizer": "t", "vocab_size": 5, "k": 2,
                                                           "fingerprint": "f"},
                "test": {"loss": 1.0, "perplexity": 2.7, "accuracy": 0.1, "top5_accuracy": 0.5},
                "references": {}, "parameters": 7, "train_seconds": 0.1,
                "train": {"fraction": 1.0, "windows": 1, "kmers": 1}, "model_config": {},
                "val": {"loss": losses[number]}, "best_step": config.epochs, "epochs_run": config.epochs,
                "evaluations": config.epochs}

    return train


def test_failed_pruned_and_killed_trials(data_dir, tmp_path, monkeypatch):
    out = tmp_path / "tune"
    # Trial 1 runs out of memory (recorded, not counted); 6 is left RUNNING by a dead process and is failed
    # when its heartbeat is stale, then retried as 7; 7 and 8, far worse than the median, are pruned.
    losses = {0: 1.0, 2: 1.2, 3: 0.9, 4: 1.1, 5: 1.05, 7: 9.0, 8: 8.0, 9: 0.95}
    monkeypatch.setattr(tuning, "train_model", fake_trainer(losses, crash=1))
    base = tune_argv(data_dir, out, "--epochs_per_trial", "5", "--heartbeat", "1")
    assert script.main([*base, "--n_trials", "5"]) == 0

    storage = optuna.storages.RDBStorage(f"sqlite:///{out / 'study.db'}", heartbeat_interval=1)
    study = optuna.load_study(study_name="tune_quixer", storage=storage)
    orphan = study.ask()
    storage.record_heartbeat(orphan._trial_id)
    time.sleep(3.5)  # older than twice --heartbeat (SQLite keeps whole seconds): its process is gone
    assert script.main([*base, "--n_trials", "8"]) == 0

    trials = stored_trials(out)
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE", "COMPLETE", "COMPLETE",
                                              "FAIL", "PRUNED", "PRUNED", "COMPLETE"]
    assert trials[7].system_attrs.get("failed_trial") == 6  # the killed trial's retry
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert rows[1]["error"].startswith("OutOfMemoryError: CUDA out of memory")
    assert "process was killed" in rows[6]["error"]
    assert float(rows[7]["value"]) == 9.0 and float(rows[9]["value"]) == 0.95
    assert json.loads((out / "trials" / "1" / "args.json").read_text())["status"] == "failed"
    assert json.loads((out / "trials" / "7" / "args.json").read_text())["status"] == "pruned"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["trials_by_state"] == {"RUNNING": 0, "COMPLETE": 6, "PRUNED": 2, "FAIL": 2, "WAITING": 0}
    assert metrics["best_trial"] == 3 and metrics["best_value"] == 0.9


def test_a_trial_killed_just_before_the_rerun_is_waited_for_and_retried(data_dir, tmp_path, monkeypatch):
    out = tmp_path / "tune"
    monkeypatch.setattr(tuning, "train_model", fake_trainer({0: 1.0, 2: 0.5, 3: 2.0}, crash=-1))
    base = tune_argv(data_dir, out, "--heartbeat", "1", "--n_trials", "3")
    assert script.main([*base, "--n_trials", "1"]) == 0
    storage = optuna.storages.RDBStorage(f"sqlite:///{out / 'study.db'}", heartbeat_interval=1)
    orphan = optuna.load_study(study_name="tune_quixer", storage=storage).ask()
    storage.record_heartbeat(orphan._trial_id)  # fresh: the rerun starts before it can look stale
    assert script.main(base) == 0
    trials = stored_trials(out)
    # Trial 2 alone would have ended the run: with the orphan still RUNNING the study looked full.
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert trials[3].system_attrs.get("failed_trial") == 1
    assert json.loads((out / "metrics.json").read_text())["trials_by_state"]["COMPLETE"] == 3


def test_overwrite_deletes_the_study_and_its_trial_folders(data_dir, tmp_path, monkeypatch):
    out = tmp_path / "tune"
    monkeypatch.setattr(tuning, "train_model", fake_trainer({0: 1.0, 1: 2.0}, crash=-1))
    assert script.main([*tune_argv(data_dir, out), "--n_trials", "2"]) == 0
    assert script.main([*tune_argv(data_dir, out), "--n_trials", "1", "--overwrite", "--epochs_per_trial", "3"]) == 0
    assert len(stored_trials(out)) == 1 and sorted(p.name for p in (out / "trials").iterdir()) == ["0"]
    assert json.loads((out / "metrics.json").read_text())["n_trials_with_value"] == 1


def test_importance_plot_is_skipped_with_a_reason_when_it_cannot_be_made(tmp_path):
    study = optuna.create_study()
    study.optimize(lambda trial: trial.suggest_float("x", 0.0, 1.0), n_trials=1)
    plots, importances = tuning.write_plots(study, tmp_path, seed=0)
    assert plots["optimization_history"] == "optimization_history.png" and importances is None
    assert plots["param_importances"].startswith("skipped: needs at least 2 complete trials")
    assert (tmp_path / "optimization_history.png").is_file() and not (tmp_path / "param_importances.png").exists()


def test_search_space_ranges_choices_and_fixed_values():
    space, fixed = tuning.load_search_space('{"qubits": [4, 6], "lr": [1e-3, 5e-3], "qsvt_degree": 3}', "quixer")
    assert fixed == {"qsvt_degree": 3}
    assert (space["qubits"].kind, space["qubits"].low, space["qubits"].high) == ("int", 4, 6)
    assert (space["lr"].kind, space["lr"].low, space["lr"].high) == ("float", 1e-3, 5e-3)
    assert space["lr"].describe("lr").endswith("(log)")
    space, fixed = tuning.load_search_space('{"dropout": [0, 0.2], "embedding_dim": [64, 128, 256]}', "quixer")
    assert space["dropout"].describe("dropout") == "float in [0.0, 0.2]"
    assert space["embedding_dim"].choices == (64, 128, 256)
    assert "ffn_dim" in tuning.load_search_space(None, "fnet")[0] and fixed == {}
    space, fixed = tuning.load_search_space('{"postselection_weight": [0.0, 0.1]}', "quixer")
    assert (space["postselection_weight"].kind, space["postselection_weight"].high) == ("float", 0.1)


@pytest.mark.parametrize(
    "space, message",
    [
        ('{"qubit": 2}', "unknown key(s) qubit for --model quixer; valid keys: lr, weight_decay"),
        ('{"hidden_dim": 8}', "unknown key(s) hidden_dim"),
        ('{"lr": [0, 0.1]}', "lr=0: must be a number > 0"),
        ('{"qubits": [6, 4]}', "qubits range [6, 4]: low must be below high"),
        ('{"qubits": 2.5}', "qubits=2.5: must be a whole number >= 1"),
        ('{"dropout": 1.5}', "dropout=1.5: must be a number in [0, 1)"),
        ('{"lr": [1e-3,', "not valid JSON"),
        ("missing.json", "neither a JSON file nor inline JSON"),
    ],
)
def test_bad_search_space_is_one_stderr_line(data_dir, tmp_path, capsys, space, message):
    assert script.main(tune_argv(data_dir, tmp_path / "tune", "--n_trials", "1", space=space)) == 2
    assert message in one_error_line(capsys)
    assert not (tmp_path / "tune").exists()


def test_bad_flags_are_one_stderr_line(data_dir, tmp_path, capsys):
    out = tmp_path / "tune"
    lstm = [*tune_argv(data_dir, out, space=TINY_LSTM), "--model", "lstm"]
    assert script.main([*lstm, "--init_strategy", "official"]) == 2
    assert "--init_strategy: a Quixer setting; drop it for --model lstm" in one_error_line(capsys)
    assert script.main([*tune_argv(data_dir, out), "--storage", str(tmp_path / "study.txt")]) == 2
    assert "ending in .log or .journal" in one_error_line(capsys)
    assert script.main([*tune_argv(data_dir, out), "--storage", "postgresql://me:secret@127.0.0.1:1/optuna"]) == 2
    line = one_error_line(capsys)
    assert "--storage postgresql://me:***@127.0.0.1:1/optuna: cannot open it" in line and "secret" not in line
    assert script.main([*tune_argv(data_dir, out), "--n_trials", "0"]) == 2
    assert "argument --n_trials" in one_error_line(capsys)


def test_colliding_creation_is_retried_and_other_errors_are_not():
    calls = []

    def make(error: Exception):
        def attempt():
            calls.append(1)
            if len(calls) == 1:
                raise error
            return "storage"

        return attempt

    assert tuning._retrying(make(RuntimeError("(sqlite3.OperationalError) table studies already exists"))) == "storage"
    calls.clear()
    with pytest.raises(RuntimeError, match="disk I/O"):
        tuning._retrying(make(RuntimeError("(sqlite3.OperationalError) disk I/O error")))
