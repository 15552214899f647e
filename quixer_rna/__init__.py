"""quixer-rna: Quixer on human RNA k-mers, measured against classical baselines."""

__version__ = "0.1.0"
