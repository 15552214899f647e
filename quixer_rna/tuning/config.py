"""The tune stage's settings as one typed config, built once at the script boundary
(`quixer_rna.cli.config_from_args`); the script's flags are generated from its fields.

The settings every trial passes to the trainer, and the model's own settings a study fixes (Quixer's
initialisation, layerwise training and frozen circuit; the bottleneck's width; the feature norm of both), take
their default, help and argparse type from the trainer's and the model's config fields: one definition of each
setting.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..cli import positive_float, positive_int
from ..errors import UserError
from ..models import config_class
from ..models.bottleneck import BottleneckConfig
from ..models.quixer import QuixerConfig
from ..training import TrainConfig
from .space import MODELS, SCOPES, TRAINING

# Flags of each group of the script's --help (the others are the study's); add_common_args makes COMMON_FLAGS.
TRIAL_FLAGS = ("patience", "patience_epochs", "plateau_margin", "batch_size", "max_steps_per_epoch", "eval_every",
               "val_windows", "log_every")
MODEL_FLAGS = ("init_strategy", "use_layerwise_training", "layerwise_epochs", "freeze_circuit", "features",
               "normalise_features")
COMMON_FLAGS = ("seed", "device", "overwrite")


def _source(cls: type, name: str) -> dataclasses.Field:
    return next(item for item in dataclasses.fields(cls) if item.name == name)


def _trainer(name: str) -> Any:
    """A setting every trial passes to the trainer: TrainConfig's default, help and type."""
    source = _source(TrainConfig, name)
    return field(default=source.default, metadata=dict(source.metadata))


def _model_setting(model: str, cls: type, name: str) -> Any:
    """A model's own setting the whole study fixes: its config field's help and type; unset (None, or off for
    a switch) means the model's default."""
    source = _source(cls, name)
    switch = isinstance(source.default, bool)
    text = f"{model} only: {source.metadata['help']}" + ("" if switch else "; default the model's")
    return field(default=False if switch else None, metadata={**source.metadata, "help": text, "model": model})


@dataclass
class TuneConfig:
    """One process's part of a study: what to tune, where the study lives, the protocol every trial shares
    with the final training, and the model's settings fixed for the whole study."""

    data_dir: str = field(metadata={"required": True, "help": "token folder (quantize_lambeq_embeddings.py or "
                                                              "prepare_classical_benchmarks.py output)"})
    model: str = field(default="quixer", metadata={"choices": MODELS, "help": "which model to tune"})
    output_dir: str | None = field(default=None, metadata={
        "help": "where trials and summaries go; default runs/tune_<model>"})
    n_trials: int = field(default=30, metadata={
        "type": positive_int,
        "help": "trials with a value (complete or pruned) the study should hold in total; TPE draws the first "
                "third of them (5 to 10) at random, so ask for at least twice that"})
    epochs_per_trial: int = field(default=50, metadata={
        "type": positive_int,
        "help": "maximum epochs of each trial: the final training's --epochs, so that with the same --patience "
                "and --eval_every a trial trains as long as the final run"})
    timeout: float | None = field(default=None, metadata={
        "type": positive_float, "help": "start no new trial after this many seconds (a running one finishes)"})
    search_scope: str = field(default="model", metadata={
        "choices": SCOPES,
        "help": "model: the model's default space (learning rate, weight decay, dropout, embedding, and its width "
                "and depth); training: the learning rate, weight decay and dropout only, every size at its "
                "config default or as --search_space fixes it (the same 3 dimensions for every model)"})
    search_space: str | None = field(default=None, metadata={
        "help": 'JSON file or inline JSON changing the search, e.g. \'{"qubits": [4, 6], "lr": [1e-3, 5e-3], '
                '"qsvt_degree": 3}\': two numbers = a range (log scale for lr, weight_decay, init_std), another '
                "list = choices, a single value = fixed; any setting of the model's config, or lr, weight_decay, "
                "warmup_steps, grad_clip"})
    storage: str | None = field(default=None, metadata={
        "help": "Optuna storage shared by every process of the study: a database URL (sqlite:///f.db, "
                "postgresql://...) or a journal file path ending in .log/.journal; default sqlite "
                "<output_dir>/study.db"})
    study_name: str | None = field(default=None, metadata={
        "help": "name of the study in --storage; default tune_<model>"})
    heartbeat: int = field(default=30, metadata={
        "type": positive_int,
        "help": "seconds between a running trial's heartbeats (database storages); a trial silent for twice this "
                "long belongs to a dead process and is failed and retried"})

    patience: int = _trainer("patience")
    patience_epochs: float = _trainer("patience_epochs")
    plateau_margin: float = _trainer("plateau_margin")
    batch_size: int | None = _trainer("batch_size")
    max_steps_per_epoch: int = _trainer("max_steps_per_epoch")
    eval_every: int = _trainer("eval_every")
    val_windows: int = _trainer("val_windows")
    log_every: Any = _trainer("log_every")

    init_strategy: str | None = _model_setting("quixer", QuixerConfig, "init_strategy")
    use_layerwise_training: bool = _model_setting("quixer", QuixerConfig, "use_layerwise_training")
    layerwise_epochs: int | None = _model_setting("quixer", QuixerConfig, "layerwise_epochs")
    freeze_circuit: bool = _model_setting("quixer", QuixerConfig, "freeze_circuit")
    features: int | None = _model_setting("bottleneck", BottleneckConfig, "features")
    normalise_features: bool = _model_setting("quixer and bottleneck", QuixerConfig, "normalise_features")

    seed: int = 0
    device: str = "auto"
    overwrite: bool = False

    def __post_init__(self) -> None:
        self.output_dir = self.output_dir or f"runs/tune_{self.model}"
        self.study_name = self.study_name or f"tune_{self.model}"
        own = {item.name for item in dataclasses.fields(config_class(self.model))}
        for item in dataclasses.fields(self):
            if item.name in MODEL_FLAGS and item.name not in own and getattr(self, item.name) not in (None, False):
                raise UserError(f"--{item.name}: a {item.metadata['model']} setting; drop it for --model {self.model}")

    def _model_flags(self) -> dict[str, Any]:
        """The model's own settings this study can fix, set or not."""
        own = {item.name for item in dataclasses.fields(config_class(self.model))}
        return {name: getattr(self, name) for name in MODEL_FLAGS if name in own}

    def model_settings(self) -> dict[str, Any]:
        """The model's own settings given on the command line: a fixed part of every trial."""
        return {name: value for name, value in self._model_flags().items() if value not in (None, False)}

    def comparable(self) -> dict[str, Any]:
        """What makes the study's trials comparable: a study refuses to continue under other values."""
        names = ("model", "search_scope", "epochs_per_trial", "patience", "patience_epochs", "plateau_margin",
                 "batch_size", "max_steps_per_epoch", "eval_every", "val_windows", "seed")
        return {**{name: getattr(self, name) for name in names}, **self._model_flags()}

    def trial_training(self, values: dict[str, Any]) -> TrainConfig:
        """A trial's training settings: the searched or fixed training rates in `values`, and the protocol it
        shares with the final run (epochs, patience on the same evaluation schedule, batch, validation sample).
        Trials never resume (a killed one is retried from the start), so only evaluations write checkpoints."""
        rates = {name: value for name, value in values.items() if name in TRAINING}
        return TrainConfig(**rates, epochs=self.epochs_per_trial, patience=self.patience,
                           patience_epochs=self.patience_epochs,
                           plateau_margin=self.plateau_margin, batch_size=self.batch_size,
                           max_steps_per_epoch=self.max_steps_per_epoch, eval_every=self.eval_every,
                           val_windows=self.val_windows, seed=self.seed, device=self.device,
                           log_every=self.log_every, checkpoint_every=0)

    def plain(self) -> dict[str, Any]:
        """The settings as plain values (args.json)."""
        values = {item.name: getattr(self, item.name) for item in dataclasses.fields(self)}
        values["log_every"] = str(self.log_every)
        return values
