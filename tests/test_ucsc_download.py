"""download_rna_sequences.py --source ucsc against a fake UCSC download server on 127.0.0.1
(tests/ucsc_server.py): the files it keeps, md5sum.txt checks, Range resumes, a kill and a rerun, the
default choice of chromosomes, and one-line errors."""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import download_rna_sequences
from quixer_rna.fasta import iter_fasta
from ucsc_server import FakeUcsc

ROOT = Path(__file__).resolve().parents[1]


def chromosome(name: str, length: int, seed: int) -> bytes:
    """A gzipped UCSC-style chromosome file: one record, 50-column lines, N runs, lowercase repeats."""
    rng = random.Random(seed)
    bases = [rng.choice("ACGT") for _ in range(length)]
    for _ in range(length // 2000):
        start, size = rng.randrange(length), rng.randint(50, 600)
        bases[start:start + size] = [b.lower() for b in bases[start:start + size]]
    bases[:300] = "N" * 300
    text = "".join(bases)[:length]
    lines = [f">{name}"] + [text[i:i + 50] for i in range(0, length, 50)]
    return gzip.compress(("\n".join(lines) + "\n").encode("ascii"), mtime=0)


GENOME = {f"{name}.fa.gz": chromosome(name, length, seed) for seed, (name, length) in enumerate([
    ("chr21", 240_000), ("chr22", 240_000), ("chrM", 16_569), ("chr1_KI270706v1_random", 3_000),
    ("chr22_KI270731v1_alt", 3_000), ("chrUn_GL000195v1", 3_000)])}


def args(server: FakeUcsc, output: Path, *extra: str) -> list[str]:
    return ["--source", "ucsc", "--assembly", "hg38", "--ucsc_url", server.url, "--output", str(output),
            "--retry_base_delay", "0.01", "--log_level", "warning", *extra]


def metrics_of(output: Path) -> dict:
    return json.loads((output / "metrics.json").read_text())


def one_error_line(capsys) -> str:
    """The one error line of a failed run (warnings logged before it may precede it)."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if ": error: " in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_two_chromosomes_with_checksums_and_a_rerun_that_fetches_nothing(tmp_path: Path) -> None:
    output = tmp_path / "hg38"
    with FakeUcsc("hg38", GENOME) as server:
        assert download_rna_sequences.main(args(server, output, "--chromosomes", "chr21,chr22")) == 0
        assert sorted(p.name for p in output.glob("*.fa.gz")) == ["chr21.fa.gz", "chr22.fa.gz"]
        for name in ("chr21.fa.gz", "chr22.fa.gz"):
            assert (output / name).read_bytes() == GENOME[name]
        sums = [line.split("  ") for line in (output / "md5sum.txt").read_text().splitlines()]
        assert sums == [[hashlib.md5(GENOME[n]).hexdigest(), n] for n in ("chr21.fa.gz", "chr22.fa.gz")]
        record = json.loads((output / "args.json").read_text())
        assert record["status"] == "completed" and record["args"]["source"] == "ucsc"
        metrics = metrics_of(output)
        assert (metrics["fetched"], metrics["already_present"], metrics["checksum_mismatches"]) == (2, 0, 0)
        assert metrics["checked_by"] == "md5sum.txt" and metrics["bytes_in_output"] == sum(map(len, (
            GENOME["chr21.fa.gz"], GENOME["chr22.fa.gz"])))
        before = len(server.log)
        assert download_rna_sequences.main(args(server, output, "--chromosomes", "chr21,chr22")) == 0
        assert [entry.name for entry in server.log[before:]] == ["md5sum.txt"]
    assert (metrics_of(output)["fetched"], metrics_of(output)["already_present"]) == (0, 2)
    records = list(iter_fasta(output / "chr21.fa.gz"))  # what prepare_autoregressive_data.py --fasta reads
    assert [r.header for r in records] == ["chr21"] and len(records[0].sequence) == 240_000
    assert any(c.islower() for c in records[0].sequence)  # soft-masking kept as published


def test_default_is_the_assembled_chromosomes_and_all_adds_the_rest(tmp_path: Path) -> None:
    output = tmp_path / "hg38"
    with FakeUcsc("hg38", GENOME) as server:
        assert download_rna_sequences.main(args(server, output)) == 0
        assert [e.name for e in server.log if e.name != "md5sum.txt"] == ["chr21.fa.gz", "chr22.fa.gz", "chrM.fa.gz"]
        assert download_rna_sequences.main(args(server, output, "--chromosomes", "all")) == 0
    assert sorted(p.name for p in output.glob("*.fa.gz")) == sorted(GENOME)
    assert metrics_of(output)["already_present"] == 3 and metrics_of(output)["fetched"] == 3
    assert len((output / "md5sum.txt").read_text().splitlines()) == len(GENOME)


def test_partial_file_is_resumed_with_range(tmp_path: Path) -> None:
    output = tmp_path / "hg38"
    data = GENOME["chr21.fa.gz"]
    with FakeUcsc("hg38", GENOME) as server:
        # a connection that ends early is continued from where it stopped, in the same run
        server.drop_after["chr21.fa.gz"] = [20_000]
        assert download_rna_sequences.main(args(server, output, "--chromosomes", "chr21")) == 0
        asked = server.requests_for("chr21.fa.gz")
        assert [(e.status, e.range, e.sent) for e in asked] == [(200, None, 20_000), (206, "bytes=20000-", len(data) - 20_000)]
        assert asked[1].if_range == '"' + hashlib.md5(data).hexdigest()[:16] + '"'  # the ETag of the first answer
        assert (output / "chr21.fa.gz").read_bytes() == data
        metrics = metrics_of(output)
        assert (metrics["connection_breaks"], metrics["resumed_by_range"], metrics["bytes_resumed_from"]) == (1, 1, 20_000)
        assert not list(output.glob("*.part*"))
        # a part whose file has changed on the server since (stale ETag) is started again, not spliced
        stale = b"\x1f\x8b old version"
        (output / "chr22.fa.gz.part").write_bytes(stale)
        (output / "chr22.fa.gz.part.json").write_text(json.dumps({"etag": '"0123456789abcdef"', "last_modified": None}))
        assert download_rna_sequences.main(args(server, output, "--chromosomes", "chr22")) == 0
    asked = server.requests_for("chr22.fa.gz")
    assert [(e.status, e.range, e.if_range) for e in asked] == [(200, f"bytes={len(stale)}-", '"0123456789abcdef"')]
    assert (output / "chr22.fa.gz").read_bytes() == GENOME["chr22.fa.gz"] and metrics_of(output)["restarted"] == 1


def test_a_server_without_range_that_always_drops_ends_in_one_line(tmp_path: Path, capsys) -> None:
    """Continuing counts as progress only past the part's old size, so a restart that drops at the same byte
    uses up the retries instead of looping."""
    output = tmp_path / "hg38"
    with FakeUcsc("hg38", GENOME) as server:
        server.ranges = False
        server.drop_after["chrM.fa.gz"] = [5_000] * 5
        argv = args(server, output, "--chromosomes", "chrM", "--max_retries", "2", "--log_level", "error")
        assert download_rna_sequences.main(argv) == 2
        assert [e.range for e in server.requests_for("chrM.fa.gz")] == [None] + ["bytes=5000-"] * 3
    line = one_error_line(capsys)
    assert "chrM.fa.gz failed 3 times (last: connection closed after 5000 of" in line and "rerun the same" in line
    assert (output / "chrM.fa.gz.part").stat().st_size == 5_000 and not (output / "chrM.fa.gz").exists()


def test_corrupt_file_is_caught_by_the_checksum(tmp_path: Path, capsys) -> None:
    output = tmp_path / "hg38"
    with FakeUcsc("hg38", GENOME) as server:
        server.corrupt["chr22.fa.gz"] = 1  # the first answer is damaged, the second is good
        assert download_rna_sequences.main(args(server, output, "--chromosomes", "chr22")) == 0
        assert len(server.requests_for("chr22.fa.gz")) == 2
        assert (output / "chr22.fa.gz").read_bytes() == GENOME["chr22.fa.gz"]
        assert metrics_of(output)["checksum_mismatches"] == 1
        server.corrupt["chr21.fa.gz"] = 2  # damaged twice: one line, nothing kept
        assert download_rna_sequences.main(args(server, output, "--chromosomes", "chr21,chr22")) == 2
    line = one_error_line(capsys)
    assert "chr21.fa.gz: md5" in line and "again after deleting it" in line
    assert not (output / "chr21.fa.gz").exists() and not list(output.glob("chr21*"))
    assert json.loads((output / "args.json").read_text())["status"] == "failed"


def test_without_md5sum_gzip_crc_checks_the_file(tmp_path: Path, capsys) -> None:
    output = tmp_path / "hg38"
    with FakeUcsc("hg38", GENOME, publish_md5=False) as server:
        server.corrupt["chrM.fa.gz"] = 1
        assert download_rna_sequences.main(args(server, output, "--chromosomes", "chrM")) == 0
        assert (output / "chrM.fa.gz").read_bytes() == GENOME["chrM.fa.gz"]
        assert metrics_of(output)["checksum_mismatches"] == 1 and not (output / "md5sum.txt").exists()
        assert download_rna_sequences.main(args(server, tmp_path / "other")) == 2  # nothing lists the chromosomes
    assert "md5sum.txt not found, so the chromosomes cannot be listed" in one_error_line(capsys)


@pytest.mark.slow
def test_killed_mid_file_and_rerun_finishes_with_identical_files(tmp_path: Path) -> None:
    output = tmp_path / "hg38"
    argv = [sys.executable, str(ROOT / "download_rna_sequences.py")]
    with FakeUcsc("hg38", GENOME) as server:
        server.throttle = 0.01  # about 0.4 MB/s: each file takes about 0.2 s
        process = subprocess.Popen([*argv, *args(server, output, "--chromosomes", "chr21,chr22")], cwd=ROOT,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        part = output / "chr22.fa.gz.part"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (part.stat().st_size if part.is_file() else 0) < 16_384:
            time.sleep(0.002)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        assert process.returncode == -signal.SIGKILL
        kept = part.stat().st_size
        assert (output / "chr21.fa.gz").read_bytes() == GENOME["chr21.fa.gz"] and 0 < kept < len(GENOME["chr22.fa.gz"])
        assert not (output / "chr22.fa.gz").exists()
        server.throttle = 0.0
        before = len(server.log)
        assert download_rna_sequences.main(args(server, output, "--chromosomes", "chr21,chr22")) == 0
        again = [(e.name, e.status, e.range) for e in server.log[before:]]
    assert again == [("md5sum.txt", 200, None), ("chr22.fa.gz", 206, f"bytes={kept}-")]
    for name in ("chr21.fa.gz", "chr22.fa.gz"):
        assert (output / name).read_bytes() == GENOME[name]
    assert not part.exists() and json.loads((output / "args.json").read_text())["status"] == "completed"


def test_mistakes_are_one_line(tmp_path: Path, capsys) -> None:
    output = tmp_path / "hg38"
    with FakeUcsc("hg38", GENOME) as server:
        assert download_rna_sequences.main(args(server, output, "--chromosomes", "chr21,chr99")) == 2
        line = one_error_line(capsys)
        assert "--chromosomes chr99: not published for hg38" in line
        assert [e.name for e in server.log] == ["md5sum.txt"]  # nothing fetched before the mistake was seen
        assert download_rna_sequences.main(args(server, output, "--chromosomes", "21")) == 2
        assert "did you mean chr21?" in one_error_line(capsys)
        assert download_rna_sequences.main(args(server, tmp_path / "x", "--chromosomes", "chr21", "--assembly", "hg99")) == 2
        assert "hg99/chromosomes/chr21.fa.gz not found (HTTP 404)" in one_error_line(capsys)
        port = server.url
    assert download_rna_sequences.main(args(server, tmp_path / "y", "--chromosomes", "chr21")) == 2
    assert f"cannot reach {port}" in one_error_line(capsys)
    for argv, says in ((["--source", "ucsc"], "--assembly: --source ucsc needs"),
                       (["--chromosomes", "chr1"], "--chromosomes: only --source ucsc takes it"),
                       (["--source", "ucsc", "--assembly", "hg38", "--output", str(tmp_path / "g.fa.gz")], "give a folder"),
                       (["--source", "ucsc", "--assembly", "hg38", "--chromosomes", "../x"], "expected sequence names")):
        assert download_rna_sequences.main([*argv, "--log_level", "error"]) == 2
        assert says in one_error_line(capsys)
