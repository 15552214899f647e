#!/usr/bin/env python3
"""Which Quixer seeds leave the unigram plateau: what each seed draws at initialisation, and its first steps.

Every model starts on the train unigram (its output bias) and must learn to use its inputs to leave it. Quixer's
inputs reach the head only through the 3n features its circuit measures, and with near-identity circuits
(--init_strategy small_gaussian) those barely depend on the tokens at first. Per seed and --init_std this prints,
at initialisation: the polynomial coefficients c_0..c_d; the token gain |s P'(s) / P(s)| at s = sum_t b_t (with
M = s (I + e) near the identity, P(M)|0..0> = P(s)|0..0> + s P'(s) e|0..0> + ...: how strongly the state follows
the tokens, relative to itself); the spread of the features over training windows (standard deviation, averaged
over the 3n features); the gradient reaching the token-to-angle map; and the loss. With --steps N each is then
trained N steps by the trainer under the study's protocol (whole epochs of --batch_size windows, the schedule of
an --epochs budget, an evaluation every --eval_every steps) and its validation losses printed, with the step where
it first went --plateau_margin below the train unigram's validation loss, or that it did not. --poly starts every
seed at the given polynomial coefficients (everything else its own draw): swapping them between seeds tells
whether the coefficients or the rest of the draw and the data order decide.

    python benchmarks/quixer_init.py --data_dir runs/refseq4000/raw_tokens --seeds 0 1 2 3 4 5 6 7
    python benchmarks/quixer_init.py --data_dir runs/refseq4000/raw_tokens --seeds 0 1 --steps 6000
    python benchmarks/quixer_init.py --data_dir runs/refseq4000/raw_tokens --seeds 1 --steps 6000 --poly 0.231,0.618,0.527
    python benchmarks/quixer_init.py --data_dir runs/refseq4000/raw_tokens --seeds 0 1 2 3 --init_std 0.1 0.3 --steps 6000
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from typing import Any

import torch

from quixer_rna.cli import add_common_args, make_parser, run_cli, seed_everything
from quixer_rna.errors import UserError
from quixer_rna.formats.tokens import TokenData, open_tokens
from quixer_rna.models import build_model
from quixer_rna.models.quixer import QuixerConfig, QuixerModel
from quixer_rna.study.settings import Settings
from quixer_rna.training import TrainConfig, Trainer
from quixer_rna.training.distributed import setup_distributed
from quixer_rna.training.optim import start_at_unigram


def coefficients(text: str) -> list[float]:
    try:
        return [float(value) for value in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__, __file__)
    parser.add_argument("--data_dir", required=True, help="a token folder (prepare_classical_benchmarks.py output)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3], help="seeds to build the model at")
    parser.add_argument("--init_std", type=float, nargs="+", default=[QuixerConfig().init_std],
                        help="standard deviations of the small_gaussian angles to compare (the study's: 0.1)")
    parser.add_argument("--poly", type=coefficients, default=None, metavar="C0,C1,..",
                        help="start every seed at these polynomial coefficients (--qsvt_degree + 1 of them)")
    parser.add_argument("--normalise_features", action="store_true",
                        help="standardise the features before the head (QuixerConfig's switch; the study's: off)")
    parser.add_argument("--windows", type=int, default=2048, help="training windows the features are measured on")
    study = Settings().converging()  # the study protocol's Quixer and training settings are the defaults
    parser.add_argument("--embedding_dim", type=int, default=study.quixer_embedding_dim, help="the study's")
    parser.add_argument("--qubits", type=int, default=study.quixer_qubits, help="the study's")
    parser.add_argument("--ansatz_layers", type=int, default=study.quixer_ansatz_layers, help="the study's")
    parser.add_argument("--qsvt_degree", type=int, default=study.quixer_qsvt_degree, help="the study's")
    parser.add_argument("--steps", type=int, default=0, help="then train each this many steps (0: initialisation only)")
    parser.add_argument("--epochs", type=int, default=study.epochs,
                        help="the epoch budget the learning-rate schedule spans")
    parser.add_argument("--batch_size", type=int, default=study.batch_size, help="the study's")
    parser.add_argument("--eval_every", type=int, default=study.eval_every, help="the study's")
    parser.add_argument("--val_windows", type=int, default=study.val_windows, help="the study's")
    parser.add_argument("--plateau_margin", type=float, default=study.plateau_margin,
                        help="a run has left the plateau once its validation loss is this far below the unigram's")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    add_common_args(parser, device=True, overwrite=False)
    return parser


def token_gain(model: QuixerModel) -> float:
    """|s P'(s) / P(s)| at s = sum_t b_t: the relative change of the state per relative change of M."""
    b_re, b_im = (part.detach().to(torch.float64) for part in model.lcu_coefficients())
    s = torch.complex(b_re.sum(), b_im.sum())
    c = model.poly_coeffs.detach().to(torch.complex128)
    value = sum(c[k] * s**k for k in range(len(c)))
    slope = sum(k * c[k] * s ** (k - 1) for k in range(1, len(c)))
    return float(abs(s * slope / value))


def at_init(model: QuixerModel, windows: torch.Tensor) -> dict[str, float]:
    """Feature spread over the windows, the gradient reaching the token-to-angle map, and the loss."""
    model.eval()
    seen: dict[str, torch.Tensor] = {}
    hook = model.head[0].register_forward_hook(lambda module, inputs, output: seen.update(features=inputs[0]))
    try:
        loss = torch.nn.functional.cross_entropy(model(windows[:, :-1]), windows[:, -1])
        loss.backward()
    finally:
        hook.remove()
    grad = torch.cat([model.token_angles.weight.grad.flatten(), model.token_angles.bias.grad])
    model.zero_grad(set_to_none=True)
    return {"spread": seen["features"].detach().std(0).mean().item(), "grad": grad.norm().item(),
            "loss": loss.item(), "gain": token_gain(model)}


class _Stop(Exception):
    """Ends a training check after --steps."""


def train_check(args: argparse.Namespace, data: TokenData, config: QuixerConfig, seed: int,
                poly: torch.Tensor | None) -> tuple[list[tuple[int, float]], float]:
    """The study's training for --steps steps: its validation curve and the train unigram's validation loss."""
    train = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, max_steps_per_epoch=0,
                        eval_every=args.eval_every, patience=0, val_windows=args.val_windows, checkpoint_every=0,
                        device=args.device, seed=seed)
    curve: list[tuple[int, float]] = []

    def on_evaluation(row: dict[str, Any]) -> None:
        curve.append((row["step"], row["val_loss"]))
        if row["step"] >= args.steps:
            raise _Stop

    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer("quixer", config, data, train, folder, setup_distributed(args.device), resume=False)
        if poly is not None:
            with torch.no_grad():
                trainer.model.poly_coeffs.copy_(poly)
        try:
            trainer.run(on_evaluation=on_evaluation)
        except _Stop:
            pass
        return curve, trainer.val_unigram_loss


def run_benchmark(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    data = open_tokens(args.data_dir)
    train_windows, _ = data.training_windows(1.0, 0)
    context = train_windows.window_size - 1
    poly = None
    if args.poly is not None:
        if len(args.poly) != args.qsvt_degree + 1:
            raise UserError(f"--poly: {len(args.poly)} coefficients for --qsvt_degree {args.qsvt_degree}; "
                             f"give {args.qsvt_degree + 1}")
        poly = torch.tensor(args.poly)
    pick = torch.randint(0, train_windows.num_windows, (args.windows,), generator=torch.Generator().manual_seed(0))
    windows = train_windows.batch(pick).long()
    print(f"{args.data_dir}: {train_windows.num_windows:,} training windows, vocabulary {data.vocab_size}; "
          f"E={args.embedding_dim} n={args.qubits} L={args.ansatz_layers} d={args.qsvt_degree} small_gaussian, "
          f"features over {args.windows} windows")
    print(f"{'seed':>4} {'std':>5} {'c_0..c_d':<18} {'token gain':>10} {'feature sd':>10} {'angle grad':>10} "
          f"{'loss':>8}" + ("  validation loss at every evaluation" if args.steps else ""))
    for seed, std in itertools.product(args.seeds, args.init_std):
        config = QuixerConfig(embedding_dim=args.embedding_dim, qubits=args.qubits, ansatz_layers=args.ansatz_layers,
                              qsvt_degree=args.qsvt_degree, init_strategy="small_gaussian", init_std=std,
                              normalise_features=args.normalise_features)
        seed_everything(seed)  # as the trainer does before it builds the model
        model = build_model("quixer", data.vocab_size, context, config)
        start_at_unigram(model, train_windows.target_counts())
        if poly is not None:
            with torch.no_grad():
                model.poly_coeffs.copy_(poly)
        row = at_init(model, windows)
        drawn = " ".join(f"{value:.3f}" for value in model.poly_coeffs.tolist())
        line = (f"{seed:>4} {std:>5.2f} {drawn:<18} {row['gain']:>10.3f} {row['spread']:>10.4f} {row['grad']:>10.5f} "
                f"{row['loss']:>8.4f}")
        if args.steps:
            curve, unigram = train_check(args, data, config, seed, poly)
            left = next((step for step, loss in curve if loss < unigram - args.plateau_margin), None)
            verdict = f"left the plateau by step {left}" if left else f"on the plateau through step {curve[-1][0]}"
            line += (f"  {' '.join(f'{loss:.4f}' for _, loss in curve)}  (unigram {unigram:.4f}: {verdict}; "
                     f"{curve[-1][1]:.4f} at step {curve[-1][0]})")
        print(line, flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), run_benchmark, argv)


if __name__ == "__main__":
    raise SystemExit(main())
