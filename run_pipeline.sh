#!/usr/bin/env bash
# The whole study in one command: (download ->) prepare -> encode -> quantize -> two token tracks (the 512
# cluster tokens and raw k-mers) -> Quixer, LSTM, Transformer, FNet, the n-gram and the nucleotide Markov
# reference on each -> Quixer's circuit cost -> report, each stage in its own folder under --out. Opt-in:
# --seeds (every neural model per seed), --tune N (every model tuned with the same budget, then trained with its
# best parameters), --train_fractions (data-scaling runs). With --seeds or --tune the study protocol trains every
# neural model until its validation loss stops improving, with the controls for Quixer's circuit beside them
# (--protocol converge); the default run is capped at a few hundred steps per epoch and says so. --dry_run
# prints the stages and their commands and runs nothing.
#
# With no --fasta or --csv the data are SYNTHETIC transcripts (download_rna_sequences.py --source
# synthetic): the pipeline and its report say so loudly. Rerunning the same command with the same --out
# skips completed stages (run with the same arguments), lets the trainers resume from their last checkpoint
# and reruns any other unfinished stage; a second pipeline on the same --out while one runs is refused.
# Set PYTHON to choose the interpreter (default python3, which must have this project installed:
# pip install -r requirements.txt).
#
# usage: run_pipeline.sh [--fasta FILE... | --csv CSV --email ADDRESS] [--out DIR] [--quick] [--device auto|cpu|cuda[:N]]
#        [--seeds 0,1,...] [--tune N] [--search_scope model|training] [--train_fractions F,...] [--tracks clusters,raw]
#        [--models M,...] [--jobs N] [--protocol capped|converge] [--gene_map TSV] [--split_by gene|family|region]
#        [--normalise_features] [--dry_run]
# The settings, the plan and the runner are in quixer_rna/study/ (settings.py holds every setting).
set -euo pipefail
exec "${PYTHON:-python3}" -m quixer_rna.study "$@"
