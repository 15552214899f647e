"""The results report of a study (make_report.py): every stage folder under a runs folder, found by its run
record's role, read strictly; model results over seeds and genes as typed records; report.md, report.json and
the figures rendered from the same records.

    collect    run records, model results grouped into token tracks and variants, per-gene test losses
    readers    the prepare, tokenizer and pipeline stages' files (strict: strict.py)
    tuning     each tuner's curve;  quantum: the circuit stage's cost (its own section)
    stats      the hierarchical gene-and-seed bootstrap, paired comparisons, the equivalence test
    summary    a track's records: references, model rows, the best on validation, scaling
    records    the record types;  markdown, figures: the renderers (JSON: dataclasses.asdict)
    build      make_report
"""

from .build import make_report

__all__ = ["make_report"]
