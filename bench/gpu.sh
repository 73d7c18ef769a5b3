#!/usr/bin/env bash
# The GPU benchmark in one call: about 7 minutes on one H100, one table at the end.
#
#   1. training speed: target tokens/s of configs/gpu/transformer-de-en.yaml's model
#      through the real training loop, for fp32, bf16 and fp16 at 8k, 16k and 32k padded
#      tokens per batch (2 s warm-up and 5 s measured each);
#   2. time to BLEU: `nmt train` on that recipe with a $NMT_GPU_BENCH_MINUTES-minute budget
#      (default 2.5; the recipe's own is 5): validation BLEU by minute, the average of the
#      last checkpoints;
#   3. translation: sentences/s on test_2016_flickr (1000 sentences) with the trained model,
#      bf16, batches of 1000, greedy and beam 5, with their test BLEU;
#   4. the test suite with CUDA visible (`python -m pytest`, pytest-xdist if present).
#
# Each part has its own time limit, so one that hangs cannot eat the others' time. Results
# and logs go to $OUT (default /tmp/nmt-gpu-bench): table.md, sweep.json, train.json,
# translate.json, metrics.jsonl, train.log, pytest.log, bench.log (8 files at most come
# back from a lent machine). Checkpoints go to /tmp/nmt-gpu-bench-run.
#
# The GPU machine has no internet, so prepare the data here first (git-ignored data/):
#   NMT_MULTI30K_MIRROR=/path/to/mirror python -m nmt data multi30k --out data/multi30k
#   python -c "from nmt.config import load_config; from nmt.training.setup import \
#     prepare_tokenizer; prepare_tokenizer(load_config('configs/gpu/transformer-de-en.yaml'))"
#   mkdir -p data/mirror && cp /path/to/mirror/* data/mirror/   # for the tests of `nmt data`
# (about 7 MB in all), then call the device tool from the repository root with:
#   run(command="bash bench/gpu.sh", carry=["data"], timeout_s=560)
# and read the table at the end of output_tail (files under files_at).
# One part alone: NMT_GPU_BENCH_PARTS="train" NMT_GPU_BENCH_MINUTES=5 bash bench/gpu.sh
#
# CPU dry run of the same code with tiny settings (about 2 minutes; checks the plumbing
# before a GPU session spends its time): NMT_GPU_BENCH_DRY=1 bash bench/gpu.sh
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/nmt-gpu-bench}"
PY="${PYTHON:-python3}"
PARTS="${NMT_GPU_BENCH_PARTS:-sweep train translate tests}"
MINUTES="${NMT_GPU_BENCH_MINUTES:-2.5}"
DRY=()
SLOW=1  # time limits are set for the GPU; a CPU dry run gets 5 times as long
[ -n "${NMT_GPU_BENCH_DRY:-}" ] && DRY=(--dry) && SLOW=5
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
[ -d data/mirror ] && export NMT_MULTI30K_MIRROR="$PWD/data/mirror"

log() { echo "[$(date +%T)] $*" | tee -a "$OUT/bench.log"; }
part() {  # part NAME LIMIT_S: run one part of bench/gpu.py under a time limit
    log "$1 (limit $(($2 * SLOW)) s)"
    timeout "$(($2 * SLOW))" "$PY" bench/gpu.py "$1" --out "$OUT" --minutes "$MINUTES" "${DRY[@]}" \
        >>"$OUT/bench.log" 2>&1 || log "$1 ended with status $? (124: time limit)"
}

if [ ! -f data/multi30k/train.de ]; then
    log "data/multi30k is missing: prepare it as this script's header says, and carry data"
    exit 2
fi
log "start: $("$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())')"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version \
    --format=csv,noheader | tee -a "$OUT/bench.log"

for p in $PARTS; do
    case "$p" in
        sweep) part sweep 95 ;;
        train) part train "$("$PY" -c "print(int($MINUTES * 60 + 60))")" ;;
        translate) part translate 50 ;;
        tests)
            log "tests (limit $((130 * SLOW)) s)"
            XDIST=()
            "$PY" -c "import xdist" 2>/dev/null && XDIST=(-n 8)
            TESTS=(tests)
            [ ${#DRY[@]} -gt 0 ] && TESTS=(tests/test_gpu_path.py) && XDIST=()
            timeout $((130 * SLOW)) "$PY" -m pytest -p no:cacheprovider "${XDIST[@]}" "${TESTS[@]}" \
                >"$OUT/pytest.log" 2>&1 || log "tests ended with status $? (124: time limit)"
            tail -n 3 "$OUT/pytest.log" | tee -a "$OUT/bench.log"
            ;;
    esac
done
log "done"
"$PY" bench/gpu.py table --out "$OUT" "${DRY[@]}"
