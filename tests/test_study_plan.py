"""The study plan (quixer_rna.study): stage names, folders and commands from the settings alone, --dry_run, and
the runner on stand-in stages (skip when completed with the same command, tracks side by side, one-line
failure). Commands are pinned as run_pipeline.sh (bash) wrote them, so studies it made are resumed, not rerun."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from quixer_rna.errors import UserError
from quixer_rna.study.__main__ import main
from quixer_rna.study.plan import MODELS, TRACKS_TABLE, Stage, plan
from quixer_rna.study.records import completed, init_settings
from quixer_rna.study.runner import run, sections
from quixer_rna.study.settings import Choices, Settings, recorded_settings

ROOT = Path(__file__).resolve().parents[1]
OUT = Path("/runs/study")
NEURAL = ("quixer", "lstm", "transformer", "fnet")


def _plan(quick: bool = True, **choices) -> list[Stage]:
    settings = Settings.quick() if quick else Settings()
    return plan(settings, Choices(out=OUT, quick=quick, **choices), Path("/repo"), "python3")


def _by_name(stages: list[Stage]) -> dict[str, Stage]:
    return {stage.name: stage for stage in stages}


def test_the_quick_study_stages_in_order():
    stages = _plan()
    assert [s.name for s in stages] == [
        "download", "prepare", "encode", "quantize", *(f"clusters:{m}:seed0" for m in NEURAL), "clusters:ngram",
        "clusters:markov", "circuit", "raw_tokens", *(f"raw:{m}:seed0" for m in NEURAL), "raw:ngram", "raw:markov", "report"]
    folders = {s.name: str(s.folder.relative_to(OUT)) for s in stages}
    assert folders["download"] == "data/rna.fasta" and folders["circuit"] == "circuit/clusters_quixer_seed0"
    assert folders["raw:lstm:seed0"] == "raw/lstm_seed0" and folders["clusters:ngram"] == "clusters/ngram"
    clusters = ("encode", "quantize", "clusters:", "circuit")
    assert {s.track for s in stages if s.name.startswith(clusters)} == {"clusters"}
    assert {s.track for s in stages if s.name.startswith(("raw_tokens", "raw:"))} == {"raw"}
    assert [s.track for s in stages if s.name in ("download", "prepare", "report")] == [None] * 3
    assert [len(section) for section in sections(stages)] == [1, 1, 16, 1]


def test_commands_are_those_the_shell_pipeline_recorded():
    """Flags and their order exactly as run_pipeline.sh wrote them (args.json "command" of its --quick run)."""
    stages = _by_name(_plan())
    assert stages["clusters:quixer:seed0"].argv == (
        "python3", "/repo/train_quixer_hybrid.py", "--data_dir", "/runs/study/quantize", "--epochs", "2",
        "--batch_size", "64", "--max_steps_per_epoch", "10", "--eval_every", "5", "--patience", "10",
        "--val_windows", "2000", "--checkpoint_every", "5", "--device", "auto", "--output_dir",
        "/runs/study/clusters/quixer_seed0", "--seed",
        "0", "--train_fraction", "1", "--embedding_dim", "16", "--qubits", "3", "--ansatz_layers", "1", "--qsvt_degree",
        "2", "--init_strategy", "small_gaussian")
    assert stages["raw:lstm:seed0"].argv[1:] == (
        "/repo/train_classical_baselines.py", "--data_dir", "/runs/study/raw_tokens", "--epochs", "2", "--batch_size",
        "64", "--max_steps_per_epoch", "10", "--eval_every", "5", "--patience", "10", "--val_windows", "2000",
        "--checkpoint_every", "5", "--device", "auto", "--model", "lstm", "--output_dir", "/runs/study/raw/lstm_seed0", "--seed", "0",
        "--train_fraction", "1", "--embedding_dim", "16")
    assert stages["raw:markov"].argv[2:] == (
        "--data_dir", "/runs/study/raw_tokens", "--model", "markov", "--max_markov_order", "4", "--output_dir",
        "/runs/study/raw/markov", "--seed", "0", "--train_fraction", "1")
    assert stages["circuit"].argv[2:] == (
        "--run_dir", "/runs/study/clusters/quixer_seed0", "--data_dir", "/runs/study/quantize", "--output_dir",
        "/runs/study/circuit/clusters_quixer_seed0", "--windows", "0:8", "--seed", "0", "--shots", "10", "100", "1000",
        "10000", "--noise_2q", "1e-4", "1e-3", "1e-2", "--check")
    assert stages["download"].argv[2:] == ("--source", "synthetic", "--max_sequences", "60", "--output",
                                           "/runs/study/data/rna.fasta", "--seed", "0")
    assert stages["report"].argv[2:] == ("--runs", "/runs/study", "--bootstrap", "200", "--seed", "0", "--margin",
                                         "0.01")


def test_the_study_protocol_trains_whole_epochs_with_the_controls():
    settings = Settings.quick().converging(quick=True)
    stages = _by_name(plan(settings, Choices(out=OUT, quick=True, protocol="converge", tracks=("clusters",)),
                           Path("/repo"), "python3"))
    assert {"clusters:quixer_frozen:seed0", "clusters:bottleneck:seed0", "clusters:markov"} <= set(stages)
    argv = stages["clusters:lstm:seed0"].argv
    assert argv[argv.index("--max_steps_per_epoch") + 1] == "0" and argv[argv.index("--patience") + 1] == "2"
    assert argv[argv.index("--plateau_margin") + 1] == "0.01"
    assert "--plateau_margin" not in _by_name(_plan())["clusters:lstm:seed0"].argv
    tuner = _by_name(plan(settings, Choices(out=OUT, quick=True, protocol="converge", tune=2), Path("/repo"),
                          "python3"))["tune:raw:quixer"].argv
    assert tuner[tuner.index("--plateau_margin") + 1] == "0.01"
    assert stages["clusters:quixer_frozen:seed0"].argv[-1] == "--freeze_circuit"
    bottleneck = stages["clusters:bottleneck:seed0"].argv
    assert bottleneck[bottleneck.index("--features") + 1] == str(3 * settings.quixer_qubits)
    circuit = stages["circuit"].argv
    assert circuit[3] == "/runs/study/clusters/quixer_seed0" and "--windows" not in circuit
    assert circuit[circuit.index("--windows_per_transcript") + 1] == "1" and "--trajectories" in circuit
    scaling = [st.name for st in plan(settings, Choices(out=OUT, quick=True, protocol="converge", tracks=("raw",),
                                                         train_fractions=("0.5", "1")), Path("/repo"), "python3")]
    assert "raw:bottleneck:seed0" in scaling and not any("f0.5" in n and ("frozen" in n or "bottleneck" in n)
                                                          for n in scaling)
    full = Settings().converging()
    assert (full.max_steps_per_epoch, full.tune_epochs) == (0, full.epochs)


def test_normalised_features_reach_quixer_its_frozen_twin_and_the_control_only(capsys):
    settings = Settings.quick().converging(quick=True)
    for tune in (0, 2):
        choices = Choices(out=OUT, quick=True, protocol="converge", tune=tune, normalise_features=True)
        stages = _by_name(plan(settings, choices, Path("/repo"), "python3"))
        with_norm = {name for name, stage in stages.items() if "--normalise_features" in stage.argv}
        tuners = {f"tune:{track}:{m}" for track in ("clusters", "raw") for m in ("quixer", "quixer_frozen", "bottleneck")}
        if tune:  # trained from best_params.json, which holds the tuner's fixed settings
            assert with_norm == tuners
        else:
            assert with_norm == {f"{track}:{m}:seed0" for track in ("clusters", "raw")
                                 for m in ("quixer", "quixer_frozen", "bottleneck")}
    assert not any("--normalise_features" in s.argv for s in plan(settings, Choices(out=OUT, quick=True, protocol=(
        "converge")), Path("/repo"), "python3"))
    assert main(["--quick", "--out", str(OUT), "--normalise_features", "--dry_run"]) == 0
    assert "--normalise_features" in capsys.readouterr().out


def test_models_runs_a_subset_with_the_references_and_the_circuit_only_with_quixer(capsys):
    settings = Settings.quick().converging(quick=True)

    def names(*models: str) -> list[str]:
        choices = Choices(out=OUT, quick=True, protocol="converge", seeds=("1",), models=models)
        return [s.name for s in plan(settings, choices, Path("/repo"), "python3")]

    assert [n for n in names("quixer", "bottleneck") if n.count(":") == 2] == [
        "clusters:quixer:seed1", "clusters:bottleneck:seed1", "raw:quixer:seed1", "raw:bottleneck:seed1"]
    assert {"circuit", "clusters:markov", "raw:ngram", "report"} <= set(names("quixer", "bottleneck"))
    assert "circuit" not in names("lstm") and "raw:markov" in names("lstm")
    assert names() == names(*MODELS)
    assert main(["--quick", "--out", str(OUT), "--models", "lstm,fnet", "--dry_run"]) == 0
    assert "fnet_seed0" in capsys.readouterr().out
    for bad, says in ((["--models", "bottleneck"], "--models bottleneck: the controls for the circuit run under "
                                                    "--protocol converge"),
                      (["--models", "gru"], "argument --models: expected neural models")):
        with pytest.raises(SystemExit):
            main(["--quick", "--out", str(OUT), *bad, "--dry_run"])
        assert says in capsys.readouterr().err


def test_a_chromosome_study_splits_by_region_and_a_gene_map_reaches_prepare():
    stages = _by_name(_plan(fasta=(Path("/d/chr20.fa.gz"),), split_by="region", gene_map=Path("/d/map.tsv")))
    argv = stages["prepare"].argv
    assert argv[argv.index("--split_by") + 1] == "region" and argv[argv.index("--gene_map") + 1] == "/d/map.tsv"
    assert "--split_by" not in _by_name(_plan())["prepare"].argv


def test_seeds_or_tuning_choose_the_study_protocol(capsys):
    assert main(["--quick", "--out", "/tmp/never_made", "--seeds", "0,1", "--dry_run"]) == 0
    plan_text = capsys.readouterr().out
    assert "quixer_frozen_seed1" in plan_text and "--max_steps_per_epoch 0" in plan_text
    assert main(["--quick", "--out", "/tmp/never_made", "--dry_run"]) == 0
    assert "quixer_frozen" not in capsys.readouterr().out
    assert main(["--quick", "--out", "/tmp/never_made", "--protocol", "converge", "--dry_run"]) == 0
    assert "bottleneck_seed0" in capsys.readouterr().out


def test_seeds_and_fractions_name_the_folders():
    stages = _plan(seeds=("0", "1"), train_fractions=("0.5", "1"), tracks=("raw",))
    names = [s.name for s in stages]
    assert names[3:13] == [*(f"raw:{m}:f0.5_seed0" for m in NEURAL), *(f"raw:{m}:f0.5_seed1" for m in NEURAL),
                           "raw:ngram_f0.5", "raw:markov_f0.5"]
    assert "raw:quixer:seed1" in names and "raw:markov" in names and "encode" not in names and "circuit" not in names
    by_name = _by_name(stages)
    run = by_name["raw:fnet:f0.5_seed1"]
    assert run.folder == OUT / "raw" / "fnet_f0.5_seed1"
    assert run.argv[run.argv.index("--seed") + 1] == "1" and run.argv[run.argv.index("--train_fraction") + 1] == "0.5"
    assert by_name["raw:ngram_f0.5"].folder == OUT / "raw" / "ngram_f0.5"


def test_a_tuned_study_reads_each_tuners_best_parameters():
    stages = _plan(tune=3, seeds=("2", "1"))
    names = [s.name for s in stages]
    assert names[4:8] == [f"tune:clusters:{m}" for m in NEURAL]
    by_name = _by_name(stages)
    for track in ("clusters", "raw"):
        for model in NEURAL:
            tuner = by_name[f"tune:{track}:{model}"]
            assert tuner.folder == OUT / "tune" / track / model
            assert tuner.argv[tuner.argv.index("--n_trials") + 1] == "3"
            assert json.loads(tuner.argv[tuner.argv.index("--search_space") + 1]) == (
                Settings.quick().tune_space_quixer if model == "quixer" else Settings.quick().tune_space_classical)
            trained = by_name[f"{track}:{model}:seed1"]
            assert trained.folder == OUT / track / "tuned" / f"{model}_seed1"
            assert trained.argv[-2:] == ("--config", str(tuner.folder / "best_params.json"))
            assert "--embedding_dim" not in trained.argv and tuner.name in trained.waits_for
    circuit = by_name["circuit"]
    assert circuit.argv[circuit.argv.index("--run_dir") + 1] == str(OUT / "clusters" / "tuned" / "quixer_seed2")
    # the full-size settings search each model's default space
    assert not any("--search_space" in s.argv for s in _plan(quick=False, tune=3))


def test_a_training_scope_study_tunes_every_model_at_its_untuned_sizes():
    """--search_scope training: each tuner searches the training settings with the untuned run's sizes fixed,
    so a tuned run differs from the untuned one in its learning rate, weight decay and dropout alone."""
    settings = Settings().converging()
    stages = _by_name(plan(settings, Choices(out=OUT, tune=12, protocol="converge", search_scope="training"),
                           Path("/repo"), "python3"))
    untuned = _by_name(plan(settings, Choices(out=OUT, protocol="converge"), Path("/repo"), "python3"))
    quixer = {"ansatz_layers": 2, "embedding_dim": 64, "qubits": 4, "qsvt_degree": 2}
    expected = {"quixer": quixer, "quixer_frozen": quixer, "lstm": {"embedding_dim": 64},
                "transformer": {"embedding_dim": 64}, "fnet": {"embedding_dim": 64},
                "bottleneck": {"features": 12, "embedding_dim": 64}}
    for name, sizes in expected.items():
        tuner = stages[f"tune:raw:{name}"].argv
        assert tuner[tuner.index("--search_scope") + 1] == "training"
        assert json.loads(tuner[tuner.index("--search_space") + 1]) == sizes, name
        run = untuned[f"raw:{name}:seed0"].argv
        assert all(run[run.index(f"--{key}") + 1] == str(value) for key, value in sizes.items()), name
    # the model scope (the default) leaves the tuners' commands as they were
    default = plan(settings, Choices(out=OUT, tune=12, protocol="converge"), Path("/repo"), "python3")
    assert not any("--search_scope" in s.argv for s in default)


def test_the_circuit_stage_measures_the_first_seeds_quixer():
    by_name = _by_name(_plan(quick=False, seeds=("3", "1")))
    circuit = by_name["circuit"]
    assert circuit.folder == OUT / "circuit" / "clusters_quixer_seed3"
    assert circuit.argv[circuit.argv.index("--run_dir") + 1] == str(by_name["clusters:quixer:seed3"].folder)
    assert "clusters:quixer:seed3" in circuit.waits_for
    assert "--check" not in circuit.argv  # the paper-sized circuit is not simulated gate by gate


def test_every_stage_waits_only_for_stages_started_before_it():
    stages = _plan(tune=2, seeds=("0", "1"), train_fractions=("0.25", "1"), fasta=(Path("/data/a.fa"),))
    assert stages[0].name == "prepare" and stages[0].waits_for == ()
    assert stages[0].argv[2:4] == ("--fasta", "/data/a.fa")
    seen: dict[str, str | None] = {}
    for stage in stages:
        for name in stage.waits_for:
            assert name in seen, (stage.name, name)
            assert seen[name] in (None, stage.track) or stage.track is None, (stage.name, name)
        seen[stage.name] = stage.track
    assert set(stages[-1].waits_for) == set(seen) - {"report"}
    assert len(seen) == len(stages)  # names are unique


def test_settings_have_help_and_the_quick_preset_changes_sizes_only():
    for item in dataclasses.fields(Settings):
        assert item.metadata["help"], item.name
    quick, default = Settings.quick(), Settings()
    assert quick.seed == default.seed and quick.k == default.k and quick.window_size == default.window_size
    assert quick.epochs < default.epochs and quick.synthetic_transcripts < default.synthetic_transcripts
    assert set(TRACKS_TABLE) == {"clusters", "raw"} and set(NEURAL) <= set(MODELS)


def test_recorded_settings_are_those_timings_json_always_held():
    record = recorded_settings(Settings(), Choices(out=OUT, seeds=("0", "1"), fasta=(Path("/d/a.fa"), Path("/d/b.fa"))))
    assert list(record)[:10] == ["source", "inputs", "synthetic", "quick", "seed", "seeds", "tune", "train_fractions",
                                 "tracks", "models"]
    assert record["inputs"] == "/d/a.fa /d/b.fa" and record["seeds"] == "0,1" and record["train_fractions"] == 1
    assert record["source"] == "FASTA" and record["synthetic"] is False and record["tracks"] == "clusters,raw"
    assert not {"checkpoint_every", "circuit_windows", "tune_space_quixer"} & set(record)
    assert record["n_clusters"] == 512 and record["bootstrap"] == 1000 and len(record) == 36
    assert record["models"] == "all"
    assert record["protocol"] == "capped" and record["gene_map"] is None and record["patience"] == 10
    assert record["split_by"] == "gene"
    synthetic = recorded_settings(Settings.quick(), Choices(out=OUT, quick=True))
    assert synthetic["inputs"] is None and synthetic["seeds"] == 0 and synthetic["quick"] is True


def test_init_settings_refuses_a_changed_setting_but_lets_a_study_grow(tmp_path):
    timings = tmp_path / "timings.json"
    base = recorded_settings(Settings.quick(), Choices(out=tmp_path, quick=True))
    init_settings(timings, base)
    init_settings(timings, {**base, "seeds": "0,1", "tune": 2, "train_fractions": "0.5,1", "models": "quixer"})
    with pytest.raises(UserError, match=r"other settings \(epochs\)"):
        init_settings(timings, {**base, "epochs": 3})
    # a setting added to the code since the study was recorded is no change (its stages' commands decide)
    init_settings(timings, {**base, "a_new_setting": 1})
    with pytest.raises(UserError, match=r"other settings \(a_new_setting\)"):
        init_settings(timings, {**base, "a_new_setting": 2})


def test_dry_run_prints_the_plan_and_creates_nothing(tmp_path, capsys):
    out = tmp_path / "study"
    assert main(["--quick", "--dry_run", "--tracks", "raw", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "nothing is run" in printed and "SYNTHETIC" in printed
    for stage in ("download", "prepare", "raw_tokens", "raw:quixer:seed0", "raw:markov", "report"):
        assert f". {stage}  [" in printed, stage
    assert f"--output_dir {out / 'raw' / 'quixer_seed0'}" in printed and "(to run)" in printed
    assert not out.exists()
    # over a study made with other settings it says that a run would be refused
    init_settings(tmp_path / "timings.json", recorded_settings(Settings(), Choices(out=tmp_path)))
    assert main(["--quick", "--dry_run", "--out", str(tmp_path)]) == 0
    assert "run with other settings (baseline_embedding_dim, bootstrap, epochs," in capsys.readouterr().out


def test_dry_run_through_run_pipeline_sh_marks_completed_stages(tmp_path):
    out = tmp_path / "study"
    (prepared,) = [s for s in plan(Settings(), Choices(out=out, tracks=("raw",)), ROOT, sys.executable)
                   if s.name == "raw_tokens"]
    prepared.folder.mkdir(parents=True)
    command = [Path(prepared.argv[1]).name, *prepared.argv[2:]]
    (prepared.folder / "args.json").write_text(json.dumps({"status": "completed", "command": command}))
    env = {"PATH": "/usr/bin:/bin", "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(ROOT / "run_pipeline.sh"), "--dry_run", "--tracks", "raw", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(". raw_tokens  [raw]" in line and "(completed, skipped)" in line for line in lines)
    assert any(". raw:lstm:seed0  [raw]" in line and "(to run)" in line for line in lines)
    assert sorted(p.name for p in out.iterdir()) == ["raw_tokens"]


def test_a_stage_run_by_hand_with_its_options_in_another_order_counts_as_completed(tmp_path):
    planned = ["/repo/train.py", "--data_dir", "d", "--shots", "10", "100", "--seed", "0", "--device", "auto"]

    def record(*command: str, status: str = "completed") -> Path:
        (tmp_path / "args.json").write_text(json.dumps({"status": status, "command": list(command)}))
        return tmp_path

    assert completed(record("train.py", "--seed", "0", "--device=auto", "--data_dir", "d", "--shots", "10", "100"),
                     planned)
    assert not completed(record("train.py", "--seed", "0", "--device", "auto", "--data_dir", "d", "--shots", "100",
                                "10"), planned)
    assert not completed(record("train.py", "--seed", "1", "--device", "auto", "--data_dir", "d", "--shots", "10",
                                "100"), planned)
    assert not completed(record("train.py", "--seed", "0", "--data_dir", "d", "--shots", "10", "100"), planned)
    assert not completed(record("other.py", *planned[1:]), planned)
    assert not completed(record("train.py", *planned[1:], status="running"), planned)
    assert not completed(record("train.py", 3, "--seed"), planned)


STAND_IN = """\
import json, os, sys
out = sys.argv[sys.argv.index("--out") + 1]
os.makedirs(out, exist_ok=True)
if "--fail" in sys.argv:
    print("progress line", file=sys.stderr)
    print("stand_in.py: error: --out " + out + ": it broke", file=sys.stderr)
    sys.exit(3)
with open(os.path.join(out, "threads"), "w") as f:
    f.write(os.environ.get("OMP_NUM_THREADS", "unset"))
with open(os.path.join(out, "args.json"), "w") as f:
    json.dump({"status": "completed", "command": ["stand_in.py", *sys.argv[1:]]}, f)
"""


def test_the_runner_skips_completed_stages_runs_tracks_side_by_side_and_stops_on_a_failure(tmp_path, capsys,
                                                                                            monkeypatch):
    script = tmp_path / "stand_in.py"
    script.write_text(STAND_IN)
    out = tmp_path / "study"
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)

    def stage(name: str, track: str | None, *extra: str) -> Stage:
        return Stage(name, out / name.replace(":", "_"), (sys.executable, str(script), "--out",
                                                            str(out / name.replace(":", "_")), *extra), track)

    choices = Choices(out=out, quick=True, jobs=2)
    good = [stage("prepare", None), stage("a:1", "clusters"), stage("b:1", "raw"), stage("report", None)]
    assert run(good, Settings.quick(), choices) == 0
    assert (out / "a_1" / "threads").read_text() != "unset"
    timings = json.loads((out / "timings.json").read_text())
    assert [s["status"] for s in timings["stages"]] == ["completed"] * 4
    assert "the 2 token tracks run side by side" in capsys.readouterr().out

    bad = [good[0], good[1], stage("a:2", "clusters", "--fail"), stage("a:3", "clusters"), good[2], good[3]]
    assert run(bad, Settings.quick(), choices) == 3
    captured = capsys.readouterr()
    assert "stage prepare already completed" in captured.out and "stage b:1 already completed" in captured.out
    assert captured.err.strip().splitlines()[-1] == (
        f"pipeline: stage a:2 failed (exit 3): stand_in.py: error: --out {out / 'a_2'}: it broke")
    statuses = {s["stage"]: s["status"] for s in json.loads((out / "timings.json").read_text())["stages"]}
    assert statuses["a:2"] == "failed" and "a:3" not in statuses and "stage report" not in captured.out
    assert not (out / "a_3").exists()
    assert (out / ".logs" / "a:2.log").read_text().startswith("progress line")
