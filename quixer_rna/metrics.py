"""Next-token metrics shared by every model, neural or n-gram, so their numbers are comparable.

Scores are computed per window (negative log-likelihood of the target in nats, top-1 and top-5 hits),
summed into a small tensor (which distributed training can all-reduce), and summarised as
cross-entropy, perplexity = exp(cross-entropy), accuracy and top-5 accuracy. The uniform and the
train-unigram perplexities of the same targets are printed beside every result as references.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import torch

from .runio import atomic_torch_save

TOP_K = 5
PREDICTIONS_FILE = "test_predictions.pt"
UNIGRAM_SMOOTHING = "add-one (Laplace) smoothing of train target counts, so unseen tokens keep a finite probability"


def window_scores(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-window NLL (nats), top-1 hit and top-5 hit from unnormalised logits [N, C]."""
    logits = logits.float()
    log_probs = torch.log_softmax(logits, dim=-1)
    nll = -log_probs.gather(1, targets.view(-1, 1)).squeeze(1)
    k = min(TOP_K, logits.shape[-1])
    top = logits.topk(k, dim=-1).indices
    hits = top == targets.view(-1, 1)
    return {"nll": nll, "correct": hits[:, 0], "top5": hits.any(dim=1)}


def score_sums(scores: dict[str, torch.Tensor]) -> torch.Tensor:
    """[nll sum, correct, top-5 hits, windows] as float64, the unit summed across batches and ranks."""
    return torch.stack(
        [
            scores["nll"].double().sum(),
            scores["correct"].double().sum(),
            scores["top5"].double().sum(),
            torch.tensor(float(scores["nll"].numel()), dtype=torch.float64, device=scores["nll"].device),
        ]
    )


def empty_sums() -> torch.Tensor:
    return torch.zeros(4, dtype=torch.float64)


def summarize(sums: torch.Tensor) -> dict[str, float]:
    """Cross-entropy (nats), perplexity, accuracy and top-5 accuracy from `score_sums` totals."""
    nll, correct, top5, count = (float(x) for x in sums.detach().cpu())
    if count <= 0:
        return {"loss": math.nan, "perplexity": math.nan, "accuracy": math.nan, "top5_accuracy": math.nan}
    loss = nll / count
    return {
        "loss": loss,
        "perplexity": math.exp(loss) if loss < 700 else math.inf,
        "accuracy": correct / count,
        "top5_accuracy": top5 / count,
    }


def unigram_log_probs(train_targets: torch.Tensor, num_classes: int, smoothing: float = 1.0) -> torch.Tensor:
    """Log-probabilities of the train target distribution with add-`smoothing` (Laplace) counts."""
    counts = torch.bincount(train_targets.view(-1).long(), minlength=num_classes).double() + smoothing
    return torch.log(counts / counts.sum())


def unigram_perplexity(train_targets: torch.Tensor, test_targets: torch.Tensor, num_classes: int) -> float:
    """Perplexity on `test_targets` of a context-free model that predicts the train target frequencies."""
    log_probs = unigram_log_probs(train_targets, num_classes)
    return math.exp(float(-log_probs[test_targets.view(-1).long()].mean()))


def reference_perplexities(train_targets: torch.Tensor, test_targets: torch.Tensor, num_classes: int) -> dict:
    """What any model must beat: guessing uniformly (perplexity = number of classes) and the unigram."""
    return {
        "uniform_perplexity": float(num_classes),
        "unigram_perplexity": unigram_perplexity(train_targets, test_targets, num_classes),
        "unigram_smoothing": UNIGRAM_SMOOTHING,
    }


def save_test_predictions(path: str | Path, scores: dict[str, torch.Tensor], sources: Sequence[str]) -> None:
    """The per-window record the report stage resamples by transcript for confidence intervals."""
    nll = scores["nll"].detach().cpu().float()
    if len(sources) != nll.numel():
        raise ValueError(f"{len(sources)} sources for {nll.numel()} windows")
    payload = {
        "nll": nll.contiguous(),
        "correct": scores["correct"].detach().cpu().bool().contiguous(),
        "top5": scores["top5"].detach().cpu().bool().contiguous(),
        "sources": list(sources),
    }
    atomic_torch_save(payload, path)
