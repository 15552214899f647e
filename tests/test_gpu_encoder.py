"""The lambeq encoder's k-mer table and stairs states in float32 on CUDA against float64 on the CPU
(gpu-marked; skips without `--device cuda`: on the CPU tests/test_encoding.py checks it against lambeq)."""

from __future__ import annotations

import pytest
import torch

from quixer_rna.encoding import KmerEncoder, readout_of

pytestmark = pytest.mark.gpu


def test_table_and_stairs_on_cuda_match_float64_on_the_cpu(cuda_device):
    encoder = KmerEncoder.build(4, 4, "Sim14", 1, "probabilities", seed=0, stairs=True)
    ids = torch.arange(4**4)
    reference = encoder.states_of(ids, torch.float64)
    ours = encoder.states_of(ids.to(cuda_device), torch.float32)
    table = readout_of(ours, "probabilities").cpu().double()
    assert (table - readout_of(reference, "probabilities")).abs().max() < 1e-5
    windows = torch.randint(0, 4**4, (16, 6), generator=torch.Generator().manual_seed(0))
    stairs = encoder.contextual(windows.to(cuda_device), ours).cpu().double()
    assert (stairs - encoder.contextual(windows, reference).double()).abs().max() < 1e-4
