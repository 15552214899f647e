"""The classical baselines of the Quixer paper (LSTM, Transformer, FNet), sized by the same flags, so
Quixer's next-token results on RNA sit beside the models it was compared with on text.

Each maps context tokens int64 [B, T] to next-token logits [B, V] (the models/__init__ contract) and
is registered by name for the shared trainer. Defaults follow the paper's baselines: embedding 96,
LSTM 2 layers (hidden = embedding), Transformer 1 layer / 1 head / FFN 4E, FNet 2 layers / FFN 4E;
dropout 0.1 everywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ..cli import positive_int, rate
from . import register

_EMBEDDING = {"type": positive_int, "help": "token embedding size"}
_DROPOUT = {"type": rate, "help": "dropout probability"}
_FFN = {"type": positive_int, "help": "feed-forward width (default: 4 x the embedding size)"}


def _check_sizes(name: str, **sizes: int) -> None:
    for flag, value in sizes.items():
        if value < 1:
            raise ValueError(f"{name}: {flag} must be at least 1, got {value}")


@dataclass
class LSTMConfig:
    """The LSTM's sizes; hidden_dim None is resolved here, once, to the embedding size."""

    embedding_dim: int = field(default=96, metadata=_EMBEDDING)
    hidden_dim: int | None = field(default=None, metadata={"type": positive_int,
                                                           "help": "LSTM hidden size (default: the embedding size)"})
    num_layers: int = field(default=2, metadata={"type": positive_int, "help": "stacked LSTM layers"})
    dropout: float = field(default=0.1, metadata=_DROPOUT)

    def __post_init__(self) -> None:
        if self.hidden_dim is None:
            self.hidden_dim = self.embedding_dim
        _check_sizes("lstm", embedding_dim=self.embedding_dim, hidden_dim=self.hidden_dim, num_layers=self.num_layers)


@dataclass
class TransformerConfig:
    """The Transformer's sizes; ffn_dim None is resolved here, once, to 4 x the embedding size."""

    embedding_dim: int = field(default=96, metadata=_EMBEDDING)
    num_layers: int = field(default=1, metadata={"type": positive_int, "help": "encoder layers"})
    num_heads: int = field(default=1, metadata={"type": positive_int, "help": "attention heads"})
    ffn_dim: int | None = field(default=None, metadata=_FFN)
    dropout: float = field(default=0.1, metadata=_DROPOUT)

    def __post_init__(self) -> None:
        if self.ffn_dim is None:
            self.ffn_dim = 4 * self.embedding_dim
        _check_sizes("transformer", embedding_dim=self.embedding_dim, num_layers=self.num_layers,
                     num_heads=self.num_heads, ffn_dim=self.ffn_dim)
        if self.embedding_dim % self.num_heads:
            raise ValueError(f"--embedding_dim {self.embedding_dim}: must be divisible by --num_heads {self.num_heads}")


@dataclass
class FNetConfig:
    """FNet's sizes; ffn_dim None is resolved here, once, to 4 x the embedding size."""

    embedding_dim: int = field(default=96, metadata=_EMBEDDING)
    num_layers: int = field(default=2, metadata={"type": positive_int, "help": "Fourier-mixing blocks"})
    ffn_dim: int | None = field(default=None, metadata=_FFN)
    dropout: float = field(default=0.1, metadata=_DROPOUT)

    def __post_init__(self) -> None:
        if self.ffn_dim is None:
            self.ffn_dim = 4 * self.embedding_dim
        _check_sizes("fnet", embedding_dim=self.embedding_dim, num_layers=self.num_layers, ffn_dim=self.ffn_dim)


CONFIGS = {"lstm": LSTMConfig, "transformer": TransformerConfig, "fnet": FNetConfig}


def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    """The fixed sine/cosine position table of Vaswani et al., [length, dim]."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return table


@register("lstm", LSTMConfig)
class LSTMModel(nn.Module):
    """Token embedding -> stacked LSTM -> linear head on the last time step."""

    def __init__(self, vocab_size: int, context_length: int, config: LSTMConfig):
        super().__init__()
        _check_sizes("lstm", vocab_size=vocab_size)
        self.embedding = nn.Embedding(vocab_size, config.embedding_dim)
        self.dropout = nn.Dropout(config.dropout)
        self.lstm = nn.LSTM(config.embedding_dim, config.hidden_dim, num_layers=config.num_layers, batch_first=True,
                            dropout=config.dropout if config.num_layers > 1 else 0.0)
        self.head = nn.Linear(config.hidden_dim, vocab_size)

    @property
    def output_layer(self) -> nn.Linear:
        return self.head

    def sequence_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """Next-token logits after every prefix, [B, T, V]."""
        states, _ = self.lstm(self.dropout(self.embedding(tokens)))
        return self.head(self.dropout(states))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits after the last token only: the head's [B, T, V] for every prefix would cost T times more.
        (Dropout still draws over every position, so a seed gives the same masks as sequence_logits.)"""
        states, _ = self.lstm(self.dropout(self.embedding(tokens)))
        return self.head(self.dropout(states)[:, -1])


@register("transformer", TransformerConfig)
class TransformerModel(nn.Module):
    """Causal decoder-only Transformer (post-norm, sinusoidal positions) predicting from the last position."""

    def __init__(self, vocab_size: int, context_length: int, config: TransformerConfig):
        super().__init__()
        _check_sizes("transformer", vocab_size=vocab_size, context_length=context_length)
        embedding_dim = config.embedding_dim
        self.scale = math.sqrt(embedding_dim)
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.register_buffer("positions", sinusoidal_positions(context_length, embedding_dim), persistent=False)
        self.register_buffer(
            "causal_mask", torch.triu(torch.ones(context_length, context_length, dtype=torch.bool), 1), persistent=False
        )
        self.dropout = nn.Dropout(config.dropout)
        layer = nn.TransformerEncoderLayer(
            embedding_dim, config.num_heads, config.ffn_dim, dropout=config.dropout, activation="gelu", batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, config.num_layers, enable_nested_tensor=False)
        self.head = nn.Linear(embedding_dim, vocab_size)

    @property
    def output_layer(self) -> nn.Linear:
        return self.head

    def hidden_states(self, tokens: torch.Tensor) -> torch.Tensor:
        """The encoder's output at every position, each seeing only itself and earlier tokens, [B, T, E]."""
        length = tokens.shape[1]
        if length > self.positions.shape[0]:
            raise ValueError(f"transformer: context of {length} tokens, built for at most {self.positions.shape[0]}")
        hidden = self.dropout(self.embedding(tokens) * self.scale + self.positions[:length])
        # is_causal: the mask is the causal one, so the encoder need not compare it (a host sync on a GPU).
        return self.encoder(hidden, mask=self.causal_mask[:length, :length], is_causal=True)

    def sequence_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits at every position, [B, T, V]."""
        return self.head(self.hidden_states(tokens))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.hidden_states(tokens)[:, -1])


class FourierBlock(nn.Module):
    """One FNet encoder block: x + Re(FFT2(x)) -> LayerNorm -> x + FFN(x) -> LayerNorm."""

    def __init__(self, dim: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.mix_norm = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(), nn.Linear(ffn_dim, dim), nn.Dropout(dropout))
        self.ffn_norm = nn.LayerNorm(dim)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        mixed = torch.fft.fft2(hidden.float(), dim=(-2, -1)).real.to(hidden.dtype)
        hidden = self.mix_norm(hidden + mixed)
        return self.ffn_norm(hidden + self.ffn(hidden))


@register("fnet", FNetConfig)
class FNetModel(nn.Module):
    """FNet (Lee-Thorp et al. 2021): token + learned position embeddings, Fourier-mixing blocks,
    linear head on the last position. The mixing sees the whole context, which holds only tokens
    before the target, so nothing leaks."""

    def __init__(self, vocab_size: int, context_length: int, config: FNetConfig):
        super().__init__()
        _check_sizes("fnet", vocab_size=vocab_size, context_length=context_length)
        embedding_dim = config.embedding_dim
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.positions = nn.Embedding(context_length, embedding_dim)
        self.embed_norm = nn.LayerNorm(embedding_dim)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(FourierBlock(embedding_dim, config.ffn_dim, config.dropout)
                                    for _ in range(config.num_layers))
        self.head = nn.Linear(embedding_dim, vocab_size)

    @property
    def output_layer(self) -> nn.Linear:
        return self.head

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]
        if length > self.positions.num_embeddings:
            raise ValueError(f"fnet: context of {length} tokens, built for at most {self.positions.num_embeddings}")
        index = torch.arange(length, device=tokens.device)
        hidden = self.dropout(self.embed_norm(self.embedding(tokens) + self.positions(index)))
        for block in self.blocks:
            hidden = block(hidden)
        return self.head(hidden[:, -1])

