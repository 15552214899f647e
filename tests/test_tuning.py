"""tune_quixer_hybrid.py on tiny data: every output, a rerun continues the study, two processes share
one, failed and pruned trials are recorded, best_params.json trains, and bad input is one stderr line."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch

import train_quixer_hybrid
import tune_quixer_hybrid as script
from quixer_rna import tuning
from quixer_rna.formats.tokens import save_token_split

ROOT = Path(__file__).resolve().parents[1]
TINY_QUIXER = '{"qubits": 2, "ansatz_layers": 1, "embedding_dim": 8, "qsvt_degree": 2}'
TINY_LSTM = '{"embedding_dim": 8, "hidden_dim": 8, "num_layers": 1}'


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tokens")
    g = torch.Generator().manual_seed(0)
    for name, n in (("train", 32), ("val", 16), ("test", 16)):
        start = torch.randint(0, 5, (n, 1), generator=g)
        sources = [f"{name}{i}" for i in range(n)]
        save_token_split(folder / f"{name}.pt", (start + torch.arange(4)) % 5, 5, sources=sources)
    return folder


def tune_argv(data: Path, out: Path, *extra: str, space: str = TINY_QUIXER) -> list[str]:
    return [
        "--data_dir", str(data), "--output_dir", str(out), "--epochs_per_trial", "2", "--batch_size", "16",
        "--max_steps_per_epoch", "2", "--device", "cpu", "--search_space", space, *extra,
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
    assert metrics["trials_by_state"]["COMPLETE"] == 3 and metrics["n_trials_finished"] == 3
    assert metrics["best_value"] == min(float(r["value"]) for r in rows)
    assert metrics["plots"]["param_importances"] == "param_importances.png"
    assert set(metrics["param_importances"]) == {"lr", "weight_decay", "dropout", "init_std"}
    best = json.loads((out / "best_params.json").read_text())
    assert best == metrics["best_params"]
    assert (best["qubits"], best["init_strategy"], best["use_layerwise_training"], best["batch_size"]) == (
        2, "small_gaussian", True, 16
    )  # fmt: skip
    assert best["lr"] == json.loads(rows[metrics["best_trial"]]["params"])["lr"]
    trial_metrics = json.loads((out / "trials" / str(metrics["best_trial"]) / "metrics.json").read_text())
    assert trial_metrics["best_val_loss"] == metrics["best_value"] and trial_metrics["epochs_run"] == 2
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
    run = tmp_path / "final"
    argv = ["--config", str(out / "best_params.json"), "--data_dir", str(data_dir), "--output_dir", str(run)]
    assert train_quixer_hybrid.main([*argv, "--epochs", "1", "--device", "cpu", "--batch_size", "32"]) == 0
    final = json.loads((run / "metrics.json").read_text())
    assert final["model_config"]["qubits"] == 2 and final["model_config"]["init_std"] == best["init_std"]
    assert final["train_config"]["lr"] == best["lr"] and final["train_config"]["batch_size"] == 32


def test_two_processes_share_one_study(data_dir, tmp_path):
    journal = tmp_path / "shared" / "study.journal"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    procs = []
    for name in ("machine_a", "machine_b"):
        argv = tune_argv(data_dir, tmp_path / name, space=TINY_LSTM)
        argv += ["--model", "lstm", "--n_trials", "4", "--storage", str(journal), "--log_level", "warning"]
        procs.append(subprocess.Popen([sys.executable, str(ROOT / "tune_quixer_hybrid.py"), *argv], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))  # fmt: skip
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in results]
    storage = optuna.storages.journal.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    trials = optuna.load_study(study_name="tune_lstm", storage=storage).trials
    assert len(trials) == 4 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    ran = [json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("machine_a", "machine_b")]
    assert sum(m["trials_run_by_this_process"] for m in ran) == 4
    assert len({t.params["lr"] for t in trials}) == 4, "two processes drew the same parameters"
    best = json.loads((tmp_path / "machine_a" / "best_params.json").read_text())
    assert best["model"] == "lstm" and best["hidden_dim"] == 8 and "init_strategy" not in best


def fake_trainer(losses: dict[int, float], crash: int):
    """Stands in for train_model: reports the trial's scripted val loss each epoch, or crashes."""

    def train(model_name, model_config, data, config, output_dir, epoch_callback=None, resume=True):
        number = int(Path(output_dir).name)
        if number == crash:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        for epoch in range(1, config.epochs + 1):
            epoch_callback(epoch, {"val_loss": losses[number]})
        epochs = config.epochs
        return {"best_val_loss": losses[number], "best_epoch": epochs, "epochs_run": epochs, "parameters": 7}

    return train


def test_failed_trials_are_recorded_pruning_works_and_dead_trials_are_failed(data_dir, tmp_path, monkeypatch):
    out = tmp_path / "tune"
    # Trial 1 runs out of memory; 5 is left RUNNING by a dead process; 6 completes (the pruner
    # waits for 5 complete trials); 7 and 8, far worse than the median, are pruned.
    losses = {0: 1.0, 2: 1.2, 3: 0.9, 4: 1.1, 6: 9.0, 7: 8.0, 8: 8.5}
    monkeypatch.setattr(tuning, "train_model", fake_trainer(losses, crash=1))
    base = tune_argv(data_dir, out, "--epochs_per_trial", "5")
    assert script.main([*base, "--n_trials", "5"]) == 0

    # A trial left RUNNING by a process of this host that has died is failed and counted.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    study = optuna.load_study(study_name="tune_quixer", storage=f"sqlite:///{out / 'study.db'}")
    orphan = study.ask()
    orphan.set_user_attr("host", socket.gethostname())
    orphan.set_user_attr("pid", dead.pid)
    assert script.main([*base, "--n_trials", "9"]) == 0

    states = [t.state.name for t in stored_trials(out)]
    assert states == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE", "COMPLETE", "FAIL", "COMPLETE", "PRUNED", "PRUNED"]
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert rows[1]["error"].startswith("OutOfMemoryError: CUDA out of memory")
    assert "process was killed" in rows[5]["error"]
    assert float(rows[7]["value"]) == 8.0 and float(rows[6]["value"]) == 9.0
    assert json.loads((out / "trials" / "1" / "args.json").read_text())["status"] == "failed"
    assert json.loads((out / "trials" / "7" / "args.json").read_text())["status"] == "pruned"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["trials_by_state"] == {"RUNNING": 0, "COMPLETE": 5, "PRUNED": 2, "FAIL": 2, "WAITING": 0}
    assert metrics["best_trial"] == 3 and metrics["best_value"] == 0.9


def test_overwrite_deletes_the_study_and_its_trial_folders(data_dir, tmp_path, monkeypatch):
    out = tmp_path / "tune"
    monkeypatch.setattr(tuning, "train_model", fake_trainer({0: 1.0, 1: 2.0}, crash=-1))
    assert script.main([*tune_argv(data_dir, out), "--n_trials", "2"]) == 0
    assert script.main([*tune_argv(data_dir, out), "--n_trials", "1", "--overwrite", "--epochs_per_trial", "3"]) == 0
    assert len(stored_trials(out)) == 1 and sorted(p.name for p in (out / "trials").iterdir()) == ["0"]
    assert json.loads((out / "metrics.json").read_text())["n_trials_finished"] == 1


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
    assert space["qubits"].distribution("qubits") == optuna.distributions.IntDistribution(4, 6)
    assert space["lr"].distribution("lr") == optuna.distributions.FloatDistribution(1e-3, 5e-3, log=True)
    space, fixed = tuning.load_search_space('{"dropout": [0, 0.2], "embedding_dim": [64, 128, 256]}', "quixer")
    assert space["dropout"].distribution("dropout") == optuna.distributions.FloatDistribution(0.0, 0.2)
    assert space["embedding_dim"].distribution("embedding_dim") == optuna.distributions.CategoricalDistribution(
        (64, 128, 256)
    )
    assert "ffn_dim" in tuning.load_search_space(None, "fnet")[0] and fixed == {}


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
    assert "--init_strategy: train_classical_baselines.py has no such flag" in one_error_line(capsys)
    assert script.main([*tune_argv(data_dir, out), "--storage", str(tmp_path / "study.txt")]) == 2
    assert "ending in .log or .journal" in one_error_line(capsys)
    assert script.main([*tune_argv(data_dir, out), "--storage", "postgresql://me:secret@127.0.0.1:1/optuna"]) == 2
    line = one_error_line(capsys)
    assert "--storage postgresql://me:***@127.0.0.1:1/optuna: cannot open it" in line and "secret" not in line
