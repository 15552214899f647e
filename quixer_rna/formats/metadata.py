"""metadata.json of every folder format, read and written one way.

Each format module declares its metadata as a frozen dataclass deriving from `Metadata` and describes the
folder in a `FolderFormat`: the format's name and version, how a user names such a folder, the command that
rebuilds one and, where an earlier layout existed, how to recognise it. `Metadata.read` checks in order that
the folder exists, that it holds the file, that the file is a JSON object of this format (else the legacy hint,
where the format has one) and of this version (an earlier version is upgraded where only a key was renamed; else
one line naming the command that rebuilds the folder), and
then every field: a field without a default must be there, and every field there must have its declared type.
Each problem is one UserError naming the file and the field.

`Metadata.write` writes the object back atomically, "format" and "version" first, then the fields in their
declared order. A field whose value is None and whose default is None is left out of the file, and a field
absent from the file reads as its default, so `read` after `write` gives an equal object. Keys the dataclass
does not declare are ignored (a later version may add some; the version number guards renamed ones).

Which fields have no default: those a later stage needs to open and use the folder. What a stage records only
for people and the report (statistics, provenance) has a default of None, so a folder made by hand in a test
still opens; the report demands what it shows (quixer_rna.report.strict.require).
"""

from __future__ import annotations

import functools
import types
import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal, TypeVar, Union

from ..errors import UserError
from ..runio import ARGS_FILE, atomic_write_json, read_json

METADATA_FILE = "metadata.json"
SHOWN_CHARS = 40  # of a wrong value in an error line

M = TypeVar("M", bound="Metadata")


def rebuild_hint(folder: Path, command: str) -> str:
    """'rebuild it: python <command> --overwrite', the command taken from the folder's run record (args.json)
    when it has one, else `command`."""
    try:
        recorded = read_json(Path(folder) / ARGS_FILE).get("command") or []
    except (UserError, AttributeError):
        recorded = []
    shown = " ".join(str(part) for part in recorded if part != "--overwrite") or command
    return f"rebuild it: python {shown} --overwrite"


@dataclass(frozen=True)
class FolderFormat:
    """What identifies one folder format and what a user is told when a folder is not of it."""

    name: str  # the "format" value, e.g. "quixer-rna-kmer-stream"
    version: int
    title: str  # in "<title> version 2, this code reads 1", e.g. "k-mer stream"
    what: str  # in "not <what>", e.g. "a k-mer stream folder"
    flag: str  # how a user names such a folder, e.g. "--data_dir"; "" where no flag does
    expected: str  # in "give <expected>", e.g. "the output folder of prepare_autoregressive_data.py"
    rebuild: Callable[[Path], str]  # folder -> one clause naming the command that rebuilds it
    legacy: Callable[[Path], str | None] = lambda folder: None  # folder -> the message for an earlier layout
    file: str = METADATA_FILE
    # version v -> the function that turns metadata of version v into version v + 1, where the change was only
    # in metadata.json (a renamed key), so folders written before it still open without a rebuild
    upgrades: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = field(default_factory=dict)

    def named(self, folder: Path) -> str:
        return f"{self.flag} {folder}" if self.flag else str(folder)


def read_versioned(folder: str | Path, form: FolderFormat) -> dict[str, Any]:
    """The folder's metadata as a JSON object of `form`'s name and version, or a one-line UserError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{form.named(folder)}: folder not found")
    path = folder / form.file
    if not path.is_file():
        raise UserError(form.legacy(folder) or f"{form.named(folder)}: no {form.file}; give {form.expected}")
    data = read_json(path, f"{form.file} of {form.what}")
    if not isinstance(data, dict) or data.get("format") != form.name:
        found = data.get("format") if isinstance(data, dict) else None
        raise UserError(form.legacy(folder) or f"{path}: not {form.what} (format {found!r}); give {form.expected}")
    while data.get("version") in form.upgrades and data["version"] < form.version:
        data = {**form.upgrades[data["version"]](data), "version": data["version"] + 1}
    if data.get("version") != form.version:
        raise UserError(f"{path}: {form.title} version {data.get('version')}, this code reads {form.version}; "
                        f"{form.rebuild(folder)}")
    return data


class Metadata:
    """Base of each format's metadata dataclass (declared `@dataclass(frozen=True, kw_only=True)`)."""

    FORMAT: ClassVar[FolderFormat]

    @classmethod
    def read(cls: type[M], folder: str | Path) -> M:
        """The folder's metadata, every field checked (one line naming the file and the field)."""
        folder = Path(folder)
        data = read_versioned(folder, cls.FORMAT)
        return decode(cls, data, Place(folder / cls.FORMAT.file, lambda: cls.FORMAT.rebuild(folder)))

    def write(self, folder: str | Path) -> None:
        """metadata.json written atomically: format, version, then the fields."""
        form = self.FORMAT
        atomic_write_json(Path(folder) / form.file, {"format": form.name, "version": form.version, **encode(self)})


# ---- typed decoding -------------------------------------------------------------------------------------------

def place(source: str) -> "Place":
    """Where a JSON object being decoded came from, for its error lines (not a file: nothing to rebuild)."""
    return Place(Path(source), lambda: "it is built by this code, so this is a bug: report it")


@dataclass(frozen=True)
class Place:
    """The file being read and the clause that says how to rebuild it (computed only for an error)."""

    path: Path
    hint: Callable[[], str]

    def missing(self, where: str) -> UserError:
        return UserError(f"{self.path}: no '{where}'; {self.hint()}")

    def mistyped(self, where: str, value: Any, expected: str) -> UserError:
        shown = repr(value)
        if len(shown) > SHOWN_CHARS:
            shown = shown[:SHOWN_CHARS] + "..."
        return UserError(f"{self.path}: '{where}' is {shown}, expected {expected}; {self.hint()}")


_SCALARS: dict[Any, tuple[tuple[type, ...], str]] = {
    bool: ((bool,), "true or false"),
    int: ((int,), "an integer"),
    float: ((int, float), "a number"),
    str: ((str,), "text"),
}


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def decode(cls: type[M], data: dict[str, Any], place: Place, prefix: str = "") -> M:
    """An instance of dataclass `cls` from a JSON object, every declared field checked."""
    hints = _hints(cls)
    values: dict[str, Any] = {}
    for item in fields(cls):
        where = prefix + item.name
        if item.name not in data:
            if item.default is MISSING and item.default_factory is MISSING:
                raise place.missing(where)
            continue
        values[item.name] = _value(hints[item.name], data[item.name], where, place)
    return cls(**values)


def _value(kind: Any, value: Any, where: str, place: Place) -> Any:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [arg for arg in args if arg is not type(None)]
        return _value(inner, value, where, place)
    if origin is Literal:
        if not any(value == arg and type(value) is type(arg) for arg in args):
            raise place.mistyped(where, value, "one of " + ", ".join(repr(arg) for arg in args))
        return value
    if is_dataclass(kind):
        if not isinstance(value, dict):
            raise place.mistyped(where, value, "an object")
        return decode(kind, value, place, where + ".")
    if typing.is_typeddict(kind):
        if not isinstance(value, dict):
            raise place.mistyped(where, value, "an object")
        return _typed_dict(kind, value, where, place)
    if origin is dict:
        if not isinstance(value, dict):
            raise place.mistyped(where, value, "an object")
        return {key: _value(args[1], item, f"{where}.{key}", place) for key, item in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise place.mistyped(where, value, "a list")
        return [_value(args[0], item, f"{where}.{i}", place) for i, item in enumerate(value)]
    accepted, expected = _SCALARS[kind]
    if not isinstance(value, accepted) or (isinstance(value, bool) and kind is not bool):
        raise place.mistyped(where, value, expected)
    return value


def _typed_dict(kind: Any, value: dict[str, Any], where: str, place: Place) -> dict[str, Any]:
    checked: dict[str, Any] = {}
    for key, item_kind in _hints(kind).items():
        if key not in value:
            if key in kind.__required_keys__:
                raise place.missing(f"{where}.{key}")
            continue
        checked[key] = _value(item_kind, value[key], f"{where}.{key}", place)
    return checked


def encode(obj: Any) -> Any:
    """The JSON form of a metadata dataclass: fields in order, a None-valued field of default None left out."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return {item.name: encode(getattr(obj, item.name)) for item in fields(obj)
                if not (getattr(obj, item.name) is None and item.default is None)}
    if isinstance(obj, dict):
        return {key: encode(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [encode(value) for value in obj]
    return obj
