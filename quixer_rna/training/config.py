"""Settings shared by every trainer script (a model's own sizes live with the model, in models/): where the data
come from and the results go (TrainerStageConfig), and how to train (TrainConfig). Field metadata carries each
flag's help and argparse type, so the scripts, the tuner and checkpoints share one definition."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..cli import every, nonnegative_float, nonnegative_int, positive_float, positive_int, share
from ..progress import Every

CPU_BATCH = 32
CUDA_BATCH = 1024
TASKS = ("autoregressive",)
# where early stopping ends a run; a run stopped under one rule may be continued under a more patient one
STOPPING_RULE = ("patience", "patience_epochs", "plateau_margin")


@dataclass(frozen=True)
class TrainerStageConfig:
    """A trainer script's own flags: its input, its output folder and what to do with one holding results."""

    data_dir: str = field(metadata={
        "required": True,
        "help": "token folder: the output of quantize_lambeq_embeddings.py or prepare_classical_benchmarks.py (or "
                "run_classical_prep.sh's OUT_DIR, which holds it as tokens/)"})
    task: str = field(default="autoregressive", metadata={
        "choices": TASKS,
        "help": "tokens 1..L-1 of a window predict token L (the only task; kept for the seeds' commands)"})
    output_dir: str | None = field(default=None, metadata={
        "help": "where checkpoints, metrics and curves go; default runs/<model>"})
    config: str | None = field(default=None, metadata={
        "help": "JSON file of flag values (e.g. the tuner's best_params.json); flags on the command line override it"})
    overwrite: bool = False


@dataclass
class TrainConfig:
    epochs: int = field(default=50, metadata={"type": positive_int, "help": "maximum number of epochs"})
    batch_size: int | None = field(default=None, metadata={
        "type": positive_int,
        "help": "windows per optimiser step, the global batch under torchrun; default 32 on CPU, 1024 on CUDA (a batch "
                "that fills a GPU: smaller ones leave it waiting on kernel launches)"})
    eval_batch_size: int = field(default=256, metadata={"type": positive_int,
                                                        "help": "windows per forward pass when evaluating"})
    lr: float = field(default=2e-3, metadata={"type": positive_float, "help": "peak learning rate of AdamW"})
    weight_decay: float = field(default=0.01, metadata={
        "type": nonnegative_float,
        "help": "AdamW's decoupled weight decay, on weight matrices only (not on biases, norms, embeddings or a "
                "circuit's angles and coefficients)"})
    grad_clip: float = field(default=5.0, metadata={"type": nonnegative_float,
                                                    "help": "max gradient norm; 0 = no clipping"})
    warmup_steps: int = field(default=0, metadata={
        "type": nonnegative_int, "help": "linear warm-up steps before the cosine decay over all remaining steps"})
    patience: int = field(default=10, metadata={
        "type": nonnegative_int,
        "help": "stop after this many evaluations (the start, epoch ends, and every --eval_every steps) without a "
                "better val loss (and see --patience_epochs); 0 = never stop early"})
    patience_epochs: float = field(default=1.0, metadata={
        "type": nonnegative_float,
        "help": "and stop only once the best val loss is this many epochs of training old: with an evaluation "
                "every few hundred steps, --patience alone shrinks (in epochs) as the data grow (3 evaluations of "
                "500 steps are 1.9 epochs of 500 RefSeq mRNAs, 0.26 of 4,000), and a model still on the unigram "
                "plateau it starts from is stopped there; 0 = evaluations alone"})
    plateau_margin: float = field(default=0.0, metadata={
        "type": nonnegative_float,
        "help": "nats: while the best val loss is not this far below the train unigram's on the same windows (the "
                "plateau the output bias starts a model on), an evaluation within this much of the best is not "
                "counted by --patience: a flat curve there is a model that has not left the plateau yet, a rising "
                "one is overfitting and counts; 0 = every evaluation counts"})
    max_steps_per_epoch: int = field(default=0, metadata={
        "type": nonnegative_int,
        "help": "cap on optimiser steps per epoch (a fresh random subset each epoch); 0 = all windows"})
    eval_every: int = field(default=0, metadata={
        "type": nonnegative_int,
        "help": "also evaluate on val every this many optimiser steps (a point of the training curve, a chance "
                "for a better best checkpoint); 0 = at epoch ends only"})
    val_windows: int = field(default=50_000, metadata={
        "type": nonnegative_int,
        "help": "validate on a fixed, seeded sample of this many val windows (all of them when the split is "
                "smaller, or with 0): at full scale val holds ~9 M windows, an hour of Quixer on a CPU core"})
    train_fraction: float = field(default=1.0, metadata={
        "type": share,
        "help": "train on a seeded share of the training genes (whole genes; a smaller share's genes are part "
                "of a larger one's), for data-scaling curves; 1 = all"})
    seed: int = field(default=0, metadata={"type": nonnegative_int,
                                           "help": "random seed; the same seed gives the same outputs"})
    device: str = field(default="auto", metadata={
        "help": "where to compute: 'auto' (CUDA when present, else CPU), 'cpu', 'cuda' or 'cuda:N'"})
    checkpoint_every: int = field(default=200, metadata={
        "type": nonnegative_int,
        "help": "also save checkpoint_last.pt every this many steps (besides every evaluation); 0 = evaluations only"})
    log_every: Every = field(default=Every(seconds=60), metadata={
        "type": every,
        "help": "without a terminal (a log file), log a progress line every N steps or every Ns / Nm of wall "
                "time: step, loss, windows/s, ETA"})

    def resolved(self, device_type: str) -> "TrainConfig":
        """This config with the device-dependent defaults filled in."""
        if self.batch_size is not None:
            return self
        return dataclasses.replace(self, batch_size=CUDA_BATCH if device_type == "cuda" else CPU_BATCH)

    def result_settings(self) -> dict[str, Any]:
        """The settings that change the training trajectory: a resume must not mix two of them. The stopping
        rule is not one of them: it only decides where the trajectory ends (see `stopping_rule`)."""
        skip = {"eval_batch_size", "device", "checkpoint_every", "log_every", *STOPPING_RULE}
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}

    def stopping_rule(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in STOPPING_RULE}

    def plain(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["log_every"] = str(self.log_every)
        return values
