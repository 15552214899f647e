"""download_rna_sequences.py against a fake E-utilities server on 127.0.0.1 (tests/eutils_server.py):
the FASTA it writes, POST for long id lists, retries and backoff, the rate limit, missing ids,
resuming after a failure, a kill or a torn write, and one-line errors."""

from __future__ import annotations

import gzip
import json
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import download_rna_sequences
from quixer_rna.fasta import iter_fasta, parse_header
from eutils_server import Fault, FakeEutils

ROOT = Path(__file__).resolve().parents[1]
REAL_FASTA = Path(__file__).resolve().parents[2] / "shared" / "data" / "refseq_mrna_500.fa"


def fake_records(n: int, seed: int = 0, prefix: str = "NM_", lengths: list[int] | None = None) -> dict[str, tuple[str, str]]:
    rng = random.Random(seed)
    records = {}
    for i in range(n):
        accession = f"{prefix}{100000 + i:06d}.{1 + i % 3}"
        length = lengths[i] if lengths else rng.randint(60, 400)
        sequence = "".join(rng.choice("ACGT") for _ in range(length))
        records[accession] = (f"Homo sapiens fake gene {i} (FAKE{i}), mRNA", sequence)
    return records


def write_csv(path: Path, records: dict[str, tuple[str, str]], extra: list[tuple[str, int]] = (),
              wrong_length: set[str] = frozenset()) -> Path:
    lines = ["ID,Sequence_len,Description"]
    for accession, (description, sequence) in records.items():
        length = len(sequence) + (7 if accession in wrong_length else 0)
        lines.append(f'{accession},{length},"{accession} {description}"')
    lines += [f'{accession},{length},"{accession} not on the server"' for accession, length in extra]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def common(server: FakeEutils, csv: Path, output: Path, *extra: str) -> list[str]:
    return ["--csv", str(csv), "--output", str(output), "--eutils_url", server.url, "--email", "test@example.org",
            "--api_key", "secret-key", "--requests_per_second", "50", "--retry_base_delay", "0.05",
            "--log_level", "warning", *extra]


def read(path: Path) -> list[tuple[str, str]]:
    return [(parse_header(r.header)[0], r.sequence) for r in iter_fasta(path)]


def metrics_of(output: Path) -> dict:
    return json.loads(record_of(output, "metrics.json").read_text())


def record_of(output: Path, name: str = "args.json") -> Path:
    """The run record's files sit beside the FASTA, named after it."""
    return output.parent / f"{output.name}.{name}"


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ": error: " in line]


def test_writes_ncbi_fasta_in_70_columns(tmp_path: Path, capsys) -> None:
    records = fake_records(23, lengths=[70, 140, 69, 71, *range(100, 119), 333][:23])
    others = fake_records(5, seed=1, prefix="XM_")
    csv = write_csv(tmp_path / "summary.csv", {**records, **others})
    output = tmp_path / "data" / "rna.fasta"
    with FakeEutils({**records, **others}) as server:
        assert download_rna_sequences.main(common(server, csv, output, "--batch_size", "7")) == 0
    assert read(output) == [(a, seq) for a, (_, seq) in records.items()]
    text = output.read_text()
    for block in text.split(">")[1:]:
        header, *lines = block.rstrip("\n").split("\n")
        assert header.split(" ")[0] in records and "(FAKE" in header
        assert all(len(line) == 70 for line in lines[:-1]) and 0 < len(lines[-1]) <= 70
    assert "\n\n" not in text  # NCBI's blank separator lines are not copied
    assert all(entry.method == "GET" and len(entry.ids) <= 7 for entry in server.log)
    metrics = metrics_of(output)
    assert (metrics["requested"], metrics["fetched"], metrics["missing"], metrics["requests"]) == (23, 23, 0, 4)
    assert metrics["synthetic"] is False and metrics["bytes_written"] == len(text)
    args = json.loads(record_of(output).read_text())
    assert args["status"] == "completed" and args["args"]["api_key"] == "<given>" and args["role"] == "download"
    assert "secret-key" not in record_of(output).read_text()
    wanted = {"tool": "quixer-rna", "email": "test@example.org", "api_key": "secret-key"}  # what NCBI asks to see
    assert all({k: entry.params.get(k) for k in wanted} == wanted for entry in server.log)


def test_long_id_list_is_posted(tmp_path: Path) -> None:
    records = fake_records(210, lengths=[50] * 210)
    csv = write_csv(tmp_path / "summary.csv", records)
    output = tmp_path / "rna.fasta"
    with FakeEutils(records) as server:
        assert download_rna_sequences.main(common(server, csv, output, "--batch_size", "250")) == 0
    assert [entry.method for entry in server.log] == ["POST"]
    assert len(server.log[0].ids) == 210 and len(read(output)) == 210


def test_prefixes_max_sequences_and_sample(tmp_path: Path) -> None:
    nm, xm, nr = fake_records(10), fake_records(10, 1, "XM_"), fake_records(10, 2, "NR_")
    plain = write_csv(tmp_path / "summary.csv", {**nm, **xm, **nr})
    csv = tmp_path / "summary.csv.gz"
    csv.write_bytes(gzip.compress(plain.read_bytes()))
    with FakeEutils({**nm, **xm, **nr}) as server:
        out = tmp_path / "a" / "rna.fasta"
        assert download_rna_sequences.main(common(server, csv, out, "--prefixes", "XM_,NR_", "--max_sequences", "12")) == 0
        assert [a for a, _ in read(out)] == list(xm)[:10] + list(nr)[:2]
        small, large = tmp_path / "s" / "rna.fasta", tmp_path / "l" / "rna.fasta"
        for path, n in ((small, "5"), (large, "15")):
            argv = common(server, csv, path, "--prefixes", "NM_", "XM_", "--max_sequences", n, "--sample", "--seed", "3")
            assert download_rna_sequences.main(argv) == 0
    small_ids, large_ids = [a for a, _ in read(small)], [a for a, _ in read(large)]
    order = list(nm) + list(xm)
    assert len(small_ids) == 5 and set(small_ids) < set(large_ids)
    assert small_ids != order[:5] and small_ids == sorted(small_ids, key=order.index)


def test_resume_after_server_fails_permanently(tmp_path: Path, capsys) -> None:
    records = fake_records(20)
    csv = write_csv(tmp_path / "summary.csv", records)
    output = tmp_path / "rna.fasta"
    with FakeEutils(records) as server:
        argv = common(server, csv, output, "--batch_size", "4", "--max_retries", "1")
        server.fail_from = 2
        assert download_rna_sequences.main(argv) == 2
        err = capsys.readouterr().err
        assert len(error_lines(err)) == 1 and "rerun the same command to resume" in error_lines(err)[0]
        assert [a for a, _ in read(output)] == list(records)[:8]
        assert json.loads(record_of(output).read_text())["status"] == "failed"
        server.fail_from = None
        assert download_rna_sequences.main(argv) == 0
    assert read(output) == [(a, seq) for a, (_, seq) in records.items()]
    fetched = server.fetched_ids()
    assert sorted(fetched) == sorted(records)  # each id served exactly once over both runs
    metrics = metrics_of(output)
    assert (metrics["already_present"], metrics["fetched"], metrics["requests"]) == (8, 12, 3)


def test_resume_after_kill_of_the_real_script(tmp_path: Path) -> None:
    records = fake_records(30)
    csv = write_csv(tmp_path / "summary.csv", records)
    output = tmp_path / "rna.fasta"
    with FakeEutils(records) as server:
        argv = common(server, csv, output, "--batch_size", "3")
        server.delay = 0.25
        process = subprocess.Popen([sys.executable, str(ROOT / "download_rna_sequences.py"), *argv], cwd=ROOT,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while sum(entry.status == 200 for entry in server.log) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        assert process.returncode == -signal.SIGKILL
        server.delay = 0.0
        kept = [a for a, _ in read(output)]  # parses: every record written is whole
        assert len(kept) >= 6 and kept == list(records)[:len(kept)]
        requests_before = len(server.log)
        assert download_rna_sequences.main(argv) == 0
        asked_again = [i for entry in server.log[requests_before:] for i in entry.ids]
    assert set(asked_again) == set(records) - set(kept) and len(asked_again) == len(set(asked_again))
    assert read(output) == [(a, seq) for a, (_, seq) in records.items()]


@pytest.mark.parametrize("cut", ["mid_line", "at_line_end", "header_only"])
def test_torn_last_record_is_cut_and_fetched_again(tmp_path: Path, cut: str) -> None:
    records = fake_records(6, lengths=[90, 100, 110, 120, 130, 300])
    csv = write_csv(tmp_path / "summary.csv", records)
    output = tmp_path / "rna.fasta"
    with FakeEutils(records) as server:
        argv = common(server, csv, output)
        assert download_rna_sequences.main(argv) == 0
        whole = output.read_bytes()
        last = whole.rindex(b"\n>") + 1
        header_end = whole.index(b"\n", last) + 1
        keep = {"mid_line": len(whole) - 5, "at_line_end": header_end + 71, "header_only": header_end}[cut]
        output.write_bytes(whole[:keep])
        assert download_rna_sequences.main(argv) == 0
    assert output.read_bytes() == whole
    metrics = metrics_of(output)
    assert metrics["tail_bytes_repaired"] == keep - last
    assert (metrics["already_present"], metrics["fetched"]) == (5, 1)
    assert server.log[-1].ids == [list(records)[-1]]


def test_backoff_and_retry_after_are_honoured(tmp_path: Path) -> None:
    records = fake_records(4)
    csv = write_csv(tmp_path / "summary.csv", records)
    output = tmp_path / "rna.fasta"
    with FakeEutils(records) as server:
        server.faults = [Fault("429", retry_after="1"), Fault("500"), Fault("drop")]
        argv = common(server, csv, output, "--retry_base_delay", "0.2", "--max_retries", "3")
        assert download_rna_sequences.main(argv) == 0
    times = [entry.time for entry in server.log]
    assert [entry.status for entry in server.log] == [429, 500, None, 200]
    assert times[1] - times[0] >= 1.0  # Retry-After: 1 beats the 0.2 s first backoff
    assert times[2] - times[1] >= 0.4  # 0.2 * 2
    assert times[3] - times[2] >= 0.8  # 0.2 * 4
    retries = metrics_of(output)["retries"]
    assert (retries["http_429"], retries["http_5xx"], retries["dropped"], retries["timeout"]) == (1, 1, 1, 0)
    assert len(read(output)) == 4


def test_timeout_is_retried(tmp_path: Path) -> None:
    records = fake_records(3)
    csv = write_csv(tmp_path / "summary.csv", records)
    output = tmp_path / "rna.fasta"
    with FakeEutils(records) as server:
        server.faults = [Fault("slow", seconds=1.0)]
        assert download_rna_sequences.main(common(server, csv, output, "--timeout", "0.3")) == 0
    assert metrics_of(output)["retries"]["timeout"] == 1 and len(read(output)) == 3


def test_rate_limit_is_held(tmp_path: Path) -> None:
    records = fake_records(12)
    csv = write_csv(tmp_path / "summary.csv", records)
    output = tmp_path / "rna.fasta"
    with FakeEutils(records) as server:
        argv = common(server, csv, output, "--batch_size", "1")
        argv[argv.index("--requests_per_second") + 1] = "8"  # tighter than Biopython's 10/s with a key
        assert download_rna_sequences.main(argv) == 0
    times = [entry.time for entry in server.log]
    assert len(times) == 12
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert sum(gaps) / len(gaps) >= 0.125 and min(gaps) >= 0.125 * 0.85  # server-side times carry some jitter
    assert max(sum(1 for t in times if start <= t < start + 1.0) for start in times) <= 8


def test_missing_ids_are_listed_and_not_asked_again(tmp_path: Path) -> None:
    records = fake_records(20)
    ids = list(records)
    unknown = [("NM_999990.1", 100), ("NM_999991.2", 100), ("NM_999992.1", 100)]
    csv = write_csv(tmp_path / "summary.csv", records, extra=unknown, wrong_length={ids[5]})
    output = tmp_path / "rna.fasta"
    with FakeEutils(records) as server:
        server.faults = [Fault("omit", omit=frozenset(ids[:2]))]
        argv = common(server, csv, output, "--batch_size", "10")
        assert download_rna_sequences.main(argv) == 0
        expected_missing = [ids[5]] + [a for a, _ in unknown]
        assert record_of(output, "missing_ids.txt").read_text().split() == expected_missing
        # the batch is stored first, the two ids it lacked after their re-ask
        assert [a for a, _ in read(output)] == ids[2:5] + ids[6:10] + ids[:2] + ids[10:]
        metrics = metrics_of(output)
        assert metrics["missing_by_reason"] == {"length_mismatch": 1, "not_returned": 3}
        assert metrics["individual_reasks"] == 2 + 1 + 3
        before = len(server.log)
        assert download_rna_sequences.main(argv) == 0
        assert len(server.log) == before
    metrics = metrics_of(output)
    assert (metrics["already_present"], metrics["already_missing"], metrics["requests"]) == (19, 4, 0)


def test_rejected_api_key_is_one_line(tmp_path: Path, capsys) -> None:
    records = fake_records(3)
    csv = write_csv(tmp_path / "summary.csv", records)
    with FakeEutils(records) as server:
        server.faults = [Fault("400", body='{"error":"API key invalid","api-key":"secret-key"}')]
        assert download_rna_sequences.main(common(server, csv, tmp_path / "rna.fasta")) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "--api_key: NCBI rejected it" in lines[0] and "secret-key" not in lines[0]
    assert len(server.log) == 1  # a bad key is not retried


def test_no_network_is_one_line(tmp_path: Path, capsys) -> None:
    csv = write_csv(tmp_path / "summary.csv", fake_records(3))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/entrez/eutils/"
    argv = ["--csv", str(csv), "--output", str(tmp_path / "rna.fasta"), "--eutils_url", url, "--log_level", "error"]
    assert download_rna_sequences.main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"cannot reach {url}" in err and "pass --source synthetic to work offline" in err
    assert not (tmp_path / "rna.fasta").exists()
    assert json.loads(record_of(tmp_path / "rna.fasta").read_text())["status"] == "failed"
    assert metrics_of(tmp_path / "rna.fasta")["requests_per_second_limit"] == 3.0  # NCBI's limit without a key


@pytest.mark.parametrize("problem", ["absent", "header", "prefix"])
def test_bad_csv_is_one_line_naming_the_file(tmp_path: Path, capsys, problem: str) -> None:
    csv = tmp_path / "summary.csv"
    if problem == "header":
        csv.write_text("accession,length\nNM_000001.1,100\n")
    elif problem == "prefix":
        csv.write_text('ID,Sequence_len,Description\nXR_000001.1,100,"x"\n')
    argv = ["--csv", str(csv), "--output", str(tmp_path / "rna.fasta"), "--log_level", "error"]
    assert download_rna_sequences.main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and str(csv) in lines[0]
    assert not record_of(tmp_path / "rna.fasta").exists()


def test_shares_a_folder_with_other_runs_and_refuses_a_changed_selection(tmp_path: Path, capsys) -> None:
    """The record is named after the FASTA: a folder holding NCBI's CSVs and another stage's record, or a
    second download, is no obstacle; appending another selection to the same FASTA is."""
    records = fake_records(4, prefix="NM_")
    xm = fake_records(2, 1, "XM_")
    folder = tmp_path / "GRCh38_genomic_dataset"
    csv = write_csv(folder / "GRCh38_latest_rna_summary.csv", {**records, **xm})
    (folder / "args.json").write_text(json.dumps({"stage": "prepare_autoregressive_data", "status": "completed"}))
    with FakeEutils({**records, **xm}) as server:
        output = folder / "rna_sequences.fasta"
        assert download_rna_sequences.main(common(server, csv, output)) == 0
        second = folder / "xm_sequences.fasta"
        assert download_rna_sequences.main(common(server, csv, second, "--prefixes", "XM_")) == 0
        assert download_rna_sequences.main(common(server, csv, output, "--prefixes", "XM_")) == 2
        assert "different --prefixes" in capsys.readouterr().err
        assert download_rna_sequences.main(common(server, csv, output, "--prefixes", "XM_", "--overwrite")) == 0
    assert [a for a, _ in read(output)] == list(xm) == [a for a, _ in read(second)]
    assert json.loads((folder / "args.json").read_text())["stage"] == "prepare_autoregressive_data"


def test_seeds_paths_are_the_defaults(tmp_path: Path, capsys, monkeypatch) -> None:
    """`download_rna_sequences.py --max_sequences N` as the seeds print it reads and writes their paths."""
    records = fake_records(3)
    monkeypatch.chdir(tmp_path)
    assert download_rna_sequences.main(["--max_sequences", "2", "--log_level", "error"]) == 2
    line = capsys.readouterr().err.strip()
    assert "GRCh38_genomic_dataset/GRCh38_latest_rna_summary.csv: file not found" in line and "\n" not in line
    write_csv(tmp_path / "GRCh38_genomic_dataset" / "GRCh38_latest_rna_summary.csv", records)
    with FakeEutils(records) as server:
        argv = ["--max_sequences", "2", "--eutils_url", server.url, "--retry_base_delay", "0.05", "--log_level", "error"]
        assert download_rna_sequences.main(argv) == 0
    assert len(read(tmp_path / "GRCh38_genomic_dataset" / "rna_sequences.fasta")) == 2


def test_help_explains_every_flag() -> None:
    parser = download_rna_sequences.build_parser()
    text = parser.format_help()
    for action in parser._actions:
        if action.dest == "help":
            continue
        assert action.help and len(action.help) > 20, action.dest
        assert action.option_strings[0] in text
    assert text.count("(default:") >= len(parser._actions) - 1
    for flag in ("--retry_base_delay", "--requests_per_second", "--eutils_url", "--prefixes", "--timeout"):
        assert flag in text


@pytest.mark.skipif(not REAL_FASTA.is_file(), reason="shared reference data absent")
def test_real_refseq_records_round_trip(tmp_path: Path) -> None:
    real = {}
    for record in iter_fasta(REAL_FASTA):
        accession, _ = parse_header(record.header)
        real[accession] = (record.header.split("| ", 1)[-1], record.sequence)
        if len(real) == 15:
            break
    csv = write_csv(tmp_path / "summary.csv", real)
    output = tmp_path / "rna.fasta"
    with FakeEutils(real) as server:
        assert download_rna_sequences.main(common(server, csv, output, "--batch_size", "6")) == 0
    fetched = list(iter_fasta(output))
    assert [(parse_header(r.header)[0], r.sequence) for r in fetched] == [(a, s) for a, (_, s) in real.items()]
    assert [parse_header(r.header)[1] for r in fetched] == [parse_header(f"{a} {d}")[1] for a, (d, _) in real.items()]
