"""The classical baselines: they learn, the Transformer is causal and uses positions, sizes are flags."""

from __future__ import annotations

import math

import pytest
import torch

from quixer_rna.models import available_models, build_model, config_class, config_dict, make_config
from quixer_rna.models.classical import CONFIGS, FNetConfig, LSTMConfig, TransformerConfig

VOCAB = 12
CONTEXT = 6
SMALL = {"embedding_dim": 16, "dropout": 0.0}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models run fastest on one thread


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
        # a config dataclass builds the same model as its dict
        torch.manual_seed(0)
        from_dict = build_model(name, VOCAB, CONTEXT, dict(SMALL))
        torch.manual_seed(0)
        from_config = build_model(name, VOCAB, CONTEXT, CONFIGS[name](**SMALL))
        pairs = zip(from_dict.state_dict().values(), from_config.state_dict().values())
        assert all(torch.equal(a, b) for a, b in pairs)


def test_config_dataclasses_fill_the_paper_defaults():
    assert CONFIGS == {"lstm": LSTMConfig, "transformer": TransformerConfig, "fnet": FNetConfig}
    assert all(config_class(name) is cls for name, cls in CONFIGS.items())
    assert config_dict(LSTMConfig()) == {"embedding_dim": 96, "hidden_dim": 96, "num_layers": 2, "dropout": 0.1}
    assert config_dict(LSTMConfig(embedding_dim=8))["hidden_dim"] == 8
    assert TransformerConfig(embedding_dim=10, num_heads=2).ffn_dim == 40 and FNetConfig().ffn_dim == 4 * 96
    assert (TransformerConfig().num_layers, TransformerConfig().num_heads, FNetConfig().num_layers) == (1, 1, 2)
    assert make_config("lstm", {"num_layers": 3}).num_layers == 3
    with pytest.raises(ValueError, match=r"unknown setting\(s\) qubits; valid: dropout, embedding_dim, hidden_dim"):
        make_config("lstm", {"qubits": 3})
    with pytest.raises(ValueError, match="--embedding_dim 10: must be divisible by --num_heads 3"):
        TransformerConfig(embedding_dim=10, num_heads=3)


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
