"""What a trainer script does around the loop: its shared flags, the output folder's claim (one process of a
torchrun job claims it and tells the others), resume or report a finished run, and the result file."""

from __future__ import annotations

import argparse
import contextlib
import logging
from pathlib import Path
from typing import Any

from .. import checkpoint as ckpt
from ..cli import add_common_args, add_dataclass_args, dataclass_values
from ..errors import UserError
from ..formats.results import read_result, write_result
from ..formats.tokens import open_tokens
from ..stage import stage_run
from .config import TrainConfig
from .distributed import DistContext, setup_distributed
from .loop import Trainer

LOG = logging.getLogger("quixer_rna.training")
TASKS = ("autoregressive",)


def add_training_args(parser: argparse.ArgumentParser, output_help: str, default_output_dir: str | None) -> None:
    """The flags every trainer script shares (data, --config, optimisation, schedule, checkpoints)."""
    group = parser.add_argument_group("data and output")
    group.add_argument("--data_dir", required=True,
                       help="token folder: the output of quantize_lambeq_embeddings.py or prepare_classical_benchmarks.py "
                            "(or run_classical_prep.sh's OUT_DIR, which holds it as tokens/)")
    group.add_argument("--task", choices=TASKS, default="autoregressive",
                       help="tokens 1..L-1 of a window predict token L (the only task; kept for the seeds' commands)")
    group.add_argument("--output_dir", default=default_output_dir, help=output_help)
    group.add_argument("--config",
                       help="JSON file of flag values (e.g. the tuner's best_params.json); flags on the command line "
                            "override it")
    add_dataclass_args(parser.add_argument_group("training"), TrainConfig, skip=("seed", "device"))
    add_common_args(parser, device=True)


def train_config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(**dataclass_values(TrainConfig, args))


def run_training_stage(args: argparse.Namespace, stage: str, model_name: str, model_config: Any) -> dict[str, Any]:
    """Check the data, claim or resume the output folder, train, and leave args.json and the result
    (metrics.json). A finished run rerun just reports its result."""
    config = train_config(args)
    dist = setup_distributed(config.device)
    settled = False
    try:
        result = _train_or_report(args, stage, model_name, model_config, config, dist)
        settled = True  # the trainer (its DDP wrapper) is gone: the process group can be left cleanly
        return result
    finally:
        dist.close(settle=settled)


def _train_or_report(args: argparse.Namespace, stage: str, model_name: str, model_config: Any, config: TrainConfig,
                     dist: DistContext) -> dict[str, Any]:
    data = open_tokens(args.data_dir)
    output_dir = Path(args.output_dir)
    with contextlib.ExitStack() as stack:
        run, error = None, None
        if dist.is_main_process:
            try:
                run = stack.enter_context(stage_run(output_dir, stage, vars(args), role="train",
                                                    overwrite=args.overwrite, completed="report"))
            except UserError as exc:
                error = str(exc)
        error = dist.broadcast_object(error)
        if error is not None:
            raise UserError(error)
        done = dist.broadcast_object(run is not None and run.completed_earlier)
        resume = (output_dir / ckpt.LAST).is_file() and not args.overwrite
        # Built before a finished run is reported too: resuming refuses a run made with other settings.
        trainer = Trainer(model_name, model_config, data, config, output_dir, dist, resume=resume)
        if done:
            LOG.info("%s already holds a completed run; reporting it (pass --overwrite to train again)", output_dir)
            return read_result(output_dir).raw if dist.is_main_process else {}
        metrics = trainer.run()
        if run is not None:
            written = write_result(output_dir, metrics)
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
