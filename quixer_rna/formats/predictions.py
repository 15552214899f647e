"""Per-window test results: what every model stage writes and the report resamples by transcript.

    <run>/test_predictions.npz  (numpy, no pickle)
        nll         float32 [N]  negative log-likelihood of each test window's target, nats
        hits        uint8 [N]    bit 0: the target is the top-1 prediction; bit 1: it is in the top 5
        transcript  int32 [N]    the window's transcript (row of the split's transcripts.tsv)
        header      a JSON string: format, version, windows, and the token data's fingerprint

Windows are in stream order, so two models' files over the same token data line up window by window, which
is what a paired comparison needs (the fingerprints say whether they do). 9 bytes per window.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..runio import atomic_open

FORMAT = "quixer-rna-predictions"
VERSION = 1
FILE = "test_predictions.npz"


@dataclass
class Predictions:
    nll: np.ndarray
    correct: np.ndarray
    top5: np.ndarray
    transcript: np.ndarray
    fingerprint: str

    def __len__(self) -> int:
        return len(self.nll)


def save_predictions(path: str | Path, nll: np.ndarray, correct: np.ndarray, top5: np.ndarray,
                     transcript: np.ndarray, fingerprint: str) -> None:
    n = len(nll)
    if not len(correct) == len(top5) == len(transcript) == n:
        raise ValueError("one correct, top5 and transcript entry per window is needed")
    header = json.dumps({"format": FORMAT, "version": VERSION, "windows": n, "fingerprint": fingerprint})
    hits = np.asarray(correct, dtype=np.uint8) | (np.asarray(top5, dtype=np.uint8) << 1)
    with atomic_open(path, "wb", encoding=None) as handle:
        np.savez(handle, nll=np.asarray(nll, dtype=np.float32), hits=hits,
                 transcript=np.asarray(transcript, dtype=np.int32), header=np.array(header))


def load_predictions(path: str | Path) -> Predictions:
    """Read and check a predictions file; a missing, foreign or inconsistent one is a one-line UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: missing; rerun the stage that trained this model")
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(str(data["header"]))
            nll, hits, transcript = data["nll"], data["hits"], data["transcript"]
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"{path}: not a predictions file ({type(exc).__name__}: {exc})") from exc
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise UserError(f"{path}: format {header.get('format')!r} version {header.get('version')}, expected "
                        f"{FORMAT!r} {VERSION}; rerun the stage that trained this model")
    n = int(header.get("windows", -1))
    if not len(nll) == len(hits) == len(transcript) == n:
        raise UserError(f"{path}: arrays of different lengths (header says {n} windows)")
    return Predictions(nll.astype(np.float64), (hits & 1).astype(bool), (hits & 2).astype(bool), transcript,
                       str(header.get("fingerprint")))
