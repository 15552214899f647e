"""Runs a study's plan in its --out: one pipeline per --out (an OS lock), the settings recorded in
timings.json, every stage skipped when its run record holds the same command as completed and otherwise run
(each stage resumes or restarts a dead run by itself), the token tracks side by side with --jobs, each
stage's wall time in timings.json, and a failing stage stopping the study with its one-line error."""

from __future__ import annotations

import datetime as _dt
import fcntl
import os
import shlex
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

from ..errors import UserError
from ..runio import atomic_write_text
from .plan import Stage
from .records import changed_settings, completed, error_line, init_settings, record_stage, summary
from .settings import Choices, Settings, recorded_settings

TIMINGS_FILE = "timings.json"
LOCK_FILE = ".pipeline.lock"
PID_FILE = ".pipeline.pid"
LOGS = ".logs"
SYNTHETIC_BANNER = ("*" * 72, "NO --fasta OR --csv GIVEN: THE DATA ARE SYNTHETIC TRANSCRIPTS, NOT HUMAN RNA", "*" * 72)


def absolute(path: str | os.PathLike) -> Path:
    """`path` made absolute as the shell's `cd DIR && pwd` does (against $PWD, symbolic links kept, `..`
    removed as text), so that run records made by earlier shell launchers match."""
    cwd = os.environ.get("PWD", "")
    try:
        if not (os.path.isabs(cwd) and os.path.samefile(cwd, ".")):
            cwd = os.getcwd()
    except OSError:
        cwd = os.getcwd()
    return Path(os.path.normpath(os.path.join(cwd, path)))


def hold_lock(out: Path) -> IO:
    """The one-pipeline-per---out lock, held (by the kernel, whatever ends this process) while the returned
    handle lives; stages do not inherit it."""
    handle = open(out / LOCK_FILE, "a", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        try:
            holder = (out / PID_FILE).read_text(encoding="utf-8").strip()
        except OSError:
            holder = "?"
        raise UserError(f"--out {out}: another pipeline ({holder}) is running there; wait for it or choose another "
                        "--out") from None
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    atomic_write_text(out / PID_FILE, f"pid {os.getpid()} on {socket.gethostname()} since {stamp}\n")
    return handle


def sections(stages: list[Stage]) -> list[list[Stage]]:
    """The plan cut where the tracks meet: a stage of the whole study alone, then each run of track stages."""
    cut: list[list[Stage]] = []
    for stage in stages:
        if stage.track is not None and cut and cut[-1][-1].track is not None:
            cut[-1].append(stage)
        else:
            cut.append([stage])
    return cut


class Runner:
    """Runs stages in `out`, recording them in timings.json; prints from several tracks one line at a time."""

    def __init__(self, out: Path):
        self.out = out
        self.timings = out / TIMINGS_FILE
        self.env = dict(os.environ)
        self._print_lock = threading.Lock()
        self._timings_lock = threading.Lock()

    def say(self, line: str, stream: IO | None = None) -> None:
        with self._print_lock:
            print(line, file=stream or sys.stdout, flush=True)

    def _record(self, stage: Stage, status: str, seconds: float) -> None:
        with self._timings_lock:
            record_stage(self.timings, stage.name, stage.folder.name, status, seconds)

    def _execute(self, stage: Stage, log: Path) -> int:
        """The stage's exit code; its stdout passes through, its stderr is shown and kept in `log`."""
        with open(log, "wb") as kept:
            try:
                proc = subprocess.Popen(stage.argv, stderr=subprocess.PIPE, env=self.env)
            except OSError as exc:
                kept.write(f"{stage.argv[0]}: error: {exc.strerror}\n".encode())
                return 127
            assert proc.stderr is not None
            for chunk in iter(lambda: proc.stderr.read1(1 << 16), b""):
                kept.write(chunk)
                with self._print_lock:
                    sys.stderr.buffer.write(chunk)
                    sys.stderr.buffer.flush()
            code = proc.wait()
        return 128 - code if code < 0 else code

    def run_stage(self, stage: Stage) -> int:
        """Skip a stage completed with the same command, else run it; its exit code (0 when skipped)."""
        if completed(stage.folder, stage.argv[1:]):
            self.say(f"pipeline: stage {stage.name} already completed in {stage.folder}; skipped")
            self._record(stage, "skipped", 0)
            return 0
        self.say(f"pipeline: stage {stage.name} -> {stage.folder}")
        (self.out / LOGS).mkdir(parents=True, exist_ok=True)
        log = self.out / LOGS / f"{stage.name}.log"
        start = time.monotonic()
        code = self._execute(stage, log)
        seconds = round(time.monotonic() - start, 1)
        if code:
            self._record(stage, "failed", seconds)
            self.say(f"pipeline: stage {stage.name} failed (exit {code}): {error_line(log)}", sys.stderr)
            return code
        self._record(stage, "completed", seconds)
        self.say(f"pipeline: stage {stage.name} done in {seconds:.1f} s")
        return 0

    def run_in_order(self, stages: list[Stage]) -> int:
        for stage in stages:
            code = self.run_stage(stage)
            if code:
                return code
        return 0

    def run_section(self, stages: list[Stage], jobs: int) -> int:
        """Stages of one or more tracks: each track's in order, up to `jobs` tracks side by side, each process
        then with its share of the cores (unless OMP_NUM_THREADS is set). A failing track stops; the others
        finish their stages."""
        lanes: dict[str | None, list[Stage]] = {}
        for stage in stages:
            lanes.setdefault(stage.track, []).append(stage)
        if jobs <= 1 or len(lanes) <= 1:
            return self.run_in_order(stages)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 2
        self.env["OMP_NUM_THREADS"] = self.env.get("OMP_NUM_THREADS") or str(max(cores // jobs, 1))
        self.say(f"pipeline: the {len(lanes)} token tracks run side by side, {self.env['OMP_NUM_THREADS']} thread(s) "
                 "per process")
        groups = list(lanes.values())
        codes = [0] * len(groups)
        slots = threading.Semaphore(jobs)

        def lane(index: int) -> None:
            with slots:
                codes[index] = self.run_in_order(groups[index])

        # daemon threads: Ctrl-C ends the study without waiting for the tracks
        workers = [threading.Thread(target=lane, args=(i,), daemon=True) for i in range(len(groups))]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        failed = [code for code in codes if code]
        return failed[-1] if failed else 0


def run(stages: list[Stage], settings: Settings, choices: Choices) -> int:
    """Run the whole plan in choices.out (made if missing); 0, or the exit code of a failed stage."""
    out = choices.out
    out.mkdir(parents=True, exist_ok=True)
    lock = hold_lock(out)
    try:
        runner = Runner(out)
        init_settings(runner.timings, recorded_settings(settings, choices))
        if choices.synthetic:
            for line in SYNTHETIC_BANNER:
                runner.say(f"pipeline: {line}")
        runner.say(f"pipeline: output in {out}")
        for section in sections(stages):
            code = runner.run_section(section, choices.jobs)
            if code:
                return code
        runner.say("pipeline: wall time per stage:")
        for line in summary(runner.timings):
            runner.say(line)
        if choices.synthetic:
            runner.say("pipeline: REMINDER: SYNTHETIC DATA - these numbers say nothing about human RNA")
        runner.say(f"pipeline: report in {out}/report.md")
        return 0
    finally:
        lock.close()


def describe(stages: list[Stage], settings: Settings, choices: Choices) -> list[str]:
    """The plan as --dry_run prints it: each stage, whether a completed run of its command is already there,
    what it waits for and its command line."""
    source = "SYNTHETIC transcripts" if choices.synthetic else choices.source
    lines = [f"pipeline: plan of {len(stages)} stages in {choices.out} ({source}; nothing is run)"]
    changed = changed_settings(choices.out / TIMINGS_FILE, recorded_settings(settings, choices))
    if changed:
        lines.append(f"pipeline: --out {choices.out} was run with other settings ({', '.join(changed)}): a run "
                     "there would be refused")
    earlier: list[str] = []
    for number, stage in enumerate(stages, 1):
        done = "completed, skipped" if completed(stage.folder, stage.argv[1:]) else "to run"
        every = len(earlier) > 2 and list(stage.waits_for) == earlier
        waits = "every stage above" if every else ", ".join(stage.waits_for)
        lines += [f"{number:3d}. {stage.name}  [{stage.track or 'study'}]  {stage.folder}  ({done})",
                  f"     after: {waits or 'nothing'}",
                  f"     {shlex.join(stage.argv)}"]
        earlier.append(stage.name)
    return lines

