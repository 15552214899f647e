"""One module per on-disk format; each has the writer the producing stage uses and the validating
loader every consuming stage uses."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..errors import UserError

SPLITS = ("train", "val", "test")


def split_files(folder: str | Path, flag: str, splits: Sequence[str] = SPLITS) -> dict[str, Path]:
    """`<folder>/<split>.pt` for each split; a missing folder or file is a UserError naming `flag`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{flag} {folder}: folder not found")
    missing = [s for s in splits if not (folder / f"{s}.pt").is_file()]
    if missing:
        raise UserError(f"{flag} {folder}: missing split file(s) {', '.join(m + '.pt' for m in missing)}")
    return {s: folder / f"{s}.pt" for s in splits}
