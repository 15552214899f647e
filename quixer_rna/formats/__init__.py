"""One module per on-disk format; each has the writer the producing stage uses and the validating
loader every consuming stage uses."""

SPLITS = ("train", "val", "test")
