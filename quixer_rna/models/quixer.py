"""Quixer (Khatri et al., arXiv:2406.04305): each context token becomes a circuit-14 unitary, the window
becomes the LCU M = sum_t b_t U_t with position-wise coefficients, a degree-d polynomial of M is applied
to |0...0>, and Pauli expectations after a trainable readout layer feed a small classical head."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ..cli import nonnegative_float, positive_float, positive_int, rate
from ..quixer_sim import circuit14_gates, pauli_expectations, polynomial_state, run_circuit, simulation_total_bytes
from . import register
from .head import feature_head, normalise_features_field

INIT_STRATEGIES = ("small_gaussian", "official", "uniform")


@dataclass
class QuixerConfig:
    """Quixer's sizes and settings: the trainer's flags, the tuner's search space and the checkpoint's record."""

    embedding_dim: int = field(default=512, metadata={"type": positive_int, "help": "classical token embedding size"})
    qubits: int = field(default=6, metadata={"type": positive_int,
                                             "help": "qubits of each token's parameterised circuit (at least 2)"})
    ansatz_layers: int = field(default=4, metadata={"type": positive_int,
                                                    "help": "circuit-14 layers of the per-token circuit ansatz"})
    qsvt_degree: int = field(default=3, metadata={"type": positive_int,
                                                  "help": "degree of the QSVT polynomial of the token LCU"})
    dropout: float = field(default=0.1, metadata={"type": rate, "help": "dropout on the classical embedding"})
    init_strategy: str = field(default="small_gaussian", metadata={
        "choices": INIT_STRATEGIES,
        "help": "initialisation of the circuit parameters: small_gaussian (near-identity circuits), official (the "
                "paper code's), uniform (angles over [0, 2pi), the barren-plateau-prone control)"})
    init_std: float = field(default=0.1, metadata={"type": positive_float,
                                                   "help": "standard deviation of the small_gaussian init"})
    use_layerwise_training: bool = field(default=False, metadata={
        "help": "grow the trainable ansatz layers gradually (one more every --layerwise_epochs epochs)"})
    layerwise_epochs: int = field(default=2, metadata={"type": positive_int,
                                                       "help": "epochs per ansatz-layer stage with --use_layerwise_training"})
    postselection_weight: float = field(default=0.0, metadata={
        "type": nonnegative_float,
        "help": "adds WEIGHT * (-log mean post-selection probability) to the training loss, so training trades "
                "cross-entropy for fewer repetitions on a device; 0 = the paper's loss"})
    freeze_circuit: bool = field(default=False, metadata={
        "help": "a control: the circuit's parameters (the token-to-angle map, the LCU and polynomial coefficients, "
                "the readout angles) stay at their initialisation; only the embedding and the head train"})
    normalise_features: bool = normalise_features_field()

    def __post_init__(self) -> None:
        if self.init_strategy not in INIT_STRATEGIES:
            raise ValueError(f"init_strategy {self.init_strategy!r}: choose from {', '.join(INIT_STRATEGIES)}")
        if self.qsvt_degree < 1:
            raise ValueError(f"qsvt_degree must be >= 1, got {self.qsvt_degree}")
        if self.layerwise_epochs < 1:
            raise ValueError(f"layerwise_epochs must be >= 1, got {self.layerwise_epochs}")
        if self.postselection_weight < 0:
            raise ValueError(f"postselection_weight must be >= 0, got {self.postselection_weight}")


@register("quixer", QuixerConfig)
class QuixerModel(nn.Module):
    """Sizes and settings come from `config` (QuixerConfig, which holds their defaults and checks)."""

    def __init__(self, vocab_size: int, context_length: int, config: QuixerConfig) -> None:
        super().__init__()
        self.vocab_size, self.context_length = vocab_size, context_length
        self.qubits, self.ansatz_layers, self.qsvt_degree = config.qubits, config.ansatz_layers, config.qsvt_degree
        self.layerwise_epochs = config.layerwise_epochs if config.use_layerwise_training else 0  # 0: all from the start
        self.postselection_weight = config.postselection_weight
        self.gates = tuple(circuit14_gates(self.qubits, self.ansatz_layers))
        self.readout_gates = tuple(circuit14_gates(self.qubits, 1))
        self.angles_per_layer = 4 * self.qubits

        embedding_dim = config.embedding_dim
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.dropout = nn.Dropout(config.dropout)
        self.token_angles = nn.Linear(embedding_dim, len(self.gates))
        self.lcu_real = nn.Parameter(torch.empty(context_length))
        self.lcu_imag = nn.Parameter(torch.empty(context_length))
        self.poly_coeffs = nn.Parameter(torch.empty(self.qsvt_degree + 1))
        self.readout_angles = nn.Parameter(torch.empty(len(self.readout_gates)))
        self.head = feature_head(3 * self.qubits, embedding_dim, vocab_size, config.normalise_features)
        # 1 for the angles of active ansatz layers; persistent so a loaded checkpoint evaluates as trained.
        self.register_buffer("angle_mask", torch.ones(len(self.gates)))
        self._norm2: torch.Tensor | None = None
        self._initialise(config.init_strategy, config.init_std)
        self._set_active_layers(1 if self.layerwise_epochs > 0 else self.ansatz_layers)
        if self.layerwise_epochs > 0:
            with torch.no_grad():  # layers not yet active start exactly at the identity
                self.token_angles.weight[self.angles_per_layer:] = 0.0
                self.token_angles.bias[self.angles_per_layer:] = 0.0
        self.freeze_circuit = config.freeze_circuit
        if self.freeze_circuit:
            for parameter in self.circuit_parameters():
                parameter.requires_grad_(False)

    def circuit_parameters(self) -> list[nn.Parameter]:
        """What defines the circuit given the embeddings: the token-to-angle map, LCU and polynomial
        coefficients, readout angles."""
        return [self.token_angles.weight, self.token_angles.bias, self.lcu_real, self.lcu_imag, self.poly_coeffs,
                self.readout_angles]

    def no_weight_decay(self) -> set[str]:
        """Angles and coefficients are not weights to shrink: zero angles are the identity circuit."""
        return {"token_angles.weight", "token_angles.bias", "lcu_real", "lcu_imag", "poly_coeffs", "readout_angles"}

    @property
    def output_layer(self) -> nn.Linear:
        return self.head[-1]

    def memory_estimate(self, windows: int, dtype: torch.dtype = torch.float32) -> tuple[int, str]:
        """Bytes the simulator holds for a forward + backward of `windows` windows (chunked as tightly as
        possible), and the flags that drive it, checked before anything is allocated."""
        needed = simulation_total_bytes(windows, self.qubits, self.context_length, self.qsvt_degree, dtype,
                                        num_gates=len(self.gates), chunk=1)
        return needed, (f"--qubits {self.qubits} (2^{self.qubits} amplitudes per state) x {self.context_length} "
                        f"tokens x --qsvt_degree {self.qsvt_degree} powers")

    def _initialise(self, strategy: str, std: float) -> None:
        """`small_gaussian`: angles ~ N(0, std^2) (near-identity circuits, away from barren plateaus);
        `official`: the paper code's init; `uniform`: angles spread over [0, 2pi), the plateau-prone control.
        beta and c are U[0, 1) throughout: with all LCU coefficients in one quadrant and c >= 0 the
        near-identity M has |sum b| close to 1, so the post-selection probability starts high."""
        emb_dim = self.embedding.embedding_dim
        with torch.no_grad():
            for layer in self.head:
                if isinstance(layer, nn.Linear):
                    nn.init.xavier_uniform_(layer.weight)
                    nn.init.zeros_(layer.bias)
            self.lcu_real.uniform_(0.0, 1.0)
            self.lcu_imag.uniform_(0.0, 1.0)
            self.poly_coeffs.uniform_(0.0, 1.0)
            if strategy == "official":
                self.embedding.weight.normal_(0.0, 0.02)
                nn.init.xavier_uniform_(self.token_angles.weight)
                nn.init.zeros_(self.token_angles.bias)
                self.readout_angles.uniform_(0.0, 1.0)
            elif strategy == "small_gaussian":
                self.embedding.weight.normal_(0.0, 1.0)
                self.token_angles.weight.normal_(0.0, std / math.sqrt(emb_dim))
                nn.init.zeros_(self.token_angles.bias)
                self.readout_angles.normal_(0.0, std)
            else:
                self.embedding.weight.normal_(0.0, 1.0)
                self.token_angles.weight.normal_(0.0, std / math.sqrt(emb_dim))
                self.token_angles.bias.uniform_(0.0, 2 * math.pi)
                self.readout_angles.uniform_(0.0, 2 * math.pi)

    def _set_active_layers(self, active: int) -> None:
        self.active_layers = active
        self.angle_mask.zero_()
        self.angle_mask[: active * self.angles_per_layer] = 1.0

    def on_epoch_start(self, epoch: int) -> dict:
        """Layerwise growth (Skolik et al. 2021): one more ansatz layer every `layerwise_epochs` epochs."""
        if self.layerwise_epochs > 0:
            self._set_active_layers(min(self.ansatz_layers, 1 + (epoch - 1) // self.layerwise_epochs))
        else:
            self._set_active_layers(self.ansatz_layers)
        return {"active_layers": self.active_layers}

    def extra_metrics(self) -> dict[str, torch.Tensor]:
        """Mean ||psi||^2 of the last forward's windows: the probability that the LCU/polynomial post-selection
        succeeds (a device tensor: reading it is left to the caller's logging points)."""
        if self._norm2 is None:
            return {"postselection": torch.tensor(float("nan"))}
        return {"postselection": self._norm2.detach().mean()}

    def auxiliary_loss(self) -> torch.Tensor | None:
        """postselection_weight * (-log mean ||psi||^2) of the last forward: pushes training towards circuits a
        device post-selects more often (None when the weight is 0, the paper's loss)."""
        if self.postselection_weight <= 0 or self._norm2 is None or not self._norm2.numel():
            return None
        return -self.postselection_weight * torch.log(self._norm2.mean().clamp_min(1e-30))

    def lcu_coefficients(self) -> tuple[torch.Tensor, torch.Tensor]:
        """b = beta / ||beta||_1 as (real, imaginary) parts."""
        norm = torch.sqrt(self.lcu_real**2 + self.lcu_imag**2).sum()
        return self.lcu_real / norm, self.lcu_imag / norm

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.dim() != 2 or tokens.shape[1] != self.context_length:
            raise ValueError(f"tokens must be [B, {self.context_length}], got {tuple(tokens.shape)}")
        angles = self.token_angles(self.dropout(self.embedding(tokens))) * self.angle_mask   # [W, T, G]
        b_re, b_im = self.lcu_coefficients()
        psi = polynomial_state(angles.permute(2, 0, 1), b_re, b_im, self.poly_coeffs, self.qubits, self.gates)
        norm2 = (psi * psi).sum((0, 1))                                            # [W]
        self._norm2 = norm2
        psi = psi / torch.sqrt(norm2.clamp_min(1e-30))
        psi = run_circuit(psi, self.readout_angles.unsqueeze(-1), self.qubits, self.readout_gates)
        features = pauli_expectations(psi, self.qubits).transpose(0, 1)          # [W, 3n]
        return self.head(features)
