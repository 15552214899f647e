#!/usr/bin/env bash
# FASTA -> k-mer streams (OUT_DIR/kmers) -> raw k-mer tokens (OUT_DIR/tokens) for the classical baselines:
#   bash run_classical_prep.sh FASTA OUT_DIR [prepare_autoregressive_data.py flags ...]
# then train on them with `train_classical_baselines.py --data_dir OUT_DIR ...` (the trainers find
# OUT_DIR/tokens). Extra arguments go to prepare_autoregressive_data.py (e.g. --k 6 --stride 6).
# Rerunning the same command skips a step that completed and redoes one that did not.
# Set PYTHON to choose the interpreter (default python3).
set -euo pipefail

usage="usage: $(basename "$0") FASTA OUT_DIR [prepare_autoregressive_data.py flags ...]"
if [[ $# -lt 2 || "$1" == -* || "$2" == -* ]]; then
    echo "$usage" >&2
    exit 2
fi
fasta="$1"
out_dir="$2"
shift 2
if [[ ! -f "$fasta" ]]; then
    echo "$(basename "$0"): error: FASTA $fasta: file not found" >&2
    echo "$usage" >&2
    exit 2
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3}"

step() {  # step FOLDER COMMAND...: skip a step that completed with the same arguments
    local folder="$1"
    shift
    if "$python" -m quixer_rna.study.records completed "$folder" "${@:2}"; then
        echo "$(basename "$0"): $folder already completed; skipped"
    else
        "$@"
    fi
}

step "$out_dir/kmers" "$python" "$here/prepare_autoregressive_data.py" --fasta "$fasta" --output_dir "$out_dir/kmers" "$@"
step "$out_dir/tokens" "$python" "$here/prepare_classical_benchmarks.py" --data_dir "$out_dir/kmers" \
    --output_dir "$out_dir/tokens"
echo "raw k-mer tokens in $out_dir/tokens (train on them with --data_dir $out_dir)"
