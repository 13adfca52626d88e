#!/usr/bin/env bash
# Every CUDA path of the project checked, and the paper-scale figures measured, in one command on a lent GPU.
#
#   bash bench/gpu_check.sh OUT_DIR                        # on one H100: at most 8 minutes
#   bash bench/gpu_check.sh --smoke OUT_DIR                # the same steps at toy size on the CPU (run by a test)
#   bash bench/gpu_check.sh --steps tests,trainers OUT_DIR # rerun some steps only
#   bash bench/gpu_check.sh --cifar10 PACK OUT_DIR         # real CIFAR-10 instead of the timings: at most 8 minutes
#
# Steps (each under its own time limit, and all within one budget, so a hang cannot eat the lease):
#   env         GPU, driver, torch, CUDA, cuDNN, NCCL, bf16 support
#   tests       the CUDA tests (tests/test_cuda.py and the CUDA tests of other files), each against the CPU; on a
#               GPU a skipped one counts as failed. They run beside the trainer runs (both only check results).
#   trainers    short Fashion-MNIST runs of every method through the CLIs (bf16, channels_last, the device-resident
#               data; one DataLoader run, one fp16, one --compile, one torchrun --nproc_per_node 1 over NCCL, one
#               --sync_bn under torchrun), each ending with its summary.json and wall time
#   throughput  bench.train_throughput on 50,000 CIFAR-sized images: PreAct ResNet-18 epochs on the DataLoader and
#               the device-resident paths (fp32, bf16, + channels_last, + compile), the selection round and a
#               DivideMix epoch
#   selector    bench.selector: fine_select seconds per round on the GPU beside the CPU (N 50k D 512 C 10 and C 100,
#               N 1M D 2048 C 14)
#   real-cifar  (only with --cifar10) bench.real_cifar_device: real CIFAR-10 unpacked from the carried pack, the paper's
#               sym 50 recipe (ResNet-34, all 50,000 images, 45k/5k split) for standard training then FINE, 18 epochs
#               each instead of 120 (warm-up 6, a round every 4, lr milestones at 1/3 and 2/3), each capped at 110
#               s (the step at 4 minutes); accuracy and seconds per epoch beside the published recipe. It runs alone,
#               after the functional steps; with it the check's default steps are env,tests,trainers,real-cifar,
#               still within the 8 minutes (the timings, throughput and selector, then take a call of their own:
#               bash bench/gpu_check.sh --steps env,throughput,selector OUT_DIR)
# then OUT_DIR/gpu_check.md: every step's verdict and every figure beside its target (bench/gpu_report.py).
#
# Options and environment:
#   --smoke               toy sizes on the CPU (--device cpu, gloo for torchrun; fp16 -> bf16, no --compile, no
#                         --sync_bn: those need CUDA; the trainer runs on a class-balanced 200/50-image subset of the
#                         Fashion-MNIST given, written to OUT_DIR/fashion-mnist); about a minute
#   --fashion-mnist DIR   the four Fashion-MNIST idx files (default $FASHION_MNIST, else data/fashion-mnist under the
#                         repository root; stage them with
#                         mkdir -p data/fashion-mnist && cp /usr/share/datasets/fashion-mnist/* data/fashion-mnist/)
#   --steps LIST          comma-separated among env, tests, trainers, throughput, selector, real-cifar (default all
#                         but real-cifar; with --cifar10: env,tests,trainers,real-cifar)
#   --cifar10 FILE        the pack of real CIFAR-10 and CIFAR-10N (python -m bench.real_cifar_device pack ...; 19 MB),
#                         needed by the real-cifar step
#   PYTHON                interpreter (default .venv/bin/python when present, else python3)
# Writes OUT_DIR/gpu_check.md (also printed at the end), OUT_DIR/logs/<step>.log, OUT_DIR/steps.tsv, OUT_DIR/env.json,
# OUT_DIR/json/ (figures, JUnit), OUT_DIR/runs/<run>/ (the trainer runs, checkpoints deleted), and all of these but
# the report in OUT_DIR/gpu_check.tar.gz: a device call brings back at most 8 files, so copy those two to $OUT:
#   bash bench/gpu_check.sh /tmp/gpu_check; rc=$?; cp /tmp/gpu_check/gpu_check.* "$OUT"/; exit $rc
# Exit status: 0 when every step passed, 1 when one failed, 2 on bad usage or (checked once, before any step, when
# the trainers step is wanted) without Fashion-MNIST at --fashion-mnist.
set -u

usage() { sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0" >&2; exit 2; }
MODE=full STEPS= FMNIST=${FASHION_MNIST:-data/fashion-mnist} OUT= CIFAR10=
while [ $# -gt 0 ]; do
  case $1 in
    --smoke) MODE=smoke ;;
    --fashion-mnist | --steps | --cifar10)
      [ $# -ge 2 ] || { echo "$1 needs a value" >&2; usage; }
      case $1 in --steps) STEPS=$2 ;; --cifar10) CIFAR10=$2 ;; *) FMNIST=$2 ;; esac
      shift ;;
    -h | --help) usage ;;
    -*) echo "unknown option $1" >&2; usage ;;
    *) [ -z "$OUT" ] || usage; OUT=$1 ;;
  esac
  shift
done
[ -n "$OUT" ] || usage
if [ -z "$STEPS" ]; then
  STEPS=env,tests,trainers,throughput,selector
  [ -z "$CIFAR10" ] || STEPS=env,tests,trainers,real-cifar  # the 8 minutes hold the real-cifar step or the timings
fi
for step in ${STEPS//,/ }; do
  case $step in
    env | tests | trainers | throughput | selector) ;;
    real-cifar) [ -f "$CIFAR10" ] || { echo "the real-cifar step needs --cifar10 FILE (got '$CIFAR10')" >&2; usage; } ;;
    *) echo "unknown step $step" >&2; usage ;;
  esac
done
mkdir -p "$OUT"/logs "$OUT"/json "$OUT"/runs
OUT=$(cd "$OUT" && pwd)
case $FMNIST in /*) ;; *) FMNIST=$(cd "$(dirname "$0")/.." && pwd)/$FMNIST ;; esac
[ -z "$CIFAR10" ] || CIFAR10=$(cd "$(dirname "$CIFAR10")" && pwd)/$(basename "$CIFAR10")
cd "$(dirname "$0")/.."
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
export PYTHONUNBUFFERED=1  # a log keeps what a process printed before its time limit stopped it
rm -f "$OUT/steps.tsv"

if [ "$MODE" = full ]; then
  DEV=cuda BUDGET=470
  if ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
    echo "no CUDA device visible to $PY; run bash bench/gpu_check.sh --smoke OUT_DIR on the CPU" >&2
    exit 2
  fi
else
  DEV=cpu BUDGET=200
fi
DEADLINE=$(( $(date +%s) + BUDGET ))

wanted() { [[ ",$STEPS," == *",$1,"* ]]; }

book() {  # book NAME STATUS SECONDS LIMIT DESCRIPTION: one row of steps.tsv (appended whole, safe from two lanes)
  printf '%s\t%s\t%s\t%s\t%s\n' "$@" >> "$OUT/steps.tsv"
  echo "[gpu_check] $1: status $2 after $3 s (limit $4 s)"
}

run_step() {  # run_step NAME LIMIT DESCRIPTION COMMAND...: COMMAND under min(LIMIT, budget left), logged
  local name=$1 limit=$2 description=$3 left start status
  shift 3
  left=$(( DEADLINE - $(date +%s) ))
  if (( left < 5 )); then
    echo "not run: the check's $BUDGET s budget was spent" > "$OUT/logs/$name.log"
    book "$name" 124 0 0 "$description"
    return
  fi
  (( limit > left )) && limit=$left
  start=$(date +%s.%N)
  timeout --kill-after=10 "$limit" "$@" < /dev/null > "$OUT/logs/$name.log" 2>&1
  status=$?
  book "$name" "$status" "$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')" "$limit" \
    "$description"
}

skip_step() {  # skip_step NAME DESCRIPTION REASON
  echo "skipped: $3" > "$OUT/logs/$1.log"
  book "$1" skip 0 0 "$2 (skipped: $3)"
}

# --- the trainer runs: Fashion-MNIST, a few short epochs each ------------------------------------------------------
if wanted trainers; then  # their data, checked once before any step; the smoke check cuts it to its own size
  if [ "$MODE" = smoke ]; then
    "$PY" -m bench.fashion_subset "$FMNIST" --out "$OUT/fashion-mnist" --train 200 --test 50 || exit 2
    FMNIST=$OUT/fashion-mnist
  else
    "$PY" -m bench.fashion_subset "$FMNIST" || exit 2
  fi
fi
if [ "$MODE" = full ]; then
  SIZE=(--num_batches 8) VAL=(--val_size 500) RUN_LIMIT=60
else
  SIZE=(--num_batches 2 --batch_size 16) VAL=(--val_size 20) RUN_LIMIT=90  # a shared small CPU can be slow
fi
COMMON=(--dataset fashion_mnist --data_path "$FMNIST" --device "$DEV" --amp bf16 --channels_last --data_on_gpu on
        "${SIZE[@]}")
SELECT=(--warmup 1 --every 1 --epochs 3)
TORCHRUN=("$PY" -m torch.distributed.run --standalone --nproc_per_node 1)

trainer_run() {  # trainer_run NAME LIMIT DESCRIPTION python|torchrun TRAINER FLAGS...: one run, its checkpoints deleted
  local name=$1 limit=$2 description=$3 launcher=("$PY")
  [ "$4" = torchrun ] && launcher=("${TORCHRUN[@]}")
  run_step "run-$name" "$limit" "$description" "${launcher[@]}" -m "$5.train" --output "$OUT/runs/$name" \
    "${COMMON[@]}" "${@:6}"
  find "$OUT/runs/$name" -name '*.pt' -delete 2>/dev/null
}

trainer_lane_1() {  # dynamic_selection in one process each
  local fp16=(--amp fp16)
  [ "$MODE" = smoke ] && fp16=()  # fp16 needs CUDA: the smoke run keeps bf16
  trainer_run standard $RUN_LIMIT "standard training" python dynamic_selection --method standard --epochs 2 \
    "${VAL[@]}"
  trainer_run fine $RUN_LIMIT "FINE, selection on the device" python dynamic_selection --method fine "${SELECT[@]}" \
    "${VAL[@]}"
  trainer_run f-coteaching $RUN_LIMIT "F-Coteaching" python dynamic_selection --method f-coteaching "${SELECT[@]}" \
    "${VAL[@]}"
  trainer_run coteaching $RUN_LIMIT "Co-teaching, a loss scaler per network${fp16:+ (fp16)}" python dynamic_selection \
    --method coteaching --epochs 2 "${VAL[@]}" "${fp16[@]}"
  trainer_run coteaching-plus $RUN_LIMIT "Co-teaching+ on the DataLoader path" python dynamic_selection \
    --method coteaching+ --epochs 2 --init_epochs 1 "${VAL[@]}" --data_on_gpu off
}

trainer_lane_2() {  # DivideMix, --compile and torchrun
  local backend=NCCL
  [ "$MODE" = smoke ] && backend=gloo
  trainer_run dividemix $RUN_LIMIT "DivideMix" python dividemix --selector loss-gmm --epochs 2 --warmup 1
  trainer_run f-dividemix $RUN_LIMIT "F-DivideMix" python dividemix --selector fine --epochs 2 --warmup 1
  if [ "$MODE" = full ]; then
    trainer_run compile 120 "FINE with --compile (small CNN)" python dynamic_selection --method fine "${SELECT[@]}" \
      "${VAL[@]}" --arch small_cnn --compile
  else
    skip_step run-compile "FINE with --compile" "torch.compile takes minutes on a CPU"
  fi
  trainer_run torchrun $(( RUN_LIMIT + 20 )) "FINE under torchrun --nproc_per_node 1 ($backend)" torchrun \
    dynamic_selection --method fine "${SELECT[@]}" "${VAL[@]}"
  if [ "$MODE" = full ]; then
    trainer_run sync-bn $(( RUN_LIMIT + 20 )) "F-DivideMix under torchrun with --sync_bn ($backend)" torchrun \
      dividemix --selector fine --epochs 2 --warmup 1 --sync_bn
  else
    skip_step run-sync-bn "F-DivideMix under torchrun with --sync_bn" "SyncBatchNorm needs CUDA"
  fi
}

# --- the steps --------------------------------------------------------------------------------------------------------
CUDA_TESTS=(tests/test_cuda.py tests/test_amp.py::test_fp16_on_cuda tests/test_features.py::test_cuda_paths_match_cpu
            tests/test_mixture.py::test_gmm_on_cuda_matches_cpu tests/test_selection.py::test_cuda_matches_cpu)
wanted env && run_step env 30 "environment" "$PY" -m bench.gpu_report env "$OUT/env.json"

timings() {  # one at a time, on a quiet machine; the compiled variant, the slowest to warm up, last
  if wanted real-cifar; then  # data and runs in OUT (the data is left out of the tarball)
    run_step real-cifar "${RC_LIMIT}" "real CIFAR-10 sym 50%: standard and FINE, the paper's recipe shortened" \
      "$PY" -m bench.real_cifar_device run --pack "$CIFAR10" --out "$OUT" --json "$OUT/json/real-cifar.json" "${RC[@]}"
  fi
  if wanted throughput; then
    if [ "$MODE" = full ]; then
      throughput fp32 75 "epochs fp32" --dividemix_batches 0
      throughput bf16 60 "epochs bf16" --amp bf16 --dividemix_batches 0
    else  # each Python process costs seconds on a small CPU: one variant runs the code of all at toy size
      skip_step throughput-fp32 "epochs fp32" "the smoke check times one variant"
      skip_step throughput-bf16 "epochs bf16" "the smoke check times one variant"
    fi
    throughput bf16-cl 75 "epochs bf16 + channels_last, DivideMix epoch" --amp bf16 --channels_last "${DM[@]}"
  fi
  if wanted selector; then
    run_step selector 150 "fine_select on the GPU beside the CPU" \
      "$PY" -m bench.selector --skip-reference "${SEL[@]}" --json "$OUT/json/selector.json"
  fi
  if wanted throughput; then
    if [ "$MODE" = full ]; then
      throughput bf16-cl-compile 150 "epochs bf16 + channels_last + compile" --amp bf16 --channels_last --compile \
        --dividemix_batches 0
    else
      skip_step throughput-bf16-cl-compile "epochs bf16 + channels_last + compile" \
        "torch.compile takes minutes on a CPU"
    fi
  fi
}
throughput() {  # throughput NAME LIMIT DESCRIPTION FLAGS...
  run_step "throughput-$1" "$2" "$3" "$PY" -m bench.train_throughput "${TT[@]}" "${@:4}" \
    --json "$OUT/json/throughput-$1.json"
}
if [ "$MODE" = full ]; then
  RC=(--epochs 18 --warmup 6 --every 4 --run_limit 110) RC_LIMIT=240
else
  RC=(--smoke --epochs 3 --warmup 1 --every 1 --run_limit 100) RC_LIMIT=200
fi
if [ "$MODE" = full ]; then
  TT=() DM=(--dividemix_batches 40) SEL=(--rounds 3)
else
  TT=(--device cpu --num_samples 64 --batch_size 16 --arch small_cnn) DM=(--dividemix_batches 1)
  SEL=(--classes --rounds 1 --large 4000 64 14)  # the Clothing1M-sized round alone, at toy size
fi

# The functional checks side by side (the CUDA tests; two lanes of trainer runs), then the timings alone.
if wanted tests; then
  XDIST=()  # on the GPU machine, four test processes at once where pytest-xdist is installed
  [ "$MODE" = full ] && "$PY" -c "import xdist" 2> /dev/null && XDIST=(-n 4)
  run_step tests 200 "CUDA tests against the CPU" \
    "$PY" -m pytest -q -rs -p no:cacheprovider "${XDIST[@]}" --junitxml "$OUT/json/tests.xml" "${CUDA_TESTS[@]}" &
fi
if wanted trainers; then
  trainer_lane_1 &
  trainer_lane_2 &
fi
wait
timings

"$PY" -m bench.gpu_report report "$OUT" --mode "$MODE" > "$OUT/logs/report.log" 2>&1
report=$?
tar -czf "$OUT/gpu_check.tar.gz" -C "$OUT" logs json runs steps.tsv $([ -f "$OUT/env.json" ] && echo env.json)
cat "$OUT/gpu_check.md" 2> /dev/null || cat "$OUT/logs/report.log"
echo "[gpu_check] report: $OUT/gpu_check.md, logs: $OUT/gpu_check.tar.gz"
failed=$(awk -F'\t' '$2 != "0" && $2 != "skip"' "$OUT/steps.tsv" 2> /dev/null | wc -l)
(( report == 0 && failed == 0 )) || exit 1
