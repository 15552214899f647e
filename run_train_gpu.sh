#!/usr/bin/env bash
# Launch one training job pinned to its GPU(s):
#   bash run_train_gpu.sh DEVICES MODEL OUTPUT_DIR [trainer flags...]
# DEVICES: cpu, one GPU index N (CUDA_VISIBLE_DEVICES=N, one process), or a list N,M,... (those GPUs only,
# one DistributedDataParallel process per GPU through torchrun, NCCL). MODEL: quixer (train_quixer_hybrid.py)
# or lstm, transformer, fnet, ngram (train_classical_baselines.py --model MODEL). Flags after OUTPUT_DIR go
# to the trainer (--data_dir is required there). One job per GPU on a 4-GPU box:
#   for g in 0 1 2 3; do bash run_train_gpu.sh $g quixer runs/q$g --data_dir tokens --seed $g & done; wait
# GPU indices are nvidia-smi's (CUDA_DEVICE_ORDER=PCI_BUS_ID) and, under a scheduler that already set
# CUDA_VISIBLE_DEVICES, count within the GPUs it gave the job (DEVICES 0 is its first GPU, never another).
# Each process gets OMP_NUM_THREADS CPU threads when set, else cores/processes: for several jobs side by
# side give each its share, e.g. OMP_NUM_THREADS=$(( $(nproc) / 4 )) for four. The log goes to
# OUTPUT_DIR/train.log as well. Rerunning the same command resumes from OUTPUT_DIR/checkpoint_last.pt.
# Under torchrun --batch_size is the global batch, split across the GPUs (1024 per GPU fills one; give
# 4096 on four). Set PYTHON to choose the interpreter.
set -euo pipefail

usage() {
    echo "usage: bash $(basename "$0") DEVICES MODEL OUTPUT_DIR [trainer flags...]" >&2
    echo "       DEVICES: cpu, N or N,M,... (GPU indices); MODEL: quixer, lstm, transformer, fnet or ngram" >&2
    [ -n "${1:-}" ] && echo "error: $1" >&2
    exit 2
}

[ "$#" -ge 3 ] || usage "expected at least 3 arguments, got $#"
DEVICES=$1
MODEL=$2
OUTPUT_DIR=$3
shift 3

PYTHON=${PYTHON:-python3}
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

case "$MODEL" in
    quixer) TRAINER=("$SCRIPT_DIR/train_quixer_hybrid.py") ;;
    lstm|transformer|fnet|ngram) TRAINER=("$SCRIPT_DIR/train_classical_baselines.py" --model "$MODEL") ;;
    *) usage "MODEL '$MODEL': expected quixer, lstm, transformer, fnet or ngram" ;;
esac

if [ "$DEVICES" = cpu ]; then
    DEVICE_FLAG=cpu
    NPROC=1
elif [[ "$DEVICES" =~ ^[0-9]+(,[0-9]+)*$ ]]; then
    export CUDA_DEVICE_ORDER=${CUDA_DEVICE_ORDER:-PCI_BUS_ID}
    if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then
        IFS=, read -r -a GIVEN <<< "$CUDA_VISIBLE_DEVICES"
        PICKED=()
        for index in ${DEVICES//,/ }; do
            [ "$index" -lt "${#GIVEN[@]}" ] || usage "DEVICES $DEVICES: GPU $index, but CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES gives this job ${#GIVEN[@]}"
            PICKED+=("${GIVEN[$index]}")
        done
        DEVICES=$(IFS=,; echo "${PICKED[*]}")
    fi
    export CUDA_VISIBLE_DEVICES=$DEVICES
    DEVICE_FLAG=cuda
    NPROC=$(( $(tr -cd , <<< "$DEVICES" | wc -c) + 1 ))
    if ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.device_count() >= $NPROC else 1)" 2>/dev/null; then
        echo "error: DEVICES $DEVICES asked for $NPROC GPU(s) but $PYTHON sees fewer (torch.cuda.device_count());" \
             "check nvidia-smi and the torch build, or pass cpu" >&2
        exit 2
    fi
else
    usage "DEVICES '$DEVICES': expected cpu, a GPU index N or a list N,M,..."
fi
[ "$MODEL" != ngram ] || [ "$NPROC" -eq 1 ] || usage "ngram counts on one process; give it one device"

CORES=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
THREADS=${OMP_NUM_THREADS:-$(( CORES / NPROC ))}
[ "$THREADS" -ge 1 ] || THREADS=1
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS

if [ "$NPROC" -gt 1 ]; then
    LAUNCH=("$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$NPROC")
else
    LAUNCH=("$PYTHON")
fi
DEVICE_ARGS=()
[ "$MODEL" = ngram ] || DEVICE_ARGS=(--device "$DEVICE_FLAG")

mkdir -p "$OUTPUT_DIR"
LOG="$OUTPUT_DIR/train.log"
echo "$(date -u +%FT%TZ) run_train_gpu.sh: $MODEL on $DEVICES, $NPROC process(es) x $THREADS thread(s), python $PYTHON" \
    | tee -a "$LOG"
"${LAUNCH[@]}" "${TRAINER[@]}" --output_dir "$OUTPUT_DIR" "${DEVICE_ARGS[@]}" "$@" 2>&1 | tee -a "$LOG" >&2
