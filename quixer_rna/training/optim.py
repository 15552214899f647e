"""The optimiser conventions every neural model is trained with, so no model's result comes from its optimiser.

- AdamW with decoupled weight decay on weight matrices only (nanoGPT's `configure_optimizers`, with embedding
  tables exempt as well): biases, norms, embeddings and whatever a model lists in `no_weight_decay()` (Quixer's
  circuit angles and LCU / polynomial coefficients) are not pulled towards zero. L2 inside Adam on every
  parameter, as before, decayed the output bias and the embeddings towards a uniform prediction.
- The output layer's bias starts at the log of the train unigram (add-one smoothed, as the unigram reference),
  so a model with its output weights at zero predicts exactly the unigram: step 0 is the reference, not the
  uniform distribution, and the first steps are not spent learning token frequencies.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..metrics import unigram_log_probs


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Trainable parameters in two AdamW groups: weight matrices (decayed) and everything else (not)."""
    embeddings = {id(module.weight) for module in model.modules() if isinstance(module, nn.Embedding)}
    exempt_names = set(getattr(model, "no_weight_decay", lambda: ())())
    decay, keep = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        exempt = parameter.dim() < 2 or id(parameter) in embeddings or name in exempt_names
        (keep if exempt else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0}]


def decay_summary(model: nn.Module, weight_decay: float) -> dict[str, int]:
    """How many parameters each group holds (recorded with the result)."""
    decayed, kept = parameter_groups(model, weight_decay)
    return {"decayed": sum(p.numel() for p in decayed["params"]), "not_decayed": sum(p.numel() for p in kept["params"])}


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    return torch.optim.AdamW(parameter_groups(model, weight_decay), lr=lr)


@torch.no_grad()
def start_at_unigram(model: nn.Module, train_target_counts: torch.Tensor) -> bool:
    """Set the output layer's bias (the model's `output_layer`, a Linear onto the vocabulary) to the log of the
    smoothed train unigram; False when the model has no such layer."""
    layer = getattr(model, "output_layer", None)
    if not isinstance(layer, nn.Linear) or layer.bias is None:
        return False
    log_probs = unigram_log_probs(train_target_counts.to(torch.float64))
    if log_probs.shape != layer.bias.shape:
        raise ValueError(f"output bias holds {tuple(layer.bias.shape)} values for a vocabulary of {len(log_probs)}")
    layer.bias.copy_(log_probs.to(layer.bias.dtype))
    return True
