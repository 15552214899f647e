"""Token folders: what quantize_lambeq_embeddings.py and prepare_classical_benchmarks.py write and every
trainer reads. A token folder holds no windows: it maps the k-mer stream it names to tokens.

    <dir>/metadata.json       TokenMetadata: "format": "quixer-rna-tokens", "version", "tokenizer", "kind",
                              "vocab_size", "k", "window_size", "stream" (where the k-mer stream is, and its
                              checksums), "files", then what the producing stage records
    kind "kmer_map":  <dir>/kmer_tokens.npy   int32 [4^k]: the token of every k-mer id (-1: a k-mer with no
                                              embedding, which occurs in no split)
    kind "identity":  no file: the token of a k-mer is its id (raw k-mers, vocabulary 4^k)
    kind "windows":   <dir>/<split>_tokens.npy  [N, W]: one token per position of every window, for tokens that
                                              depend on context (clusters of --context stairs embeddings)

A trainer reads a batch of windows with one integer gather from the stream (`TokenWindows.batch`), so what it
holds is O(k-mers), not O(windows x window size). The seeds' `<split>.pt` files (`sequences [N, W]`) are an
export on request; no stage reads them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator, Literal, Sequence

import numpy as np
import torch

from ..errors import UserError
from ..runio import read_json
from . import SPLITS
from .kmer_stream import KmerStream, StreamData, StreamReference, fingerprint, resolve_stream
from .metadata import METADATA_FILE, FolderFormat, Metadata, rebuild_hint

FORMAT = "quixer-rna-tokens"
VERSION = 1
MAP_FILE = "kmer_tokens.npy"
# Chunk for passes over every window (counts, exports): bounded memory whatever the split's size.
CHUNK = 1 << 18


def window_tokens_file(folder: Path, split: str) -> Path:
    return Path(folder) / f"{split}_tokens.npy"


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.int32)


@dataclass
class TokenWindows:
    """The windows of one split as token ids, gathered from the k-mer stream batch by batch.

    Every tensor lives on one device: `to(device)` copies the stream (as int32) and its tables there, so a
    GPU trainer gathers its batches on the GPU with no host work. Per-window tokens (kind "windows") stay
    memory-mapped on the host."""

    stream: KmerStream
    vocab_size: int
    kmers: torch.Tensor
    first_window: torch.Tensor
    cum: torch.Tensor
    row_base: torch.Tensor
    token_map: torch.Tensor | None = None
    window_tokens: torch.Tensor | None = None
    offsets: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.offsets = torch.arange(self.stream.window_size, device=self.kmers.device)

    @classmethod
    def build(cls, stream: KmerStream, vocab_size: int, token_map: np.ndarray | None,
              window_tokens: np.ndarray | None) -> "TokenWindows":
        kmers = torch.from_numpy(stream.kmers) if len(stream.kmers) else torch.zeros(0, dtype=torch.int32)
        return cls(
            stream, vocab_size, kmers,
            torch.from_numpy(stream.first_window), torch.from_numpy(stream.cum), torch.from_numpy(stream.row_base),
            None if token_map is None else torch.from_numpy(token_map.astype(np.int64)),
            None if window_tokens is None else torch.from_numpy(window_tokens),
        )

    @property
    def device(self) -> torch.device:
        return self.kmers.device

    @property
    def num_windows(self) -> int:
        return self.stream.num_windows

    @property
    def window_size(self) -> int:
        return self.stream.window_size

    def __len__(self) -> int:
        return self.num_windows

    def to(self, device: torch.device | str) -> "TokenWindows":
        device = torch.device(device)
        if device == self.device:
            return self
        kmers = torch.empty(len(self.kmers), dtype=torch.int32, device=device)
        for begin in range(0, len(self.kmers), 1 << 24):
            kmers[begin:begin + (1 << 24)] = self.kmers[begin:begin + (1 << 24)].to(torch.int32).to(device)
        return TokenWindows(
            self.stream, self.vocab_size, kmers, self.first_window.to(device), self.cum.to(device),
            self.row_base.to(device), None if self.token_map is None else self.token_map.to(device), self.window_tokens,
        )

    def _locate(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        stretch = torch.searchsorted(self.cum, index, right=True) - 1
        return stretch, index - self.cum[stretch]

    def batch(self, index: torch.Tensor) -> torch.Tensor:
        """Token ids int64 [len(index), W] of windows `index` (on this data's device, or the host for
        per-window tokens: copy them on)."""
        return self.tail(index, self.stream.window_size)

    def tail(self, index: torch.Tensor, width: int) -> torch.Tensor:
        """The last `width` tokens of windows `index`, int64 [len(index), width] (the n-gram's view)."""
        if not 1 <= width <= self.stream.window_size:
            raise ValueError(f"a window holds {self.stream.window_size} tokens, not {width}")
        stretch, within = self._locate(index.to(self.device))
        if self.window_tokens is not None:
            rows = (self.row_base[stretch] + within).cpu()
            return self.window_tokens[rows, self.stream.window_size - width:].long()
        starts = self.first_window[stretch] + within * self.stream.window_step + (self.stream.window_size - width)
        return self.tokens_at(starts.unsqueeze(1) + self.offsets[:width])

    def tokens_at(self, positions: torch.Tensor) -> torch.Tensor:
        """The tokens of stream positions (any shape): one gather of k-mer ids, then the k-mer -> token map."""
        if self.window_tokens is not None:
            raise UserError("tokens of stream positions are undefined for per-window (contextual) tokens")
        ids = self.kmers[positions].long()
        return ids if self.token_map is None else self.token_map[ids]

    def iter_batches(self, size: int, index: torch.Tensor | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(window numbers, tokens [B, W]) over `index` (default: every window, in order) in batches."""
        if index is None:
            for begin in range(0, self.num_windows, size):
                chunk = torch.arange(begin, min(self.num_windows, begin + size), device=self.device)
                yield chunk, self.batch(chunk)
        else:
            for chunk in index.split(size):
                yield chunk, self.batch(chunk)

    def targets(self, index: torch.Tensor) -> torch.Tensor:
        """The target (last) token of windows `index`, int64: one gather of k-mers, not of whole windows."""
        return self.tail(index, 1)[:, 0]

    def target_counts(self) -> torch.Tensor:
        """How often each token is a target, int64 [vocab_size]: the unigram reference's counts."""
        counts = torch.zeros(self.vocab_size, dtype=torch.int64)
        for begin in range(0, self.num_windows, CHUNK):
            index = torch.arange(begin, min(self.num_windows, begin + CHUNK), device=self.device)
            counts += torch.bincount(self.targets(index).cpu(), minlength=self.vocab_size)
        return counts

    def window_transcripts(self, index: torch.Tensor | None = None) -> np.ndarray:
        """Transcript row (the split's transcripts.tsv) of windows `index`, int32 on the host."""
        return self.stream.window_transcripts(None if index is None else index.cpu().numpy())

    def subset(self, transcript_rows: np.ndarray) -> "TokenWindows":
        """The same data restricted to some transcripts (e.g. a fraction of the training genes)."""
        view = self.stream.subset(transcript_rows)
        return TokenWindows(
            view, self.vocab_size, self.kmers, torch.from_numpy(view.first_window).to(self.device),
            torch.from_numpy(view.cum).to(self.device), torch.from_numpy(view.row_base).to(self.device),
            self.token_map, self.window_tokens,
        )

    def gene_fraction(self, fraction: float, seed: int) -> tuple["TokenWindows", dict[str, Any]]:
        """The windows of a seeded share of this split's genes (whole genes, as the split itself): the genes
        are shuffled once per seed, so a smaller fraction's genes are part of a larger one's."""
        table = self.stream.transcripts
        genes = sorted(set(table.genes))
        order = np.random.default_rng(seed).permutation(len(genes))
        keep = {genes[i] for i in order[: max(1, math.ceil(fraction * len(genes)))]}
        rows = np.asarray([row for row, gene in enumerate(table.genes) if gene in keep], dtype=np.int64)
        view = self.subset(rows)
        return view, {"fraction": fraction, "genes": len(keep), "genes_total": len(genes),
                      "transcripts": len(rows), "windows": view.num_windows}


@dataclass
class TokenData:
    """A token folder: its metadata, the k-mer stream it maps, and every split's windows."""

    folder: Path
    meta: TokenMetadata
    stream: StreamData
    splits: dict[str, TokenWindows]

    @property
    def vocab_size(self) -> int:
        return self.meta.vocab_size

    @property
    def tokenizer(self) -> str:
        return self.meta.tokenizer

    @property
    def k(self) -> int:
        return self.meta.k

    @property
    def fingerprint(self) -> str:
        """What a resume or a paired comparison must share: the stream's and this folder's checksums."""
        return fingerprint(self.meta.stream["sha256"], self.meta.files, self.vocab_size, self.meta.kind)

    def __getitem__(self, split: str) -> TokenWindows:
        return self.splits[split]

    def summary(self) -> dict[str, Any]:
        """What a model's result records of the tokens it used (quixer_rna.formats.results)."""
        return {"folder": str(self.folder), "tokenizer": self.tokenizer, "vocab_size": self.vocab_size, "k": self.k,
                "fingerprint": self.fingerprint}

    def training_windows(self, fraction: float, seed: int) -> tuple[TokenWindows, dict[str, Any]]:
        """The train windows a model learns from (a seeded share of the genes when `fraction` < 1) and what
        they are: fraction, windows, k-mers (and genes)."""
        train, info = self["train"], {"fraction": 1.0, "windows": self["train"].num_windows}
        if fraction < 1:
            train, info = train.gene_fraction(fraction, seed)
        info["kmers"] = train.stream.num_kmers
        return train, info


def _stage_script(folder: Path) -> str:
    """The script that wrote a token folder, from its run record (quantize unless it says otherwise)."""
    try:
        stage = read_json(folder / "args.json").get("stage")
    except (UserError, AttributeError):
        stage = None
    if stage == "prepare_classical_benchmarks":
        return "prepare_classical_benchmarks.py"
    return "quantize_lambeq_embeddings.py"


def _rebuild(folder: Path) -> str:
    if _stage_script(folder) == "prepare_classical_benchmarks.py":
        return rebuild_hint(folder, f"prepare_classical_benchmarks.py --data_dir PREPARE_DIR --output_dir {folder}")
    return rebuild_hint(folder, f"quantize_lambeq_embeddings.py --embeddings_dir EMBEDDINGS_DIR --output_dir {folder}")


def _legacy(folder: Path) -> str | None:
    """A folder of the first layout (one row of tokens per window, train.pt) names the commands that rebuild it."""
    if not (folder / "train.pt").is_file():
        return None
    return (f"--data_dir {folder}: written by an earlier version (one row of tokens per window); rebuild it: "
            f"prepare_autoregressive_data.py, then {_stage_script(folder)} (rerun run_pipeline.sh or "
            "run_classical_prep.sh)")


TOKEN_FORMAT = FolderFormat(
    name=FORMAT, version=VERSION, title="token format", what="a token folder", flag="--data_dir",
    expected="the output folder of quantize_lambeq_embeddings.py or prepare_classical_benchmarks.py",
    rebuild=_rebuild, legacy=_legacy)


@dataclass(frozen=True, kw_only=True)
class TokenMetadata(Metadata):
    """metadata.json of a token folder. Every trainer needs the fields up to `files`; the rest is what the
    producing stage records (quantize_lambeq_embeddings.py: the clustering; prepare_classical_benchmarks.py:
    the k-mers seen), absent from the other's folders."""

    FORMAT: ClassVar[FolderFormat] = TOKEN_FORMAT
    tokenizer: str  # "clusters", "raw k-mers"
    kind: Literal["kmer_map", "identity", "windows"]
    vocab_size: int
    k: int
    window_size: int
    stream: StreamReference
    files: dict[str, str]  # file name -> sha256
    # quantize_lambeq_embeddings.py (quixer_rna.quantization.DEFINITIONS defines the statistics)
    n_clusters: int | None = None
    algorithm: str | None = None
    inertia: float | None = None
    token_entropy_bits: float | None = None
    token_perplexity: float | None = None
    empty_clusters: int | None = None
    hamming_neighbour_share: float | None = None  # None: per-window tokens (no k-mer map to measure)
    hamming_neighbour_share_shuffled: float | None = None
    windows: dict[str, int] | None = None
    seconds: dict[str, float] | None = None
    input_layout: str | None = None
    embedding_dim: int | None = None
    n_iter: int | None = None
    distinct_train_vectors: int | None = None
    train_positions: int | None = None
    cluster_sizes: list[int] | None = None
    unseen_kmer_positions: dict[str, int] | None = None
    seed: int | None = None
    embeddings_dir: str | None = None
    definitions: dict[str, str] | None = None
    # prepare_classical_benchmarks.py
    seen_kmers: int | None = None
    splits: dict[str, dict[str, int]] | None = None  # per split: windows, transcripts, distinct_kmers
    rule: str | None = None  # how a k-mer's id is its token


def resolve_token_folder(folder: str | Path) -> Path:
    """The token folder itself, or the `tokens/` folder inside it (run_classical_prep.sh's OUT_DIR)."""
    folder = Path(folder)
    if not (folder / METADATA_FILE).is_file() and (folder / "tokens" / METADATA_FILE).is_file():
        return folder / "tokens"
    return folder


def open_tokens(folder: str | Path, splits: Sequence[str] = SPLITS) -> TokenData:
    """Open a token folder (or the tokens/ folder inside it) and its k-mer stream, checking both (one line
    per problem)."""
    folder = resolve_token_folder(folder)
    meta = TokenMetadata.read(folder)
    stream = resolve_stream(meta.stream, folder, folder / METADATA_FILE, splits)
    vocab = meta.vocab_size
    token_map = None
    if meta.kind == "kmer_map":
        path = folder / MAP_FILE
        try:
            token_map = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise UserError(f"{path}: missing or unreadable ({exc}); rebuild the token folder") from exc
        if token_map.shape != (4**stream.k,) or token_map.max(initial=-1) >= vocab:
            raise UserError(f"{path}: expected one token < {vocab} per {stream.k}-mer ({4**stream.k}), found "
                            f"shape {token_map.shape}; rebuild the token folder")
    elif meta.kind == "identity" and vocab != 4**stream.k:
        raise UserError(f"{folder / METADATA_FILE}: raw {stream.k}-mer tokens need vocab_size {4**stream.k}, not {vocab}")
    loaded: dict[str, TokenWindows] = {}
    for split in splits:
        windows = None
        if meta.kind == "windows":
            path = window_tokens_file(folder, split)
            try:
                windows = np.load(path, mmap_mode="c")
            except (OSError, ValueError) as exc:
                raise UserError(f"{path}: missing or unreadable ({exc}); rebuild the token folder") from exc
            expected = (stream.splits[split].num_windows, stream.window_size)
            if windows.shape != expected:
                raise UserError(f"{path}: shape {windows.shape}, expected {expected}; rebuild the token folder")
        elif token_map is not None and token_map.min() < 0 and stream.splits[split].num_windows:
            present = np.unique(np.asarray(stream.splits[split].kmers))
            if (token_map[present] < 0).any():
                raise UserError(f"{folder / MAP_FILE}: a k-mer of split {split} has no token; rebuild the token folder")
        loaded[split] = TokenWindows.build(stream.splits[split], vocab, token_map, windows)
    return TokenData(folder, meta, stream, loaded)
