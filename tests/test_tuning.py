"""tune_quixer_hybrid.py on tiny data: every output, a rerun continues the study, two processes share one,
failed, pruned and killed trials are recorded (a killed one is retried), best_params.json trains, and bad
input is one stderr line; the seeded sampler (its draws follow --seed, the study and the trial number), the
search spaces (of comparable size, Optuna's distributions, --search_space checked by the config fields) and
each trial's parameter count."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

import train_quixer_hybrid
import tune_quixer_hybrid as script
from fixtures import counting_windows, write_token_folder
from quixer_rna.models import build_model
from quixer_rna.study.settings import SEARCH_SCOPES
from quixer_rna.tuning import objective, sampler as sampling, space, storage, summary

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
    seeds = ("--init_strategy", "small_gaussian", "--use_layerwise_training", "--freeze_circuit", "--patience", "3")
    assert script.main(tune_argv(data_dir, out, "--n_trials", "3", *seeds)) == 0
    assert "best val loss" in capsys.readouterr().out
    for name in ("best_params.json", "trials.csv", "args.json", "metrics.json", "study.db"):
        assert (out / name).is_file(), name
    for name in ("optimization_history.png", "param_importances.png"):
        assert (out / name).stat().st_size > 1000
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert [r["number"] for r in rows] == ["0", "1", "2"] and {r["state"] for r in rows} == {"COMPLETE"}
    assert set(json.loads(rows[0]["params"])) == {"lr", "weight_decay", "dropout"}
    assert {r["stopped_by"] for r in rows} == {"budget"} and {float(r["epochs_seen"]) for r in rows} == {2.0}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["trials_by_state"]["COMPLETE"] == 3 and metrics["n_trials_with_value"] == 3
    assert metrics["best_value"] == min(float(r["value"]) for r in rows)
    assert metrics["budget"] == {"trials": 3, "epochs_per_trial": 2, "patience": 3, "patience_epochs": 1.0,
                                 "plateau_margin": 0.0, "eval_every": 0, "max_steps_per_epoch": 2,
                                 "batch_size": 16}
    assert metrics["sampler"]["seed"] == 0 and metrics["pruner"]["name"] == "MedianPruner"
    assert set(metrics["param_importances"]) == {"lr", "weight_decay", "dropout"}
    best = json.loads((out / "best_params.json").read_text())
    assert best == metrics["best_params"]
    assert (best["qubits"], best["init_strategy"], best["use_layerwise_training"], best["freeze_circuit"],
            best["batch_size"]) == (2, "small_gaussian", True, True, 16)  # fmt: skip
    assert best["lr"] == json.loads(rows[metrics["best_trial"]]["params"])["lr"]
    trial = out / "trials" / str(metrics["best_trial"])
    trial_metrics = json.loads((trial / "metrics.json").read_text())
    assert trial_metrics["val"]["loss"] == metrics["best_value"] and trial_metrics["epochs_run"] == 2
    assert trial_metrics["train_config"]["patience"] == 3 and trial_metrics["model_config"]["freeze_circuit"]
    # Each trial records its model's parameter count, known before it trains.
    assert int(rows[metrics["best_trial"]]["parameters"]) == trial_metrics["parameters"] == metrics["best_parameters"]
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
    assert final["model_config"]["qubits"] == 2 and final["model_config"]["dropout"] == best["dropout"]
    assert final["model_config"]["freeze_circuit"] is True
    assert final["train_config"]["lr"] == best["lr"] and final["train_config"]["batch_size"] == 32


def test_two_processes_share_one_study(data_dir, tmp_path):
    """Two workers on one database: together they run the study to --n_trials (a trial running in the other
    worker counts, so they do not overshoot) and never draw the same parameters."""
    storage = f"sqlite:///{tmp_path / 'shared' / 'study.db'}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
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


def fake_trainer(losses: dict[int, float] | Callable[..., float], crash: int):
    """Stands in for train_model: reports the trial's scripted val loss (by trial number, or computed from its
    settings) at each epoch, or crashes."""

    def train(model_name, model_config, data, config, output_dir, on_evaluation=None, resume=True, **_):
        number = int(Path(output_dir).name)
        if number == crash:
            import torch

            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        loss = losses(model_config, config) if callable(losses) else losses[number]
        for step in range(1, config.epochs + 1):
            on_evaluation({"step": step, "epoch": step, "val_loss": loss})
        return {"model": model_name, "seed": 0, "tokens": {"folder": "x", "tokenizer": "t", "vocab_size": 5, "k": 2,
                                                           "fingerprint": "f"},
                "test": {"loss": 1.0, "perplexity": 2.7, "accuracy": 0.1, "top5_accuracy": 0.5},
                "references": {}, "parameters": 7, "train_seconds": 0.1,
                "train": {"fraction": 1.0, "windows": 1, "kmers": 1}, "model_config": {},
                "val": {"loss": loss}, "best_step": config.epochs, "epochs_run": config.epochs,
                "epochs_seen": float(config.epochs), "stopped_by": "budget", "converged": False,
                "evaluations": config.epochs, "windows": {"train": 1, "val": 1, "test": 1}, "device": "cpu"}

    return train


def test_failed_pruned_and_killed_trials(data_dir, tmp_path, monkeypatch):
    out = tmp_path / "tune"
    # Trial 1 runs out of memory (recorded, not counted); 6 is left RUNNING by a dead process and is failed
    # when its heartbeat is stale, then retried as 7; 7 and 8, far worse than the median, are pruned.
    losses = {0: 1.0, 2: 1.2, 3: 0.9, 4: 1.1, 5: 1.05, 7: 9.0, 8: 8.0, 9: 0.95}
    monkeypatch.setattr(objective, "train_model", fake_trainer(losses, crash=1))
    studies, passed = [], []

    def create_study(**kwargs):
        passed.append(kwargs["sampler"])
        studies.append(real_create_study(**kwargs))
        return studies[-1]

    real_create_study = optuna.create_study
    monkeypatch.setattr(optuna, "create_study", create_study)
    base = tune_argv(data_dir, out, "--epochs_per_trial", "5", "--heartbeat", "1")
    assert script.main([*base, "--n_trials", "5"]) == 0
    # One seeded sampler per study, passed to create_study and never replaced by a trial.
    sampler = studies[0].sampler
    assert sampler is passed[0] and isinstance(sampler, sampling.KeyedTPESampler)
    assert (sampler.seed, sampler.study_name, sampler.n_startup_trials) == (0, "tune_quixer", 5)

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
    monkeypatch.setattr(objective, "train_model", fake_trainer({0: 1.0, 2: 0.5, 3: 2.0}, crash=-1))
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
    monkeypatch.setattr(objective, "train_model", fake_trainer({0: 1.0, 1: 2.0}, crash=-1))
    assert script.main([*tune_argv(data_dir, out), "--n_trials", "2"]) == 0
    assert script.main([*tune_argv(data_dir, out), "--n_trials", "1", "--overwrite", "--epochs_per_trial", "3"]) == 0
    assert len(stored_trials(out)) == 1 and sorted(p.name for p in (out / "trials").iterdir()) == ["0"]
    assert json.loads((out / "metrics.json").read_text())["n_trials_with_value"] == 1


def test_importance_plot_is_skipped_with_a_reason_when_it_cannot_be_made(tmp_path):
    study = optuna.create_study()
    study.optimize(lambda trial: trial.suggest_float("x", 0.0, 1.0), n_trials=1)
    plots, importances = summary.write_plots(study, tmp_path, seed=0)
    assert plots["optimization_history"] == "optimization_history.png" and importances is None
    assert plots["param_importances"].startswith("skipped: needs at least 2 complete trials")
    assert (tmp_path / "optimization_history.png").is_file() and not (tmp_path / "param_importances.png").exists()


def test_search_space_ranges_choices_and_fixed_values():
    dists, fixed = space.load_search_space('{"qubits": [4, 6], "lr": [1e-3, 5e-3], "qsvt_degree": 3}', "quixer")
    assert fixed == {"qsvt_degree": 3} and "qsvt_degree" not in dists
    assert dists["qubits"] == IntDistribution(4, 6) and dists["lr"] == FloatDistribution(1e-3, 5e-3, log=True)
    assert space.describe(dists["lr"]) == "float in [0.001, 0.005] (log)"
    text = '{"dropout": [0, 0.2], "embedding_dim": [64, 128, 256], "init_strategy": ["official", "uniform"], ' \
           '"ansatz_layers": 2, "warmup_steps": [0, 100]}'
    dists, fixed = space.load_search_space(text, "quixer")
    assert space.describe(dists["dropout"]) == "float in [0.0, 0.2]"
    assert dists["embedding_dim"] == CategoricalDistribution((64, 128, 256))
    assert dists["init_strategy"].choices == ("official", "uniform")
    assert dists["warmup_steps"] == IntDistribution(0, 100)
    assert fixed == {"ansatz_layers": 2}
    # Values are converted as the flag would convert them; the model's own settings from the command line are
    # fixed and leave the space.
    dists, fixed = space.load_search_space('{"embedding_dim": 64.0}', "bottleneck", {"features": 12})
    assert fixed == {"features": 12, "embedding_dim": 64} and type(fixed["embedding_dim"]) is int
    assert set(dists) == {"lr", "weight_decay", "dropout"}


def value_count(distribution) -> int:
    if isinstance(distribution, CategoricalDistribution):
        return len(distribution.choices)
    return (distribution.high - distribution.low) // distribution.step + 1


def test_every_model_searches_the_shared_dimensions_and_a_structure_of_comparable_size():
    """Four shared dimensions, then a width and a depth of four values each; the bottleneck control has one
    structural setting (its width, which a study of the control fixes), so its space has one dimension less."""
    assert space.MODELS == ("quixer", "lstm", "transformer", "fnet", "bottleneck")
    for model in space.MODELS:
        dists = space.default_space(model)
        assert list(dists)[:4] == ["lr", "weight_decay", "dropout", "embedding_dim"]
        assert [value_count(d) for name, d in dists.items() if name not in ("lr", "weight_decay", "dropout")] == \
            [4] * (len(dists) - 3)
        fields = space.searchable(model)
        for name, distribution in dists.items():  # every value the space can draw passes the setting's own check
            ends = distribution.choices if isinstance(distribution, CategoricalDistribution) else \
                (distribution.low, distribution.high)
            assert [space.checked(name, fields[name], value) for value in ends] == list(ends)
    assert {model: len(space.default_space(model)) for model in space.MODELS} == {
        "quixer": 6, "lstm": 6, "transformer": 6, "fnet": 6, "bottleneck": 5}
    sizes = {name for name, item in space.searchable("bottleneck").items() if not isinstance(item.default, bool)}
    assert sizes - {"embedding_dim", "dropout", *space.TRAINING} == set(space.STRUCTURE["bottleneck"]) == {"features"}


def test_the_training_scope_searches_the_same_three_training_settings_of_every_model():
    for model in space.MODELS:
        dists = space.default_space(model, "training")
        assert list(dists) == ["lr", "weight_decay", "dropout"]
        assert dists == {name: space.SHARED[name] for name in dists}
    searched, fixed = space.load_search_space('{"embedding_dim": 64, "qubits": 4}', "quixer", scope="training")
    assert list(searched) == ["lr", "weight_decay", "dropout"] and fixed == {"embedding_dim": 64, "qubits": 4}
    # the study's command line offers the tuner's scopes (defined apart to keep optuna out of its imports)
    assert SEARCH_SCOPES == space.SCOPES


def test_a_training_scope_run_fixes_the_sizes_and_refuses_to_continue_under_the_model_scope(
        data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(objective, "train_model", fake_trainer(lambda model, train: train.lr * 100 + model.dropout, -1))
    argv = [*tune_argv(data_dir, tmp_path, space=TINY_LSTM), "--model", "lstm", "--n_trials", "2"]
    assert script.main([*argv, "--search_scope", "training"]) == 0
    rows = list(csv.DictReader((tmp_path / "trials.csv").open()))
    assert [set(json.loads(row["params"])) for row in rows] == [{"lr", "weight_decay", "dropout"}] * 2
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert list(metrics["search_space"]) == ["lr", "weight_decay", "dropout"]
    best = json.loads((tmp_path / "best_params.json").read_text())
    assert (best["embedding_dim"], best["hidden_dim"], best["num_layers"]) == (8, 8, 1)
    capsys.readouterr()
    assert script.main(argv) == 2
    assert "search_scope: 'training' -> 'model'" in one_error_line(capsys)


def draws(seed: int, study_name: str = "tune_lstm", n_trials: int = 12, settings: dict | None = None) -> list[dict]:
    """The values a study's sampler draws for n_trials (5 random start-up trials, then TPE) with a scripted loss."""
    sampler = sampling.make_sampler(seed, study_name, n_trials, settings)
    study = optuna.create_study(sampler=sampler)
    dists = space.default_space("lstm")
    samplers = []

    def loss(trial: optuna.Trial) -> float:
        samplers.append(trial.study.sampler)
        values = {name: space.suggest(trial, name, distribution) for name, distribution in dists.items()}
        return values["lr"] * 100 + values["dropout"] + values["num_layers"] / 10

    study.optimize(loss, n_trials=n_trials)
    assert all(s is sampler for s in samplers), "the sampler was replaced during the study"
    return [trial.params for trial in study.trials]


def test_the_seed_and_the_study_decide_the_draws_and_one_seed_repeats():
    first = draws(0)
    assert draws(0) == first, "one process with one seed drew other values"
    assert all(a["lr"] != b["lr"] for a, b in zip(first, draws(1))), "another --seed drew the same values"
    assert all(a["lr"] != b["lr"] for a, b in zip(first, draws(0, "tune_quixer"))), "two models drew the same"
    frozen = draws(0, "tune_quixer", settings={"freeze_circuit": True})
    assert all(a["lr"] != b["lr"] for a, b in zip(draws(0, "tune_quixer"), frozen)), "the control drew Quixer's"
    # Two workers on one storage: each trial number has its own stream, and a start-up trial's values depend on
    # its number alone, whichever worker draws it.
    shared = optuna.storages.InMemoryStorage()
    workers = [optuna.create_study(storage=shared, study_name="tune_lstm", load_if_exists=True,
                                   sampler=sampling.make_sampler(0, "tune_lstm", 12)) for _ in range(2)]
    trials = [worker.ask(space.default_space("lstm")) for worker in workers]
    assert [trial.number for trial in trials] == [0, 1] and trials[0].params != trials[1].params
    assert [trial.params for trial in trials] == first[:2]


def test_tpe_start_up_is_a_third_of_the_trials_and_too_few_trials_are_warned_of():
    assert [sampling.startup_trials(n) for n in (2, 15, 20, 30, 100)] == [5, 5, 6, 10, 10]
    assert sampling.startup_warning(10) is None and sampling.startup_warning(30) is None
    assert "TPE chooses only 1 of them after 5 random start-up trials" in sampling.startup_warning(6)


def test_a_run_draws_its_seeds_values_and_the_control_keeps_its_fixed_width(data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(objective, "train_model", fake_trainer(lambda model, train: train.lr * 100 + model.dropout, -1))
    argv = [*tune_argv(data_dir, tmp_path, space='{"embedding_dim": 8}'), "--model", "bottleneck", "--features", "6",
            "--n_trials", "3", "--seed", "1"]
    assert script.main(argv) == 0
    assert "close to a random search" in capsys.readouterr().err
    rows = list(csv.DictReader((tmp_path / "trials.csv").open()))
    drawn = [json.loads(row["params"]) for row in rows]
    assert set(drawn[0]) == {"lr", "weight_decay", "dropout"}  # --features and the --search_space value are fixed

    def start_up(seed: int) -> list[dict]:  # what the study's sampler draws for trials 0..2 under --seed
        dists = space.load_search_space('{"embedding_dim": 8}', "bottleneck", {"features": 6})[0]
        study = optuna.create_study(sampler=sampling.make_sampler(seed, "tune_bottleneck", 3, {"features": 6}))
        return [study.ask(dists).params for _ in range(3)]

    assert drawn == start_up(1)
    assert not {d["lr"] for d in drawn} & {d["lr"] for d in start_up(0)}, "another --seed would draw the same"
    best = json.loads((tmp_path / "best_params.json").read_text())
    assert (best["model"], best["features"], best["embedding_dim"]) == ("bottleneck", 6, 8)
    size = sum(p.numel() for p in build_model("bottleneck", 5, 3, {"embedding_dim": 8, "features": 6}).parameters())
    assert {int(row["parameters"]) for row in rows} == {size}


@pytest.mark.parametrize(
    "space_text, message",
    [
        ('{"qubit": 2}', "unknown key(s) qubit for --model quixer; valid keys: embedding_dim, qubits"),
        ('{"hidden_dim": 8}', "unknown key(s) hidden_dim"),
        ('{"lr": [0, 0.1]}', "--search_space: lr: expected a number > 0, got 0"),
        ('{"qubits": [6, 4]}', "qubits range [6, 4]: low must be below high"),
        ('{"qubits": 2.5}', "--search_space: qubits: expected a whole number >= 1, got 2.5"),
        ('{"qubits": "3"}', "--search_space: qubits='3': expected a whole number >= 1"),
        ('{"dropout": 1.5}', "--search_space: dropout: expected a number in [0, 1), got 1.5"),
        ('{"init_strategy": "best"}', "init_strategy='best': choose from ['small_gaussian', 'official', 'uniform']"),
        ('{"freeze_circuit": 1}', "freeze_circuit=1: expected true or false"),
        ('{"init_std": [0, 0.1]}', "init_std: expected a number > 0, got 0"),
        ('{"lr": [1e-3,', "not valid JSON"),
        ("missing.json", "neither a JSON file nor inline JSON"),
    ],
)
def test_bad_search_space_is_one_stderr_line(data_dir, tmp_path, capsys, space_text, message):
    assert script.main(tune_argv(data_dir, tmp_path / "tune", "--n_trials", "1", space=space_text)) == 2
    assert message in one_error_line(capsys)
    assert not (tmp_path / "tune").exists()


def test_bad_flags_are_one_stderr_line(data_dir, tmp_path, capsys):
    out = tmp_path / "tune"
    lstm = [*tune_argv(data_dir, out, space=TINY_LSTM), "--model", "lstm"]
    assert script.main([*lstm, "--init_strategy", "official"]) == 2
    assert "--init_strategy: a quixer setting; drop it for --model lstm" in one_error_line(capsys)
    assert script.main([*tune_argv(data_dir, out), "--features", "12"]) == 2
    assert "--features: a bottleneck setting; drop it for --model quixer" in one_error_line(capsys)
    assert script.main([*lstm, "--normalise_features"]) == 2
    assert "--normalise_features: a quixer and bottleneck setting; drop it for --model lstm" in one_error_line(capsys)
    bottleneck = [*tune_argv(data_dir, out, space='{"features": [9, 12]}'), "--model", "bottleneck", "--features", "6"]
    assert script.main(bottleneck) == 2
    assert "--search_space: features also given as --features; give each once" in one_error_line(capsys)
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

    assert storage.retrying(make(RuntimeError("(sqlite3.OperationalError) table studies already exists"))) == "storage"
    calls.clear()
    with pytest.raises(RuntimeError, match="disk I/O"):
        storage.retrying(make(RuntimeError("(sqlite3.OperationalError) disk I/O error")))
