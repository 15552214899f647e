"""The whole study as data: its settings (settings.py), the stage runs they make (plan.py, a pure function),
and the runner that makes them in an --out folder (runner.py); `python -m quixer_rna.study` (run_pipeline.sh)
is its command line and records.py its bookkeeping (timings.json, which stage completed)."""
