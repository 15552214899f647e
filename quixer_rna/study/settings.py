"""What a study run is made of: the study's settings (one dataclass, the default and the quick preset) and
the choices of one command line (data, --out, device, seeds, tuning, fractions, tracks, models, jobs).

The default settings keep the default run (500 transcripts, one seed) under 10 minutes and --quick under 2
minutes on a 2-core CPU with no GPU; the report shows the recorded values and each stage's wall time.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TRACKS = ("clusters", "raw")
# Choices that grow a study: they may change between runs of one --out (adding only the new runs); a change
# of any other recorded value would reuse stages made with other settings, so it is refused.
GROWING = frozenset({"seeds", "tune", "train_fractions", "models"})


def _setting(default: Any, help: str, *, recorded: bool = True) -> Any:
    """A settings field; `recorded` ones are copied into timings.json (and the report)."""
    return field(default=default, metadata={"help": help, "recorded": recorded})


@dataclass(frozen=True)
class Settings:
    """The study's fixed settings (the command line picks data, seeds, tuning, fractions and tracks)."""

    seed: int = _setting(0, "seed of every data stage, reference, tuner and the report's bootstrap")
    synthetic_transcripts: int = _setting(500, "synthetic transcripts when no --fasta / --csv is given")
    k: int = _setting(6, "k-mer length (nt); non-overlapping k-mers (stride = k)")
    window_size: int = _setting(32, "k-mers per window: 31 of context, then the target")
    min_length: int = _setting(200, "shorter transcripts are skipped (and counted)")
    encode_embedding_dim: int = _setting(64, "lambeq circuit embedding size per k-mer")
    n_clusters: int = _setting(512, "k-means clusters = token vocabulary of the cluster track")
    epochs: int = _setting(5, "epochs of every neural model (early stopping on val loss)")
    patience: int = _setting(10, "evaluations without a better val loss before a neural model stops")
    plateau_margin: float = _setting(
        0.0, "nats: until the best val loss is this far below the train unigram's, a val loss within this of the "
             "best is not counted by patience (0: every evaluation counts)")
    batch_size: int = _setting(64, "windows per optimiser step")
    max_steps_per_epoch: int = _setting(300, "cap on optimiser steps per epoch (a fresh random subset each epoch)")
    eval_every: int = _setting(200, "a point of every training curve (and a chance for the best checkpoint)")
    val_windows: int = _setting(10000, "validation on a fixed seeded sample of this many windows")
    checkpoint_every: int = _setting(100, "trainer steps between checkpoints, besides every evaluation",
                                     recorded=False)
    # model sizes: the study's, in the default run too, so the default run previews the study's models and
    # stays inside its 10 minutes (the paper's n = 6, L = 4, d = 3 at embedding 128 took it to 11 min)
    quixer_embedding_dim: int = _setting(64, "Quixer's token embedding (the paper uses 512)")
    quixer_qubits: int = _setting(4, "qubits n of Quixer's circuit (the paper: 6)")
    quixer_ansatz_layers: int = _setting(2, "ansatz layers L of Quixer's per-token circuits (the paper: 4)")
    quixer_qsvt_degree: int = _setting(2, "degree d of Quixer's QSVT polynomial (the paper: 3)")
    baseline_embedding_dim: int = _setting(64, "LSTM, Transformer, FNet and bottleneck width")
    ngram_order: int = _setting(3, "order of the n-gram reference")
    markov_max_order: int = _setting(10, "the nucleotide Markov reference tries orders 0..this on val")
    tune_epochs: int = _setting(2, "with --tune N: epochs per trial (every model the same)")
    tune_space_quixer: dict[str, Any] | None = _setting(
        None, "with --tune N: Quixer's --search_space (None: the model's default space)", recorded=False)
    tune_space_classical: dict[str, Any] | None = _setting(
        None, "with --tune N: the classical models' --search_space (None: each model's default space)", recorded=False)
    tune_space_bottleneck: dict[str, Any] | None = _setting(
        None, "with --tune N: the bottleneck control's --search_space (None: its default space)", recorded=False)
    circuit_windows: str = _setting("0:256", "test windows quixer_circuit.py measures the cost and the shot curve on",
                                    recorded=False)
    circuit_windows_per_transcript: int = _setting(
        0, "instead of circuit_windows: this many windows from every test transcript (0: circuit_windows)",
        recorded=False)
    circuit_trajectories: int = _setting(
        0, "Pauli-error trajectories per window and error count in quixer_circuit.py (0: the global noise "
           "approximation only)", recorded=False)
    circuit_max_errors: int = _setting(48, "the most two-qubit errors per run the trajectories sample", recorded=False)
    bootstrap: int = _setting(1000, "bootstrap replicates (each resamples test genes and every model's seeds) per "
                                    "interval in the report")
    margin: float = _setting(0.01, "equivalence margin (nats per target) of the report's two one-sided tests")

    def converging(self, quick: bool = False) -> "Settings":
        """The study protocol (--protocol converge): every neural model over whole epochs until its validation
        loss stops improving for `patience` evaluations (the report marks one that hit the epoch budget first),
        tuning trials as long as the final runs, and model sizes that converge inside a study's budget on a
        2-core machine."""
        return dataclasses.replace(self, **(QUICK_CONVERGE if quick else CONVERGE))

    @classmethod
    def quick(cls) -> "Settings":
        """--quick: the same stages on a smaller problem (used by the end-to-end tests); with --tune N it
        searches small models only."""
        return cls(synthetic_transcripts=60, n_clusters=32, epochs=2, max_steps_per_epoch=10, eval_every=5,
                   val_windows=2000, checkpoint_every=5, quixer_embedding_dim=16, quixer_qubits=3,
                   quixer_ansatz_layers=1, quixer_qsvt_degree=2, baseline_embedding_dim=16, markov_max_order=4,
                   tune_epochs=1,
                   tune_space_quixer={"qubits": 3, "ansatz_layers": 1, "qsvt_degree": 2, "embedding_dim": 16},
                   tune_space_classical={"embedding_dim": 16, "num_layers": 1},
                   tune_space_bottleneck={"embedding_dim": 16},
                   circuit_windows="0:8", bootstrap=200)


# The study protocol: whole epochs (no step cap) up to an epoch budget, an evaluation every 500 steps of 256
# windows (128k windows: 0.6 of an epoch of the 500 RefSeq transcripts, 0.09 of the 4,000), patience 3
# evaluations once the best is an epoch old (the trainer's --patience_epochs default), where an evaluation within
# 0.01 nats (the report's equivalence margin) of a best still on the unigram plateau does not count (Quixer on raw
# 6-mers can sit on that plateau for two epochs of the 4,000 mRNAs before it leaves it), tuning trials as long as
# the final runs (Quixer's tuned with 2 ansatz layers, as trained untuned), the circuit measured on windows of
# every test transcript with Pauli-error trajectories. The default model sizes (width 64, a Quixer of 4 qubits,
# 2 ansatz layers, degree 2) converge in minutes per epoch on one CPU thread.
CONVERGE = dict(epochs=12, max_steps_per_epoch=0, batch_size=256, eval_every=500, patience=3,
                plateau_margin=0.01, tune_epochs=12,
                tune_space_quixer={"ansatz_layers": 2}, circuit_windows_per_transcript=2, circuit_trajectories=16)
QUICK_CONVERGE = dict(epochs=3, max_steps_per_epoch=0, batch_size=256, eval_every=20, patience=2,
                      plateau_margin=0.01, tune_epochs=2,
                      val_windows=1000, circuit_windows_per_transcript=1, circuit_trajectories=2, circuit_max_errors=8)
PROTOCOLS = ("capped", "converge")
SEARCH_SCOPES = ("model", "training")  # the tuner's --search_scope choices (tuning.space.SCOPES, not imported here
# to keep the study's command line free of optuna and torch)


@dataclass(frozen=True)
class Choices:
    """One command line's choices. Paths are absolute (the run records compare commands as text); seeds and
    fractions keep the text given, which names the run folders (`f0.5_seed1`)."""

    out: Path
    fasta: tuple[Path, ...] = ()
    csv: str | None = None
    email: str | None = None
    quick: bool = False
    device: str = "auto"
    seeds: tuple[str, ...] = (str(Settings.seed),)
    tune: int = 0
    train_fractions: tuple[str, ...] = ("1",)
    tracks: tuple[str, ...] = TRACKS
    jobs: int = 2
    protocol: str = "capped"
    gene_map: Path | None = None
    split_by: str = "gene"
    normalise_features: bool = False
    search_scope: str = "model"  # with --tune: each model's whole space, or the training settings at fixed sizes
    models: tuple[str, ...] = ()  # the neural models to run (empty: every model of the protocol)

    @property
    def converging(self) -> bool:
        return self.protocol == "converge"

    @property
    def synthetic(self) -> bool:
        return not self.fasta and self.csv is None

    @property
    def source(self) -> str:
        return "FASTA" if self.fasta else "NCBI RefSeq" if self.csv is not None else "synthetic"

    @property
    def token_tracks(self) -> tuple[str, ...]:
        """The chosen tracks in the study's order."""
        return tuple(track for track in TRACKS if track in self.tracks)


def _decoded(text: str) -> Any:
    """A value as timings.json has always stored it: JSON where the text parses as JSON, else the text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def recorded_settings(settings: Settings, choices: Choices) -> dict[str, Any]:
    """timings.json's "settings": the data source, the choices, then every recorded setting."""
    inputs = " ".join(map(str, choices.fasta)) if choices.fasta else choices.csv
    head = {
        "source": choices.source,
        "inputs": inputs,
        "synthetic": choices.synthetic,
        "quick": choices.quick,
        "seed": settings.seed,
        "seeds": _decoded(",".join(choices.seeds)),
        "tune": choices.tune,
        "train_fractions": _decoded(",".join(choices.train_fractions)),
        "tracks": _decoded(",".join(choices.tracks)),
        "models": ",".join(choices.models) or "all",
        "protocol": choices.protocol,
        "gene_map": None if choices.gene_map is None else str(choices.gene_map),
        "split_by": choices.split_by,
    }
    if inputs is not None:
        head["inputs"] = _decoded(inputs)
    rest = {item.name: getattr(settings, item.name) for item in dataclasses.fields(settings)
            if item.metadata["recorded"] and item.name not in head}
    return {**head, **rest}
