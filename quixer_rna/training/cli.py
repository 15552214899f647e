"""What a trainer script does around the loop: its shared flags, the output folder's claim (one process of a
torchrun job claims it and tells the others), resume or report a finished run, and the result file."""

from __future__ import annotations

import argparse
import contextlib
import logging
from pathlib import Path
from typing import Any

from .. import checkpoint as ckpt
from ..cli import add_common_args, add_dataclass_args
from ..errors import UserError
from ..formats.results import ModelResult, read_result, write_result
from ..formats.tokens import open_tokens
from ..stage import stage_run
from .config import TrainConfig, TrainerStageConfig
from .distributed import DistContext, setup_distributed
from .loop import Trainer

LOG = logging.getLogger("quixer_rna.training")


def add_training_args(parser: argparse.ArgumentParser) -> None:
    """The flags every trainer script shares (data and output, --config, optimisation, schedule, checkpoints):
    the fields of TrainerStageConfig and TrainConfig, and the common ones."""
    add_dataclass_args(parser.add_argument_group("data and output"), TrainerStageConfig, skip=("overwrite",))
    add_dataclass_args(parser.add_argument_group("training"), TrainConfig, skip=("seed", "device"))
    add_common_args(parser, device=True)


def run_training_stage(stage_name: str, stage: TrainerStageConfig, train: TrainConfig, model_name: str,
                       model_config: Any, record: dict[str, Any]) -> dict[str, Any]:
    """Check the data, claim or resume the output folder, train, and leave the run record (its arguments:
    `record`) and the result (metrics.json). A finished run rerun just reports its result."""
    dist = setup_distributed(train.device)
    settled = False
    try:
        result = _train_or_report(stage_name, stage, train, model_name, model_config, record, dist)
        settled = True  # the trainer (its DDP wrapper) is gone: the process group can be left cleanly
        return result
    finally:
        dist.close(settle=settled)


def _train_or_report(stage_name: str, stage: TrainerStageConfig, train: TrainConfig, model_name: str,
                     model_config: Any, record: dict[str, Any], dist: DistContext) -> dict[str, Any]:
    data = open_tokens(stage.data_dir)
    output_dir = Path(stage.output_dir)
    with contextlib.ExitStack() as stack:
        run, error = None, None
        if dist.is_main_process:
            try:
                run = stack.enter_context(stage_run(output_dir, stage_name, record, role="train",
                                                    overwrite=stage.overwrite, completed="report"))
            except UserError as exc:
                error = str(exc)
        error = dist.broadcast_object(error)
        if error is not None:
            raise UserError(error)
        done = dist.broadcast_object(run is not None and run.completed_earlier)
        resume = (output_dir / ckpt.LAST).is_file() and not stage.overwrite
        # Built before a finished run is reported too: resuming refuses a run made with other settings.
        trainer = Trainer(model_name, model_config, data, train, output_dir, dist, resume=resume)
        if done and trainer.completed:
            LOG.info("%s already holds a completed run; reporting it (pass --overwrite to train again)", output_dir)
            return read_result(output_dir).as_dict() if dist.is_main_process else {}
        if run is not None and run.completed_earlier:  # continued, or tested again, under another stopping rule
            run.start(record)
        metrics = trainer.run()
        if run is not None:
            written = write_result(output_dir, ModelResult.from_json(metrics, f"{model_name} trainer"))
            run.close("completed")
            return written
        return {}  # ranks other than 0 print no summary


def print_summary(metrics: dict[str, Any]) -> None:
    """One line on stdout with the test result beside its references (rank 0 holds the test result)."""
    test, refs = metrics.get("test"), metrics.get("references")
    if not test or not refs:
        return
    print(
        f"{metrics['model']}: test loss {test['loss']:.4f} nats, perplexity "
        f"{test['perplexity']:.3f} (unigram {refs['unigram_perplexity']:.3f}, "
        f"uniform {refs['uniform_perplexity']:.0f}), accuracy {test['accuracy']:.4f}, "
        f"top-5 {test['top5_accuracy']:.4f}" + _training_summary(metrics)
    )


def _training_summary(metrics: dict[str, Any]) -> str:
    """How a trained model got there (count models have no training loop to describe)."""
    if "epochs_seen" not in metrics:
        return ""
    state = "converged" if metrics["converged"] else f"stopped by its {metrics['stopped_by']}, not converged"
    return (f"; best at epoch {metrics['best_epoch']} step {metrics['best_step']}, {metrics['epochs_seen']:.2f} "
            f"epochs seen, {state}")
