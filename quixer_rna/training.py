"""The one training loop every neural model uses (Quixer and the classical baselines), so they are
trained, checkpointed, stopped and measured the same way.

Task "autoregressive": tokens 1..L-1 of a window predict token L over the token vocabulary.
Task "classification": all L tokens predict the window's label; classes = max train label + 1.
Every registered model maps tokens to `vocab_size` logits, so for classification it is built with
max(vocab, classes) outputs and only the first `classes` logits are scored.

Exact resumption: the batch order of an epoch is a pure function of (seed, epoch), and a checkpoint
holds every RNG state, the position within the epoch and the running sums, so a run killed
mid-epoch and rerun ends with the same weights and metrics as one never interrupted.

Distributed (torchrun): with RANK/WORLD_SIZE set, each global batch (the same as in one process) is
split across ranks, gradients are averaged by DistributedDataParallel, metric sums are all-reduced
and only rank 0 writes files.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from tqdm import tqdm

from . import checkpoint as ckpt
from .cli import HelpFormatter, add_common_args, resolve_device, seed_everything
from .errors import UserError
from .formats import SPLITS
from .formats.tokens import TokenSplit, load_token_dataset
from .metrics import (
    PREDICTIONS_FILE,
    empty_sums,
    reference_perplexities,
    save_test_predictions,
    score_sums,
    summarize,
    window_scores,
)
from .models import build_model
from .plots import plot_training_curves
from .runio import METRICS_FILE, RunRecord, atomic_write_text, prepare_output_dir, read_json, to_json

LOG = logging.getLogger("quixer_rna.training")
TASKS = ("autoregressive", "classification")
HISTORY_FILE = "metrics.jsonl"
CURVES_FILE = "training_curves.png"
METRIC_NAMES = ("loss", "perplexity", "accuracy", "top5_accuracy")


@dataclass
class TrainConfig:
    """Training settings shared by every trainer script; the model's own sizes live in its config."""

    task: str = "autoregressive"
    epochs: int = 50
    batch_size: int = 32
    eval_batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    grad_clip: float = 5.0
    warmup_steps: int = 0
    patience: int = 10
    max_steps_per_epoch: int = 0
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 200

    def result_settings(self) -> dict[str, Any]:
        """The settings that change the result: a resume must not mix two of them."""
        skip = {"eval_batch_size", "device", "checkpoint_every"}
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}


@dataclass
class TaskData:
    """Model inputs and targets of each split for one task."""

    inputs: dict[str, torch.Tensor]
    targets: dict[str, torch.Tensor]
    sources: dict[str, list[str]]
    vocab_size: int
    num_outputs: int

    @property
    def context_length(self) -> int:
        return int(self.inputs["train"].shape[1])

    def fingerprint(self) -> str:
        """sha256 of every split's inputs and targets, so a resume on other data is refused."""
        digest = hashlib.sha256()
        for split in SPLITS:
            for tensor in (self.inputs[split], self.targets[split]):
                digest.update(str(tuple(tensor.shape)).encode())
                digest.update(tensor.contiguous().numpy().tobytes())
        return digest.hexdigest()


def prepare_task(data: dict[str, TokenSplit], task: str) -> TaskData:
    """Check the token splits fit the task and cut them into inputs and targets."""
    if task not in TASKS:
        raise UserError(f"--task {task}: expected one of {', '.join(TASKS)}")
    missing = [s for s in SPLITS if s not in data]
    if missing:
        raise UserError(f"--data_dir: missing split(s) {', '.join(missing)}; train, val and test are all needed")
    vocab = max(int(split.vocab_size) for split in data.values())
    for name in SPLITS:
        seq = data[name].sequences
        if seq.dim() != 2 or seq.shape[1] < 2:
            raise UserError(f"--data_dir: {name} windows have shape {tuple(seq.shape)}; need [N, L] with L >= 2")
        if seq.shape[0] == 0:
            raise UserError(f"--data_dir: {name} split has no windows")
        if int(seq.min()) < 0 or int(seq.max()) >= vocab:
            raise UserError(
                f"--data_dir: {name} token ids span [{int(seq.min())}, {int(seq.max())}] "
                f"but the vocabulary has {vocab} tokens"
            )
    if task == "autoregressive":
        inputs = {s: data[s].sequences[:, :-1].contiguous() for s in SPLITS}
        targets = {s: data[s].sequences[:, -1].contiguous() for s in SPLITS}
        num_outputs = vocab
    else:
        inputs = {s: data[s].sequences.contiguous() for s in SPLITS}
        targets = {s: data[s].labels.contiguous() for s in SPLITS}
        num_outputs = int(targets["train"].max()) + 1
        for name in SPLITS:
            low, high = int(targets[name].min()), int(targets[name].max())
            if low < 0 or high >= num_outputs:
                raise UserError(
                    f"--data_dir: {name} labels span [{low}, {high}] "
                    f"but train has {num_outputs} classes (0..{num_outputs - 1})"
                )
    return TaskData(inputs, targets, {s: list(data[s].sources) for s in SPLITS}, vocab, num_outputs)


@dataclass
class DistContext:
    """Where this process sits in a torchrun job (rank 0 of 1 when run plainly)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main_process(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum over ranks, as a new tensor on the input's device (NCCL reduces on the GPU)."""
        if not self.active:
            return tensor.clone()
        summed = tensor.to(self.device, copy=True)
        torch.distributed.all_reduce(summed)
        return summed.to(tensor.device)

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()


def distributed_context(device_spec: str) -> tuple[DistContext, torch.device]:
    """Join the torchrun process group when RANK/WORLD_SIZE say so (NCCL on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(), resolve_device(device_spec)
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_spec)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistContext(rank, world, local_rank, device), device


def epoch_batches(num_windows: int, batch_size: int, seed: int, epoch: int, max_steps: int = 0) -> list[torch.Tensor]:
    """The index lists of one epoch's global batches, a pure function of (seed, epoch)."""
    generator = torch.Generator().manual_seed((seed * 1_000_003 + epoch) % (2**63))
    batches = list(torch.randperm(num_windows, generator=generator).split(batch_size))
    return batches[:max_steps] if max_steps > 0 else batches


def cosine_lambda(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Linear warm-up, then cosine decay to zero over the remaining steps of the whole run."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


class Trainer:
    """Builds the model, optimiser and schedule, resumes from `checkpoint_last.pt` when present,
    trains with early stopping and finally measures the best-val checkpoint on test."""

    def __init__(
        self,
        model_name: str,
        model_config: dict[str, Any],
        data: dict[str, TokenSplit],
        config: TrainConfig,
        output_dir: str | Path,
        resume: bool = True,
    ):
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(config, name) < 1:
                raise UserError(f"--{name} {getattr(config, name)}: must be at least 1")
        self.config = config
        self.output_dir = Path(output_dir)
        self.model_name = model_name
        self.model_config = dict(model_config)
        self.task = prepare_task(data, config.task)
        self.dist, self.device = distributed_context(config.device)
        seed_everything(config.seed)
        torch.manual_seed(config.seed)
        width = max(self.task.vocab_size, self.task.num_outputs)
        try:
            model = build_model(model_name, width, self.task.context_length, self.model_config)
        except (TypeError, ValueError) as exc:
            raise UserError(f"model {model_name} with {self.model_config}: {exc}") from exc
        self.model = model.to(self.device)
        self.parameter_count = sum(p.numel() for p in self.model.parameters())
        self.train_module: torch.nn.Module = self.model
        if self.dist.active:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_module = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        n_train = len(self.task.targets["train"])
        self.steps_per_epoch = len(
            epoch_batches(n_train, config.batch_size, config.seed, 0, config.max_steps_per_epoch)
        )
        total = self.steps_per_epoch * config.epochs
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, cosine_lambda(total, config.warmup_steps))
        self.identity = {
            "model_name": model_name,
            "model_config": self.model_config,
            "vocab_size": self.task.vocab_size,
            "num_outputs": self.task.num_outputs,
            "context_length": self.task.context_length,
            "data_sha256": self.task.fingerprint(),
            **config.result_settings(),
        }
        self.progress: dict[str, Any] = {
            "next_epoch": 1,
            "next_step": 0,
            "global_step": 0,
            "train_sums": empty_sums(),
            "post_sum": 0.0,
            "post_count": 0,
            "epoch_seconds": 0.0,
            "train_seconds": 0.0,
            "best_val_loss": math.inf,
            "best_epoch": 0,
            "bad_epochs": 0,
            "stopped_early": False,
            "completed": False,
            "final_metrics": None,
            "history": [],
        }
        last = self.output_dir / ckpt.LAST
        if resume and last.is_file():
            self._resume(last)
        elif self.dist.is_main_process:
            # A best checkpoint left by an earlier run must never stand in for this run's best.
            (self.output_dir / ckpt.BEST).unlink(missing_ok=True)

    @property
    def completed(self) -> bool:
        return bool(self.progress["completed"])

    def _resume(self, path: Path) -> None:
        state = ckpt.load_checkpoint(path)
        mismatch = ckpt.describe_mismatch(state["identity"], self.identity)
        if mismatch:
            raise UserError(
                f"{path}: holds a run with other settings ({mismatch}); pass --overwrite to start afresh "
                "or choose another --output_dir"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.progress.update(state["progress"])
        ckpt.restore_rng_state(state["rng"])
        if not self.completed:
            LOG.info(
                "resuming %s at epoch %d step %d of %d",
                path,
                self.progress["next_epoch"],
                self.progress["next_step"],
                self.steps_per_epoch,
            )

    def _state(self) -> dict[str, Any]:
        progress = dict(self.progress)
        progress["train_sums"] = progress["train_sums"].detach().cpu().clone()
        return {
            "identity": self.identity,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": ckpt.capture_rng_state(),
            "progress": progress,
        }

    def _save(self, *names: str) -> None:
        if not self.dist.is_main_process:
            return
        state = self._state()
        for name in names:
            ckpt.save_checkpoint(self.output_dir / name, state)

    def _hook(self, epoch: int) -> dict[str, Any]:
        """Call the model's on_epoch_start(epoch) (epochs count from 1) when it has one."""
        hook = getattr(self.model, "on_epoch_start", None)
        return dict(hook(epoch) or {}) if callable(hook) else {}

    def _postselection(self) -> float | None:
        extra = getattr(self.model, "extra_metrics", None)
        if not callable(extra):
            return None
        value = (extra() or {}).get("postselection")
        return None if value is None else float(value)

    def _forward(self, module: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        return module(inputs.to(self.device))[:, : self.task.num_outputs]

    @torch.no_grad()
    def evaluate(self, split: str, per_window: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        """Score sums over a split (sharded across ranks); with `per_window`, every window's scores
        from this process alone (the test pass runs on rank 0)."""
        self.model.eval()
        inputs, targets = self.task.inputs[split], self.task.targets[split]
        index = torch.arange(len(targets))
        if not per_window:
            index = index[self.dist.rank :: self.dist.world_size]
        sums = empty_sums().to(self.device)
        pieces: list[dict[str, torch.Tensor]] = []
        for chunk in index.split(self.config.eval_batch_size):
            scores = window_scores(self._forward(self.model, inputs[chunk]), targets[chunk].to(self.device))
            sums += score_sums(scores)
            if per_window:
                pieces.append({k: v.cpu() for k, v in scores.items()})
        if not per_window:
            return self.dist.all_reduce(sums).cpu(), None
        merged = {k: torch.cat([p[k] for p in pieces]) for k in pieces[0]}
        return sums.cpu(), merged

    def _train_epoch(self, epoch: int, step_callback: Callable[[int], None] | None) -> None:
        cfg, progress = self.config, self.progress
        inputs, targets = self.task.inputs["train"], self.task.targets["train"]
        batches = epoch_batches(len(targets), cfg.batch_size, cfg.seed, epoch, cfg.max_steps_per_epoch)
        progress["train_sums"] = progress["train_sums"].to(self.device)
        self.train_module.train()
        started = time.perf_counter()
        bar = tqdm(
            range(progress["next_step"], len(batches)),
            total=len(batches),
            initial=progress["next_step"],
            desc=f"epoch {epoch}/{cfg.epochs}",
            unit="step",
            leave=False,
            # None: shown on a terminal only, so logs and captured stderr stay clean.
            disable=None if self.dist.is_main_process else True,
        )
        for step in bar:
            batch = batches[step]
            local = batch[self.dist.rank :: self.dist.world_size]
            scores = window_scores(self._forward(self.train_module, inputs[local]), targets[local].to(self.device))
            # Sum over this rank's share / global batch size, times world size: DDP's gradient
            # average then equals the gradient of the global batch's mean loss.
            loss = scores["nll"].sum() * (self.dist.world_size / len(batch))
            finite = torch.isfinite(loss.detach()).float()
            if not bool(self.dist.all_reduce(finite) == self.dist.world_size):
                raise UserError(self._nan_message(epoch, step + 1))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            # With --grad_clip 0 the norm is still computed (never clipped) to catch NaN gradients.
            max_norm = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
            if not bool(torch.isfinite(norm)):
                raise UserError(self._nan_message(epoch, step + 1))
            self.optimizer.step()
            self.scheduler.step()
            progress["train_sums"] += score_sums({k: v.detach() for k, v in scores.items()})
            post = self._postselection()
            if post is not None:
                progress["post_sum"] += post
                progress["post_count"] += 1
            progress["next_step"] = step + 1
            progress["global_step"] += 1
            if cfg.checkpoint_every > 0 and progress["global_step"] % cfg.checkpoint_every == 0:
                self._add_time(started)
                self._save(ckpt.LAST)
                started = time.perf_counter()
            if step_callback is not None:
                step_callback(progress["global_step"])
        self._add_time(started)

    def _add_time(self, started: float) -> None:
        spent = time.perf_counter() - started
        self.progress["epoch_seconds"] += spent
        self.progress["train_seconds"] += spent

    def _nan_message(self, epoch: int, step: int) -> str:
        return (
            f"loss became NaN at epoch {epoch} step {step}; lower --lr (now {self.config.lr}) or --grad_clip, "
            "then rerun with --overwrite (the last good checkpoint is kept)"
        )

    def _finish_epoch(self, epoch: int, hook_info: dict[str, Any]) -> dict[str, Any]:
        progress = self.progress
        train = summarize(self.dist.all_reduce(progress["train_sums"]))
        started = time.perf_counter()
        val = summarize(self.evaluate("val")[0])
        self._add_time(started)
        # "lr" is the schedule's value at the end of the epoch (what the next step would use).
        row: dict[str, Any] = {"epoch": epoch, "lr": self.optimizer.param_groups[0]["lr"]}
        row.update({f"train_{k}": train[k] for k in METRIC_NAMES})
        row.update({f"val_{k}": val[k] for k in METRIC_NAMES})
        row["seconds"] = progress["epoch_seconds"]
        row.update(hook_info)
        post = self.dist.all_reduce(torch.tensor([progress["post_sum"], progress["post_count"]], dtype=torch.float64))
        if post[1] > 0:
            row["postselection"] = float(post[0] / post[1])
        improved = val["loss"] < progress["best_val_loss"]
        if improved:
            progress["best_val_loss"], progress["best_epoch"], progress["bad_epochs"] = val["loss"], epoch, 0
        else:
            progress["bad_epochs"] += 1
        progress["history"] = [*progress["history"], row]
        progress.update(
            next_epoch=epoch + 1, next_step=0, train_sums=empty_sums(), post_sum=0.0, post_count=0, epoch_seconds=0.0
        )
        patience = self.config.patience
        progress["stopped_early"] = patience > 0 and progress["bad_epochs"] >= patience and epoch < self.config.epochs
        self._save(ckpt.LAST, *([ckpt.BEST] if improved else []))
        if self.dist.is_main_process:
            lines = (json.dumps(json.loads(to_json(row))) + "\n" for row in progress["history"])
            atomic_write_text(self.output_dir / HISTORY_FILE, "".join(lines))
        log = LOG.info if self.dist.is_main_process else LOG.debug
        log(
            "epoch %d: train loss %.4f ppl %.3f | val loss %.4f ppl %.3f acc %.4f | %.1fs%s",
            epoch,
            train["loss"],
            train["perplexity"],
            val["loss"],
            val["perplexity"],
            val["accuracy"],
            row["seconds"],
            " (best)" if improved else "",
        )
        return row

    def run(
        self,
        epoch_callback: Callable[[int, dict], None] | None = None,
        step_callback: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Train to the end (or early stop) and return the final metrics; a completed run returns
        its stored result without training. `epoch_callback(epoch, row)` runs after each epoch's
        checkpoint is safely written, so an exception it raises (e.g. a pruned trial) loses nothing."""
        if self.completed:
            return self.progress["final_metrics"]
        if self.dist.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        while not self.progress["stopped_early"] and self.progress["next_epoch"] <= self.config.epochs:
            epoch = self.progress["next_epoch"]
            hook_info = self._hook(epoch)
            self._train_epoch(epoch, step_callback)
            row = self._finish_epoch(epoch, hook_info)
            if epoch_callback is not None:
                epoch_callback(epoch, row)
        return self._finalize()

    def _finalize(self) -> dict[str, Any]:
        progress = self.progress
        last_weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.dist.barrier()
        if progress["best_epoch"] > 0:
            self.model.load_state_dict(ckpt.load_checkpoint(self.output_dir / ckpt.BEST)["model"])
            self._hook(progress["best_epoch"])
        final = self._final_metrics()
        if self.dist.is_main_process:
            _, scores = self.evaluate("test", per_window=True)
            test = summarize(score_sums(scores))
            final["test"] = test
            save_test_predictions(self.output_dir / PREDICTIONS_FILE, scores, self.task.sources["test"])
            plot_training_curves(
                progress["history"],
                self.output_dir / CURVES_FILE,
                final["references"]["unigram_perplexity"],
                title=f"{self.model_name} ({self.config.task})",
            )
            LOG.info(
                "test (best epoch %d): loss %.4f ppl %.3f acc %.4f top5 %.4f | unigram ppl %.3f, uniform %d",
                progress["best_epoch"],
                test["loss"],
                test["perplexity"],
                test["accuracy"],
                test["top5_accuracy"],
                final["references"]["unigram_perplexity"],
                self.task.num_outputs,
            )
        self.model.load_state_dict(last_weights)
        progress["completed"] = True
        progress["final_metrics"] = final
        self._save(ckpt.LAST)
        self.dist.barrier()
        return final

    def _final_metrics(self) -> dict[str, Any]:
        progress, history = self.progress, self.progress["history"]
        last_post = history[-1].get("postselection") if history else None
        return {
            "model": self.model_name,
            "model_config": self.model_config,
            "task": self.config.task,
            "parameters": self.parameter_count,
            "vocab_size": self.task.vocab_size,
            "num_classes": self.task.num_outputs,
            "context_length": self.task.context_length,
            "windows": {s: len(self.task.targets[s]) for s in SPLITS},
            "epochs_run": len(history),
            "best_epoch": progress["best_epoch"],
            "best_val_loss": progress["best_val_loss"],
            "stopped_early": progress["stopped_early"],
            "train_seconds": progress["train_seconds"],
            "mean_postselection": last_post,
            "test": None,
            "references": reference_perplexities(
                self.task.targets["train"], self.task.targets["test"], self.task.num_outputs
            ),
            "train_config": dataclasses.asdict(self.config),
            "device": str(self.device),
            "world_size": self.dist.world_size,
        }


def train_model(
    model_name: str,
    model_config: dict[str, Any],
    data: dict[str, TokenSplit],
    config: TrainConfig,
    output_dir: str | Path,
    epoch_callback: Callable[[int, dict], None] | None = None,
    step_callback: Callable[[int], None] | None = None,
    resume: bool = True,
) -> dict[str, Any]:
    """Train `model_name` and return its final metrics (see Trainer); resumes from `output_dir`."""
    trainer = Trainer(model_name, model_config, data, config, output_dir, resume=resume)
    return trainer.run(epoch_callback=epoch_callback, step_callback=step_callback)


class ConfigFileParser(argparse.ArgumentParser):
    """An ArgumentParser whose --config JSON file supplies defaults that command-line flags override."""

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None):
        pre = argparse.ArgumentParser(add_help=False)
        pre.add_argument("--config")
        known, _ = pre.parse_known_args(args)
        if known.config:
            self.set_defaults(**self._config_values(known.config))
        return super().parse_known_args(args, namespace)

    def _config_value(self, path: str, key: str, value: Any, action: argparse.Action) -> Any:
        """A JSON value converted the way the flag would convert it, or a one-line error."""
        bad = f"{self.prog}: error: --config {path}: {key}={value!r} is not a valid value"
        if action.nargs == 0:  # store_true / store_false switches
            if not isinstance(value, bool):
                self.exit(2, f"{bad} (expected true or false)\n")
            return value
        if value is None or action.type is None:
            return value
        if isinstance(value, bool) or (action.type is int and isinstance(value, float) and not value.is_integer()):
            self.exit(2, f"{bad} (expected {action.type.__name__})\n")
        try:
            return action.type(value)
        except (TypeError, ValueError):
            self.exit(2, f"{bad}\n")

    def _config_values(self, path: str) -> dict[str, Any]:
        try:
            values = read_json(path, "--config file")
        except UserError as exc:
            self.exit(2, f"{self.prog}: error: --config {exc}\n")
        if not isinstance(values, dict):
            self.exit(2, f"{self.prog}: error: --config {path}: expected a JSON object of flag values\n")
        actions = {a.dest: a for a in self._actions if a.dest not in ("help", "config")}
        unknown = sorted(k for k in values if k not in actions)
        if unknown:
            self.exit(
                2,
                f"{self.prog}: error: --config {path}: unknown key(s) {', '.join(unknown)}; "
                f"keys must be flags of this script without the dashes (e.g. {', '.join(sorted(actions)[:4])})\n",
            )
        checked: dict[str, Any] = {}
        for key, value in values.items():
            action = actions[key]
            value = self._config_value(path, key, value, action)
            if action.choices is not None and value not in action.choices:
                self.exit(
                    2, f"{self.prog}: error: --config {path}: {key}={value!r}; choose from {list(action.choices)}\n"
                )
            checked[key] = value
            # A required flag given in the file no longer has to be on the command line.
            action.required = False
        return checked


def make_training_parser(description: str) -> ConfigFileParser:
    return ConfigFileParser(description=description, formatter_class=HelpFormatter)


def add_training_args(parser: argparse.ArgumentParser, default_output_dir: str | None) -> None:
    """The flags every trainer script shares (data, optimisation, schedule, checkpoints, --config)."""
    defaults = TrainConfig()
    group = parser.add_argument_group("data and output")
    group.add_argument("--data_dir", required=True, help="folder with train.pt, val.pt and test.pt token files")
    group.add_argument(
        "--task",
        choices=TASKS,
        default=defaults.task,
        help="autoregressive: tokens 1..L-1 predict token L; classification: all tokens predict the window's label",
    )
    group.add_argument("--output_dir", default=default_output_dir, help="where checkpoints, metrics and curves go")
    group.add_argument(
        "--config",
        help="JSON file of flag values (e.g. the tuner's best_params.json); flags on the command line override it",
    )
    group = parser.add_argument_group("training")
    group.add_argument("--epochs", type=int, default=defaults.epochs, help="maximum number of epochs")
    group.add_argument("--batch_size", type=int, default=defaults.batch_size, help="windows per optimiser step")
    group.add_argument(
        "--eval_batch_size", type=int, default=defaults.eval_batch_size, help="windows per forward pass when evaluating"
    )
    group.add_argument("--lr", type=float, default=defaults.lr, help="peak learning rate of Adam")
    group.add_argument(
        "--weight_decay",
        type=float,
        default=defaults.weight_decay,
        help="L2 weight decay inside Adam (as in the Quixer paper's code)",
    )
    group.add_argument("--grad_clip", type=float, default=defaults.grad_clip, help="max gradient norm; 0 = no clipping")
    group.add_argument(
        "--warmup_steps",
        type=int,
        default=defaults.warmup_steps,
        help="linear warm-up steps before the cosine decay over all remaining steps",
    )
    group.add_argument(
        "--patience",
        type=int,
        default=defaults.patience,
        help="stop after this many epochs without a better val loss; 0 = never stop early",
    )
    group.add_argument(
        "--max_steps_per_epoch",
        type=int,
        default=defaults.max_steps_per_epoch,
        help="cap on optimiser steps per epoch (a fresh random subset each epoch); 0 = all windows",
    )
    group.add_argument(
        "--checkpoint_every",
        type=int,
        default=defaults.checkpoint_every,
        help="also save checkpoint_last.pt every this many steps (besides every epoch end); 0 = epoch ends only",
    )
    add_common_args(parser, device=True)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in vars(args).items() if k in names})


def run_training_stage(
    args: argparse.Namespace, stage: str, model_name: str, model_config: dict[str, Any]
) -> dict[str, Any]:
    """What a trainer script does: check the data, prepare or resume the output folder, train,
    and leave args.json and metrics.json. A finished run rerun just reports its result."""
    config = config_from_args(args)
    data = load_token_dataset(args.data_dir)
    dist, _ = distributed_context(config.device)
    output_dir = Path(args.output_dir)
    resuming = (output_dir / ckpt.LAST).is_file() and not args.overwrite
    if not resuming:
        # Every rank checks (nothing is written before the barrier), so all refuse or none does.
        prepare_output_dir(output_dir, args.overwrite)
    dist.barrier()
    trainer = Trainer(model_name, model_config, data, config, output_dir, resume=resuming)
    if trainer.completed and (output_dir / METRICS_FILE).is_file():
        LOG.info("%s already holds a completed run; reporting it (pass --overwrite to train again)", output_dir)
        return trainer.progress["final_metrics"]
    record = RunRecord(output_dir, stage, vars(args)) if trainer.dist.is_main_process else None
    metrics = trainer.run()
    if record is not None:
        record.finish(metrics)
    if dist.active:
        torch.distributed.destroy_process_group()
    return metrics


def print_summary(metrics: dict[str, Any]) -> None:
    """One line on stdout with the test result beside its references (rank 0 holds the test result)."""
    test, refs = metrics["test"], metrics["references"]
    if test is None:
        return
    print(
        f"{metrics['model']}: test loss {test['loss']:.4f} nats, perplexity "
        f"{test['perplexity']:.3f} (unigram {refs['unigram_perplexity']:.3f}, "
        f"uniform {refs['uniform_perplexity']:.0f}), accuracy {test['accuracy']:.4f}, "
        f"top-5 {test['top5_accuracy']:.4f}; best epoch {metrics['best_epoch']} of {metrics['epochs_run']}"
    )
