"""Conventions every root script shares: common flags, logging, seeding, device choice, and the
wrapper that turns a user's mistake into one line on stderr instead of a traceback."""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
from typing import Any, Callable, Sequence

from .errors import UserError
from .runio import close_open_records

LOG = logging.getLogger("quixer_rna")
LOG_LEVELS = ("debug", "info", "warning", "error")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows every flag's default in --help and keeps the description's line breaks."""


def make_parser(description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(description=description, formatter_class=HelpFormatter)


def add_common_args(
    parser: argparse.ArgumentParser,
    *,
    device: bool = False,
    overwrite: bool = True,
    seed_default: int = 0,
) -> None:
    """Add --seed, --log_level and, where the stage computes, --device; --overwrite where it writes."""
    group = parser.add_argument_group("common")
    group.add_argument("--seed", type=int, default=seed_default, help="random seed; the same seed gives the same outputs")
    group.add_argument(
        "--log_level", choices=LOG_LEVELS, default="info", help="logging verbosity; 'debug' also shows tracebacks of errors"
    )
    if device:
        group.add_argument(
            "--device",
            default="auto",
            help="where to compute: 'auto' (CUDA when present, else CPU), 'cpu', 'cuda' or 'cuda:N'",
        )
    if overwrite:
        group.add_argument(
            "--overwrite", action="store_true", help="replace results in a non-empty output folder instead of refusing"
        )


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (when already imported or importable) so runs repeat."""
    random.seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    try:
        import numpy as np

        np.random.seed(seed % (2**32))
    except ImportError:
        pass
    if "torch" in sys.modules:
        import torch

        torch.manual_seed(seed)


def resolve_device(spec: str) -> "Any":
    """Turn --device into a torch.device; asking for CUDA where there is none is a UserError."""
    import torch

    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {spec}: CUDA is not available on this machine; use --device cpu or auto")
        if ":" in spec:
            index_text = spec.split(":", 1)[1]
            if not index_text.isdigit():
                raise UserError(f"--device {spec}: expected cuda:N with N a GPU index")
            index = int(index_text)
            if index >= torch.cuda.device_count():
                raise UserError(
                    f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) visible (indices from 0)"
                )
            return torch.device("cuda", index)
        return torch.device("cuda")
    raise UserError(f"--device {spec}: expected auto, cpu, cuda or cuda:N")


def run_cli(
    parser: argparse.ArgumentParser,
    body: Callable[[argparse.Namespace], int | None],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse arguments, set up logging and seeds, run `body`; user errors become one stderr line
    and exit code 2, Ctrl-C exit code 130."""
    args = parser.parse_args(argv)
    level = getattr(args, "log_level", "info")
    setup_logging(level)
    if hasattr(args, "seed"):
        seed_everything(args.seed)
    prog = parser.prog
    try:
        code = body(args)
    except UserError as exc:
        if level == "debug":
            LOG.exception("user error")
        close_open_records("failed", str(exc))
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        close_open_records("interrupted", "KeyboardInterrupt")
        print(f"{prog}: interrupted; rerun the same command to resume where supported", file=sys.stderr)
        return 130
    except BaseException as exc:
        close_open_records("failed", f"{type(exc).__name__}: {exc}")
        raise
    return int(code or 0)
