"""How the markdown report writes numbers, intervals and tables (one place, so every section agrees)."""

from __future__ import annotations

import math
from typing import Any, Sequence

from .stats import Interval

NONE = "-"


def number(value: float | int | None, digits: int = 4) -> str:
    """Integers with thousands separators, floats with `digits` decimals (or significant digits when very
    large or small)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return NONE
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if abs(value) >= 1e5 or (value != 0 and abs(value) < 1e-3):
        return f"{value:.{digits}g}"
    return f"{value:.{digits}f}"


def signed(value: float, digits: int = 4) -> str:
    return f"{value:+.{digits}f}"


def interval(ci: Interval | None, digits: int = 3) -> str:
    return NONE if ci is None else f"[{ci.low:.{digits}f}, {ci.high:.{digits}f}]"


def with_interval(ci: Interval | None, digits: int = 4) -> str:
    """'+0.0870 [0.067, 0.106]'."""
    return NONE if ci is None else f"{signed(ci.point, digits)} {interval(ci)}"


def mean_sd(mean: float, sd: float | None, digits: int = 4) -> str:
    return f"{mean:.{digits}f}" + ("" if sd is None else f" ± {sd:.{digits}f}")


def percent(value: float | None) -> str:
    return NONE if value is None else f"{100 * value:.2f}%"


def seconds(value: float | None) -> str:
    if value is None:
        return NONE
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


def plain(value: Any, digits: int = 4) -> str:
    """A setting or hyperparameter as text: numbers as `number`, mappings as 'key value, ...'."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {plain(v, digits)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(plain(v, digits) for v in value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return number(value, digits)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return NONE if value is None else str(value)


def table(header: Sequence[str], lines: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |" for line in lines]
    return "\n".join(out)
