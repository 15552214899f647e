"""Training: the settings (config), the loop every neural model shares (loop), torchrun (distributed), and
what a trainer script does around the loop (cli)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ..formats.tokens import TokenData
from .config import TrainConfig
from .distributed import DistContext, setup_distributed
from .loop import Trainer, epoch_order, val_sample

__all__ = ["TrainConfig", "Trainer", "epoch_order", "val_sample", "train_model"]


def train_model(
    model_name: str,
    model_config: dict[str, Any] | Any,
    data: TokenData,
    config: TrainConfig,
    output_dir: str | Path,
    on_evaluation: Callable[[dict], None] | None = None,
    step_callback: Callable[[int], None] | None = None,
    resume: bool = True,
    dist: DistContext | None = None,
) -> dict[str, Any]:
    """Train `model_name` in this process (no run record: the caller keeps that) and return its result."""
    dist = dist or setup_distributed(config.device)
    trainer = Trainer(model_name, model_config, data, config, output_dir, dist, resume=resume)
    return trainer.run(on_evaluation=on_evaluation, step_callback=step_callback)
