"""Small data made for tests: token folders whose windows are given tensors, Quixer run folders, and a
recorder of the devices ops create tensors on.

A token folder here is a real one (quixer_rna.formats): a k-mer stream in which every window is its own
transcript of exactly window-length k-mers (so window i of a split is row i of the given tensor), and a
k-mer -> token map that is the identity on ids below the vocabulary."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from quixer_rna import checkpoint as ckpt
from quixer_rna.formats.kmer_stream import SplitCounts, StreamMetadata, StreamWriter, open_stream_data, \
    stream_reference
from quixer_rna.formats.tokens import MAP_FILE, TokenMetadata


def write_token_folder(root: str | Path, splits: dict[str, torch.Tensor], vocab_size: int,
                       genes: dict[str, Sequence[str]] | None = None, sources: dict[str, Sequence[str]] | None = None) -> Path:
    """root/kmers (the stream) and root/tokens (returned): split s holds the windows splits[s] [N, W] in order.
    `sources` names each window's transcript (default: one transcript per window); consecutive windows of one
    name become stretches of one transcript, split by a k-mer that is not over ACGT. `genes` names the genes
    (default: the transcript's name)."""
    root = Path(root)
    k = max(1, math.ceil(math.log(max(vocab_size, 2), 4)))
    stream_dir, token_dir = root / "kmers", root / "tokens"
    width = None
    per_split = {}
    for split, windows in splits.items():
        windows = torch.as_tensor(windows, dtype=torch.int64)
        width = windows.shape[1]
        writer = StreamWriter(stream_dir, split, k)
        names = list(sources[split]) if sources and split in sources else [f"{split}{i}" for i in range(len(windows))]
        gene_names = list(genes[split]) if genes and split in genes else names
        rows = windows.numpy()
        begin = 0
        while begin < len(rows):
            end = begin + 1
            while end < len(rows) and names[end] == names[begin]:
                end += 1
            ids = np.concatenate([np.append(row, 0) for row in rows[begin:end]])[:-1]
            valid = np.ones(len(ids), dtype=bool)
            valid[width::width + 1] = False
            writer.add(names[begin], gene_names[begin], len(ids) * k, ids, valid)
            begin = end
        written = writer.close()
        per_split[split] = SplitCounts(sequences=len(windows), transcripts=written["transcripts"],
                                       genes=len(set(gene_names)), windows=len(windows), kmers=written["kmers"],
                                       segments=written["segments"], sha256=written["sha256"])
    StreamMetadata(k=k, stride=k, window_size=width, window_step=1, splits=per_split, synthetic=True).write(stream_dir)
    stream = open_stream_data(stream_dir)
    token_map = np.full(4**k, -1, dtype=np.int32)
    token_map[:vocab_size] = np.arange(vocab_size)
    token_dir.mkdir(parents=True, exist_ok=True)
    np.save(token_dir / MAP_FILE, token_map)
    TokenMetadata(tokenizer="test tokens", kind="kmer_map", vocab_size=vocab_size, k=k, window_size=width,
                  stream=stream_reference(stream, token_dir), files={MAP_FILE: "test"}).write(token_dir)
    return token_dir


def counting_windows(n: int, vocab: int = 7, length: int = 4, seed: int = 0) -> torch.Tensor:
    """Windows counting up modulo `vocab`: the last token is always the one before it plus one."""
    g = torch.Generator().manual_seed(seed)
    start = torch.randint(0, vocab, (n, 1), generator=g)
    return (start + torch.arange(length)) % vocab


def save_quixer_run(run_dir: str | Path, model: torch.nn.Module, model_config: dict, vocab_size: int,
                    context_length: int) -> Path:
    """`model` as the best checkpoint of a Quixer run folder."""
    identity = {"model_name": "quixer", "model_config": dict(model_config), "vocab_size": int(vocab_size),
                "context_length": int(context_length)}
    path = Path(run_dir) / ckpt.BEST
    ckpt.save_checkpoint(path, {"identity": identity, "model": model.state_dict()})
    return path


class DeviceRecorder(TorchDispatchMode):
    """Records the device of every tensor every aten op returns (to show a meta-device run makes none elsewhere)."""

    def __init__(self):
        super().__init__()
        self.devices: dict[str, set[str]] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for item in tree_flatten(out)[0]:
            if isinstance(item, torch.Tensor):
                self.devices.setdefault(item.device.type, set()).add(str(func))
        return out


def random_quixer(qubits: int, layers: int, tokens: int, degree: int, seed: int = 0, vocab: int = 6) -> torch.nn.Module:
    """A tiny QuixerModel with non-trivial parameters, for checking circuits against the simulator: angles
    spread over several radians, complex LCU coefficients in every quadrant and polynomial coefficients of
    both signs (c_1 < 0 always)."""
    from quixer_rna.models import build_model

    torch.manual_seed(seed)
    config = {"embedding_dim": 8, "qubits": qubits, "ansatz_layers": layers, "qsvt_degree": degree, "dropout": 0.0}
    model = build_model("quixer", vocab, tokens, config)
    with torch.no_grad():
        model.token_angles.weight.normal_(0.0, 1.0)
        model.token_angles.bias.uniform_(-math.pi, math.pi)
        model.lcu_real.normal_()
        model.lcu_imag.normal_()
        model.poly_coeffs.normal_()
        model.poly_coeffs[1] = -abs(float(model.poly_coeffs[1])) - 0.2
        model.readout_angles.uniform_(-math.pi, math.pi)
    return model.eval()
