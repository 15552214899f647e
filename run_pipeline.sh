#!/usr/bin/env bash
# The whole study in one command: (download ->) prepare -> encode -> quantize -> two token tracks (the 512
# cluster tokens and raw k-mers) -> Quixer, LSTM, Transformer, FNet and the n-gram on each (and the
# nucleotide Markov reference on raw k-mers) -> Quixer's circuit cost -> report, each stage in its own folder
# under --out. Opt-in: --seeds (every neural model per seed), --tune N (every model tuned with the same
# budget, then trained with its best parameters), --train_fractions (data-scaling runs).
#
# With no --fasta or --csv the data are SYNTHETIC transcripts (download_rna_sequences.py --source
# synthetic): the pipeline and its report say so loudly. Rerunning the same command with the same --out
# skips completed stages (run with the same arguments), lets the trainers resume from their last checkpoint
# and reruns any other unfinished stage; a second pipeline on the same --out while one runs is refused.
# Set PYTHON to choose the interpreter (default python3).
set -euo pipefail

# ---- settings -------------------------------------------------------------------------------------
# Chosen so the default run (500 transcripts, one seed) ends in under 10 minutes and --quick in under 2
# minutes on a 2-core CPU with no GPU; the report shows these values and each stage's wall time.
SEED=0
SYNTHETIC_TRANSCRIPTS=500        # synthetic transcripts when no --fasta / --csv is given
K=6                              # k-mer length (nt); non-overlapping k-mers (stride = k)
WINDOW_SIZE=32                   # k-mers per window: 31 of context, then the target
MIN_LENGTH=200                   # shorter transcripts are skipped (and counted)
ENCODE_EMBEDDING_DIM=64          # lambeq circuit embedding size per k-mer
N_CLUSTERS=512                   # k-means clusters = token vocabulary of the cluster track
EPOCHS=5                         # epochs of every neural model (early stopping on val loss)
BATCH_SIZE=64
MAX_STEPS_PER_EPOCH=300          # cap on optimiser steps per epoch (a fresh random subset each epoch)
EVAL_EVERY=200                   # a point of every training curve (and a chance for the best checkpoint)
VAL_WINDOWS=10000                # validation on a fixed seeded sample of this many windows
CHECKPOINT_EVERY=100             # trainer steps between checkpoints, besides every evaluation
QUIXER_EMBEDDING_DIM=128         # the paper uses 512; 128 keeps the default run inside its time budget
QUIXER_QUBITS=6                  # n, L and d as in the Quixer paper
QUIXER_ANSATZ_LAYERS=4
QUIXER_QSVT_DEGREE=3
BASELINE_EMBEDDING_DIM=96        # LSTM, Transformer and FNet width (the Quixer paper's baselines)
NGRAM_ORDER=3
MARKOV_MAX_ORDER=10              # the nucleotide Markov reference tries orders 0..this on val
TUNE_EPOCHS=2                    # with --tune N: epochs per trial (every model the same), each model's default space
CIRCUIT_WINDOWS=0:256            # test windows quixer_circuit.py measures the cost and the shot curve on
BOOTSTRAP=1000                   # transcript resamples per 95% interval in the report

# --quick: the same stages on a smaller problem (used by the end-to-end tests).
QUICK_SYNTHETIC_TRANSCRIPTS=60
QUICK_N_CLUSTERS=32
QUICK_EPOCHS=2
QUICK_MAX_STEPS_PER_EPOCH=10
QUICK_EVAL_EVERY=5
QUICK_VAL_WINDOWS=2000
QUICK_CHECKPOINT_EVERY=5
QUICK_QUIXER_EMBEDDING_DIM=16
QUICK_QUIXER_QUBITS=3
QUICK_QUIXER_ANSATZ_LAYERS=1
QUICK_QUIXER_QSVT_DEGREE=2
QUICK_BASELINE_EMBEDDING_DIM=16
QUICK_MARKOV_MAX_ORDER=4
QUICK_TUNE_EPOCHS=1
# --quick --tune N searches small models only
QUICK_TUNE_SPACE_QUIXER='{"qubits": 3, "ansatz_layers": 1, "qsvt_degree": 2, "embedding_dim": 16}'
QUICK_TUNE_SPACE_CLASSICAL='{"embedding_dim": 16, "num_layers": 1}'
QUICK_CIRCUIT_WINDOWS=0:8
QUICK_BOOTSTRAP=200

usage="usage: $(basename "$0") [--fasta FILE... | --csv CSV --email ADDRESS] [--out DIR] [--quick] [--device auto|cpu|cuda[:N]] [--seeds 0,1,...] [--tune N] [--train_fractions F,...] [--tracks clusters,raw] [--jobs N]"
die_usage() {
    [[ $# -gt 0 ]] && echo "$(basename "$0"): error: $1" >&2
    echo "$usage" >&2
    exit 2
}

pipe() { PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" "$python" -m quixer_rna.pipeline "$@" 9>&-; }
# timings.json is updated by both tracks when they run side by side: one writer at a time.
record() { flock "$timings.lock" env PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" "$python" -m quixer_rna.pipeline stage "$timings" "$@" 9>&-; }

# run_stage NAME FOLDER COMMAND...: skip a stage completed with the same arguments; otherwise run it (each
# stage resumes or restarts a dead run by itself). A failure stops the pipeline with the stage's one-line
# error and its name.
run_stage() {
    local name="$1" folder="$2"
    shift 2
    local cmd=("$@")
    if pipe completed "$folder" "${cmd[@]:1}"; then
        echo "pipeline: stage $name already completed in $folder; skipped"
        record "$name" "$(basename "$folder")" skipped 0
        return 0
    fi
    echo "pipeline: stage $name -> $folder"
    local log="$out/.logs/$name.log" start end seconds code=0
    mkdir -p "$out/.logs"
    start=$(date +%s.%N)
    # stdout passes through; stderr is shown and kept in the log for the one-line failure message. The stage
    # does not inherit the pipeline's lock (fd 9): the lock dies with this script, whatever the stage does.
    ( "${cmd[@]}" 9>&- 2>&1 1>&3 3>&- | tee "$log" >&2 3>&- ) 3>&1 9>&- || code=$?
    end=$(date +%s.%N)
    seconds=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
    if [[ $code -ne 0 ]]; then
        record "$name" "$(basename "$folder")" failed "$seconds" || true
        echo "pipeline: stage $name failed (exit $code): $(pipe error "$log")" >&2
        exit "$code"
    fi
    record "$name" "$(basename "$folder")" completed "$seconds"
    echo "pipeline: stage $name done in ${seconds} s"
}

settings() {  # key=value pairs; values that parse as JSON (numbers, true/false) are stored as such
    printf '%s\n' "source=$source_name" "inputs=${inputs:-null}" "synthetic=$synthetic_json" "quick=$quick_json" \
        "seed=$SEED" "seeds=$seeds" "tune=$tune" "train_fractions=$fractions" "tracks=$tracks" \
        "synthetic_transcripts=$SYNTHETIC_TRANSCRIPTS" "k=$K" "window_size=$WINDOW_SIZE" "min_length=$MIN_LENGTH" \
        "encode_embedding_dim=$ENCODE_EMBEDDING_DIM" "n_clusters=$N_CLUSTERS" "epochs=$EPOCHS" "batch_size=$BATCH_SIZE" \
        "max_steps_per_epoch=$MAX_STEPS_PER_EPOCH" "eval_every=$EVAL_EVERY" "val_windows=$VAL_WINDOWS" "quixer_embedding_dim=$QUIXER_EMBEDDING_DIM" \
        "quixer_qubits=$QUIXER_QUBITS" "quixer_ansatz_layers=$QUIXER_ANSATZ_LAYERS" "quixer_qsvt_degree=$QUIXER_QSVT_DEGREE" \
        "baseline_embedding_dim=$BASELINE_EMBEDDING_DIM" "ngram_order=$NGRAM_ORDER" "markov_max_order=$MARKOV_MAX_ORDER" \
        "tune_epochs=$TUNE_EPOCHS" "bootstrap=$BOOTSTRAP"
}

# train_track TRACK TOKENS: every model of one token track, per seed, per training fraction.
train_track() {
    local track="$1" tokens="$2" seed fraction model tag folder
    local common=(--data_dir "$tokens" --epochs "$EPOCHS" --batch_size "$BATCH_SIZE" --max_steps_per_epoch "$MAX_STEPS_PER_EPOCH"
        --eval_every "$EVAL_EVERY" --val_windows "$VAL_WINDOWS" --checkpoint_every "$CHECKPOINT_EVERY" --device "$device")
    local quixer=(--embedding_dim "$QUIXER_EMBEDDING_DIM" --qubits "$QUIXER_QUBITS" --ansatz_layers "$QUIXER_ANSATZ_LAYERS"
        --qsvt_degree "$QUIXER_QSVT_DEGREE" --init_strategy small_gaussian)
    for model in quixer lstm transformer fnet; do
        if [[ $tune -gt 0 ]]; then
            local tune_dir="$out/tune/$track/$model" tune_args=()
            [[ $model == quixer ]] && tune_args=(--init_strategy small_gaussian)
            if [[ $quick -eq 1 && $model == quixer ]]; then
                tune_args+=(--search_space "$QUICK_TUNE_SPACE_QUIXER")
            elif [[ $quick -eq 1 ]]; then
                tune_args+=(--search_space "$QUICK_TUNE_SPACE_CLASSICAL")
            fi
            run_stage "tune:$track:$model" "$tune_dir" "$python" "$here/tune_quixer_hybrid.py" --data_dir "$tokens" \
                --model "$model" --output_dir "$tune_dir" --n_trials "$tune" --epochs_per_trial "$TUNE_EPOCHS" \
                --max_steps_per_epoch "$MAX_STEPS_PER_EPOCH" --batch_size "$BATCH_SIZE" --eval_every "$EVAL_EVERY" \
                --val_windows "$VAL_WINDOWS" \
                --seed "$SEED" --device "$device" "${tune_args[@]}"
        fi
    done
    for fraction in ${fractions//,/ }; do
        for seed in ${seeds//,/ }; do
            tag="seed$seed"
            [[ "$fraction" == 1 ]] || tag="f${fraction}_seed$seed"
            for model in quixer lstm transformer fnet; do
                folder="$out/$track/${model}_$tag"
                local extra=()
                if [[ $tune -gt 0 ]]; then
                    folder="$out/$track/tuned/${model}_$tag"
                    extra=(--config "$out/tune/$track/$model/best_params.json")
                elif [[ $model == quixer ]]; then
                    extra=("${quixer[@]}")
                else
                    extra=(--embedding_dim "$BASELINE_EMBEDDING_DIM")
                fi
                if [[ $model == quixer ]]; then
                    run_stage "$track:$model:$tag" "$folder" "$python" "$here/train_quixer_hybrid.py" "${common[@]}" \
                        --output_dir "$folder" --seed "$seed" --train_fraction "$fraction" "${extra[@]}"
                else
                    run_stage "$track:$model:$tag" "$folder" "$python" "$here/train_classical_baselines.py" "${common[@]}" \
                        --model "$model" --output_dir "$folder" --seed "$seed" --train_fraction "$fraction" "${extra[@]}"
                fi
            done
        done
        tag=""
        [[ "$fraction" == 1 ]] || tag="_f$fraction"
        run_stage "$track:ngram$tag" "$out/$track/ngram$tag" "$python" "$here/train_classical_baselines.py" \
            --data_dir "$tokens" --model ngram --order "$NGRAM_ORDER" --output_dir "$out/$track/ngram$tag" --seed "$SEED" \
            --train_fraction "$fraction"
        if [[ $track == raw ]]; then
            run_stage "$track:markov$tag" "$out/$track/markov$tag" "$python" "$here/train_classical_baselines.py" \
                --data_dir "$tokens" --model markov --max_markov_order "$MARKOV_MAX_ORDER" \
                --output_dir "$out/$track/markov$tag" --seed "$SEED" --train_fraction "$fraction"
        fi
    done
}

clusters_track() {  # lambeq embeddings -> 512 k-means tokens -> every model -> Quixer's circuit cost
    run_stage encode "$out/encode" "$python" "$here/lambeq_encoder.py" --data_dir "$out/prepare" \
        --output_dir "$out/encode" --embedding_dim "$ENCODE_EMBEDDING_DIM" --device "$device" --seed "$SEED"
    run_stage quantize "$out/quantize" "$python" "$here/quantize_lambeq_embeddings.py" --embeddings_dir "$out/encode" \
        --output_dir "$out/quantize" --n_clusters "$N_CLUSTERS" --seed "$SEED"
    train_track clusters "$out/quantize"
    local first_seed="${seeds%%,*}" circuit=(--shots 10 100 1000 10000 --noise_2q 1e-4 1e-3 1e-2)
    (( QUIXER_QUBITS <= 3 && QUIXER_QSVT_DEGREE <= 2 )) && circuit+=(--check)
    local quixer_run="$out/clusters/quixer_seed$first_seed"
    [[ $tune -gt 0 ]] && quixer_run="$out/clusters/tuned/quixer_seed$first_seed"
    run_stage circuit "$out/circuit/clusters_quixer_seed$first_seed" "$python" "$here/quixer_circuit.py" \
        --run_dir "$quixer_run" --data_dir "$out/quantize" --output_dir "$out/circuit/clusters_quixer_seed$first_seed" \
        --windows "$CIRCUIT_WINDOWS" --seed "$SEED" "${circuit[@]}"
}

raw_track() {  # raw k-mer tokens (one id per 6-mer) -> every model and the nucleotide Markov reference
    run_stage raw_tokens "$out/raw_tokens" "$python" "$here/prepare_classical_benchmarks.py" --data_dir "$out/prepare" \
        --output_dir "$out/raw_tokens"
    train_track raw "$out/raw_tokens"
}

# ---- the study (one function, so editing this file during a run cannot change the run) ----------
main() {
    fasta=()
    csv=""
    email=""
    out=""
    quick=0
    device="auto"
    seeds="$SEED"
    tune=0
    fractions="1"
    tracks="clusters,raw"
    jobs=2
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
            --seeds) [[ $# -ge 2 ]] || die_usage "--seeds needs a list such as 0,1,2"; seeds="$2"; shift 2 ;;
            --tune) [[ $# -ge 2 ]] || die_usage "--tune needs a number of trials"; tune="$2"; shift 2 ;;
            --train_fractions) [[ $# -ge 2 ]] || die_usage "--train_fractions needs a list such as 0.25,0.5,1"; fractions="$2"; shift 2 ;;
            --tracks) [[ $# -ge 2 ]] || die_usage "--tracks needs clusters, raw or clusters,raw"; tracks="$2"; shift 2 ;;
            --jobs) [[ $# -ge 2 ]] || die_usage "--jobs needs a number"; jobs="$2"; shift 2 ;;
            --quick) quick=1; shift ;;
            -h|--help) echo "$usage"; exit 0 ;;
            *) die_usage "unknown argument $1" ;;
        esac
    done
    [[ ${#fasta[@]} -gt 0 && -n "$csv" ]] && die_usage "give --fasta or --csv, not both"
    [[ -n "$csv" && -z "$email" ]] && die_usage "--csv needs --email ADDRESS (NCBI asks for a contact)"
    [[ -n "$email" && -z "$csv" ]] && die_usage "--email goes with --csv"
    for f in "${fasta[@]}"; do [[ -f "$f" ]] || die_usage "--fasta $f: file not found"; done
    [[ -z "$csv" || -f "$csv" ]] || die_usage "--csv $csv: file not found"
    [[ "$seeds" =~ ^[0-9]+(,[0-9]+)*$ ]] || die_usage "--seeds $seeds: expected whole numbers separated by commas"
    [[ "$tune" =~ ^[0-9]+$ ]] || die_usage "--tune $tune: expected a number of trials"
    [[ "$fractions" =~ ^(0?\.[0-9]+|1)(,(0?\.[0-9]+|1))*$ ]] || die_usage "--train_fractions $fractions: expected fractions in (0, 1] separated by commas"
    [[ "$tracks" =~ ^(clusters|raw)(,(clusters|raw))?$ ]] || die_usage "--tracks $tracks: expected clusters, raw or clusters,raw"
    [[ "$jobs" =~ ^[1-9][0-9]*$ ]] || die_usage "--jobs $jobs: expected a number of parallel tracks >= 1"

    if [[ $quick -eq 1 ]]; then
        SYNTHETIC_TRANSCRIPTS=$QUICK_SYNTHETIC_TRANSCRIPTS N_CLUSTERS=$QUICK_N_CLUSTERS EPOCHS=$QUICK_EPOCHS
        MAX_STEPS_PER_EPOCH=$QUICK_MAX_STEPS_PER_EPOCH EVAL_EVERY=$QUICK_EVAL_EVERY CHECKPOINT_EVERY=$QUICK_CHECKPOINT_EVERY
        VAL_WINDOWS=$QUICK_VAL_WINDOWS
        QUIXER_EMBEDDING_DIM=$QUICK_QUIXER_EMBEDDING_DIM QUIXER_QUBITS=$QUICK_QUIXER_QUBITS
        QUIXER_ANSATZ_LAYERS=$QUICK_QUIXER_ANSATZ_LAYERS QUIXER_QSVT_DEGREE=$QUICK_QUIXER_QSVT_DEGREE
        BASELINE_EMBEDDING_DIM=$QUICK_BASELINE_EMBEDDING_DIM MARKOV_MAX_ORDER=$QUICK_MARKOV_MAX_ORDER
        TUNE_EPOCHS=$QUICK_TUNE_EPOCHS CIRCUIT_WINDOWS=$QUICK_CIRCUIT_WINDOWS BOOTSTRAP=$QUICK_BOOTSTRAP
    fi

    here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
    python="${PYTHON:-python3}"
    out="${out:-runs/$(date +%Y%m%d-%H%M%S)}"
    mkdir -p "$out"
    out="$(cd "$out" && pwd)"
    timings="$out/timings.json"
    # One pipeline per --out at a time: the lock is the kernel's, released however this process ends.
    exec 9>>"$out/.pipeline.lock"
    if ! flock -n 9; then
        echo "$(basename "$0"): error: --out $out: another pipeline ($(cat "$out/.pipeline.pid" 2>/dev/null || echo '?')) is running there; wait for it or choose another --out" >&2
        exit 2
    fi
    echo "pid $$ on $(hostname) since $(date -u +%FT%TZ)" >"$out/.pipeline.pid"

    synthetic_json=false quick_json=false inputs=""
    [[ $quick -eq 1 ]] && quick_json=true
    if [[ ${#fasta[@]} -gt 0 ]]; then
        source_name="FASTA"
        for i in "${!fasta[@]}"; do fasta[$i]="$(cd "$(dirname "${fasta[$i]}")" && pwd)/$(basename "${fasta[$i]}")"; done
        inputs="${fasta[*]}"
    elif [[ -n "$csv" ]]; then
        source_name="NCBI RefSeq"
        inputs="$csv"
    else
        source_name="synthetic"
        synthetic_json=true
    fi
    mapfile -t pairs < <(settings)
    pipe init "$timings" "${pairs[@]}" || exit 2
    if [[ $synthetic_json == true ]]; then
        echo "pipeline: ************************************************************************"
        echo "pipeline: NO --fasta OR --csv GIVEN: THE DATA ARE SYNTHETIC TRANSCRIPTS, NOT HUMAN RNA"
        echo "pipeline: ************************************************************************"
    fi
    echo "pipeline: output in $out"

    if [[ $synthetic_json == true ]]; then
        run_stage download "$out/data/rna.fasta" "$python" "$here/download_rna_sequences.py" --source synthetic \
            --max_sequences "$SYNTHETIC_TRANSCRIPTS" --output "$out/data/rna.fasta" --seed "$SEED"
        fasta=("$out/data/rna.fasta")
    elif [[ -n "$csv" ]]; then
        run_stage download "$out/data/rna.fasta" "$python" "$here/download_rna_sequences.py" --csv "$csv" --email "$email" \
            --output "$out/data/rna.fasta" --seed "$SEED"
        fasta=("$out/data/rna.fasta")
    fi

    run_stage prepare "$out/prepare" "$python" "$here/prepare_autoregressive_data.py" --fasta "${fasta[@]}" \
        --output_dir "$out/prepare" --k "$K" --window_size "$WINDOW_SIZE" --min_length "$MIN_LENGTH" --seed "$SEED"
    local branches=() pids=() code=0 i
    [[ $tracks == *clusters* ]] && branches+=(clusters_track)
    [[ $tracks == *raw* ]] && branches+=(raw_track)
    if [[ $jobs -gt 1 && ${#branches[@]} -gt 1 ]]; then
        # The tracks side by side, each process with its share of the cores (unless OMP_NUM_THREADS is set).
        local cores
        cores=$(nproc 2>/dev/null || echo 2)
        export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(( cores / jobs > 0 ? cores / jobs : 1 ))}"
        echo "pipeline: the ${#branches[@]} token tracks run side by side, $OMP_NUM_THREADS thread(s) per process"
        for i in "${branches[@]}"; do "$i" & pids+=($!); done
        for i in "${pids[@]}"; do wait "$i" || code=$?; done
        [[ $code -eq 0 ]] || exit "$code"
    else
        for i in "${branches[@]}"; do "$i"; done
    fi

    run_stage report "$out/report" "$python" "$here/make_report.py" --runs "$out" --bootstrap "$BOOTSTRAP" --seed "$SEED"
    echo "pipeline: wall time per stage:"
    pipe summary "$timings"
    if [[ $synthetic_json == true ]]; then
        echo "pipeline: REMINDER: SYNTHETIC DATA - these numbers say nothing about human RNA"
    fi
    echo "pipeline: report in $out/report.md"
}

main "$@"
exit $?
