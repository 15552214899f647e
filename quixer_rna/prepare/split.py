"""Splitting: group the units (quixer_rna.grouping for genes and families; transcripts and blocks stand alone),
shuffle whole groups into train, val and test by their share of windows, and leave guards between blocks of one
record that went to different splits."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

import numpy as np

from ..errors import UserError
from ..formats.kmer_stream import window_layout
from ..grouping import Member, group_transcripts, read_gene_map
from ..progress import Progress
from .collect import Unit
from .config import PrepareConfig, window_span

LOG = logging.getLogger("quixer_rna.prepare")


def assign_splits(
    unit_windows: dict[str, int], val_fraction: float, test_fraction: float, seed: int, unit: str = "gene"
) -> dict[str, str]:
    """Map each unit (gene, family, transcript or block) to a split, keeping units whole. Deterministic for a
    seed: the sorted units are shuffled, then test and val are filled to their fractions of all windows. A split
    with a positive fraction always gets at least one unit; train always does."""
    order = sorted(unit_windows)
    random.Random(seed).shuffle(order)
    total = sum(unit_windows.values())
    wanted = [(split, fraction) for split, fraction in (("test", test_fraction), ("val", val_fraction)) if fraction > 0]
    if len(order) < len(wanted) + 1:
        names = ", ".join(["train"] + [split for split, _ in wanted])
        hint = ("a chromosome or genome needs --split_by region" if unit in ("gene", "transcript", "family")
                else "lower --block_size")
        raise UserError(
            f"--split_by {unit}: only {len(order)} {unit}(s) with windows, too few for {names}; give more "
            f"sequences ({hint}) or set --val_fraction/--test_fraction to 0"
        )
    assignment: dict[str, str] = {}
    position = 0
    for rank, (split, fraction) in enumerate(wanted):
        held = 0
        later = len(wanted) - rank  # splits after this one that each need a unit, train included
        while position < len(order) - later and (held == 0 or held < fraction * total):
            assignment[order[position]] = split
            held += unit_windows[order[position]]
            position += 1
    for name in order[position:]:
        assignment[name] = "train"
    return assignment


def apply_guards(config: PrepareConfig, units: list[Unit], split_of: list[str]) -> int:
    """Leave out the first window span of every block whose preceding block of the same record went to another
    split (k-mers starting there are dropped); returns the bases left out."""
    guard = window_span(config.k, config.stride, config.window_size)
    first_kept = -(-guard // config.stride)
    left_out = 0
    for i in range(1, len(units)):
        before, unit = units[i - 1], units[i]
        if before.record != unit.record or before.block != unit.block - 1 or split_of[i - 1] == split_of[i]:
            continue
        runs = unit.runs.copy()
        ends = runs[:, 0] + runs[:, 1]
        runs[:, 0] = np.maximum(runs[:, 0], first_kept)
        runs[:, 1] = ends - runs[:, 0]
        unit.runs = runs[runs[:, 1] > 0]
        layout = np.zeros((len(unit.runs), 4), dtype=np.int64)
        layout[:, 1], layout[:, 3] = unit.runs[:, 1], unit.runs[:, 0]
        unit.n_windows = int(window_layout(layout, config.window_size, config.window_step)[1].sum())
        left_out += min(guard, unit.length)
    return left_out


@dataclass
class Units:
    """Every kept unit's split, its gene as written to the streams (the unit kept whole), its own gene and how the
    gene was decided."""

    split: list[str]
    group: list[str]
    gene: list[str]
    source: list[str]
    grouping: dict


def split_units(config: PrepareConfig, units: list[Unit]) -> Units:
    """Group (gene, family, transcript or block), then assign whole groups to splits."""
    if config.split_by == "region":
        names = [u.accession for u in units]
        group, gene, source, stats = names, names, ["region"] * len(units), {"groups": len(units)}
    elif config.split_by == "transcript":
        group = [u.accession for u in units]
        gene = [u.header_gene or u.accession.split(".")[0] for u in units]
        source, stats = ["transcript"] * len(units), {"groups": len(units)}
    else:
        gene_map = read_gene_map(config.gene_map, config.gene_map_column) if config.gene_map else None
        members = [Member(u.accession, u.header_gene, u.locus, u.ids, u.runs) for u in units]
        with Progress(len(members), "grouping", unit="transcript", every=config.log_every) as progress:
            grouping = group_transcripts(members, family=config.split_by == "family", gene_map=gene_map, k=config.k,
                                         stride=config.stride, min_run=config.family_min_run,
                                         min_anchors=config.family_min_anchors, progress=progress.update)
        group, gene, source, stats = grouping.group, grouping.gene, grouping.source, grouping.stats
        if gene_map is not None:
            missing = sum(s != "map" for s in source)
            if missing == len(units):
                raise UserError(f"--gene_map {config.gene_map}: names none of the {len(units)} transcripts; its first "
                                "column must hold the FASTA headers' first word (or their accession)")
            if missing:
                LOG.warning("--gene_map %s: %d of %d transcripts are not in it; they are grouped by their header, an "
                            "overlapping locus or shared sequence instead (see splits.tsv)", config.gene_map, missing,
                            len(units))
        unnamed = sum(s in ("locus", "sequence") for s in source)
        if unnamed and config.split_by == "gene":
            LOG.info("%d of %d transcripts name no gene in their header%s: grouped by overlapping locus or shared "
                     "sequence (%s)", unnamed, len(units), "" if gene_map is None else " or --gene_map", stats)
    windows: dict[str, int] = {}
    for name, unit in zip(group, units):
        windows[name] = windows.get(name, 0) + unit.n_windows
    unit_split = assign_splits(windows, config.val_fraction, config.test_fraction, config.seed, config.split_by)
    return Units([unit_split[name] for name in group], group, gene, source, stats)


def split_rule(config: PrepareConfig) -> str:
    unit = {"gene": "genes (or groups sharing locus or sequence where no gene is named)",
            "family": "families (genes sharing sequence)", "transcript": "transcripts",
            "region": f"blocks of {config.block_size} nt, a guard of one window span where the split changes"}
    return f"whole {unit[config.split_by]}, seeded shuffle, test then val filled to their fraction of windows"
