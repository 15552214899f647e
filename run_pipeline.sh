#!/usr/bin/env bash
# The whole study in one command: (download ->) prepare -> encode -> quantize -> Quixer -> n-gram, LSTM
# and Transformer baselines -> report, each stage in its own folder under --out.
#
# With no --fasta or --csv the data are SYNTHETIC transcripts (download_rna_sequences.py --source
# synthetic): the pipeline and its report say so loudly. Rerunning the same command with the same --out
# skips completed stages (args.json status "completed"), lets the trainers resume from their last
# checkpoint and reruns any other unfinished stage with --overwrite.
# Set PYTHON to choose the interpreter (default python3).
set -euo pipefail

# ---- settings -------------------------------------------------------------------------------------
# Chosen so the default run (500 transcripts) ends in under 10 minutes and --quick in under 2 minutes
# on a 2-core CPU with no GPU; the report shows these values and each stage's wall time.
SEED=0
SYNTHETIC_TRANSCRIPTS=500        # synthetic transcripts when no --fasta / --csv is given
K=6                              # k-mer length (nt); non-overlapping k-mers (stride = k)
WINDOW_SIZE=32                   # k-mers per window: 31 of context, then the target
MIN_LENGTH=200                   # shorter transcripts are skipped (and counted)
ENCODE_EMBEDDING_DIM=64          # lambeq circuit embedding size per k-mer
N_CLUSTERS=512                   # k-means clusters = token vocabulary
EPOCHS=5                         # epochs of every neural model (early stopping on val loss)
BATCH_SIZE=64
MAX_STEPS_PER_EPOCH=400          # cap on optimiser steps per epoch (a fresh random subset each epoch)
CHECKPOINT_EVERY=100             # trainer steps between checkpoints, besides every epoch end
QUIXER_EMBEDDING_DIM=128         # the paper uses 512; 128 keeps the default run inside its time budget
QUIXER_QUBITS=6                  # n, L and d as in the Quixer paper
QUIXER_ANSATZ_LAYERS=4
QUIXER_QSVT_DEGREE=3
BASELINE_EMBEDDING_DIM=96        # LSTM and Transformer width (the Quixer paper's baselines)
NGRAM_ORDER=3
BOOTSTRAP=1000                   # transcript resamples per 95% interval in the report

# --quick: the same stages on a smaller problem (used by the end-to-end test).
QUICK_SYNTHETIC_TRANSCRIPTS=60
QUICK_N_CLUSTERS=32
QUICK_EPOCHS=2
QUICK_MAX_STEPS_PER_EPOCH=20
QUICK_CHECKPOINT_EVERY=5
QUICK_BOOTSTRAP=200

# ---- arguments ------------------------------------------------------------------------------------
usage="usage: $(basename "$0") [--fasta FILE... | --csv CSV --email ADDRESS] [--out DIR] [--quick] [--device auto|cpu|cuda[:N]]"
die_usage() {
    [[ $# -gt 0 ]] && echo "$(basename "$0"): error: $1" >&2
    echo "$usage" >&2
    exit 2
}

# ---- bookkeeping ----------------------------------------------------------------------------------
# timings.json: {"settings": {...}, "stages": [{"stage", "folder", "status", "seconds"}]}; a rerun with
# other settings into the same --out is refused, since its completed stages would be reused.
settings() {  # key=value pairs; values that parse as JSON (numbers, true/false) are stored as such
    local inputs=""
    [[ ${#fasta[@]} -gt 0 ]] && inputs="${fasta[*]}"
    [[ -n "$csv" ]] && inputs="$csv"
    printf '%s\n' "source=$source_name" "inputs=${inputs:-null}" "synthetic=$([[ $synthetic -eq 1 ]] && echo true || echo false)" \
        "quick=$([[ $quick -eq 1 ]] && echo true || echo false)" "seed=$SEED" \
        "synthetic_transcripts=$([[ $synthetic -eq 1 ]] && echo "$SYNTHETIC_TRANSCRIPTS" || echo null)" \
        "k=$K" "window_size=$WINDOW_SIZE" "min_length=$MIN_LENGTH" "encode_embedding_dim=$ENCODE_EMBEDDING_DIM" \
        "n_clusters=$N_CLUSTERS" "epochs=$EPOCHS" "batch_size=$BATCH_SIZE" "max_steps_per_epoch=$MAX_STEPS_PER_EPOCH" \
        "quixer_embedding_dim=$QUIXER_EMBEDDING_DIM" "quixer_qubits=$QUIXER_QUBITS" \
        "quixer_ansatz_layers=$QUIXER_ANSATZ_LAYERS" "quixer_qsvt_degree=$QUIXER_QSVT_DEGREE" \
        "baseline_embedding_dim=$BASELINE_EMBEDDING_DIM" "ngram_order=$NGRAM_ORDER" "bootstrap=$BOOTSTRAP"
}

timings_update() {  # timings_update init KEY=VALUE... | timings_update stage NAME FOLDER STATUS SECONDS
    PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" "$python" - "$timings" "$@" <<'PY'
import json, sys
from pathlib import Path
from quixer_rna.runio import atomic_write_json

path, action, *rest = sys.argv[1:]
old = json.loads(Path(path).read_text()) if Path(path).is_file() else {}
if action == "init":
    settings = {}
    for pair in rest:
        key, _, text = pair.partition("=")
        try:
            settings[key] = json.loads(text)
        except json.JSONDecodeError:
            settings[key] = text
    if old.get("settings") not in (None, settings):
        changed = sorted(k for k in settings if old["settings"].get(k) != settings[k])
        sys.exit(f"pipeline: {Path(path).parent} was run with other settings ({', '.join(changed)}); use another --out")
    old["settings"] = settings
    old.setdefault("stages", [])
else:
    name, folder, status, seconds = rest
    stages = [s for s in old.get("stages", []) if s.get("stage") != name]
    previous = next((s for s in old.get("stages", []) if s.get("stage") == name), None)
    if status == "skipped" and previous is not None:
        entry = dict(previous, status="completed earlier")
    else:
        entry = {"stage": name, "folder": folder, "status": status, "seconds": float(seconds)}
    old["stages"] = stages + [entry]
atomic_write_json(path, old)
PY
}

completed() { [[ -f "$1/args.json" ]] && grep -q '"status": "completed"' "$1/args.json"; }

# run_stage NAME FOLDER MODE COMMAND...
#   MODE resume:    a trainer; an unfinished run continues from its checkpoint_last.pt, or is redone with
#                   --overwrite when it stopped before its first checkpoint
#   MODE overwrite: an unfinished run is redone with --overwrite
#   MODE self:      an unfinished run is rerun as it was (the NCBI download resumes by itself)
#   MODE always:    runs every time (the report)
run_stage() {
    local name="$1" folder="$2" mode="$3"
    shift 3
    local cmd=("$@")
    if [[ "$mode" != always ]] && completed "$folder"; then
        echo "pipeline: stage $name already completed in $folder; skipped"
        timings_update stage "$name" "$(basename "$folder")" skipped 0
        return 0
    fi
    if [[ "$mode" == resume || "$mode" == overwrite ]] && [[ -d "$folder" && -n "$(ls -A "$folder" 2>/dev/null)" ]]; then
        if [[ "$mode" == resume && -f "$folder/checkpoint_last.pt" ]]; then
            echo "pipeline: stage $name resumes from $folder/checkpoint_last.pt"
        else
            cmd+=(--overwrite)
        fi
    fi
    echo "pipeline: stage $name -> $folder"
    local log="$out/.logs/$name.log"
    mkdir -p "$out/.logs"
    local start end seconds code=0
    start=$(date +%s.%N)
    # stdout passes through; stderr is shown and kept in the log for the one-line failure message.
    ( "${cmd[@]}" 2>&1 1>&3 3>&- | tee "$log" >&2 3>&- ) 3>&1 || code=$?
    end=$(date +%s.%N)
    seconds=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
    if [[ $code -ne 0 ]]; then
        local line
        line=$(tr '\r' '\n' <"$log" | grep -F ': error: ' | tail -n 1 || true)
        [[ -n "$line" ]] || line=$(tr '\r' '\n' <"$log" | grep -v '^[[:space:]]*$' | tail -n 1 || true)
        timings_update stage "$name" "$(basename "$folder")" failed "$seconds" || true
        echo "pipeline: stage $name failed (exit $code): ${line:-no error message}" >&2
        exit "$code"
    fi
    timings_update stage "$name" "$(basename "$folder")" completed "$seconds"
    echo "pipeline: stage $name done in ${seconds} s"
}

# ---- the study (one function, so editing this file during a run cannot change the run) ----------
main() {
    fasta=()
    csv=""
    email=""
    out=""
    quick=0
    device="auto"
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --fasta)
                shift
                while [[ $# -gt 0 && "$1" != --* ]]; do fasta+=("$1"); shift; done
                [[ ${#fasta[@]} -gt 0 ]] || die_usage "--fasta needs at least one file"
                ;;
            --csv) [[ $# -ge 2 ]] || die_usage "--csv needs a file"; csv="$2"; shift 2 ;;
            --email) [[ $# -ge 2 ]] || die_usage "--email needs an address"; email="$2"; shift 2 ;;
            --out) [[ $# -ge 2 ]] || die_usage "--out needs a folder"; out="$2"; shift 2 ;;
            --device) [[ $# -ge 2 ]] || die_usage "--device needs a value"; device="$2"; shift 2 ;;
            --quick) quick=1; shift ;;
            -h|--help) echo "$usage"; exit 0 ;;
            *) die_usage "unknown argument $1" ;;
        esac
    done
    if [[ ${#fasta[@]} -gt 0 && -n "$csv" ]]; then die_usage "give --fasta or --csv, not both"; fi
    if [[ -n "$csv" && -z "$email" ]]; then die_usage "--csv needs --email ADDRESS (NCBI asks for a contact)"; fi
    if [[ -n "$email" && -z "$csv" ]]; then die_usage "--email goes with --csv"; fi
    for f in "${fasta[@]}"; do
        [[ -f "$f" ]] || die_usage "--fasta $f: file not found"
    done
    if [[ -n "$csv" && ! -f "$csv" ]]; then die_usage "--csv $csv: file not found"; fi

    if [[ $quick -eq 1 ]]; then
        SYNTHETIC_TRANSCRIPTS=$QUICK_SYNTHETIC_TRANSCRIPTS
        N_CLUSTERS=$QUICK_N_CLUSTERS
        EPOCHS=$QUICK_EPOCHS
        MAX_STEPS_PER_EPOCH=$QUICK_MAX_STEPS_PER_EPOCH
        CHECKPOINT_EVERY=$QUICK_CHECKPOINT_EVERY
        BOOTSTRAP=$QUICK_BOOTSTRAP
    fi

    here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
    python="${PYTHON:-python3}"
    out="${out:-runs/$(date +%Y%m%d-%H%M%S)}"
    mkdir -p "$out"
    out="$(cd "$out" && pwd)"
    timings="$out/timings.json"

    if [[ ${#fasta[@]} -gt 0 ]]; then
        source_name="FASTA"
        synthetic=0
        for i in "${!fasta[@]}"; do fasta[$i]="$(cd "$(dirname "${fasta[$i]}")" && pwd)/$(basename "${fasta[$i]}")"; done
    elif [[ -n "$csv" ]]; then
        source_name="NCBI RefSeq"
        synthetic=0
    else
        source_name="synthetic"
        synthetic=1
    fi

    mapfile -t pairs < <(settings)
    timings_update init "${pairs[@]}"
    if [[ $synthetic -eq 1 ]]; then
        echo "pipeline: ************************************************************************"
        echo "pipeline: NO --fasta OR --csv GIVEN: THE DATA ARE SYNTHETIC TRANSCRIPTS, NOT HUMAN RNA"
        echo "pipeline: ************************************************************************"
    fi
    echo "pipeline: output in $out"

    if [[ $synthetic -eq 1 ]]; then
        run_stage download "$out/data" overwrite "$python" "$here/download_rna_sequences.py" --source synthetic \
            --max_sequences "$SYNTHETIC_TRANSCRIPTS" --output "$out/data/rna.fasta" --seed "$SEED"
        fasta=("$out/data/rna.fasta")
    elif [[ -n "$csv" ]]; then
        run_stage download "$out/data" self "$python" "$here/download_rna_sequences.py" --csv "$csv" --email "$email" \
            --output "$out/data/rna.fasta" --seed "$SEED"
        fasta=("$out/data/rna.fasta")
    fi

    run_stage prepare "$out/prepare" overwrite "$python" "$here/prepare_autoregressive_data.py" --fasta "${fasta[@]}" \
        --output_dir "$out/prepare" --k "$K" --window_size "$WINDOW_SIZE" --min_length "$MIN_LENGTH" --seed "$SEED"

    run_stage encode "$out/encode" overwrite "$python" "$here/lambeq_encoder.py" --data_dir "$out/prepare" \
        --output_dir "$out/encode" --k "$K" --max_kmers "$WINDOW_SIZE" --embedding_dim "$ENCODE_EMBEDDING_DIM" \
        --device "$device" --seed "$SEED"

    run_stage quantize "$out/quantize" overwrite "$python" "$here/quantize_lambeq_embeddings.py" --embeddings_dir "$out/encode" \
        --output_dir "$out/quantize" --n_clusters "$N_CLUSTERS" --seq_len "$WINDOW_SIZE" --seed "$SEED"

    train_flags=(--data_dir "$out/quantize" --epochs "$EPOCHS" --batch_size "$BATCH_SIZE"
        --max_steps_per_epoch "$MAX_STEPS_PER_EPOCH" --checkpoint_every "$CHECKPOINT_EVERY" --seed "$SEED" --device "$device")

    run_stage quixer "$out/quixer" resume "$python" "$here/train_quixer_hybrid.py" "${train_flags[@]}" \
        --output_dir "$out/quixer" --task autoregressive --init_strategy small_gaussian \
        --embedding_dim "$QUIXER_EMBEDDING_DIM" --qubits "$QUIXER_QUBITS" --ansatz_layers "$QUIXER_ANSATZ_LAYERS" \
        --qsvt_degree "$QUIXER_QSVT_DEGREE"

    run_stage ngram "$out/ngram" overwrite "$python" "$here/train_classical_baselines.py" --data_dir "$out/quantize" \
        --model ngram --order "$NGRAM_ORDER" --output_dir "$out/ngram" --seed "$SEED"

    for model in lstm transformer; do
        run_stage "$model" "$out/$model" resume "$python" "$here/train_classical_baselines.py" "${train_flags[@]}" \
            --model "$model" --embedding_dim "$BASELINE_EMBEDDING_DIM" --output_dir "$out/$model"
    done

    run_stage report "$out" always "$python" "$here/make_report.py" --runs "$out" --bootstrap "$BOOTSTRAP" --seed "$SEED"
    echo "pipeline: wall time per stage:"
    "$python" -c 'import json, sys
for s in json.load(open(sys.argv[1]))["stages"]:
    print("pipeline:   %-12s %8.1f s  (%s)" % (s["stage"], s["seconds"], s["status"]))' "$timings"
    if [[ $synthetic -eq 1 ]]; then
        echo "pipeline: REMINDER: SYNTHETIC DATA - these numbers say nothing about human RNA"
    fi
    echo "pipeline: report in $out/report.md"
}

main "$@"
exit $?
