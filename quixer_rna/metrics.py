"""Next-token metrics shared by every model, neural or n-gram, so their numbers are comparable.

Scores are computed per window (negative log-likelihood of the target in nats, top-1 and top-5 hits),
summed into a small tensor (which distributed training can all-reduce), and summarised as
cross-entropy, perplexity = exp(cross-entropy), accuracy and top-5 accuracy. The uniform and the
train-unigram perplexities of the same targets are printed beside every result as references.
"""

from __future__ import annotations

import math
import torch

TOP_K = 5
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


class ScoreArrays:
    """Per-window scores of a whole split filled batch by batch into arrays allocated once. Keeping each batch's
    small result tensors in a list instead pins the heap between the large temporaries of scoring (the
    [B, V] probabilities), and the process grows by megabytes per batch: 12 GB over 8 M test windows."""

    def __init__(self, windows: int, device: torch.device | str = "cpu"):
        self.nll = torch.empty(windows, dtype=torch.float32, device=device)
        self.correct = torch.empty(windows, dtype=torch.bool, device=device)
        self.top5 = torch.empty(windows, dtype=torch.bool, device=device)

    def put(self, begin: int, scores: dict[str, torch.Tensor]) -> None:
        """Copy one batch's scores in at window `begin` (on the arrays' device: no host round trip on a GPU)."""
        end = begin + len(scores["nll"])
        self.nll[begin:end] = scores["nll"].detach()
        self.correct[begin:end] = scores["correct"]
        self.top5[begin:end] = scores["top5"]

    def scores(self) -> dict[str, torch.Tensor]:
        return {"nll": self.nll, "correct": self.correct, "top5": self.top5}


def score_sums(scores: dict[str, torch.Tensor]) -> torch.Tensor:
    """[nll sum, correct, top-5 hits, windows] as float64 on the scores' device (no host round trip), the unit
    summed across batches and ranks."""
    nll = scores["nll"]
    return torch.stack(
        [
            nll.double().sum(),
            scores["correct"].double().sum(),
            scores["top5"].double().sum(),
            torch.full((), float(nll.numel()), dtype=torch.float64, device=nll.device),
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


def unigram_log_probs(target_counts: torch.Tensor, smoothing: float = 1.0) -> torch.Tensor:
    """Log-probabilities of the train target distribution (`target_counts` [V]) with add-`smoothing` counts."""
    counts = target_counts.double().cpu() + smoothing
    return torch.log(counts / counts.sum())


def unigram_loss(train_counts: torch.Tensor, targets: torch.Tensor) -> float:
    """Cross-entropy (nats per target) of `targets` under the smoothed train unigram: the plateau a model
    starts on (its output bias) or passes through, which early stopping must not mistake for convergence."""
    return float(-unigram_log_probs(train_counts)[targets.detach().cpu().long()].mean())


def reference_perplexities(train_counts: torch.Tensor, test_counts: torch.Tensor) -> dict:
    """What any model must beat on the same targets: guessing uniformly (perplexity = vocabulary size) and the
    train-target unigram, from target counts [V] of the train and test windows."""
    log_probs = unigram_log_probs(train_counts)
    test = test_counts.double().cpu()
    return {
        "uniform_perplexity": float(len(train_counts)),
        "unigram_perplexity": math.exp(float(-(log_probs * test).sum() / test.sum())),
        "unigram_smoothing": UNIGRAM_SMOOTHING,
    }
