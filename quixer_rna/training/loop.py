"""The one training loop every neural model uses (Quixer and the classical baselines), so they are trained,
checkpointed, stopped and measured the same way. It knows no model by name: models talk to it through the
optional hooks of quixer_rna.models (on_epoch_start, extra_metrics, auxiliary_loss, memory_estimate).

Task: tokens 1..L-1 of a window predict token L. Batches are gathered from the k-mer stream
(quixer_rna.formats.tokens), one integer gather per batch, on the GPU when training there.

Evaluations happen before the first step, at every epoch end and every --eval_every steps: each is a row of
metrics.jsonl (a point of the training curve), a chance for a better best checkpoint, and a step of early
stopping. The start is a candidate so that a run that never improves on it (little data, a model that overfits
at once) ends with its starting weights (the output bias at the train unigram), not with its first evaluation's.
Validation uses a fixed seeded sample of --val_windows windows.

Early stopping: a run stops once --patience counted evaluations in a row brought no better val loss and its best
is --patience_epochs epochs of training old. Every evaluation no better than the best counts, except, with
--plateau_margin, a flat one on the unigram plateau (within the margin of a best that is not the margin below
the train unigram's val loss): a model can sit on that plateau for epochs before it leaves it (Quixer on raw
6-mers), and stopping it there would measure when the plateau ends, not what the model learns; a rising curve
(overfitting) still counts. A run that stays flat trains to its budget and is not called converged. The rule
only decides where a trajectory ends, so a run stopped under one rule and rerun under a more patient one
continues from where it stopped, exactly as if it had been started under the new rule (a rule that would have
stopped it earlier is refused).

Exact resumption: the window order of an epoch is a pure function of (seed, epoch), and a checkpoint holds
every rank's RNG states, the position within the epoch and the running sums (summed over ranks when saved),
so a run killed mid-epoch and rerun ends with the same weights and metrics as one never interrupted.

Distributed (torchrun): each global batch (the same as in one process) is split across ranks, gradients are
averaged by DistributedDataParallel, metric sums are all-reduced, the test split is evaluated in shards and
gathered, and only rank 0 writes files. No host synchronisation happens per step on a GPU: loss sums and the
finiteness flag stay on the device and are read at evaluations and checkpoints.

Why one module of ~530 lines: the Trainer's state (step, epoch, best, patience, RNG) is shared by the
batch loop, evaluation, early stopping and exact resumption; split apart, each piece would reach into the
others' state.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from .. import checkpoint as ckpt
from ..cli import seed_everything
from ..errors import UserError
from ..formats import SPLITS
from ..formats.predictions import FILE as PREDICTIONS_FILE, save_predictions
from ..formats.results import ModelResult
from ..formats.tokens import TokenData
from ..metrics import (ScoreArrays, empty_sums, reference_perplexities, score_sums, summarize, unigram_loss,
                       window_scores)
from ..models import build_model, config_dict, make_config
from ..plots import plot_training_curves
from ..progress import Progress
from ..quixer_sim.memory import available_bytes
from ..runio import atomic_write_text, to_json
from .config import STOPPING_RULE, TrainConfig
from .distributed import DistContext, rank_seed
from .optim import decay_summary, make_optimizer, start_at_unigram

LOG = logging.getLogger("quixer_rna.training")
HISTORY_FILE = "metrics.jsonl"
CURVES_FILE = "training_curves.png"
METRIC_NAMES = ("loss", "perplexity", "accuracy", "top5_accuracy")


def epoch_order(num_windows: int, batch_size: int, seed: int, epoch: int, max_steps: int = 0) -> tuple[torch.Tensor, int]:
    """The window order of one epoch and its number of steps (batch i is order[i*B:(i+1)*B]), a pure
    function of (seed, epoch). int32 where it fits: a 72 M-window epoch is then 288 MB, not 576."""
    generator = torch.Generator().manual_seed((seed * 1_000_003 + epoch) % (2**63))
    dtype = torch.int32 if num_windows < 2**31 else torch.int64
    order = torch.randperm(num_windows, generator=generator, dtype=dtype)
    steps = -(-num_windows // batch_size)
    return order, min(steps, max_steps) if max_steps > 0 else steps


def val_sample(num_windows: int, wanted: int, seed: int) -> torch.Tensor:
    """The fixed, sorted sample of validation windows (all of them when `wanted` is 0 or covers the split)."""
    if wanted == 0 or wanted >= num_windows:
        return torch.arange(num_windows)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + 17)
    return torch.randperm(num_windows, generator=generator)[:wanted].sort().values


def cosine_lambda(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Linear warm-up, then cosine decay to zero over the remaining steps of the whole run."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


@dataclass
class LoopState:
    """Where a run is; what a checkpoint stores besides weights, optimiser and RNGs. `train_sums` and
    `extra_sums` cover the steps since the last evaluation (on rank 0 they include every rank's steps up to
    the last checkpoint, which sums them over ranks)."""

    next_epoch: int = 1
    next_step: int = 0
    global_step: int = 0
    train_sums: torch.Tensor = field(default_factory=empty_sums)
    extra_sums: dict[str, torch.Tensor] = field(default_factory=dict)
    interval_seconds: float = 0.0
    train_seconds: float = 0.0
    windows_seen: int = 0
    best_val_loss: float = math.inf
    best_epoch: int = 0
    best_step: int = 0
    bad_evaluations: int = 0
    stopped_early: bool = False
    completed: bool = False
    final_metrics: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_checkpoint(self) -> dict[str, Any]:
        values = dict(self.__dict__)
        values["train_sums"] = self.train_sums.detach().cpu().clone()
        values["extra_sums"] = {k: v.detach().cpu().clone() for k, v in self.extra_sums.items()}
        return values

    @classmethod
    def from_checkpoint(cls, values: dict[str, Any], keep_sums: bool) -> "LoopState":
        state = cls(**values)
        if not keep_sums:
            state.train_sums = empty_sums()
            state.extra_sums = {k: torch.zeros_like(v) for k, v in state.extra_sums.items()}
        return state


class Trainer:
    """Builds the model, optimiser and schedule, resumes from `checkpoint_last.pt` when asked, trains with
    early stopping and finally measures the best checkpoint on test."""

    def __init__(
        self,
        model_name: str,
        model_config: dict[str, Any] | Any,
        data: TokenData,
        config: TrainConfig,
        output_dir: str | Path,
        dist: DistContext,
        resume: bool = True,
    ):
        self.config, self.dist, self.device = config.resolved(dist.device.type), dist, dist.device
        config = self.config
        self.output_dir = Path(output_dir)
        self.model_name = model_name
        self.data = data
        seed_everything(config.seed)
        try:
            self.model_config = make_config(model_name, model_config)
        except (TypeError, ValueError) as exc:
            raise UserError(f"--model {model_name}: {exc}") from exc
        train, self.train_info = data.training_windows(config.train_fraction, config.seed)
        for split, windows in (("train", train), ("val", data["val"]), ("test", data["test"])):
            if windows.num_windows == 0:
                raise UserError(f"--data_dir {data.folder}: the {split} split has no windows")
        if train.window_size < 2:
            raise UserError(f"--data_dir {data.folder}: windows of {train.window_size} token(s); at least 2 are needed "
                            "(context plus target)")
        self.vocab_size = data.vocab_size
        self.context_length = train.window_size - 1
        try:
            model = build_model(model_name, self.vocab_size, self.context_length, self.model_config)
        except (TypeError, ValueError) as exc:
            raise UserError(f"--model {model_name} with {config_dict(self.model_config)}: {exc}") from exc
        self._check_memory(model)
        self.starts_at_unigram = start_at_unigram(model, train.target_counts())
        self.model = model.to(self.device)
        if dist.rank > 0:  # ranks share the weights just built, not their dropout masks
            torch.manual_seed(rank_seed(config.seed, dist.rank))
        self.parameter_count = sum(p.numel() for p in self.model.parameters())
        self.train_module: torch.nn.Module = self.model
        if dist.active:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_module = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.optimizer = make_optimizer(self.model, config.lr, config.weight_decay)
        self.steps_per_epoch = epoch_order(train.num_windows, config.batch_size, config.seed, 0,
                                           config.max_steps_per_epoch)[1]
        total = self.steps_per_epoch * config.epochs
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, cosine_lambda(total, config.warmup_steps))
        on_gpu = self.device.type == "cuda"
        self.train = train.to(self.device) if on_gpu else train
        self.val = data["val"].to(self.device) if on_gpu else data["val"]
        self.test = data["test"].to(self.device) if on_gpu else data["test"]
        self.val_index = val_sample(self.val.num_windows, config.val_windows, config.seed).to(self.val.device)
        self.val_unigram_loss = unigram_loss(train.target_counts(), self.val.targets(self.val_index))
        self.identity = {
            "model_name": model_name,
            "model_config": config_dict(self.model_config),
            "vocab_size": self.vocab_size,
            "context_length": self.context_length,
            "tokens": data.fingerprint,
            **config.result_settings(),
        }
        self.stopping_rule = config.stopping_rule()
        self.state = LoopState()
        self._bad = torch.zeros((), dtype=torch.bool, device=self.device)
        self._checked_step = 0
        last = self.output_dir / ckpt.LAST
        if resume and last.is_file():
            self._resume(last)
        elif dist.is_main_process:
            # A best checkpoint left by an earlier run must never stand in for this run's best.
            (self.output_dir / ckpt.BEST).unlink(missing_ok=True)

    # ---- set-up --------------------------------------------------------------------------------------------

    def _check_memory(self, model: torch.nn.Module) -> None:
        """Refuse, before anything is allocated, a model whose training step cannot fit (e.g. --qubits 40)."""
        estimate = getattr(model, "memory_estimate", None)
        if not callable(estimate):
            return
        local = -(-self.config.batch_size // self.dist.world_size)
        needed, drivers = estimate(local)
        have = available_bytes(self.device)
        if needed > have:
            raise UserError(
                f"{drivers}: a training step of {local} windows (--batch_size) needs about {needed / 2**30:,.1f} GiB "
                f"of simulator state, more than the {have / 2**30:,.1f} GiB available on {self.device}; lower them"
            )

    @property
    def completed(self) -> bool:
        return self.state.completed

    def _resume(self, path: Path) -> None:
        saved = ckpt.load_checkpoint(path)
        # checkpoints written before the stopping rule was kept apart hold --patience in their identity
        identity = {k: v for k, v in saved["identity"].items() if k not in STOPPING_RULE}
        saved_rule = {"patience": saved["identity"].get("patience"), "patience_epochs": 0.0,
                      "plateau_margin": 0.0, **saved.get("stopping_rule", {})}
        mismatch = ckpt.describe_mismatch(identity, self.identity)
        if mismatch:
            raise UserError(
                f"{path}: holds a run with other settings ({mismatch}); pass --overwrite to start afresh "
                "or choose another --output_dir"
            )
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.state = LoopState.from_checkpoint(saved["state"], keep_sums=self.dist.is_main_process)
        rngs = saved["rng"]
        if len(rngs) == self.dist.world_size:
            ckpt.restore_rng_state(rngs[self.dist.rank], self.device)
        else:
            LOG.warning("%s was saved by %d process(es), this run has %d: random streams restart from --seed",
                        path, len(rngs), self.dist.world_size)
            torch.manual_seed(rank_seed(self.config.seed, self.dist.rank) + self.state.global_step)
        if saved_rule != self.stopping_rule:
            self._apply_stopping_rule(path, saved_rule)
        if not self.completed and not self.state.stopped_early and self.state.next_epoch <= self.config.epochs:
            LOG.info("resuming %s at epoch %d step %d of %d", path, self.state.next_epoch, self.state.next_step,
                     self.steps_per_epoch)

    def _patience_spent(self, bad_evaluations: int, steps_since_best: int) -> bool:
        """The stopping rule, for the live run and for replaying a saved history under another rule."""
        cfg = self.config
        return (cfg.patience > 0 and bad_evaluations >= cfg.patience
                and steps_since_best >= cfg.patience_epochs * self.steps_per_epoch)

    def _counted(self, val_loss: float, best_val_loss: float) -> bool:
        """Whether an evaluation no better than the best is a step of early stopping: not a flat one on the
        unigram plateau (see --plateau_margin)."""
        margin = self.config.plateau_margin
        off_plateau = best_val_loss <= self.val_unigram_loss - margin
        return margin == 0 or off_plateau or not val_loss <= best_val_loss + margin

    def _apply_stopping_rule(self, path: Path, saved_rule: dict[str, Any]) -> None:
        """Resume a run saved under another stopping rule: replay its evaluations under this one. A run that
        this rule would have stopped earlier is refused; one it would not have stopped yet continues; one that
        ends where it ended is tested again, so that its result records the rule it now ends under."""
        state, best, best_step, bad = self.state, math.inf, 0, 0
        for index, row in enumerate(state.history):
            if row["val_loss"] < best:
                best, best_step, bad = row["val_loss"], row["step"], 0
            elif self._counted(row["val_loss"], best):
                bad += 1
            last = row["epoch_end"] and row["epoch"] >= self.config.epochs
            if self._patience_spent(bad, row["step"] - best_step) and not last:
                if index == len(state.history) - 1 and state.stopped_early:
                    break  # the same end under both rules
                raise UserError(
                    f"{path}: holds a run trained under the stopping rule {saved_rule}; the rule asked for "
                    f"({self.stopping_rule}) would have stopped it at step {row['step']}, before it ended; pass "
                    "--overwrite to train it afresh, or choose another --output_dir")
        else:
            if state.stopped_early:
                LOG.info("%s: stopped at step %d under %s; continuing under %s", path, state.global_step,
                         saved_rule, self.stopping_rule)
                state.stopped_early = False
        state.bad_evaluations = bad  # as this rule counts them
        if state.completed and (state.stopped_early or state.next_epoch > self.config.epochs):
            LOG.info("%s: ends at step %d under %s too; its best is tested again to record that rule", path,
                     state.global_step, self.stopping_rule)
        state.completed, state.final_metrics = False, None

    # ---- checkpoints -----------------------------------------------------------------------------------------

    def _save(self, *names: str) -> None:
        """Every rank takes part (sums and RNG states are gathered); rank 0 writes."""
        state = self.state
        state.train_sums = self.dist.all_reduce(state.train_sums)
        state.extra_sums = {k: self.dist.all_reduce(v) for k, v in state.extra_sums.items()}
        rngs = self.dist.all_gather_objects(ckpt.capture_rng_state(self.device))
        if self.dist.is_main_process:
            payload = {
                "identity": self.identity,
                "stopping_rule": self.stopping_rule,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "rng": rngs,
                "state": state.to_checkpoint(),
            }
            for name in names:
                ckpt.save_checkpoint(self.output_dir / name, payload)
        else:  # rank 0 now carries the summed counts
            state.train_sums = torch.zeros_like(state.train_sums)
            state.extra_sums = {k: torch.zeros_like(v) for k, v in state.extra_sums.items()}
        self.dist.barrier()  # no rank reads a checkpoint (the best weights, at the end) before rank 0 wrote it

    def _check_finite(self, epoch: int, step: int) -> None:
        """Raise (before any checkpoint is written) when a loss or gradient since the last check was NaN."""
        if bool(self._bad):
            raise UserError(
                f"loss became NaN at epoch {epoch} (steps {self._checked_step + 1}..{step} of it); lower --lr (now "
                f"{self.config.lr}) or --grad_clip, then rerun with --overwrite (the last good checkpoint is kept)"
            )
        self._checked_step = step

    # ---- model hooks -----------------------------------------------------------------------------------------

    def _hook(self, epoch: int) -> dict[str, Any]:
        hook = getattr(self.model, "on_epoch_start", None)
        return dict(hook(epoch) or {}) if callable(hook) else {}

    def _accumulate_extras(self, windows: int) -> None:
        extra = getattr(self.model, "extra_metrics", None)
        if not callable(extra):
            return
        for name, value in (extra() or {}).items():
            if windows:
                value = torch.as_tensor(value, dtype=torch.float64).to(self.device)
                pair = torch.stack((value * windows, torch.full((), float(windows), dtype=torch.float64,
                                                                device=self.device)))
            else:  # a rank with no window in this step still holds every name: all ranks reduce the same ones
                pair = torch.zeros(2, dtype=torch.float64, device=self.device)
            if name in self.state.extra_sums:
                self.state.extra_sums[name] = self.state.extra_sums[name].to(self.device) + pair
            else:
                self.state.extra_sums[name] = pair

    # ---- evaluation ------------------------------------------------------------------------------------------

    @torch.no_grad()
    def _val_sums(self) -> torch.Tensor:
        self.model.eval()
        sums = empty_sums().to(self.device)
        for _, tokens in self.val.iter_batches(self.config.eval_batch_size, self.val_index[self.dist.rank::self.dist.world_size]):
            tokens = tokens.to(self.device, non_blocking=True)
            sums += score_sums(window_scores(self.model(tokens[:, :-1]), tokens[:, -1]))
        return self.dist.all_reduce(sums).cpu()

    @torch.no_grad()
    def _test_scores(self) -> dict[str, torch.Tensor]:
        """Every test window's scores, each rank evaluating a contiguous shard, gathered in window order."""
        self.model.eval()
        begin, end = self.dist.shard(self.test.num_windows)
        index = torch.arange(begin, end, device=self.test.device)
        local = ScoreArrays(end - begin, self.device)
        position = 0
        for chunk, tokens in self.test.iter_batches(self.config.eval_batch_size, index):
            tokens = tokens.to(self.device, non_blocking=True)
            local.put(position, window_scores(self.model(tokens[:, :-1]), tokens[:, -1]))
            position += len(chunk)
        stacked = torch.stack((local.nll.double(), local.correct.double(), local.top5.double()), 1)
        merged = self.dist.gather_rows(stacked).cpu()
        return {"nll": merged[:, 0].float(), "correct": merged[:, 1].bool(), "top5": merged[:, 2].bool()}

    def _evaluate(self, epoch: int, hook_info: dict[str, Any], epoch_end: bool) -> dict[str, Any]:
        """One evaluation point: a history row, the best checkpoint, early stopping, checkpoint_last."""
        state = self.state
        self._check_finite(epoch, state.next_step)
        train = summarize(self.dist.all_reduce(state.train_sums))
        started = time.perf_counter()
        val = summarize(self._val_sums())
        self._add_time(started)
        row: dict[str, Any] = {"epoch": epoch, "step": state.global_step, "epoch_end": epoch_end,
                               "lr": self.optimizer.param_groups[0]["lr"]}
        row.update({f"train_{k}": train[k] for k in METRIC_NAMES})
        row.update({f"val_{k}": val[k] for k in METRIC_NAMES})
        row["seconds"] = state.interval_seconds
        row.update(hook_info)
        for name, pair in state.extra_sums.items():
            total, count = (float(x) for x in self.dist.all_reduce(pair.double()).cpu())
            if count > 0:
                row[name] = total / count
        improved = val["loss"] < state.best_val_loss
        if improved:
            state.best_val_loss, state.best_epoch, state.best_step, state.bad_evaluations = (
                val["loss"], epoch, state.global_step, 0)
        elif self._counted(val["loss"], state.best_val_loss):
            state.bad_evaluations += 1
        state.history = [*state.history, row]
        state.train_sums = empty_sums().to(self.device)
        state.extra_sums = {}
        state.interval_seconds = 0.0
        last = epoch_end and epoch >= self.config.epochs
        spent = self._patience_spent(state.bad_evaluations, state.global_step - state.best_step)
        state.stopped_early = spent and not last
        if epoch_end:
            state.next_epoch, state.next_step = epoch + 1, 0
        # the best first: killed between the two, the rerun resumes from the previous last checkpoint and writes
        # this best again; the other way round it would resume knowing of a best whose weights were never written
        self._save(*([ckpt.BEST] if improved else []), ckpt.LAST)
        if self.dist.is_main_process:
            lines = (json.dumps(json.loads(to_json(r))) + "\n" for r in state.history)
            atomic_write_text(self.output_dir / HISTORY_FILE, "".join(lines))
            trained = (f"train loss {train['loss']:.4f} ppl {train['perplexity']:.3f}" if state.global_step
                       else "the start, before the first step")
            LOG.info("epoch %d step %d: %s | val loss %.4f ppl %.3f acc %.4f | %.1fs%s", epoch, state.global_step,
                     trained, val["loss"], val["perplexity"], val["accuracy"], row["seconds"],
                     " (best)" if improved else "")
        return row

    # ---- training --------------------------------------------------------------------------------------------

    def _add_time(self, started: float) -> None:
        spent = time.perf_counter() - started
        self.state.interval_seconds += spent
        self.state.train_seconds += spent

    def _train_epoch(self, epoch: int, hook_info: dict[str, Any], on_evaluation: Callable[[dict], None] | None,
                     step_callback: Callable[[int], None] | None) -> None:
        cfg, state, dist = self.config, self.state, self.dist
        order, steps = epoch_order(self.train.num_windows, cfg.batch_size, cfg.seed, epoch, cfg.max_steps_per_epoch)
        order = order.to(self.train.device)
        self.train_module.train()
        max_norm = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
        cpu = self.device.type == "cpu"
        windows_done = 0
        started = time.perf_counter()
        self._checked_step = state.next_step

        def report() -> dict[str, Any]:
            sums = state.train_sums
            seen = float(sums[3])
            elapsed = time.perf_counter() - started
            return {"loss": float(sums[0]) / seen if seen else math.nan,
                    "windows/s": round(windows_done / elapsed, 1) if elapsed > 0 else 0.0}

        progress = Progress(steps, f"epoch {epoch}/{cfg.epochs}", initial=state.next_step, every=cfg.log_every,
                            report=report, enabled=dist.is_main_process)
        with progress:
            for step in range(state.next_step, steps):
                batch = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
                local = batch[dist.rank::dist.world_size].long()
                tokens = self.train.batch(local).to(self.device, non_blocking=True)
                scores = window_scores(self.train_module(tokens[:, :-1]), tokens[:, -1])
                # Sum over this rank's share / global batch size, times world size: DDP's gradient
                # average then equals the gradient of the global batch's mean loss.
                loss = scores["nll"].sum() * (dist.world_size / len(batch))
                auxiliary = getattr(self.model, "auxiliary_loss", None)
                extra_loss = auxiliary() if callable(auxiliary) else None
                if extra_loss is not None:
                    loss = loss + extra_loss
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                # With --grad_clip 0 the norm is still computed (never clipped) to catch NaN gradients; the
                # norm is summed over ranks by DDP's reduction, so every rank sees the same flag.
                norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
                self._bad |= ~torch.isfinite(norm)
                if cpu:  # free on the host; on a GPU it waits for the next evaluation or checkpoint
                    self._check_finite(epoch, step + 1)
                self.optimizer.step()
                self.scheduler.step()
                state.train_sums = state.train_sums.to(self.device) + score_sums({k: v.detach() for k, v in scores.items()})
                self._accumulate_extras(len(local))
                windows_done += len(batch)
                state.windows_seen += len(batch)
                state.next_step = step + 1
                state.global_step += 1
                progress.update()
                if cfg.eval_every > 0 and state.global_step % cfg.eval_every == 0 and step + 1 < steps:
                    self._add_time(started)
                    row = self._evaluate(epoch, hook_info, epoch_end=False)
                    started = time.perf_counter()
                    self.train_module.train()
                    if on_evaluation is not None:
                        on_evaluation(row)
                    if state.stopped_early:
                        return
                elif cfg.checkpoint_every > 0 and state.global_step % cfg.checkpoint_every == 0:
                    self._add_time(started)
                    self._check_finite(epoch, step + 1)
                    self._save(ckpt.LAST)
                    started = time.perf_counter()
                if step_callback is not None:
                    step_callback(state.global_step)
        self._add_time(started)
        row = self._evaluate(epoch, hook_info, epoch_end=True)
        if on_evaluation is not None:
            on_evaluation(row)

    def run(
        self,
        on_evaluation: Callable[[dict], None] | None = None,
        step_callback: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Train to the end (or early stop) and return the final result; a completed run returns its stored
        result without training. `on_evaluation(row)` runs after each evaluation's checkpoint is safely
        written, so an exception it raises (e.g. a pruned trial) loses nothing; the start's evaluation is not
        passed to it (a pruner would compare untrained models)."""
        if self.completed:
            return self.state.final_metrics
        if self.dist.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        if self.config.plateau_margin > 0 and self.dist.is_main_process:
            LOG.info("while the best val loss is above %.4f (the train unigram's %.4f less --plateau_margin), an "
                     "evaluation within the margin of the best is not counted by --patience",
                     self.val_unigram_loss - self.config.plateau_margin, self.val_unigram_loss)
        if not self.state.history:  # a fresh run: the start (epoch 1, step 0) is the first candidate for the best
            self._evaluate(1, self._hook(1), epoch_end=False)
        while not self.state.stopped_early and self.state.next_epoch <= self.config.epochs:
            epoch = self.state.next_epoch
            self._train_epoch(epoch, self._hook(epoch), on_evaluation, step_callback)
        return self._finalize()

    def _finalize(self) -> dict[str, Any]:
        state = self.state
        last_weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        if math.isfinite(state.best_val_loss):
            self.model.load_state_dict(ckpt.load_checkpoint(self.output_dir / ckpt.BEST)["model"])
            self._hook(state.best_epoch)
        scores = self._test_scores()
        test = summarize(score_sums(scores))
        result = self._result(test)
        if self.dist.is_main_process:
            save_predictions(self.output_dir / PREDICTIONS_FILE, scores["nll"].numpy(), scores["correct"].numpy(),
                             scores["top5"].numpy(), self.test.window_transcripts(), self.data.fingerprint)
            plot_training_curves(state.history, self.output_dir / CURVES_FILE,
                                 result.references["unigram_perplexity"], title=f"{self.model_name}")
            LOG.info(
                "test (best at epoch %d step %d): loss %.4f ppl %.3f acc %.4f top5 %.4f | unigram ppl %.3f, uniform %d",
                state.best_epoch, state.best_step, test["loss"], test["perplexity"], test["accuracy"],
                test["top5_accuracy"], result.references["unigram_perplexity"], self.vocab_size,
            )
        self.model.load_state_dict(last_weights)
        state.completed = True
        state.final_metrics = result.as_dict()  # plain types: checkpoints load with weights_only
        self._save(ckpt.LAST)
        return state.final_metrics

    def _result(self, test: dict[str, float]) -> ModelResult:
        """This run's result (quixer_rna.formats.results)."""
        state, history = self.state, self.state.history
        data = self.data
        last = history[-1] if history else {}
        extra = {f"mean_{k}": last[k] for k in last if k not in {"epoch", "step", "epoch_end", "lr", "seconds"}
                 and not k.startswith(("train_", "val_")) and isinstance(last[k], float)}
        return ModelResult(
            model=self.model_name,
            seed=self.config.seed,
            tokens=data.summary(),
            test=test,
            val={"loss": state.best_val_loss, "unigram_loss": self.val_unigram_loss,
                 "windows_used": int(len(self.val_index)),
                 "windows_total": self.val.num_windows,
                 "sample": "all" if len(self.val_index) == self.val.num_windows else f"seeded by --seed {self.config.seed}"},
            references=reference_perplexities(data["train"].target_counts(), self.test.target_counts()),
            parameters=self.parameter_count,
            train_seconds=state.train_seconds,
            train=dict(self.train_info),
            model_config=config_dict(self.model_config),
            train_config=self.config.plain(),
            context_length=self.context_length,
            windows={s: (self.train if s == "train" else data[s]).num_windows for s in SPLITS},
            epochs_run=sum(1 for r in history if r.get("epoch_end")),
            steps=state.global_step,
            windows_seen=state.windows_seen,
            epochs_seen=state.windows_seen / max(1, self.train.num_windows),
            stopped_by="patience" if state.stopped_early else "budget",
            converged=self._patience_spent(state.bad_evaluations, state.global_step - state.best_step),
            optimizer={"name": "AdamW", "weight_decay": self.config.weight_decay,
                       "parameters": decay_summary(self.model, self.config.weight_decay),
                       "output_bias_start": "train unigram" if self.starts_at_unigram else "default"},
            evaluations=len(history),
            best_epoch=state.best_epoch,
            best_step=state.best_step,
            stopped_early=state.stopped_early,
            extra=extra,
            device=str(self.device),
            world_size=self.dist.world_size,
            threads=torch.get_num_threads(),
            cpu_capability=torch.backends.cpu.get_cpu_capability(),
        )
