"""The classical baselines: they learn, the Transformer is causal and uses positions, sizes are flags."""

from __future__ import annotations

import math

import pytest
import torch

from quixer_rna.models import available_models, build_model

VOCAB = 12
CONTEXT = 6
SMALL = {"embedding_dim": 16, "dropout": 0.0}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, and other test runs share the machine's cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _periodic_windows(count: int, seed: int = 0) -> torch.Tensor:
    """Windows cut from random rotations of a fixed period-7 token cycle: the next token is a
    function of the previous one, so a model that learns reaches a loss far below the unigram's."""
    cycle = torch.tensor([3, 7, 1, 9, 4, 0, 11])
    generator = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, len(cycle), (count,), generator=generator)
    index = (starts[:, None] + torch.arange(CONTEXT + 1)[None, :]) % len(cycle)
    return cycle[index]


def test_registered_and_shapes():
    assert {"lstm", "transformer", "fnet"} <= set(available_models())
    tokens = torch.randint(0, VOCAB, (5, CONTEXT))
    for name in ("lstm", "transformer", "fnet"):
        model = build_model(name, VOCAB, CONTEXT, dict(SMALL))
        assert model(tokens).shape == (5, VOCAB)


@pytest.mark.parametrize("name", ["lstm", "transformer", "fnet"])
def test_baseline_learns_a_token_sequence(name):
    torch.manual_seed(0)
    windows = _periodic_windows(256)
    inputs, targets = windows[:, :-1], windows[:, -1]
    model = build_model(name, VOCAB, CONTEXT, dict(SMALL))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(inputs), targets)
        loss.backward()
        optimiser.step()
    model.eval()
    with torch.no_grad():
        final = torch.nn.functional.cross_entropy(model(inputs), targets).item()
    unigram = math.log(7)  # the seven cycle tokens are equally frequent targets
    assert final < 0.2 * unigram


def test_transformer_is_causal():
    torch.manual_seed(0)
    model = build_model("transformer", VOCAB, CONTEXT, dict(SMALL)).eval()
    tokens = torch.randint(0, VOCAB, (3, CONTEXT))
    changed = tokens.clone()
    changed[:, 4] = (changed[:, 4] + 1) % VOCAB
    with torch.no_grad():
        before, after = model.sequence_logits(tokens), model.sequence_logits(changed)
    assert torch.allclose(before[:, :4], after[:, :4], atol=1e-6)
    assert not torch.allclose(before[:, 4:], after[:, 4:], atol=1e-4)


@pytest.mark.parametrize("name", ["transformer", "fnet"])
def test_attention_models_use_positions(name):
    torch.manual_seed(0)
    model = build_model(name, VOCAB, CONTEXT, dict(SMALL)).eval()
    tokens = torch.tensor([[1, 2, 3, 4, 5, 6]])
    permuted = tokens[:, [2, 0, 1, 4, 3, 5]]
    with torch.no_grad():
        assert not torch.allclose(model(tokens), model(permuted), atol=1e-4)


def test_sizes_are_flags():
    def count(model):
        return sum(p.numel() for p in model.parameters())

    small = count(build_model("lstm", VOCAB, CONTEXT, {"embedding_dim": 8}))
    deeper = count(build_model("lstm", VOCAB, CONTEXT, {"embedding_dim": 8, "num_layers": 3}))
    wider = count(build_model("lstm", VOCAB, CONTEXT, {"embedding_dim": 8, "hidden_dim": 16}))
    assert small < deeper and small < wider
    one = count(build_model("transformer", VOCAB, CONTEXT, {"embedding_dim": 8, "num_heads": 2, "ffn_dim": 8}))
    two = count(build_model("transformer", VOCAB, CONTEXT, {"embedding_dim": 8, "num_layers": 2, "ffn_dim": 8}))
    assert two > one
    with pytest.raises(ValueError, match="num_heads"):
        build_model("transformer", VOCAB, CONTEXT, {"embedding_dim": 10, "num_heads": 3})
