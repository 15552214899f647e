"""QuixerModel: the model contract (shapes, hooks), initialisation statistics, layerwise growth,
determinism, gradient flow, and that a tiny model actually learns a sequence."""

from __future__ import annotations

import math

import pytest
import torch

from quixer_rna.models import build_model, config_dict, make_config
from quixer_rna.models.classical import LSTMConfig
from quixer_rna.models.quixer import QuixerConfig, QuixerModel

SMALL = {"embedding_dim": 16, "qubits": 3, "ansatz_layers": 2, "qsvt_degree": 2}


pytestmark = pytest.mark.usefixtures("one_thread")


def _tokens(vocab: int, windows: int, length: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab, (windows, length), generator=torch.Generator().manual_seed(seed))


def test_registered_builds_and_maps_tokens_to_logits():
    model = build_model("quixer", 11, 5, dict(SMALL))
    assert isinstance(model, QuixerModel)
    logits = model(_tokens(11, 7, 5))
    assert logits.shape == (7, 11) and torch.isfinite(logits).all()
    post = model.extra_metrics()["postselection"]
    assert isinstance(post, torch.Tensor) and post.shape == () and not post.requires_grad
    assert 0.0 < float(post) <= 1.0 + 1e-6
    assert model.on_epoch_start(1) == {"active_layers": 2}
    with pytest.raises(ValueError):
        model(_tokens(11, 2, 4))


def test_config_dataclass_is_the_flag_set():
    config = make_config("quixer", {"qubits": 3, "postselection_weight": 0.2})
    assert isinstance(config, QuixerConfig) and config.qubits == 3 and config.embedding_dim == 512
    assert config_dict(config)["postselection_weight"] == 0.2
    model = build_model("quixer", 5, 3, QuixerConfig(**SMALL, use_layerwise_training=True))
    assert model.layerwise_epochs == 2 and model.active_layers == 1
    with pytest.raises(ValueError, match=r"unknown setting\(s\) n_heads; valid: .*qsvt_degree"):
        make_config("quixer", {"n_heads": 2})
    for bad in ({"layerwise_epochs": 0}, {"postselection_weight": -1.0}, {"qsvt_degree": 0}):
        with pytest.raises(ValueError):
            QuixerConfig(**{**SMALL, **bad})
    with pytest.raises(TypeError, match="quixer: expected a QuixerConfig, got a LSTMConfig"):
        build_model("quixer", 5, 3, LSTMConfig())


def test_postselection_regulariser_is_minus_weight_log_mean_success():
    torch.manual_seed(7)
    plain = QuixerModel(9, 4, QuixerConfig(**SMALL))
    assert plain.auxiliary_loss() is None  # no forward yet
    tokens = _tokens(9, 6, 4)
    plain(tokens)
    assert plain.auxiliary_loss() is None  # weight 0: the paper's loss
    weighted = QuixerModel(9, 4, QuixerConfig(**SMALL, postselection_weight=0.3))
    weighted.load_state_dict(plain.state_dict())
    weighted.eval()
    weighted(tokens)
    post = weighted.extra_metrics()["postselection"]
    term = weighted.auxiliary_loss()
    assert term.item() == pytest.approx(-0.3 * math.log(post.item()), rel=1e-5)
    term.backward()  # it reaches the circuit parameters, not the classical head
    assert weighted.lcu_real.grad.abs().sum() > 0 and weighted.poly_coeffs.grad.abs().sum() > 0
    assert all(p.grad is None for p in weighted.head.parameters())


def test_memory_estimate_names_the_flags_and_grows_with_the_work():
    small = QuixerModel(5, 4, QuixerConfig(**SMALL))
    needed, drivers = small.memory_estimate(8)
    assert needed > 0 and "--qubits 3" in drivers and "--qsvt_degree 2" in drivers and "4 tokens" in drivers
    assert small.memory_estimate(16)[0] > needed
    assert QuixerModel(5, 4, QuixerConfig(**{**SMALL, "qubits": 5})).memory_estimate(8)[0] > 3 * needed
    # 40 qubits: far beyond any machine, estimated without building any state
    huge = QuixerModel(5, 4, QuixerConfig(embedding_dim=8, qubits=40, ansatz_layers=1, qsvt_degree=2))
    assert huge.memory_estimate(1)[0] > 2**40


def test_postselection_is_nan_before_any_forward():
    assert math.isnan(float(QuixerModel(5, 3, QuixerConfig(**SMALL)).extra_metrics()["postselection"]))


def test_unknown_init_strategy_lists_the_choices():
    with pytest.raises(ValueError, match="small_gaussian.*official.*uniform"):
        QuixerConfig(init_strategy="xavier", **SMALL)


def test_gradients_reach_every_parameter_group():
    torch.manual_seed(0)
    model = QuixerModel(9, 4, QuixerConfig(**SMALL))
    tokens = _tokens(9, 6, 4)
    torch.nn.functional.cross_entropy(model(tokens), torch.arange(6) % 9).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def _token_angles(model: QuixerModel, tokens: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model.token_angles(model.embedding(tokens))


def test_small_gaussian_angles_have_the_requested_std():
    torch.manual_seed(1)
    model = QuixerModel(300, 8, QuixerConfig(embedding_dim=512, qubits=6, ansatz_layers=4, init_std=0.1))
    angles = _token_angles(model, _tokens(300, 64, 8))
    assert abs(angles.std().item() - 0.1) < 0.01 and abs(angles.mean().item()) < 0.01
    assert abs(model.readout_angles.std().item() - 0.1) < 0.04
    torch.manual_seed(1)
    wider = QuixerModel(300, 8, QuixerConfig(embedding_dim=512, qubits=6, ansatz_layers=4, init_std=0.3))
    assert abs(_token_angles(wider, _tokens(300, 64, 8)).std().item() - 0.3) < 0.03


def test_official_and_uniform_strategies():
    torch.manual_seed(2)
    official = QuixerModel(300, 8, QuixerConfig(embedding_dim=512, qubits=6, ansatz_layers=4,
                                                init_strategy="official"))
    assert abs(official.embedding.weight.std().item() - 0.02) < 0.002
    assert abs(_token_angles(official, _tokens(300, 64, 8)).std().item() - 0.026) < 0.006
    for parameter in (official.lcu_real, official.lcu_imag, official.poly_coeffs):
        assert (parameter >= 0).all() and (parameter < 1).all()
    uniform = QuixerModel(300, 8, QuixerConfig(embedding_dim=512, qubits=6, ansatz_layers=4, init_strategy="uniform"))
    angles = _token_angles(uniform, _tokens(300, 64, 8))
    assert angles.std().item() > 1.2 and angles.min() > -0.5 and angles.max() < 2 * math.pi + 0.5


def test_layerwise_growth_adds_identity_layers():
    torch.manual_seed(3)
    model = QuixerModel(7, 4, QuixerConfig(use_layerwise_training=True, layerwise_epochs=2, dropout=0.0,
                                           **{**SMALL, "ansatz_layers": 3}))
    per_layer = model.angles_per_layer
    assert model.on_epoch_start(1) == {"active_layers": 1}
    assert model.token_angles.weight[per_layer:].abs().sum() == 0
    # train the first layer a little so the function is not the initial one
    optimiser = torch.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.01)
    tokens, targets = _tokens(7, 8, 4), torch.arange(8) % 7
    for _ in range(3):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(model(tokens), targets).backward()
        assert model.token_angles.weight.grad[per_layer:].abs().sum() == 0
        optimiser.step()
    assert model.token_angles.weight[per_layer:].abs().sum() == 0
    assert model.on_epoch_start(2) == {"active_layers": 1}
    model.eval()
    with torch.no_grad():
        before = model(tokens)
        assert model.on_epoch_start(3) == {"active_layers": 2}
        assert torch.equal(model(tokens), before)
    assert model.on_epoch_start(99) == {"active_layers": 3}
    # --layerwise_epochs alone does not switch layerwise training on: every layer is active from the start
    for config in (QuixerConfig(**SMALL), QuixerConfig(layerwise_epochs=2, **SMALL)):
        plain = QuixerModel(7, 4, config)
        assert plain.on_epoch_start(1) == {"active_layers": 2}
        assert plain.token_angles.weight[plain.angles_per_layer:].abs().sum() > 0


def test_same_seed_same_model_and_outputs():
    outputs = []
    for _ in range(2):
        torch.manual_seed(4)
        model = QuixerModel(10, 4, QuixerConfig(**SMALL))
        torch.manual_seed(5)
        outputs.append(model(_tokens(10, 5, 4)))
    assert torch.equal(outputs[0], outputs[1])


def test_tiny_model_learns_a_sequence_well_below_unigram_loss():
    """Windows of a fixed token cycle: every token is equally frequent (unigram loss ln V), but the
    next token is determined by the context, so a working model must go far below ln V."""
    torch.manual_seed(6)
    vocab, context = 8, 4
    cycle = torch.tensor([0, 3, 1, 6, 2, 7, 5, 4])
    stream = cycle.repeat(4)
    windows = torch.stack([stream[i:i + context] for i in range(len(cycle))])
    targets = torch.stack([stream[i + context] for i in range(len(cycle))])
    model = QuixerModel(vocab, context, QuixerConfig(embedding_dim=16, qubits=2, ansatz_layers=1, qsvt_degree=2,
                                                     dropout=0.0))
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(40):
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(windows), targets)
        loss.backward()
        optimiser.step()
    assert loss.item() < 0.3 * math.log(vocab)
