"""The study as a list of stage runs, computed from the settings and the command line's choices alone (no file
is read): (download ->) prepare -> per token track (the clusters of the lambeq embeddings, raw k-mers) its
tokens, each model's tuning, every neural model per training fraction and seed, the count references, and on
clusters Quixer's circuit cost -> report.

Every stage has its own folder under --out and the exact command that makes it; the runner skips a stage whose
run record holds that command as completed, so a change of flags or their order here reruns old studies.

Where the study grows:
- a neural model: a row of MODELS (its trainer, the flags that pick it, its untuned sizes, its own settings, its
  search space) and its name in a track's `models` (TRACKS_TABLE);
- a count reference: a row of REFERENCES and its name in a track's `references`;
- how every neural model trains: `trainer_flags`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .settings import Choices, Settings

QUIXER_TRAINER = "train_quixer_hybrid.py"
CLASSICAL_TRAINER = "train_classical_baselines.py"
TUNER = "tune_quixer_hybrid.py"
CIRCUIT_FLAGS = ("--shots", "10", "100", "1000", "10000", "--noise_2q", "1e-4", "1e-3", "1e-2")


@dataclass(frozen=True)
class Stage:
    """One stage run: `argv` (interpreter, script, flags) makes `folder`; `track` names the token track whose
    stages run one after another (None: a stage of the whole study); `waits_for` names the stages whose
    outputs it reads."""

    name: str
    folder: Path
    argv: tuple[str, ...]
    track: str | None = None
    waits_for: tuple[str, ...] = ()


@dataclass(frozen=True)
class Model:
    """A neural model: its trainer `script`, the flags after the common ones that pick it there (`select`),
    the sizes of an untuned run (the values a training-scope tuning fixes), its own settings in every run and
    tuning (`own`: Quixer's initialisation, the frozen circuit), and its tuner's search space."""

    name: str
    script: str
    select: tuple[str, ...]
    sizes: Callable[[Settings], dict[str, int]]
    own: tuple[str, ...]
    tune_space: Callable[[Settings], dict | None]

    def size_flags(self, settings: Settings) -> list[str]:
        """An untuned run's flags after `select`: its sizes, then its own settings."""
        return [*(text for name, value in self.sizes(settings).items() for text in (f"--{name}", str(value))),
                *self.own]


def _quixer_sizes(s: Settings) -> dict[str, int]:
    return {"embedding_dim": s.quixer_embedding_dim, "qubits": s.quixer_qubits,
            "ansatz_layers": s.quixer_ansatz_layers, "qsvt_degree": s.quixer_qsvt_degree}


def _baseline_sizes(s: Settings) -> dict[str, int]:
    return {"embedding_dim": s.baseline_embedding_dim}


def _bottleneck_sizes(s: Settings) -> dict[str, int]:
    """Quixer's embedding width and 3n features, n its qubits: the same interface around a classical layer."""
    return {"embedding_dim": s.quixer_embedding_dim, "features": 3 * s.quixer_qubits}


def _bottleneck_space(s: Settings) -> dict:
    """The control keeps the width it controls for: 3n features for Quixer's n qubits (fixed while it is tuned)."""
    return {**(s.tune_space_bottleneck or {}), "features": 3 * s.quixer_qubits}


def _classical(name: str) -> Model:
    return Model(name, CLASSICAL_TRAINER, ("--model", name), _baseline_sizes, (), lambda s: s.tune_space_classical)


QUIXER_INIT = ("--init_strategy", "small_gaussian")
MODELS: dict[str, Model] = {
    "quixer": Model("quixer", QUIXER_TRAINER, (), _quixer_sizes, QUIXER_INIT, lambda s: s.tune_space_quixer),
    **{name: _classical(name) for name in ("lstm", "transformer", "fnet")},
    # The controls for Quixer's circuit (the study protocol trains them beside the others).
    "quixer_frozen": Model("quixer", QUIXER_TRAINER, (), _quixer_sizes, (*QUIXER_INIT, "--freeze_circuit"),
                           lambda s: s.tune_space_quixer),
    "bottleneck": Model("bottleneck", CLASSICAL_TRAINER, ("--model", "bottleneck"), _bottleneck_sizes, (),
                        _bottleneck_space),
}
CONTROLS = ("quixer_frozen", "bottleneck")

# Count references (train_classical_baselines.py --model NAME): their flags besides data, output and seed.
REFERENCES: dict[str, Callable[[Settings], list[str]]] = {
    "ngram": lambda s: ["--order", str(s.ngram_order)],
    "markov": lambda s: ["--max_markov_order", str(s.markov_max_order)],
}


@dataclass(frozen=True)
class Track:
    """A token track: the stage that makes its tokens (its folder under --out), its neural models and its
    count references."""

    tokens: str
    models: tuple[str, ...]
    references: tuple[str, ...]


NEURAL = ("quixer", "lstm", "transformer", "fnet")
# The nucleotide Markov model is the strong count reference of both tracks (on clusters: summed per cluster).
TRACKS_TABLE: dict[str, Track] = {
    "clusters": Track("quantize", NEURAL, ("ngram", "markov")),
    "raw": Track("raw_tokens", NEURAL, ("ngram", "markov")),
}


def protocol_models(track: str, converging: bool) -> tuple[str, ...]:
    """A track's neural models; the study protocol adds the controls for Quixer's circuit."""
    return TRACKS_TABLE[track].models + (CONTROLS if converging else ())


def track_models(track: str, choices: Choices) -> tuple[str, ...]:
    """The neural models a command line runs on a track: the protocol's, or those of them it names (--models)."""
    names = protocol_models(track, choices.converging)
    return tuple(name for name in names if name in choices.models) if choices.models else names


def stopping_flags(settings: Settings) -> list[str]:
    """The stopping rule of every trainer and tuner; the plateau margin only where the protocol sets one, so the
    capped protocol's commands (and the runs recorded under them) stay as they were."""
    margin = settings.plateau_margin
    return ["--patience", str(settings.patience), *(["--plateau_margin", str(margin)] if margin else [])]


def trainer_flags(settings: Settings, choices: Choices, tokens: Path) -> list[str]:
    """The flags every neural model's trainer gets first, tuned or not."""
    s = settings
    return ["--data_dir", str(tokens), "--epochs", str(s.epochs), "--batch_size", str(s.batch_size),
            "--max_steps_per_epoch", str(s.max_steps_per_epoch), "--eval_every", str(s.eval_every),
            *stopping_flags(s), "--val_windows", str(s.val_windows),
            "--checkpoint_every", str(s.checkpoint_every), "--device", choices.device]


def model_flags(choices: Choices, model: Model) -> list[str]:
    """The command line's model settings: --normalise_features reaches Quixer, its frozen twin and the control."""
    return ["--normalise_features"] if choices.normalise_features and model.name in ("quixer", "bottleneck") else []


def tuner_flags(settings: Settings, choices: Choices, tokens: Path, model: Model, folder: Path) -> list[str]:
    """One model's tuner: every model the same budget; the quick preset narrows the search space; the training
    scope searches the training settings at the untuned run's sizes."""
    s = settings
    space = model.tune_space(s)
    training = choices.search_scope == "training"
    if training:
        space = {**(space or {}), **model.sizes(s)}
    return ["--data_dir", str(tokens), "--model", model.name, "--output_dir", str(folder), "--n_trials",
            str(choices.tune), "--epochs_per_trial", str(s.tune_epochs), "--max_steps_per_epoch",
            str(s.max_steps_per_epoch), "--batch_size", str(s.batch_size), "--eval_every", str(s.eval_every),
            *stopping_flags(s), "--val_windows", str(s.val_windows), "--seed", str(s.seed),
            "--device", choices.device, *model.own, *model_flags(choices, model),
            *(["--search_scope", "training"] if training else []),
            *(["--search_space", json.dumps(space)] if space is not None else [])]


def run_tag(seed: str, fraction: str) -> str:
    """A neural run's folder suffix: `seed0`, or `f0.5_seed0` on part of the training data."""
    return f"seed{seed}" if fraction == "1" else f"f{fraction}_seed{seed}"


def fraction_suffix(fraction: str) -> str:
    """A reference's folder suffix: none on all the training data, else `_f0.5`."""
    return "" if fraction == "1" else f"_f{fraction}"


def neural_folder(out: Path, track: str, model: str, tag: str, tuned: bool) -> Path:
    return out / track / "tuned" / f"{model}_{tag}" if tuned else out / track / f"{model}_{tag}"


class _Planner:
    """Builds the list in order; `add` turns every argument into text."""

    def __init__(self, settings: Settings, choices: Choices, root: Path, python: str):
        self.s, self.c, self.root, self.python = settings, choices, root, python
        self.stages: list[Stage] = []

    def add(self, name: str, folder: Path, script: str, args: list, track: str | None = None,
            waits_for: tuple[str, ...] = ()) -> None:
        argv = (self.python, str(self.root / script), *map(str, args))
        self.stages.append(Stage(name, folder, argv, track, waits_for))

    def data(self) -> None:
        s, c, out = self.s, self.c, self.c.out
        fasta: list[Path] = list(c.fasta)
        waits: tuple[str, ...] = ()
        if not c.fasta:
            source = (["--source", "synthetic", "--max_sequences", s.synthetic_transcripts] if c.synthetic
                      else ["--csv", c.csv, "--email", c.email])
            fasta = [out / "data" / "rna.fasta"]
            self.add("download", fasta[0], "download_rna_sequences.py",
                     [*source, "--output", fasta[0], "--seed", s.seed])
            waits = ("download",)
        gene_map = ["--gene_map", c.gene_map] if c.gene_map is not None else []
        if c.split_by != "gene":  # the default is prepare's own, so commands of gene-split studies stay as they were
            gene_map += ["--split_by", c.split_by]
        self.add("prepare", out / "prepare", "prepare_autoregressive_data.py",
                 ["--fasta", *fasta, "--output_dir", out / "prepare", "--k", s.k, "--window_size", s.window_size,
                  "--min_length", s.min_length, "--seed", s.seed, *gene_map], waits_for=waits)

    def clusters_tokens(self) -> None:
        """lambeq embeddings of every k-mer -> k-means cluster tokens."""
        s, c, out = self.s, self.c, self.c.out
        self.add("encode", out / "encode", "lambeq_encoder.py",
                 ["--data_dir", out / "prepare", "--output_dir", out / "encode", "--embedding_dim",
                  s.encode_embedding_dim, "--device", c.device, "--seed", s.seed], "clusters", ("prepare",))
        self.add("quantize", out / "quantize", "quantize_lambeq_embeddings.py",
                 ["--embeddings_dir", out / "encode", "--output_dir", out / "quantize", "--n_clusters", s.n_clusters,
                  "--seed", s.seed], "clusters", ("encode",))

    def raw_tokens(self) -> None:
        """One token per raw k-mer."""
        out = self.c.out
        self.add("raw_tokens", out / "raw_tokens", "prepare_classical_benchmarks.py",
                 ["--data_dir", out / "prepare", "--output_dir", out / "raw_tokens"], "raw", ("prepare",))

    def models(self, track: str) -> None:
        """Each model's tuning (with --tune N), then per fraction every neural model per seed and the references."""
        s, c, out, spec = self.s, self.c, self.c.out, TRACKS_TABLE[track]
        tokens, tuned = out / spec.tokens, c.tune > 0
        names = track_models(track, c)
        if tuned:
            for name in names:
                folder = out / "tune" / track / name
                self.add(f"tune:{track}:{name}", folder, TUNER, tuner_flags(s, c, tokens, MODELS[name], folder), track,
                         (spec.tokens,))
        for fraction in c.train_fractions:
            for seed in c.seeds:
                tag = run_tag(seed, fraction)
                for name in names:
                    if name in CONTROLS and fraction != "1":  # the controls answer a question of the full data
                        continue
                    model = MODELS[name]
                    folder = neural_folder(out, track, name, tag, tuned)
                    sizes = (["--config", out / "tune" / track / name / "best_params.json"] if tuned
                             else [*model.size_flags(s), *model_flags(c, model)])
                    waits = (spec.tokens, f"tune:{track}:{name}") if tuned else (spec.tokens,)
                    self.add(f"{track}:{name}:{tag}", folder, model.script,
                             [*trainer_flags(s, c, tokens), *model.select, "--output_dir", folder, "--seed", seed,
                              "--train_fraction", fraction, *sizes], track, waits)
            for name in spec.references:
                folder = out / track / f"{name}{fraction_suffix(fraction)}"
                self.add(f"{track}:{name}{fraction_suffix(fraction)}", folder, CLASSICAL_TRAINER,
                         ["--data_dir", tokens, "--model", name, *REFERENCES[name](s), "--output_dir", folder,
                          "--seed", s.seed, "--train_fraction", fraction], track, (spec.tokens,))

    def circuit(self) -> None:
        """The first seed's Quixer (on all the training data) as a circuit, with its hardware cost."""
        s, c, out = self.s, self.c, self.c.out
        seed = c.seeds[0]
        quixer = neural_folder(out, "clusters", "quixer", f"seed{seed}", c.tune > 0)
        folder = out / "circuit" / f"clusters_quixer_seed{seed}"
        check = ["--check"] if s.quixer_qubits <= 3 and s.quixer_qsvt_degree <= 2 else []
        windows = (["--windows_per_transcript", s.circuit_windows_per_transcript] if s.circuit_windows_per_transcript
                   else ["--windows", s.circuit_windows])
        trajectories = (["--trajectories", s.circuit_trajectories, "--max_errors", s.circuit_max_errors]
                        if s.circuit_trajectories else [])
        self.add("circuit", folder, "quixer_circuit.py",
                 ["--run_dir", quixer, "--data_dir", out / "quantize", "--output_dir", folder, *windows,
                  "--seed", s.seed, *CIRCUIT_FLAGS, *check, *trajectories], "clusters",
                 ("quantize", f"clusters:quixer:seed{seed}"))

    def report(self) -> None:
        out = self.c.out
        self.add("report", out / "report", "make_report.py", ["--runs", out, "--bootstrap", self.s.bootstrap,
                                                              "--seed", self.s.seed, "--margin", self.s.margin],
                 waits_for=tuple(stage.name for stage in self.stages))


def plan(settings: Settings, choices: Choices, root: Path, python: str) -> list[Stage]:
    """Every stage of the study in the order the runner starts them (a track's stages in order; the tracks
    side by side with --jobs 2). `root` holds the stage scripts; `python` runs them."""
    planner = _Planner(settings, choices, root, python)
    planner.data()
    for track in choices.token_tracks:
        if track == "clusters":
            planner.clusters_tokens()
            planner.models(track)
            if "quixer" in track_models(track, choices):
                planner.circuit()
        else:
            planner.raw_tokens()
            planner.models(track)
    planner.report()
    return planner.stages
