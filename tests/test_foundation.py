"""The skeleton every stage shares: atomic writes, stage runs (lock, run record, reuse rules), CLI error
handling, typed flags, and the token / embedding / sentence formats' loaders."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fixtures import write_token_folder
from quixer_rna import cli, runio
from quixer_rna.errors import UserError
from quixer_rna.formats import embeddings, tokens
from quixer_rna.formats.kmer_stream import open_stream_data, stream_reference
from quixer_rna.stage import LOCK_FILE, read_record, stage_run

ROOT = Path(__file__).resolve().parents[1]

# A second process that claims a folder with stage_run and holds it until killed.
HOLDER = """
import sys, time
from quixer_rna.stage import stage_run
with stage_run(sys.argv[1], "holder_stage", {"k": 6}, role="demo") as run:
    print("ready", flush=True)
    time.sleep(120)
"""


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message, message
    return message


# ---- atomic writes ------------------------------------------------------------------------------------------

def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "out.json"
    runio.atomic_write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with runio.atomic_open(target) as handle:
            handle.write('{"half": ')
            raise RuntimeError("crash mid-write")
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_json_writer_stores_nonfinite_as_null(tmp_path):
    runio.atomic_write_json(tmp_path / "m.json", {"x": float("nan"), "y": [float("inf"), 1.5]})
    assert json.loads((tmp_path / "m.json").read_text()) == {"x": None, "y": [None, 1.5]}


def test_atomic_write_follows_umask(tmp_path):
    old = os.umask(0o022)
    try:
        runio.atomic_write_text(tmp_path / "f.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o644


def test_read_json_errors_are_one_line(tmp_path):
    with pytest.raises(UserError, match="not found") as exc:
        runio.read_json(tmp_path / "absent.json", "thing")
    one_line(exc)
    (tmp_path / "bad.json").write_text('{"a": \n1,,}')
    with pytest.raises(UserError, match="not valid JSON") as exc:
        runio.read_json(tmp_path / "bad.json")
    assert str(tmp_path / "bad.json") in one_line(exc)


# ---- stage runs ----------------------------------------------------------------------------------------------

def test_stage_run_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "x").write_text("keep me")
    with pytest.raises(UserError, match="--output_dir .*not empty.*--overwrite") as exc:
        with stage_run(tmp_path, "demo", {}, role="demo"):
            pass
    one_line(exc)
    assert not (tmp_path / "args.json").exists()
    with stage_run(tmp_path, "demo", {}, role="demo", overwrite=True) as run:
        run.finish({})
    assert (tmp_path / "x").read_text() == "keep me"
    # The files the GPU launchers write before the stage starts are no results.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "encode.log").write_text("launcher line\n")
    with stage_run(fresh, "demo", {}, role="demo") as run:
        run.finish({})


def test_stage_run_writes_args_and_metrics(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.argv", ["demo.py", "--k", "6"])
    out = tmp_path / "new" / "folder"
    with stage_run(out, "demo", {"k": 6}, role="prepare") as run:
        assert run.output_dir == out
        started = json.loads((out / "args.json").read_text())
        assert started["status"] == "running" and started["args"] == {"k": 6}
        assert started["role"] == "prepare" and started["pid"] == os.getpid() and started["stage"] == "demo"
        assert started["command"] == ["demo.py", "--k", "6"] and started["finished"] is None
        run.finish({"windows": 3})
    done = read_record(out / "args.json")
    assert done["status"] == "completed" and done["finished"] is not None
    assert "torch" in done["versions"] and "previous_run" not in done
    assert json.loads((out / "metrics.json").read_text()) == {"windows": 3}
    # The lock is released when the block ends: another claim (with --overwrite) succeeds at once.
    assert (out / LOCK_FILE).read_text() == ""


def test_stage_run_without_a_result_is_failed(tmp_path):
    with stage_run(tmp_path, "demo", {}, role="demo"):
        pass
    record = read_record(tmp_path / "args.json")
    assert record["status"] == "failed" and "without recording" in record["error"]


def test_completed_run_is_refused_without_overwrite(tmp_path):
    with stage_run(tmp_path, "demo", {}, role="demo") as run:
        run.finish({"n": 1})
    with pytest.raises(UserError, match="holds a completed run; pass --overwrite") as exc:
        with stage_run(tmp_path, "demo", {}, role="demo"):
            pass
    one_line(exc)
    assert read_record(tmp_path / "args.json")["status"] == "completed"
    # Trainers report a completed run instead: handed back unstarted, the record untouched.
    with stage_run(tmp_path, "demo", {}, role="demo", completed="report") as run:
        assert run.completed_earlier and not run.record
    assert read_record(tmp_path / "args.json")["status"] == "completed"
    # Another stage's run is refused whatever its status.
    with pytest.raises(UserError, match="holds a run of stage 'demo'") as exc:
        with stage_run(tmp_path, "other", {}, role="demo"):
            pass
    one_line(exc)
    with stage_run(tmp_path, "demo", {}, role="demo", overwrite=True) as run:
        run.finish({"n": 2})
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"n": 2}


def test_run_record_hides_secrets(tmp_path, monkeypatch):
    monkeypatch.setattr(
        "sys.argv", ["x.py", "--api_key", "SECRET1", "--storage=postgresql://u:SECRET2@h/db", "--api_key=SECRET3"]
    )
    with stage_run(tmp_path, "demo", {"api_key": "SECRET1", "storage": "postgresql://u:SECRET2@h/db"},
                   role="demo") as run:
        run.finish({})
    text = (tmp_path / "args.json").read_text()
    assert "SECRET" not in text
    record = json.loads(text)
    assert record["args"] == {"api_key": "<given>", "storage": "postgresql://u:***@h/db"}
    assert record["command"] == ["x.py", "--api_key", "<given>", "--storage=postgresql://u:***@h/db",
                                 "--api_key=<given>"]


def test_failed_stage_marks_record_and_frees_folder(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="demo")
    cli.add_common_args(parser)

    def body(args):
        with stage_run(tmp_path, "demo", vars(args), role="demo", overwrite=args.overwrite):
            raise UserError("input.fa: empty file")

    assert cli.run_cli(parser, body, []) == 2
    assert capsys.readouterr().err.strip().splitlines() == ["demo: error: input.fa: empty file"]
    record = read_record(tmp_path / "args.json")
    assert record["status"] == "failed" and record["error"] == "input.fa: empty file"
    # The corrected rerun may reuse a folder that holds only a failed run.
    with stage_run(tmp_path, "demo", {}, role="demo") as run:
        assert run.previous == "failed"
        run.finish({})
    assert read_record(tmp_path / "args.json")["previous_run"] == "failed"


def test_crash_and_interrupt_are_recorded(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with stage_run(tmp_path / "a", "demo", {}, role="demo"):
            1 / 0
    assert read_record(tmp_path / "a" / "args.json")["error"] == "ZeroDivisionError: division by zero"
    with pytest.raises(KeyboardInterrupt):
        with stage_run(tmp_path / "b", "demo", {}, role="demo"):
            raise KeyboardInterrupt
    assert read_record(tmp_path / "b" / "args.json")["status"] == "interrupted"
    with stage_run(tmp_path / "b", "demo", {}, role="demo") as run:
        assert run.previous == "interrupted"
        run.finish({})


def test_live_holder_is_named_and_a_dead_run_is_reused(tmp_path):
    out = tmp_path / "held"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(UserError, match=rf"--output_dir {out}: process {holder.pid} on .*holder_stage.* is "
                                            r"writing it") as exc:
            with stage_run(out, "holder_stage", {}, role="demo", overwrite=True):
                pass
        one_line(exc)
        assert read_record(out / "args.json")["pid"] == holder.pid
    finally:
        holder.kill()
        holder.wait(timeout=30)
    # Killed with SIGKILL: its record still says "running", but the kernel freed its lock.
    assert read_record(out / "args.json")["status"] == "running"
    with stage_run(out, "holder_stage", {}, role="demo") as run:
        assert run.previous == "dead"
        run.finish({})
    assert read_record(out / "args.json")["previous_run"] == "dead"


def test_second_lock_in_this_process_is_refused(tmp_path):
    with stage_run(tmp_path, "demo", {}, role="demo") as run:
        with pytest.raises(UserError, match=rf"process {os.getpid()} .*running demo") as exc:
            with stage_run(tmp_path, "demo", {}, role="demo", overwrite=True):
                pass
        one_line(exc)
        run.finish({})


def test_single_file_place_keeps_its_record_beside_the_file(tmp_path):
    target = tmp_path / "rna.fasta"
    with stage_run(target, "download", {}, role="download", single_file=True, flag="--output") as run:
        target.write_text(">a\nACGT\n")
        run.finish({"records": 1})
    assert read_record(tmp_path / "rna.fasta.args.json")["status"] == "completed"
    assert json.loads((tmp_path / "rna.fasta.metrics.json").read_text()) == {"records": 1}
    with pytest.raises(UserError, match="--output .*is a folder"):
        with stage_run(tmp_path, "download", {}, role="download", single_file=True, flag="--output"):
            pass


# ---- CLI ------------------------------------------------------------------------------------------------------

def test_run_cli_prints_one_line_for_user_errors(capsys):
    parser = argparse.ArgumentParser(prog="demo")
    cli.add_common_args(parser, device=True)

    def body(args):
        raise UserError("data.fa: not FASTA")

    assert cli.run_cli(parser, body, []) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["demo: error: data.fa: not FASTA"]


@pytest.mark.parametrize(("argv", "needle"), [
    (["--k", "0"], "argument --k: expected a whole number >= 1, got '0'"),
    (["--k", "2.5"], "argument --k: expected a whole number >= 1, got '2.5'"),
    (["--fraction", "1"], "argument --fraction: expected a fraction in (0, 1), got '1'"),
    (["--fraction", "nan"], "argument --fraction: expected a fraction in (0, 1), got 'nan'"),
    (["--seed", "-1"], "argument --seed: expected a whole number >= 0, got '-1'"),
    (["--log_every", "often"], "argument --log_every: expected N (steps), Ns or Nm"),
    (["--unknown", "1"], "unrecognized arguments: --unknown 1"),
])
def test_typed_flags_fail_with_one_line(capsys, argv, needle):
    parser = cli.make_parser("demo")
    parser.prog = "demo"
    parser.add_argument("--k", type=cli.positive_int, default=6)
    parser.add_argument("--fraction", type=cli.open_fraction, default=0.1)
    parser.add_argument("--log_every", type=cli.every, default=cli.every("60s"))
    cli.add_common_args(parser)
    try:
        code = cli.run_cli(parser, lambda args: 0, argv)
    except SystemExit as exc:  # argparse's own exit, where run_cli lets it through
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("demo: error: ") and needle in err[0], err
    assert err[0].endswith("(see --help)")


def test_typed_flags_accept_their_range():
    assert cli.positive_int("3") == 3 and cli.nonnegative_int("0") == 0
    assert cli.open_fraction("0.25") == 0.25 and cli.share("1") == 1.0 and cli.rate("0") == 0.0
    assert cli.every("5m").seconds == 300 and cli.every("20").steps == 20
    assert cli.positive_int(3.0) == 3  # a --config file's whole float
    with pytest.raises(argparse.ArgumentTypeError):
        cli.positive_int(3.5)
    with pytest.raises(argparse.ArgumentTypeError):
        cli.positive_int(True)


def test_config_file_values_are_typed_and_unknown_keys_named(tmp_path, capsys):
    def parser():
        p = cli.make_parser("demo", config_file=True)
        p.prog = "demo"
        p.add_argument("--config")
        p.add_argument("--k", type=cli.positive_int, default=6)
        p.add_argument("--data_dir", required=True)
        return p

    config = tmp_path / "c.json"
    config.write_text(json.dumps({"k": 4, "data_dir": "d"}))
    args = parser().parse_args(["--config", str(config), "--k", "5"])
    assert args.k == 5 and args.data_dir == "d"
    for values, needle in (({"k": 0}, "k=0 is not a valid value"), ({"kk": 1}, "unknown key(s) kk"),
                           ({"k": 2.5}, "k=2.5 is not a valid value")):
        config.write_text(json.dumps(values))
        with pytest.raises(SystemExit):
            parser().parse_args(["--config", str(config), "--data_dir", "d"])
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err


def test_resolve_device():
    assert cli.resolve_device("cpu").type == "cpu"
    assert cli.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UserError, match="--device"):
        cli.resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            cli.resolve_device("cuda:0")


# ---- formats --------------------------------------------------------------------------------------------------

def _token_splits(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"train": torch.randint(0, 10, (5, 4), generator=g), "val": torch.randint(0, 10, (3, 4), generator=g),
            "test": torch.randint(0, 10, (2, 4), generator=g)}


def test_token_folder_roundtrip(tmp_path):
    windows = _token_splits()
    folder = write_token_folder(tmp_path, windows, vocab_size=10, sources={"train": list("aabbc")})
    for given in (folder, tmp_path):  # the token folder, or the folder holding tokens/ (run_classical_prep.sh)
        data = tokens.open_tokens(given)
        assert data.folder == folder and data.vocab_size == 10 and data.k == 2
        for split, expected in windows.items():
            part = data[split]
            assert part.num_windows == len(part) == len(expected) and part.window_size == 4
            assert torch.equal(part.batch(torch.arange(len(expected))), expected)
            assert torch.equal(part.batch(torch.tensor([1, 0])), expected[[1, 0]])
            assert torch.equal(part.targets(torch.arange(len(expected))), expected[:, -1])
            assert torch.equal(part.tail(torch.arange(len(expected)), 2), expected[:, -2:])
            assert torch.equal(part.target_counts(), torch.bincount(expected[:, -1], minlength=10))
            assert torch.equal(torch.cat([rows for _, rows in part.iter_batches(2)]), expected)
    train = tokens.open_tokens(folder)["train"]
    accessions = train.stream.transcripts.accessions
    assert [accessions[t] for t in train.window_transcripts()] == list("aabbc")
    assert len(data.fingerprint) == 64


def test_token_folder_validation_is_one_line(tmp_path):
    folder = write_token_folder(tmp_path, _token_splits(), vocab_size=10)
    token_map = np.load(folder / tokens.MAP_FILE)
    bad = token_map.copy()
    bad[3] = 12
    np.save(folder / tokens.MAP_FILE, bad)
    with pytest.raises(UserError, match="one token < 10 per 2-mer") as exc:
        tokens.open_tokens(folder)
    assert str(folder / tokens.MAP_FILE) in one_line(exc)
    missing = token_map.copy()  # the first k-mer of val's stream loses its token
    missing[int(open_stream_data(tmp_path / "kmers").splits["val"].kmers[0])] = -1
    np.save(folder / tokens.MAP_FILE, missing)
    with pytest.raises(UserError, match="a k-mer of split .* has no token") as exc:
        tokens.open_tokens(folder)
    one_line(exc)
    np.save(folder / tokens.MAP_FILE, token_map)

    meta = json.loads((folder / "metadata.json").read_text())
    runio.atomic_write_json(folder / "metadata.json", {**meta, "version": 99})
    with pytest.raises(UserError, match="token format version 99") as exc:
        tokens.open_tokens(folder)
    one_line(exc)
    runio.atomic_write_json(folder / "metadata.json", meta)

    # The stream rewritten after the token folder was made (prepare rerun on other data: new checksums).
    other = _token_splits(seed=1)
    other["test"] = _token_splits()["test"]
    write_token_folder(tmp_path / "other", other, vocab_size=10)
    shutil.rmtree(tmp_path / "kmers")
    shutil.copytree(tmp_path / "other" / "kmers", tmp_path / "kmers")
    with pytest.raises(UserError, match="rewritten after this folder was made .*split train, val differs") as exc:
        tokens.open_tokens(folder)
    one_line(exc)
    assert torch.equal(tokens.open_tokens(folder, splits=("test",))["test"].batch(torch.arange(2)), other["test"])
    kmers = tmp_path / "kmers" / "test" / "kmers.bin"
    kmers.unlink()
    with pytest.raises(UserError, match="kmers.bin: missing") as exc:
        tokens.open_tokens(folder)
    one_line(exc)
    with pytest.raises(UserError, match="folder not found"):
        tokens.open_tokens(tmp_path / "absent")
    with pytest.raises(UserError, match="no metadata.json"):
        tokens.open_tokens(tmp_path / "kmers" / "train")


def test_moved_study_still_resolves_its_stream(tmp_path):
    write_token_folder(tmp_path / "a", _token_splits(), vocab_size=10)
    (tmp_path / "a").rename(tmp_path / "b")
    data = tokens.open_tokens(tmp_path / "b" / "tokens")
    assert data.stream.folder.resolve() == (tmp_path / "b" / "kmers").resolve()
    assert torch.equal(data["val"].batch(torch.arange(3)), _token_splits()["val"])


def _embedding_folder(root: Path, table: np.ndarray) -> Path:
    stream = open_stream_data(root / "kmers")
    folder = root / "emb"
    folder.mkdir()
    np.save(folder / embeddings.TABLE_FILE, table)
    runio.atomic_write_json(folder / "metadata.json", {
        "format": embeddings.FORMAT, "version": embeddings.VERSION, "layout": "table",
        "embedding_dim": int(table.shape[1]), "stream": stream_reference(stream, folder),
    })
    return folder


def test_embedding_folder_loader(tmp_path):
    write_token_folder(tmp_path, _token_splits(), vocab_size=10)
    table = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)
    folder = _embedding_folder(tmp_path, table)
    data = embeddings.open_embeddings(folder)
    assert data.layout == "table" and data.dim == 3 and data.table_kmers is None
    np.testing.assert_array_equal(data.table, table)
    assert data.stream.k == 2 and data.stream.splits["val"].num_windows == 3

    np.save(folder / embeddings.TABLE_FILE, table[:15])
    with pytest.raises(UserError, match="15 rows but 2-mers need 4\\^2 = 16") as exc:
        embeddings.open_embeddings(folder)
    one_line(exc)
    bad = table.copy()
    bad[2, 1] = np.nan
    np.save(folder / embeddings.TABLE_FILE, bad)
    with pytest.raises(UserError, match="NaN or infinite") as exc:
        embeddings.open_embeddings(folder)
    one_line(exc)
    np.save(folder / embeddings.TABLE_FILE, table.astype(np.float64))
    with pytest.raises(UserError, match=r"expected float32 \[R, 3\]") as exc:
        embeddings.open_embeddings(folder)
    one_line(exc)
    meta = json.loads((folder / "metadata.json").read_text())
    runio.atomic_write_json(folder / "metadata.json", {**meta, "layout": "dense"})
    with pytest.raises(UserError, match="'layout' is 'dense', expected one of 'table', 'windows'") as exc:
        embeddings.open_embeddings(folder)
    one_line(exc)

    # The previous version's folder: metadata.json of format "compact" / "dense" beside per-split .pt files.
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    torch.save({"embeddings": torch.zeros(2, 4, 3)}, legacy / "train.pt")
    runio.atomic_write_json(legacy / "metadata.json", {"format": "dense", "k": 2})
    with pytest.raises(UserError, match="earlier version .*rerun lambeq_encoder.py") as exc:
        embeddings.open_embeddings(legacy)
    one_line(exc)
