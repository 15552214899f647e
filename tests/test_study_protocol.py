"""The training protocol every model shares (AdamW groups, the unigram start, convergence recorded) and the
controls of the study: the bottleneck model, Quixer with a frozen circuit, the nucleotide Markov model summed
over clusters."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fixtures import counting_windows, write_token_folder
from quixer_rna.cli import seed_everything
from quixer_rna.formats.tokens import open_tokens
from quixer_rna.markov import MarkovCounts, MarkovModel, window_nucleotides
from quixer_rna.metrics import unigram_log_probs
from quixer_rna.models import build_model, config_class
from quixer_rna.training import TrainConfig, train_model
from quixer_rna.training.optim import parameter_groups, start_at_unigram

pytestmark = pytest.mark.usefixtures("one_thread")

MODELS = {
    "lstm": {"embedding_dim": 8, "num_layers": 1},
    "transformer": {"embedding_dim": 8, "num_heads": 2},
    "fnet": {"embedding_dim": 8},
    "bottleneck": {"embedding_dim": 8, "features": 6},
    "quixer": {"embedding_dim": 8, "qubits": 2, "ansatz_layers": 1, "qsvt_degree": 1},
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_weight_matrices_decay_and_nothing_else(name):
    model = build_model(name, 11, 5, MODELS[name])
    decayed, kept = parameter_groups(model, 0.1)
    assert decayed["weight_decay"] == 0.1 and kept["weight_decay"] == 0.0
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    for parameter in decayed["params"]:
        assert parameter.dim() >= 2 and id(parameter) not in embeddings
    names = {id(p): n for n, p in model.named_parameters()}
    kept_names = {names[id(p)] for p in kept["params"]}
    assert all(names[id(p)].endswith("bias") or p.dim() < 2 or id(p) in embeddings or name == "quixer"
               for p in kept["params"])
    assert any("embedding" in n for n in kept_names) and any(n.endswith("bias") for n in kept_names)
    if name == "quixer":
        assert {"token_angles.weight", "lcu_real", "poly_coeffs", "readout_angles"} <= kept_names
    assert len(decayed["params"]) + len(kept["params"]) == sum(1 for _ in model.parameters())


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_fresh_model_with_zero_output_weights_predicts_the_train_unigram(name):
    counts = torch.tensor([5, 0, 1, 9, 3, 2, 7, 0, 1, 1, 4])
    model = build_model(name, 11, 5, MODELS[name])
    assert start_at_unigram(model, counts)
    with torch.no_grad():
        model.output_layer.weight.zero_()
    model.eval()
    log_probs = torch.log_softmax(model(torch.randint(0, 11, (3, 5))), dim=-1)
    expected = unigram_log_probs(counts).float()
    assert torch.allclose(log_probs, expected.expand(3, -1), atol=1e-5)


@pytest.mark.parametrize("name", ["quixer", "bottleneck"])
def test_normalised_features_reach_the_head_standardised_and_keep_the_unigram_start(name):
    """--normalise_features: each feature has mean 0 and sd 1 over a training batch as the head's first layer
    sees it, the norm's scale and shift are not decayed, and a fresh model still starts at the unigram."""
    torch.manual_seed(0)
    model = build_model(name, 11, 5, {**MODELS[name], "normalise_features": True})
    assert isinstance(model.head[0], nn.BatchNorm1d) and model.output_layer is model.head[-1]
    seen = {}
    model.head[0].register_forward_hook(lambda module, inputs, output: seen.update(raw=inputs[0]))
    model.head[1].register_forward_hook(lambda module, inputs, output: seen.update(features=inputs[0]))
    model.train()
    model(torch.randint(0, 11, (64, 5)))
    variance = seen["raw"].var(0, unbiased=False)  # the norm's epsilon keeps near-constant features small
    assert torch.allclose(seen["features"].mean(0), torch.zeros(1), atol=1e-4)
    assert torch.allclose(seen["features"].std(0, unbiased=False), (variance / (variance + 1e-5)).sqrt(), atol=1e-3)
    assert (seen["features"].std(0) > seen["raw"].std(0)).all()
    decayed, _ = parameter_groups(model, 0.1)
    assert not {id(p) for p in model.head[0].parameters()} & {id(p) for p in decayed["params"]}
    counts = torch.tensor([5, 0, 1, 9, 3, 2, 7, 0, 1, 1, 4])
    assert start_at_unigram(model, counts)
    with torch.no_grad():
        model.output_layer.weight.zero_()
    model.eval()
    log_probs = torch.log_softmax(model(torch.randint(0, 11, (3, 5))), dim=-1)
    assert torch.allclose(log_probs, unigram_log_probs(counts).float().expand(3, -1), atol=1e-5)


# What the models built from keyword settings before they took their config object (torch.manual_seed(0),
# vocabulary 11, context 5): state_dict tensors, elements and the sum of absolute values.
BUILT_BEFORE = {"lstm": (7, 763, 196.130380), "transformer": (15, 1059, 236.150603), "fnet": (22, 1411, 305.974747),
                "bottleneck": (8, 302, 118.593470), "quixer": (12, 343, 139.425879)}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_model_built_from_its_config_is_the_one_its_settings_built_before(name):
    torch.manual_seed(0)
    from_dict = build_model(name, 11, 5, MODELS[name])
    torch.manual_seed(0)
    from_config = type(from_dict)(11, 5, config_class(name)(**MODELS[name]))
    state, other = from_dict.state_dict(), from_config.state_dict()
    assert list(state) == list(other) and all(torch.equal(state[key], other[key]) for key in state)
    tensors, elements, total = BUILT_BEFORE[name]
    assert (len(state), sum(t.numel() for t in state.values())) == (tensors, elements)
    assert sum(float(t.double().abs().sum()) for t in state.values()) == pytest.approx(total, rel=1e-6)


def _data(tmp_path):
    splits = {name: counting_windows(n, seed=seed) for name, n, seed in (("train", 96, 1), ("val", 32, 2),
                                                                          ("test", 40, 3))}
    return open_tokens(write_token_folder(tmp_path, splits, 7))


def test_convergence_and_budget_are_recorded(tmp_path):
    data = _data(tmp_path / "data")
    base = dict(batch_size=16, lr=0.0, device="cpu", checkpoint_every=0, seed=1)
    stopped = train_model("lstm", MODELS["lstm"], data, TrainConfig(epochs=10, patience=2, **base), tmp_path / "a")
    assert (stopped["stopped_by"], stopped["converged"]) == ("patience", True)
    assert stopped["windows_seen"] == 96 * stopped["epochs_run"] and stopped["epochs_seen"] == stopped["epochs_run"]
    budget = train_model("lstm", MODELS["lstm"], data, TrainConfig(epochs=1, patience=2, **base), tmp_path / "b")
    assert (budget["stopped_by"], budget["converged"]) == ("budget", False)
    assert budget["optimizer"]["name"] == "AdamW" and budget["optimizer"]["output_bias_start"] == "train unigram"
    # what a rerun must match to retrace the run: one thread here (the one_thread fixture), torch's kernel set
    assert budget["threads"] == 1 and budget["cpu_capability"] == torch.backends.cpu.get_cpu_capability()


def test_frozen_circuit_quixer_trains_only_embedding_and_head(tmp_path):
    data = _data(tmp_path / "data")
    config = {**MODELS["quixer"], "freeze_circuit": True}
    seed_everything(1)  # as the trainer does before it builds the model
    model = build_model("quixer", 7, 3, config)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"token_angles.weight", "token_angles.bias", "lcu_real", "lcu_imag", "poly_coeffs",
                      "readout_angles"}
    result = train_model("quixer", config, data, TrainConfig(epochs=2, batch_size=16, lr=0.05, device="cpu",
                                                             checkpoint_every=0, seed=1), tmp_path / "run")
    trained = torch.load(tmp_path / "run" / "checkpoint_last.pt", weights_only=False)["model"]
    for name in frozen:
        assert torch.equal(trained[name], before[name]), name
    assert not torch.equal(trained["embedding.weight"], before["embedding.weight"])
    assert result["parameters"] == sum(p.numel() for p in model.parameters())


def test_markov_summed_over_clusters_is_a_distribution_over_clusters():
    rng = np.random.default_rng(0)
    k, stride = 3, 3
    digits = rng.integers(0, 4, 3000)
    ids = np.array([int("".join(map(str, digits[i:i + k])), 4) for i in range(0, len(digits) - k + 1, stride)])

    class Windows:  # the slice of TokenWindows MarkovCounts reads: one stretch of the stream
        class stream:
            kmers = ids
            segments = np.array([[0, len(ids), 0, 0]])

    counts = MarkovCounts.from_stream(Windows, k, stride, 4)
    model = MarkovModel(counts, k, stride, 3, 1.0)
    windows = np.stack([ids[i:i + 6] for i in range(0, 200, 7)])
    token_map = rng.integers(0, 5, 4**k)
    token_map[7] = -1  # a k-mer no split holds
    prob = model.token_probabilities(windows, token_map, 5)
    assert prob.shape == (len(windows), 5) and np.allclose(prob.sum(1), 1.0)
    kmer = np.exp(model.candidate_log_probs(windows))
    kmer[:, 7] = 0.0
    expected = np.stack([[kmer[w, token_map == c].sum() for c in range(5)] for w in range(len(windows))])
    assert np.allclose(prob, expected / expected.sum(1, keepdims=True))
    scores = model.token_scores(windows, token_map, 5)
    truth = token_map[windows[:, -1]]
    assert np.allclose(scores["nll"].numpy(), -np.log(prob[np.arange(len(windows)), truth]), atol=1e-5)
    assert window_nucleotides(windows[:1], k, stride).shape == (1, 18)
