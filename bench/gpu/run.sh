#!/usr/bin/env bash
# The GPU benchmark in one call (a lent H100 or any CUDA card): SD1.5-sized (512 px, fp16) and SDXL-sized (1024 px,
# fp16) random-weight pipelines with 2 LoRAs and a ControlNet, then a Flux.1-dev-sized one with model offload, each:
# audit images/s against bare diffusers images/s in the same process, load time against adapter switch time, and the
# measured peak GPU memory against copyscope's estimate. Prints one markdown table (bench/gpu/table.py).
#
#     bash bench/gpu/run.sh [OUT_DIR]            # about 6-8 minutes on an H100; each run has its own time limit
#     bash bench/gpu/run.sh --smoke [OUT_DIR]    # CPU: the same three runs on tiny models, 2 steps (CI runs it)
#
# Needs: the project installed as in the README's second command (torch with CUDA instead of the CPU wheel:
# pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128), no hub access (every model is
# built here from configs). With --smoke every run gets bench_gpu_sd15.py's --smoke (tiny models on the CPU), so
# the script's whole path is checked without a GPU; the exit status is then that of the worst run.
set -uo pipefail
cd "$(dirname "$0")/../.."
SMOKE=()
FLUX_MEMORY=offload-model
# offload moves weights between the CPU and a CUDA device: the smoke run's Flux pipeline runs without it
if [ "${1:-}" = "--smoke" ]; then SMOKE=(--smoke); FLUX_MEMORY=none; shift; fi
OUT="${1:-bench/gpu/out}"
FAILED=0
mkdir -p "$OUT"
ROWS="$OUT/rows.jsonl"
: > "$ROWS"
run() {  # name, time limit (s), bench arguments...
  local name="$1" limit="$2"
  shift 2
  echo "== $name (limit ${limit}s)"
  timeout "$limit" python bench/bench_gpu_sd15.py --json "$ROWS" "$@" "${SMOKE[@]}" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "   exit $rc (log: $OUT/$name.log)"
  if [ "$rc" -ne 0 ]; then FAILED=1; fi
}
run sd15 150 --family sd15 --steps 20 --seeds 4 --prompts 1 --batch 4 --loras 2 --repeats 1
run sdxl 180 --family sdxl --steps 20 --seeds 2 --prompts 1 --batch 2 --loras 2 --repeats 1
run flux-offload 150 --family flux --steps 8 --seeds 1 --prompts 1 --batch 1 --loras 2 --no-controlnet --repeats 1 \
    --memory "$FLUX_MEMORY"
python bench/gpu/table.py "$ROWS" | tee "$OUT/table.md"
# a GPU run prints what it measured even when one run hit its limit; a smoke run must pass every run
if [ "${#SMOKE[@]}" -gt 0 ]; then exit "$FAILED"; fi
