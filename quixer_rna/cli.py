"""Conventions every root script shares: the parser (one-line errors, --config files), typed flags checked
where they are parsed, flags generated from a stage's config dataclass and parsed back into it once (and into
the run record), the check of a flag that only repeats an upstream fact, common flags, logging, seeding,
device choice, and the wrapper that turns a user's mistake into one line on stderr instead of a traceback."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import random
import sys
from typing import Any, Callable, NoReturn, Sequence

from .errors import UserError
from .progress import Every
from .runio import read_json

LOG = logging.getLogger("quixer_rna")
LOG_LEVELS = ("debug", "info", "warning", "error")
# The command line of the stage this process runs (run_cli sets it: main(argv) in-process is not sys.argv).
_COMMAND: list[str] = []


def command_line() -> list[str]:
    """What the run record calls the command: the script and its arguments."""
    return list(_COMMAND) or [os.path.basename(sys.argv[0]), *sys.argv[1:]]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows every flag's default in --help and keeps the description's line breaks."""


class StageParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr (naming the flag), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class ConfigFileParser(StageParser):
    """A StageParser whose --config JSON file supplies defaults that command-line flags override."""

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None):
        pre = argparse.ArgumentParser(add_help=False)
        pre.add_argument("--config")
        known, _ = pre.parse_known_args(args)
        if known.config:
            self.set_defaults(**self._config_values(known.config))
        return super().parse_known_args(args, namespace)

    def _config_value(self, path: str, key: str, value: Any, action: argparse.Action) -> Any:
        """A JSON value converted the way the flag would convert it, or a one-line error."""
        bad = f"--config {path}: {key}={value!r} is not a valid value"
        if action.nargs == 0:  # store_true / store_false switches
            if not isinstance(value, bool):
                self.error(f"{bad} (expected true or false)")
            return value
        if value is None or action.type is None:
            return value
        if isinstance(value, bool) or (action.type is int and isinstance(value, float) and not value.is_integer()):
            self.error(bad)
        try:
            return action.type(value)
        except (TypeError, ValueError, argparse.ArgumentTypeError) as exc:
            self.error(f"{bad} ({exc})")

    def _config_values(self, path: str) -> dict[str, Any]:
        try:
            values = read_json(path, "--config file")
        except UserError as exc:
            self.error(f"--config {exc}")
        if not isinstance(values, dict):
            self.error(f"--config {path}: expected a JSON object of flag values")
        actions = {a.dest: a for a in self._actions if a.dest not in ("help", "config")}
        unknown = sorted(k for k in values if k not in actions)
        if unknown:
            self.error(
                f"--config {path}: unknown key(s) {', '.join(unknown)}; keys must be flags of this script without "
                f"the dashes (e.g. {', '.join(sorted(actions)[:4])})"
            )
        checked: dict[str, Any] = {}
        for key, value in values.items():
            action = actions[key]
            value = self._config_value(path, key, value, action)
            if action.choices is not None and value not in action.choices:
                self.error(f"--config {path}: {key}={value!r}; choose from {list(action.choices)}")
            checked[key] = value
            # A required flag given in the file no longer has to be on the command line.
            action.required = False
        return checked


def make_parser(description: str, script: str | None = None, config_file: bool = False) -> StageParser:
    """The parser of a root script (`script`: its __file__, which names it in errors and run records)."""
    cls = ConfigFileParser if config_file else StageParser
    prog = os.path.basename(script) if script else None
    return cls(prog=prog, description=description, formatter_class=HelpFormatter)


# ---- typed flags: a value outside its range is refused where it is parsed, naming the flag -------------------

class _Number:
    """An argparse type: `cast` the text and require `test`, else a one-line error naming what is expected."""

    def __init__(self, cast: type, test: Callable[[Any], bool], wording: str):
        self.cast, self.test, self.wording = cast, test, wording

    def __call__(self, text: str | int | float) -> Any:
        """Parse a flag's text, or check a number from a --config file (3.0 is a whole number, 3.5 is not)."""
        try:
            if isinstance(text, bool):
                raise ValueError
            if isinstance(text, float) and self.cast is int and not text.is_integer():
                raise ValueError
            value = self.cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {self.wording}, got {text!r}") from None
        if isinstance(value, float) and not math.isfinite(value) or not self.test(value):
            raise argparse.ArgumentTypeError(f"expected {self.wording}, got {text!r}")
        return value

    def __repr__(self) -> str:
        return self.wording


positive_int = _Number(int, lambda v: v >= 1, "a whole number >= 1")
nonnegative_int = _Number(int, lambda v: v >= 0, "a whole number >= 0")
positive_float = _Number(float, lambda v: v > 0, "a number > 0")
nonnegative_float = _Number(float, lambda v: v >= 0, "a number >= 0")
open_fraction = _Number(float, lambda v: 0 < v < 1, "a fraction in (0, 1)")
share = _Number(float, lambda v: 0 < v <= 1, "a fraction in (0, 1]")
rate = _Number(float, lambda v: 0 <= v < 1, "a number in [0, 1)")


def every(text: str) -> Every:
    """--log_every: N (optimiser steps) or Ns / Nm (seconds / minutes of wall time)."""
    text = text.strip().lower()
    try:
        if text.endswith("s"):
            value = Every(seconds=float(text[:-1]))
        elif text.endswith("m"):
            value = Every(seconds=60 * float(text[:-1]))
        else:
            value = Every(steps=int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N (steps), Ns or Nm (seconds, minutes), got {text!r}") from None
    if (value.steps or 0) < 0 or (value.seconds or 0) < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative interval, got {text!r}")
    return value


def add_dataclass_args(group: Any, cls: type, *, skip: Sequence[str] = ()) -> None:
    """One flag per field of a config dataclass: the field's default, and its metadata's help, argparse type,
    choices, and (where given) nargs, metavar and required. Booleans become switches."""
    for item in dataclasses.fields(cls):
        if item.name in skip:
            continue
        meta = item.metadata
        if isinstance(item.default, bool):
            group.add_argument(f"--{item.name}", action="store_true", help=meta.get("help"))
            continue
        extra = {key: meta[key] for key in ("nargs", "metavar", "required") if key in meta}
        default = None if meta.get("required") else item.default
        if "nargs" in meta:  # a repeated flag adds values (--fasta a --fasta b); one given replaces a default list
            extra["action"] = "extend" if default in (None, ()) else "store"
        group.add_argument(f"--{item.name}", type=meta.get("type"), default=default, choices=meta.get("choices"),
                           help=meta.get("help"), **extra)


def _union_owners(classes: dict[str, type]) -> dict[str, list[tuple[str, dataclasses.Field]]]:
    """Each field name of several config dataclasses, with the classes (by name) that have it."""
    seen: dict[str, list[tuple[str, dataclasses.Field]]] = {}
    for name, cls in classes.items():
        for item in dataclasses.fields(cls):
            seen.setdefault(item.name, []).append((name, item))
    return seen


def add_union_args(group: Any, classes: dict[str, type]) -> None:
    """Flags for several config dataclasses at once (one script, several models): each field once, default
    None meaning "the chosen model's default", which the help lists per model."""
    for field_name, owners in _union_owners(classes).items():
        meta = owners[0][1].metadata
        defaults = ", ".join(f"{name} {item.default}" for name, item in owners if item.default is not None)
        users = "all" if len(owners) == len(classes) else ", ".join(name for name, _ in owners)
        text = f"{meta.get('help')} ({users}; default {defaults or 'see the help text'})"
        if all(isinstance(item.default, bool) for _, item in owners):  # a switch: given means True
            group.add_argument(f"--{field_name}", action="store_const", const=True, default=None,
                               help=text.replace("%", "%%"))
            continue
        group.add_argument(f"--{field_name}", type=meta.get("type"), default=None, choices=meta.get("choices"),
                           help=text.replace("%", "%%"))


def refuse_foreign_union_args(namespace: argparse.Namespace, classes: dict[str, type], chosen: str) -> None:
    """A flag of add_union_args given for a `chosen` class without that field is a mistake, not something to
    ignore: one UserError naming the flag and the classes that have it."""
    for field_name, owners in _union_owners(classes).items():
        names = [name for name, _ in owners]
        if chosen not in names and getattr(namespace, field_name) is not None:
            raise UserError(f"--{field_name}: a setting of {', '.join(names)}; drop it for --model {chosen}")


def config_from_args(cls: type, namespace: argparse.Namespace, **resolved: Any) -> Any:
    """A stage's config dataclass from parsed flags of the same names: built once, at the script boundary.
    `resolved`: values the script worked out from others (e.g. a default output folder named after --model)."""
    return cls(**{**dataclass_values(cls, namespace), **resolved})


def config_record(config: Any) -> dict[str, Any]:
    """A config's fields as a run record keeps them: by flag name, in field order (nested values such as an
    Every are written as their text)."""
    return {item.name: getattr(config, item.name) for item in dataclasses.fields(config)}


def run_record(namespace: argparse.Namespace, **resolved: Any) -> dict[str, Any]:
    """What the run record of a script with several configs keeps as its arguments: every flag by name, in
    the parser's order, with the values the script resolved (see config_from_args); --log_level, which only
    sets logging, is left out."""
    return {name: resolved.get(name, value) for name, value in vars(namespace).items() if name != "log_level"}


def check_repeated(flag: str, given: int | None, actual: int, fact: str, metadata: Any, *,
                   at_most: bool = False) -> None:
    """A flag that only repeats an upstream fact (the seeds' --k, --max_kmers, --seq_len) may be given, and
    must agree with it: `given` equal to `actual` (with `at_most`, no smaller), or a one-line error naming the
    flag, the fact as `metadata` (the upstream metadata.json) records it, and what to do."""
    if given is None or given == actual or (at_most and given > actual):
        return
    raise UserError(f"--{flag} {given}: {fact} ({metadata}); drop --{flag} (it is read from there)")


def dataclass_values(cls: type, namespace: argparse.Namespace, *, given_only: bool = False) -> dict[str, Any]:
    """The values of `cls`'s fields in a parsed namespace (flags of the same names); with `given_only`, only
    those not None (the rest keep the dataclass's defaults)."""
    values = {item.name: getattr(namespace, item.name) for item in dataclasses.fields(cls) if hasattr(namespace, item.name)}
    return {k: v for k, v in values.items() if v is not None} if given_only else values


def add_common_args(
    parser: argparse.ArgumentParser,
    *,
    device: bool = False,
    overwrite: bool = True,
    seed_default: int = 0,
) -> None:
    """Add --seed, --log_level and, where the stage computes, --device; --overwrite where it writes."""
    group = parser.add_argument_group("common")
    group.add_argument("--seed", type=nonnegative_int, default=seed_default,
                       help="random seed; the same seed gives the same outputs")
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
    """Seed Python, NumPy and torch (when already imported) so runs repeat."""
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
    """Turn --device into a torch.device (cuda:N also becomes this process's current device, so every
    allocation without an explicit index lands there); CUDA where there is none is a UserError."""
    import torch

    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {spec}: CUDA is not available on this machine; use --device cpu or auto")
        if ":" not in spec:
            return torch.device("cuda", torch.cuda.current_device())
        index_text = spec.split(":", 1)[1]
        if not index_text.isdigit():
            raise UserError(f"--device {spec}: expected cuda:N with N a GPU index")
        index = int(index_text)
        if index >= torch.cuda.device_count():
            raise UserError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) visible (indices from 0)")
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    raise UserError(f"--device {spec}: expected auto, cpu, cuda or cuda:N")


def run_cli(
    parser: argparse.ArgumentParser,
    body: Callable[[argparse.Namespace], int | None],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse arguments, set up logging and seeds, run `body`; user errors become one stderr line and exit
    code 2, Ctrl-C exit code 130 (the stage's own record says how it ended: quixer_rna.stage)."""
    _COMMAND[:] = [parser.prog, *(sys.argv[1:] if argv is None else argv)]
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a bad flag (2, its one line already printed)
        _COMMAND.clear()
        return int(exc.code or 0)
    level = getattr(args, "log_level", "info")
    setup_logging(level)
    if hasattr(args, "seed"):
        seed_everything(args.seed)
    try:
        code = body(args)
    except UserError as exc:
        if level == "debug":
            LOG.exception("user error")
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted; rerun the same command to resume where supported", file=sys.stderr)
        return 130
    finally:
        _COMMAND.clear()
    return int(code or 0)
