"""The skeleton every stage shares: atomic writes, run records, CLI error handling, formats."""

from __future__ import annotations

import argparse
import json
import os

import pytest
import torch

from quixer_rna import cli, runio
from quixer_rna.errors import UserError
from quixer_rna.formats import sentences, tokens


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


def test_prepare_output_dir_refuses_non_empty(tmp_path):
    (tmp_path / "x").write_text("keep me")
    with pytest.raises(UserError, match="--overwrite"):
        runio.prepare_output_dir(tmp_path, overwrite=False)
    assert runio.prepare_output_dir(tmp_path, overwrite=True) == tmp_path
    assert (tmp_path / "x").read_text() == "keep me"


def test_run_record_writes_args_and_metrics(tmp_path):
    record = runio.RunRecord(tmp_path, "demo", {"k": 6})
    started = json.loads((tmp_path / "args.json").read_text())
    assert started["status"] == "running" and started["args"] == {"k": 6}
    record.finish({"windows": 3})
    done = json.loads((tmp_path / "args.json").read_text())
    assert done["status"] == "completed" and done["finished"] is not None
    assert "torch" in done["versions"]
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"windows": 3}


def test_run_cli_prints_one_line_for_user_errors(capsys):
    parser = argparse.ArgumentParser(prog="demo")
    cli.add_common_args(parser, device=True)

    def body(args):
        raise UserError("data.fa: not FASTA")

    assert cli.run_cli(parser, body, []) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["demo: error: data.fa: not FASTA"]


def test_resolve_device():
    assert cli.resolve_device("cpu").type == "cpu"
    assert cli.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UserError, match="--device"):
        cli.resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            cli.resolve_device("cuda:0")


def test_sentence_split_roundtrip_and_validation(tmp_path):
    sentences.write_sentence_split(tmp_path, "train", [["ACGTAC", "GGGTTT"]], ["NM_1.1"])
    split = sentences.load_sentence_split(tmp_path, "train", k=6, max_kmers=32)
    assert split.kmers == [["ACGTAC", "GGGTTT"]] and split.sources == ["NM_1.1"] and split.labels == [0]
    (tmp_path / "train" / "sentences.txt").write_text("ACGTAC GGGTTT\nACGTAC NNNNNN\n")
    (tmp_path / "train" / "labels.txt").write_text("0\n0\n")
    (tmp_path / "train" / "sources.txt").write_text("a\nb\n")
    with pytest.raises(UserError, match=r"sentences.txt:2: token 'NNNNNN'"):
        sentences.load_sentence_split(tmp_path, "train", k=6)
    with pytest.raises(UserError, match="more than --max_kmers 1"):
        sentences.load_sentence_split(tmp_path, "train", k=6, max_kmers=1)


def test_token_files_roundtrip_and_validation(tmp_path):
    seqs = torch.randint(0, 10, (5, 4))
    for split in ("train", "val", "test"):
        tokens.save_token_split(tmp_path / f"{split}.pt", seqs, vocab_size=10, sources=list("abcde"))
    data = tokens.load_token_dataset(tmp_path)
    assert torch.equal(data["val"].sequences, seqs) and data["test"].vocab_size == 10
    assert data["train"].sources == list("abcde")
    torch.save({"sequences": torch.full((2, 4), 12), "vocab_size": 10}, tmp_path / "val.pt")
    with pytest.raises(UserError, match="vocabulary has 10 tokens"):
        tokens.load_token_dataset(tmp_path)
    os.remove(tmp_path / "test.pt")
    with pytest.raises(UserError, match="missing split"):
        tokens.load_token_dataset(tmp_path)


def test_atomic_write_follows_umask(tmp_path):
    old = os.umask(0o022)
    try:
        runio.atomic_write_text(tmp_path / "f.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o644


def test_run_record_hides_secrets(tmp_path, monkeypatch):
    monkeypatch.setattr(
        "sys.argv", ["x.py", "--api_key", "SECRET1", "--storage=postgresql://u:SECRET2@h/db", "--api_key=SECRET3"]
    )
    runio.RunRecord(tmp_path, "demo", {"api_key": "SECRET1", "storage": "postgresql://u:SECRET2@h/db"})
    text = (tmp_path / "args.json").read_text()
    assert "SECRET" not in text
    record = json.loads(text)
    assert record["args"] == {"api_key": "<given>", "storage": "postgresql://u:***@h/db"}


def test_failed_stage_marks_record_and_frees_folder(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="demo")
    cli.add_common_args(parser)

    def body(args):
        runio.prepare_output_dir(tmp_path, args.overwrite)
        runio.RunRecord(tmp_path, "demo", vars(args))
        raise UserError("input.fa: empty file")

    assert cli.run_cli(parser, body, []) == 2
    record = json.loads((tmp_path / "args.json").read_text())
    assert record["status"] == "failed" and record["error"] == "input.fa: empty file"
    # The corrected rerun may reuse a folder that holds only a failed run.
    assert runio.prepare_output_dir(tmp_path, overwrite=False) == tmp_path
