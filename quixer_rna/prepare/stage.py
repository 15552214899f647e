"""The prepare stage itself: read, group and split, write each split's k-mer stream, splits.tsv, the leak figure
(leak.tsv, one warning line above the threshold) and metadata.json last, inside the stage's run record."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

from ..cli import config_record
from ..formats import SPLITS
from ..formats.kmer_stream import (
    LEAK_FILE,
    SplitCounts,
    StreamMetadata,
    StreamWriter,
    kmer_dtype,
    open_stream,
    write_leak_table,
    write_sentences_export,
)
from ..leak import QUERY_SPLITS, leak_figure
from ..progress import Progress
from ..runio import atomic_open
from ..stage import stage_run
from .collect import Collected, Unit, collect, no_window_error
from .config import PrepareConfig, check_config, window_span
from .split import Units, apply_guards, split_rule, split_units

LOG = logging.getLogger("quixer_rna.prepare")

STAGE = "prepare_autoregressive_data"
SPLITS_FILE = "splits.tsv"


def _write_splits_table(path: Path, units: list[Unit], split: Units, found: Collected) -> None:
    with atomic_open(path) as handle:
        handle.write("accession\tgene\tgroup\tgene_source\tsplit\twindows\tlength\n")
        for i, unit in enumerate(units):
            handle.write(f"{unit.accession}\t{split.gene[i]}\t{split.group[i]}\t{split.source[i]}\t{split.split[i]}\t"
                         f"{unit.n_windows}\t{unit.length}\n")
        for accession, gene, length, reason in found.skipped_rows:
            handle.write(f"{accession}\t{gene}\t-\t-\tskipped:{reason}\t0\t{length}\n")


def write_split(output_dir: Path, split: str, members: list[tuple[Unit, str]], k: int) -> dict[str, Any]:
    """The k-mer stream of one split: every member's ids, run by run, under its group's name."""
    writer = StreamWriter(output_dir, split, k)
    try:
        for unit, group in members:
            writer.add_runs(unit.accession, group, unit.length, unit.ids, unit.runs)
    except BaseException:
        writer.abort()
        raise
    return writer.close()


def _leak(config: PrepareConfig, output_dir: Path, metadata: StreamMetadata) -> dict[str, Any]:
    """The leak figure of val and test against train, its table (leak.tsv) and one warning line above the threshold."""
    rule = {"length": config.leak_length, "threshold": config.leak_threshold,
            "positions": "every k-mer start of val and test, against every position of train"}
    if config.stride > config.k:
        return {**rule, "computed": False, "reason": f"--stride {config.stride} > --k {config.k}: the k-mers leave gaps"}
    streams = {split: open_stream(output_dir, split, metadata) for split in SPLITS}
    with Progress(len(streams["train"].segments), "leak figure", unit="stretch", every=config.log_every) as progress:
        figure, sampled = leak_figure(streams["train"], {s: streams[s] for s in QUERY_SPLITS}, config.leak_length,
                                      config.seed, progress.update)
    write_leak_table(output_dir, {s: (streams[s].transcripts, figure[s]) for s in QUERY_SPLITS})
    summary = {**rule, "computed": True, "sampled": sampled, "file": LEAK_FILE,
               **{s: figure[s].summary() for s in QUERY_SPLITS}}
    worst = max(QUERY_SPLITS, key=lambda s: figure[s].share)
    summary["above_threshold"] = figure[worst].share > config.leak_threshold
    if summary["above_threshold"]:
        LOG.warning("leak: %.1f%% of %s %d-mers (%s %.1f%%) occur in train, above --leak_threshold %.0f%%: %s",
                    100 * figure[worst].share, worst, config.leak_length,
                    "val" if worst == "test" else "test", 100 * figure["val" if worst == "test" else "test"].share,
                    100 * config.leak_threshold, _leak_advice(config, metadata))
    return summary


def _leak_advice(config: PrepareConfig, metadata: StreamMetadata) -> str:
    if config.split_by == "region":
        if metadata.soft_masked_bases == 0:
            return ("repeats shared across blocks, and this FASTA marks none (no lowercase): a soft-masked genome "
                    "(UCSC's, download_rna_sequences.py --source ucsc) with --soft_masked drop leaves them out")
        return "repeats shared across blocks; --soft_masked drop leaves the soft-masked (lowercase) ones out"
    if config.split_by == "transcript":
        return "isoforms sit on both sides; use --split_by gene"
    total = metadata.gene_sources["total"]
    if config.split_by == "gene" and total.get("header", 0) + total.get("map", 0) < metadata.sequences:
        return "transcripts without gene names share sequence; give --gene_map or use --split_by family"
    return "genes of one family (paralogs) share sequence; use --split_by family"


def run_prepare(config: PrepareConfig) -> int:
    """The stage: check flags, read FASTA, group and split, write the streams, the leak figure, metadata and
    splits.tsv."""
    begin = time.perf_counter()
    check_config(config)
    if config.stride < config.k:
        LOG.warning(
            "--stride %d < --k %d: consecutive k-mers share %d bases, so a target has only %d possible values "
            "given its context; judge models against the n-gram reference", config.stride, config.k,
            config.k - config.stride, 4 ** config.stride,
        )
    with stage_run(config.output_dir, STAGE, config_record(config), role="prepare", overwrite=config.overwrite) as run:
        output_dir = run.output_dir
        phases: dict[str, float] = {}
        mark = time.perf_counter()
        found = collect(config)
        if not found.units:
            raise no_window_error(config, found)
        phases["read"], mark = time.perf_counter() - mark, time.perf_counter()
        split = split_units(config, found.units)
        guard_bases = apply_guards(config, found.units, split.split) if config.split_by == "region" else 0
        phases["group_and_split"], mark = time.perf_counter() - mark, time.perf_counter()

        per_split: dict[str, SplitCounts] = {}
        groups_in: dict[str, set[str]] = {}
        sources: dict[str, dict[str, int]] = {"total": {}}
        for name in SPLITS:
            chosen = [i for i, s in enumerate(split.split) if s == name]
            if not chosen:
                LOG.warning("split %s is empty (its fraction is 0)", name)
            written = write_split(output_dir, name, [(found.units[i], split.group[i]) for i in chosen], config.k)
            groups_in[name] = {split.group[i] for i in chosen}
            sources[name] = {s: sum(split.source[i] == s for i in chosen) for s in sorted(set(split.source))}
            for s, count in sources[name].items():
                sources["total"][s] = sources["total"].get(s, 0) + count
            per_split[name] = SplitCounts(
                sequences=len(chosen),
                transcripts=written["transcripts"],
                genes=len(groups_in[name]),
                windows=sum(found.units[i].n_windows for i in chosen),
                nucleotides=sum(found.units[i].length for i in chosen),
                kmers=written["kmers"],
                segments=written["segments"],
                sha256=written["sha256"],
            )
        shared_groups = len((groups_in["train"] & groups_in["val"]) | (groups_in["train"] & groups_in["test"])
                            | (groups_in["val"] & groups_in["test"]))
        _write_splits_table(output_dir / SPLITS_FILE, found.units, split, found)
        del found.units[:]  # the ids are on disk now; the leak figure reads them from there
        phases["write"], mark = time.perf_counter() - mark, time.perf_counter()

        total_windows = sum(s.windows for s in per_split.values())
        region = config.split_by == "region"
        metadata = StreamMetadata(
            task="autoregressive",
            k=config.k,
            kmer_dtype=str(kmer_dtype(config.k)),
            stride=config.stride,
            window_size=config.window_size,
            window_step=config.window_step,
            window_span_nt=window_span(config.k, config.stride, config.window_size),
            min_length=config.min_length,
            split_by=config.split_by,
            split_rule=split_rule(config),
            val_fraction=config.val_fraction,
            test_fraction=config.test_fraction,
            seed=config.seed,
            synthetic=found.synthetic,
            inputs=found.inputs,
            total_nucleotides=found.nucleotides_read,
            soft_masked=config.soft_masked,
            soft_masked_bases=found.bases["soft_masked"],
            bases_left_out={"non_acgt": found.bases["non_acgt"], "guard": guard_bases,
                            "soft_masked": found.bases["soft_masked"] if config.soft_masked == "drop" else 0},
            sequences=sum(s.sequences for s in per_split.values()),
            genes=sum(s.genes for s in per_split.values()),
            gene_sources=sources,
            grouping={**split.grouping, "gene_map": config.gene_map, "family_min_run": config.family_min_run,
                      "family_min_anchors": config.family_min_anchors}
                     if config.split_by in ("gene", "family") else split.grouping,
            windows=total_windows,
            splits=per_split,
            window_fractions={s: per_split[s].windows / total_windows for s in SPLITS},
            genes_in_more_than_one_split=shared_groups,
            skipped=dict(found.skipped),
            block_size=config.block_size if region else None,
            guard_nt=window_span(config.k, config.stride, config.window_size) if region else None,
        )
        metadata = dataclasses.replace(metadata, leak=_leak(config, output_dir, metadata))
        phases["leak"] = time.perf_counter() - mark
        # metadata.json last: a folder that has it holds a whole stream.
        metadata.write(output_dir)
        if config.write_sentences:
            for name in SPLITS:
                write_sentences_export(open_stream(output_dir, name, metadata), output_dir)
        seconds = time.perf_counter() - begin
        run.finish({
            "sequences": metadata.sequences,
            "genes": metadata.genes,
            "windows": total_windows,
            "splits": {s: {k: v for k, v in dataclasses.asdict(per_split[s]).items() if k != "sha256"} for s in SPLITS},
            "skipped": metadata.skipped,
            "gene_sources": sources,
            "leak": {s: metadata.leak.get(s, {}).get("share") for s in QUERY_SPLITS},
            "synthetic": found.synthetic,
            "bytes_on_disk": sum((output_dir / s / f).stat().st_size for s in SPLITS for f in per_split[s].sha256),
            "seconds": seconds,
            "seconds_by_phase": phases,
        })
    leak = metadata.leak
    LOG.info(
        "%d %s (%d %s) -> windows train %d, val %d, test %d; skipped %s; test %d-mers in train %s; %.1f s%s",
        metadata.sequences, "blocks" if config.split_by == "region" else "transcripts", metadata.genes,
        {"region": "blocks", "family": "families"}.get(config.split_by, "genes" if config.split_by == "gene"
                                                       else "transcripts"),
        per_split["train"].windows, per_split["val"].windows, per_split["test"].windows, found.skipped,
        config.leak_length, f"{100 * leak['test']['share']:.2f}%" if leak["computed"] else "not measured",
        seconds, " [SYNTHETIC data]" if found.synthetic else "",
    )
    return 0
