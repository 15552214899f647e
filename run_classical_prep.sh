#!/usr/bin/env bash
# FASTA -> k-mer sentences (OUT_DIR/sentences) -> raw k-mer token files (OUT_DIR/tokens) for the
# classical baselines. Extra arguments go to prepare_autoregressive_data.py (e.g. --k 6 --stride 6).
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

"$python" "$here/prepare_autoregressive_data.py" --fasta "$fasta" --output_dir "$out_dir/sentences" "$@"
"$python" "$here/prepare_classical_benchmarks.py" --data_dir "$out_dir/sentences" --output_dir "$out_dir/tokens"
echo "raw k-mer tokens in $out_dir/tokens"
