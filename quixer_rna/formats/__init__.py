"""One module per on-disk format; each has the writer the producing stage uses and the validating
loader every consuming stage uses. Every folder format's metadata.json is a dataclass read and written
through quixer_rna.formats.metadata."""

SPLITS = ("train", "val", "test")
