#!/usr/bin/env bash
# Launch lambeq_encoder.py on a GPU (or CPU) box with the seeds' positional arguments:
#   bash run_lambeq_gpu.sh DATA_DIR OUTPUT_DIR EMBEDDING_DIM WORKERS DEVICE [extra lambeq_encoder.py flags]
# DEVICE is cpu, cuda or cuda:N (cuda:N pins the job to GPU N, nvidia-smi's numbering, with
# CUDA_VISIBLE_DEVICES; under a scheduler that set CUDA_VISIBLE_DEVICES, N counts within the GPUs it gave).
# Each worker gets OMP_NUM_THREADS threads when set, else cores/WORKERS (also MKL_NUM_THREADS). The log goes
# to OUTPUT_DIR/encode.log as well.
# Set PYTHON to choose the interpreter (default python3), e.g. PYTHON=/tmp/venv/bin/python.
set -euo pipefail

usage() {
    echo "usage: bash $(basename "$0") DATA_DIR OUTPUT_DIR EMBEDDING_DIM WORKERS DEVICE [lambeq_encoder.py flags...]" >&2
    echo "       e.g. bash $(basename "$0") data/sentences out/embeddings 64 8 cuda   (DEVICE: cpu, cuda or cuda:N)" >&2
    [ -n "${1:-}" ] && echo "error: $1" >&2
    exit 2
}

[ "$#" -ge 5 ] || usage "expected 5 arguments, got $#"
DATA_DIR=$1
OUTPUT_DIR=$2
EMBEDDING_DIM=$3
WORKERS=$4
DEVICE=$5
shift 5

[[ "$EMBEDDING_DIM" =~ ^[0-9]+$ ]] || usage "EMBEDDING_DIM '$EMBEDDING_DIM' is not a positive integer"
[[ "$WORKERS" =~ ^[0-9]+$ ]] && [ "$WORKERS" -ge 1 ] || usage "WORKERS '$WORKERS' is not a positive integer"
[ -d "$DATA_DIR" ] || usage "DATA_DIR '$DATA_DIR' is not a folder"

PYTHON=${PYTHON:-python3}
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

case "$DEVICE" in
    cpu)
        DEVICE_FLAG=cpu
        ;;
    cuda)
        DEVICE_FLAG=cuda
        ;;
    cuda:*)
        INDEX=${DEVICE#cuda:}
        [[ "$INDEX" =~ ^[0-9]+$ ]] || usage "DEVICE '$DEVICE': expected cuda:N with N a GPU index"
        export CUDA_DEVICE_ORDER=${CUDA_DEVICE_ORDER:-PCI_BUS_ID}
        if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then
            IFS=, read -r -a GIVEN <<< "$CUDA_VISIBLE_DEVICES"
            [ "$INDEX" -lt "${#GIVEN[@]}" ] || usage "DEVICE $DEVICE: CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES gives this job ${#GIVEN[@]} GPU(s)"
            INDEX=${GIVEN[$INDEX]}
        fi
        export CUDA_VISIBLE_DEVICES=$INDEX
        DEVICE_FLAG=cuda
        ;;
    *)
        usage "DEVICE '$DEVICE': expected cpu, cuda or cuda:N"
        ;;
esac

if [ "$DEVICE_FLAG" = cuda ]; then
    if ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
        echo "error: DEVICE $DEVICE asked for but $PYTHON sees no CUDA GPU (torch.cuda.is_available() is False);" \
             "check nvidia-smi, CUDA_VISIBLE_DEVICES and the torch build, or pass cpu" >&2
        exit 2
    fi
fi

CORES=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
THREADS=${OMP_NUM_THREADS:-$(( CORES / WORKERS ))}
[ "$THREADS" -ge 1 ] || THREADS=1
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS

mkdir -p "$OUTPUT_DIR"
LOG="$OUTPUT_DIR/encode.log"
echo "$(date -u +%FT%TZ) run_lambeq_gpu.sh: device $DEVICE, $WORKERS worker(s) x $THREADS thread(s), python $PYTHON" | tee -a "$LOG"

"$PYTHON" "$SCRIPT_DIR/lambeq_encoder.py" \
    --data_dir "$DATA_DIR" \
    --output_dir "$OUTPUT_DIR" \
    --embedding_dim "$EMBEDDING_DIM" \
    --workers "$WORKERS" \
    --device "$DEVICE_FLAG" \
    "$@" 2>&1 | tee -a "$LOG" >&2
