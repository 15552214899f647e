"""Typed flags refused where they are parsed (one stderr line naming the flag, exit 2), a Quixer too large for
the machine refused before anything is allocated, progress lines when no terminal is attached, and the
post-selection regulariser raising the success probability on a toy run."""

from __future__ import annotations

import fcntl
import logging
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pytest
import torch

import train_quixer_hybrid as script
from fixtures import counting_windows, write_token_folder
from quixer_rna import progress
from quixer_rna.cli import every
from quixer_rna.formats.results import read_result
from quixer_rna.models import build_model
from quixer_rna.progress import Every, Progress

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(script.__file__).resolve().parent
TINY = ["--qubits", "2", "--ansatz_layers", "1", "--embedding_dim", "8", "--qsvt_degree", "2"]
# "epoch 1/2: 2/6 steps loss 2.064 windows/s 130.1, 16.3 step/s, ETA 0:00"
PROGRESS_LINE = re.compile(r"quixer_rna\.progress: epoch (\d+)/2: (\d+)/6 steps loss ([0-9.]+) windows/s ([0-9.]+), "
                           r"([0-9.e+]+) step/s, ETA (\d+:\d\d)$")


@pytest.fixture
def data(tmp_path) -> Path:
    splits = {"train": counting_windows(48, seed=1), "val": counting_windows(16, seed=2),
              "test": counting_windows(16, seed=3)}
    return write_token_folder(tmp_path / "data", splits, 7)


def run_script(*args: str, stderr=subprocess.PIPE, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(ROOT / "train_quixer_hybrid.py"), *args], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=stderr, text=True, timeout=timeout)


def one_error_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert ": error: " in lines[0]
    return lines[0]


def exit_code(argv: list[str]) -> int:
    """What script.main gives back for a command line the parser refuses (an exit code or SystemExit)."""
    try:
        return script.main(argv)
    except SystemExit as exc:
        return exc.code


# ---- sizes the machine cannot hold ---------------------------------------------------------------------------

def test_forty_qubits_are_refused_before_allocating(tmp_path, data, capsys):
    out = tmp_path / "run"
    assert script.main(["--data_dir", str(data), "--output_dir", str(out), "--device", "cpu", "--qubits", "40",
                        "--batch_size", "4", "--log_level", "warning"]) == 2
    printed = capsys.readouterr()
    assert printed.out == ""
    line = one_error_line(printed.err)
    assert ": error: --qubits 40 (2^40 amplitudes per state)" in line and "--batch_size" in line
    # the size needed is the model's own estimate of a training step of 4 windows
    needed = re.search(r"needs about ([0-9,.]+) GiB", line)
    assert needed, line
    model = build_model("quixer", 7, 3, {"qubits": 40})
    assert float(needed.group(1).replace(",", "")) == pytest.approx(model.memory_estimate(4)[0] / 2**30, rel=1e-3)
    assert float(needed.group(1).replace(",", "")) > 1e5
    # nothing was trained: no checkpoint, and the run record says why it failed
    assert not (out / "checkpoint_last.pt").exists()
    assert "--qubits 40" in (out / "args.json").read_text()


def test_a_model_that_fits_is_not_refused(tmp_path, data, capsys):
    assert script.main(["--data_dir", str(data), "--output_dir", str(tmp_path / "run"), "--device", "cpu",
                        "--epochs", "1", "--batch_size", "16", "--log_level", "warning", *TINY]) == 0
    assert capsys.readouterr().err == ""


# ---- typed flags ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "flag, value, expected",
    [
        ("--lr", "-1", "a number > 0"),
        ("--lr", "nan", "a number > 0"),
        ("--batch_size", "0", "a whole number >= 1"),
        ("--epochs", "2.5", "a whole number >= 1"),
        ("--weight_decay", "-0.1", "a number >= 0"),
        ("--patience", "-1", "a whole number >= 0"),
        ("--eval_every", "x", "a whole number >= 0"),
        ("--train_fraction", "0", "a fraction in (0, 1]"),
        ("--train_fraction", "1.5", "a fraction in (0, 1]"),
        ("--dropout", "1", "a number in [0, 1)"),
        ("--qubits", "0", "a whole number >= 1"),
        ("--postselection_weight", "-2", "a number >= 0"),
        ("--log_every", "soon", "expected N (steps), Ns or Nm"),
        ("--log_every", "-5s", "a non-negative interval"),
        ("--seed", "-3", "a whole number >= 0"),
        ("--init_strategy", "zeros", "invalid choice"),
    ],
)
def test_typed_flag_is_one_stderr_line_naming_it(capsys, flag, value, expected):
    with pytest.raises(SystemExit) as exc:
        script.build_parser().parse_args(["--data_dir", "d", f"{flag}={value}"])
    assert exc.value.code == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"argument {flag}:" in line and expected in line


def test_lr_minus_one_as_separate_words(capsys):
    """`--lr -1` (two words, as people type it) is refused by the parser, not mistaken for a flag."""
    assert exit_code(["--data_dir", "d", "--lr", "-1"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "argument --lr: expected a number > 0, got '-1'" in line


def test_good_values_are_parsed_to_their_types():
    args = script.build_parser().parse_args(["--data_dir", "d", "--lr", "1e-3", "--train_fraction", "1",
                                             "--dropout", "0", "--log_every", "5m", "--eval_every", "0"])
    assert (args.lr, args.train_fraction, args.dropout, args.eval_every) == (1e-3, 1.0, 0.0, 0)
    assert args.log_every == Every(seconds=300)
    assert every("25") == Every(steps=25) and every("90s") == Every(seconds=90) and every(" 2M ") == Every(seconds=120)
    assert str(every("25")) == "25 steps" and str(every("90s")) == "90 s"


# ---- progress without a terminal -------------------------------------------------------------------------------

def test_progress_lines_without_a_terminal(tmp_path, data):
    # 48 windows / 8 = 6 steps per epoch, a line every 2 steps
    done = run_script("--data_dir", str(data), "--output_dir", str(tmp_path / "run"), "--device", "cpu",
                      "--epochs", "2", "--batch_size", "8", "--log_every", "2", *TINY)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "\r" not in done.stderr  # no bar redrawn in the log
    found = [PROGRESS_LINE.search(line) for line in done.stderr.splitlines() if "quixer_rna.progress" in line]
    assert found and all(found), done.stderr
    assert [(int(m.group(1)), int(m.group(2))) for m in found] == [(1, 2), (1, 4), (1, 6), (2, 2), (2, 4), (2, 6)]
    for match in found:
        assert 0 < float(match.group(3)) < 5 and float(match.group(4)) > 0 and float(match.group(5)) > 0
    assert found[-1].group(6) == "0:00"  # nothing left at the last step


def test_progress_in_wall_time_logs_nothing_in_a_short_run(tmp_path, data, capsys):
    # in this process stderr is pytest's capture, not a terminal: lines, not a bar
    argv = ["--data_dir", str(data), "--device", "cpu", "--epochs", "1", "--batch_size", "8", *TINY]
    assert script.main([*argv, "--output_dir", str(tmp_path / "quiet"), "--log_every", "10m"]) == 0
    assert "quixer_rna.progress" not in capsys.readouterr().err
    assert script.main([*argv, "--output_dir", str(tmp_path / "steps"), "--log_every", "3"]) == 0
    err = capsys.readouterr().err
    assert [line.split("progress: ")[1].split(" steps")[0] for line in err.splitlines()
            if "quixer_rna.progress" in line] == ["epoch 1/1: 3/6", "epoch 1/1: 6/6"]


def test_a_terminal_gets_a_bar_not_lines(tmp_path, data):
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal 100 columns wide
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        done = run_script("--data_dir", str(data), "--output_dir", str(tmp_path / "run"), "--device", "cpu",
                          "--epochs", "1", "--batch_size", "8", "--log_every", "1", *TINY, stderr=follower)
    finally:
        os.close(follower)
        reader.join(timeout=10)
        os.close(leader)
    shown = b"".join(chunks).decode(errors="replace")
    assert done.returncode == 0, shown[-2000:]
    assert "epoch 1/1:" in shown and "/6 [" in shown and "\r" in shown  # tqdm's bar, redrawn in place
    assert "quixer_rna.progress" not in shown


def test_progress_logs_every_n_steps_or_seconds(caplog, monkeypatch):
    monkeypatch.setattr(progress, "on_terminal", lambda: False)
    clock = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    caplog.set_level(logging.INFO, logger="quixer_rna.progress")
    with Progress(10, "work", every=Every(steps=3), report=lambda: {"loss": 0.5}) as bar:
        for _ in range(10):
            clock[0] += 1.0
            bar.update()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [f"work: {n}/10 steps loss 0.5, 1 step/s, ETA 0:{10 - n:02d}" for n in (3, 6, 9)]
    caplog.clear()
    with Progress(100, "timed", initial=40, every=Every(seconds=30)) as bar:
        for _ in range(60):
            clock[0] += 1.0
            bar.update()
    lines = [r.getMessage() for r in caplog.records]
    # a resumed count (initial 40) rates only the work done here; ETA of the rest at that rate
    assert lines == ["timed: 70/100 steps, 1 step/s, ETA 0:30", "timed: 100/100 steps, 1 step/s, ETA 0:00"]
    caplog.clear()
    with Progress(None, "rna.fa", unit="record", every=Every(steps=2)) as bar:  # an unknown total: no ETA
        for _ in range(4):
            clock[0] += 0.5
            bar.update()
    assert [r.getMessage() for r in caplog.records] == ["rna.fa: 2 records, 2 record/s", "rna.fa: 4 records, 2 record/s"]
    caplog.clear()
    with Progress(5, "off", every=Every(steps=1), enabled=False) as bar:  # ranks > 0 stay quiet
        for _ in range(5):
            bar.update()
    assert caplog.records == []


# ---- the post-selection regulariser ------------------------------------------------------------------------

def test_postselection_regulariser_raises_the_success_probability(tmp_path, data, capsys):
    """Issue 10: the same toy run (same seed) with --postselection_weight 1 post-selects far more often than
    with 0, the paper's loss, on the training batches and on the test windows."""
    flags = ["--data_dir", str(data), "--device", "cpu", "--epochs", "3", "--batch_size", "16", "--dropout", "0",
             "--lr", "0.05",
             "--log_level", "warning", "--seed", "1", *TINY]
    post: dict[float, tuple[float, float]] = {}
    for weight in (0.0, 1.0):
        out = tmp_path / f"w{weight}"
        assert script.main([*flags, "--output_dir", str(out), "--postselection_weight", str(weight)]) == 0
        result = read_result(out)
        assert result.model_config["postselection_weight"] == weight
        model = build_model("quixer", 7, 3, result.model_config)
        model.load_state_dict(torch.load(out / "checkpoint_best.pt", weights_only=True)["model"])
        model.eval()
        windows = counting_windows(16, seed=3)
        with torch.no_grad():
            model(windows[:, :-1])
        post[weight] = (result.metrics["mean_postselection"], float(model.extra_metrics()["postselection"]))
    capsys.readouterr()
    (train_plain, test_plain), (train_reg, test_reg) = post[0.0], post[1.0]
    assert 0 < train_plain < 1 and 0 < test_plain < 1
    assert train_reg > train_plain + 0.2, post
    assert test_reg > test_plain + 0.2, post
