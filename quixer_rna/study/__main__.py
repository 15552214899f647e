"""The command line of the whole study (run_pipeline.sh runs `python -m quixer_rna.study "$@"`)."""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path
from typing import Callable, NoReturn, Sequence

from ..errors import UserError
from .plan import MODELS, plan, protocol_models
from .runner import absolute, describe, run
from .settings import PROTOCOLS, SEARCH_SCOPES, TRACKS, Choices, Settings

PROG = "run_pipeline.sh"
USAGE = (f"{PROG} [--fasta FILE... | --csv CSV --email ADDRESS] [--out DIR] [--quick] [--device auto|cpu|cuda[:N]] "
         "[--seeds 0,1,...] [--tune N] [--search_scope model|training] [--train_fractions F,...] "
         "[--tracks clusters,raw] [--models M,...] [--jobs N] [--protocol capped|converge] [--gene_map TSV] "
         "[--split_by gene|family|region] [--normalise_features] [--dry_run]")
DESCRIPTION = """\
The whole study in one command: (download ->) prepare -> encode -> quantize -> two token tracks (the cluster
tokens and raw k-mers) -> Quixer, LSTM, Transformer, FNet and the n-gram on each (and the nucleotide Markov
reference on raw k-mers) -> Quixer's circuit cost -> report, each stage in its own folder under --out.

With no --fasta or --csv the data are SYNTHETIC transcripts: the pipeline and its report say so loudly.
Rerunning the same command with the same --out skips completed stages (run with the same arguments), lets the
trainers resume from their last checkpoint and reruns any other unfinished stage; a second pipeline on the
same --out while one runs is refused. Set PYTHON to choose the interpreter of the stages (default python3).
Every setting (and the --quick preset) is in quixer_rna/study/settings.py."""


class _Parser(argparse.ArgumentParser):
    """A mistake is one line naming the flag, then the usage line; exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n{self.format_usage()}")


def _matching(pattern: str, expected: str) -> Callable[[str], str]:
    def check(text: str) -> str:
        if not re.fullmatch(pattern, text):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return text
    return check


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, usage=USAGE, description=DESCRIPTION, allow_abbrev=False,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fasta", nargs="+", action="extend", default=[], metavar="FILE",
                        help="FASTA file(s) of transcripts (gzip allowed)")
    parser.add_argument("--csv", help="NCBI's GRCh38_latest_rna_summary.csv: download its RefSeq mRNAs (needs --email)")
    parser.add_argument("--email", help="a contact address for NCBI Entrez (with --csv)")
    parser.add_argument("--out", help="the study's folder (default runs/DATE-TIME)")
    parser.add_argument("--quick", action="store_true", help="the same stages on a small problem (about 2 minutes)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N, for every stage that computes")
    parser.add_argument("--seeds", type=_matching(r"[0-9]+(,[0-9]+)*", "whole numbers separated by commas"),
                        default=str(Settings.seed), help="train every neural model once per seed (0,1,2,...)")
    parser.add_argument("--tune", type=_matching(r"[0-9]+", "a number of trials"), default="0",
                        help="tune every model with N Optuna trials first, then train it with its best parameters")
    parser.add_argument("--search_scope", choices=SEARCH_SCOPES, default="model",
                        help="with --tune N: 'model' searches each model's whole space (training settings, "
                             "embedding, width, depth); 'training' searches the learning rate, weight decay and "
                             "dropout of every model at the study's sizes (the tuner's --search_scope)")
    parser.add_argument("--train_fractions", default="1",
                        type=_matching(r"(0?\.[0-9]+|1)(,(0?\.[0-9]+|1))*", "fractions in (0, 1] separated by commas"),
                        help="data-scaling runs on these shares of the training genes")
    parser.add_argument("--tracks", default=",".join(TRACKS),
                        type=_matching(r"(clusters|raw)(,(clusters|raw))?", "clusters, raw or clusters,raw"),
                        help="the token tracks to run")
    names = "|".join(MODELS)
    parser.add_argument("--models", default=None, type=_matching(rf"({names})(,({names}))*",
                                                              f"neural models separated by commas ({', '.join(MODELS)})"),
                        help="run only these neural models (default: all of the protocol's); the count references "
                             "and the report always run, the circuit stage with Quixer; a later run may name more")
    parser.add_argument("--jobs", type=_matching(r"[1-9][0-9]*", "a number of parallel tracks >= 1"), default="2",
                        help="token tracks side by side, each process with cores/N threads (unless "
                             "OMP_NUM_THREADS is set)")
    parser.add_argument("--protocol", choices=PROTOCOLS, default=None,
                        help="'converge' trains every neural model over whole epochs until its val loss stops "
                             "improving, with the controls for Quixer's circuit (the default with --seeds or --tune); "
                             "'capped' trains a few hundred steps per epoch (the default run: about 10 minutes, "
                             "not converged, as its report says)")
    parser.add_argument("--gene_map", metavar="TSV",
                        help="transcript id -> gene table for FASTA headers that name no gene (prepare's --gene_map)")
    parser.add_argument("--split_by", choices=("gene", "family", "region"), default="gene",
                        help="what prepare keeps whole in one split: genes, families sharing sequence, or blocks of "
                             "a chromosome or genome FASTA (prepare's --split_by)")
    parser.add_argument("--normalise_features", action="store_true",
                        help="Quixer, its frozen twin and the bottleneck control standardise their features before "
                             "the head (the trainers' and tuner's --normalise_features); give the study its own --out")
    parser.add_argument("--dry_run", action="store_true",
                        help="print the stages, their folders and commands (and which completed), and run nothing")
    return parser


def choices_from(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Choices:
    """The command line's choices, checked as a whole; paths made absolute."""
    if args.fasta and args.csv is not None:
        parser.error("give --fasta or --csv, not both")
    if args.csv is not None and args.email is None:
        parser.error("--csv needs --email ADDRESS (NCBI asks for a contact)")
    if args.email is not None and args.csv is None:
        parser.error("--email goes with --csv")
    for path in args.fasta:
        if not os.path.isfile(path):
            parser.error(f"--fasta {path}: file not found")
    if args.csv is not None and not os.path.isfile(args.csv):
        parser.error(f"--csv {args.csv}: file not found")
    if args.gene_map is not None and not os.path.isfile(args.gene_map):
        parser.error(f"--gene_map {args.gene_map}: file not found")
    study = args.seeds != str(Settings.seed) or args.tune != "0"
    protocol = args.protocol or ("converge" if study else "capped")
    models = tuple(dict.fromkeys(args.models.split(","))) if args.models else ()
    runnable = {name for track in TRACKS for name in protocol_models(track, protocol == "converge")}
    outside = [name for name in models if name not in runnable]
    if outside:
        parser.error(f"--models {','.join(outside)}: the controls for the circuit run under --protocol converge")
    return Choices(
        out=absolute(args.out or f"runs/{time.strftime('%Y%m%d-%H%M%S')}"),
        fasta=tuple(absolute(path) for path in args.fasta), csv=args.csv, email=args.email, quick=args.quick,
        device=args.device, seeds=tuple(args.seeds.split(",")), tune=int(args.tune),
        train_fractions=tuple(args.train_fractions.split(",")), tracks=tuple(args.tracks.split(",")),
        jobs=int(args.jobs), protocol=protocol, split_by=args.split_by, normalise_features=args.normalise_features,
        search_scope=args.search_scope, models=models,
        gene_map=None if args.gene_map is None else absolute(args.gene_map))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    choices = choices_from(parser, args)
    settings = Settings.quick() if choices.quick else Settings()
    if choices.converging:
        settings = settings.converging(quick=choices.quick)
    root = Path(__file__).resolve().parents[2]
    stages = plan(settings, choices, root, os.environ.get("PYTHON") or sys.executable)
    try:
        if args.dry_run:
            print("\n".join(describe(stages, settings, choices)), flush=True)
            return 0
        return run(stages, settings, choices)
    except UserError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the plan piped into `head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
