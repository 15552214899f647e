"""The report's one way of reading another stage's JSON: every key it needs is required, so a renamed or
missing key is a one-line UserError naming the file and the key, never a "-" in a table. Folder metadata is
read through its format's dataclass (quixer_rna.formats); `require` demands the fields that such a dataclass
leaves optional (a folder made by hand may lack them) and the report shows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UserError


class Strict:
    """A JSON object read from `path`; every accessor raises a one-line UserError naming the file and the
    dotted key when the key is absent or of the wrong type."""

    def __init__(self, data: Any, path: Path, where: str = ""):
        if not isinstance(data, dict):
            raise UserError(f"{path}: {where.rstrip('.') or 'the file'} is not a JSON object; rerun the stage that "
                            "wrote it")
        self.data, self.path, self.where = data, Path(path), where

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def __getitem__(self, key: str) -> Any:
        if key not in self.data:
            raise UserError(f"{self.path}: no '{self.where}{key}', which the report reads; rerun the stage that wrote "
                            "this file")
        return self.data[key]

    def _typed(self, key: str, types: tuple[type, ...], what: str) -> Any:
        value = self[key]
        if isinstance(value, bool) != (bool in types) or not isinstance(value, types):
            raise UserError(f"{self.path}: '{self.where}{key}' is {value!r}, expected {what}")
        return value

    def sub(self, key: str) -> "Strict":
        return Strict(self[key], self.path, f"{self.where}{key}.")

    def number(self, key: str) -> float:
        return float(self._typed(key, (int, float), "a number"))

    def integer(self, key: str) -> int:
        return int(self._typed(key, (int,), "an integer"))

    def text(self, key: str) -> str:
        return str(self._typed(key, (str,), "text"))

    def flag(self, key: str) -> bool:
        return bool(self._typed(key, (bool,), "true or false"))

    def counts(self, key: str) -> dict[str, int]:
        sub = self.sub(key)
        return {name: sub.integer(name) for name in sub.data}

    def number_or_none(self, key: str) -> float | None:
        """A key that must be present and may be null."""
        return None if self[key] is None else self.number(key)

    def integer_or_none(self, key: str) -> int | None:
        return None if self[key] is None else self.integer(key)


def require(record: Any, path: Path, *names: str, where: str = "") -> None:
    """Each of the fields `names` of a metadata dataclass read from `path` must be recorded (not None)."""
    for name in names:
        if getattr(record, name) is None:
            raise UserError(f"{path}: no '{where}{name}', which the report reads; rerun the stage that wrote this "
                            "file")
