#!/usr/bin/env bash
# Run a grid of settings x seeds with one trainer: one run per GPU at a time, finished runs skipped, killed ones resumed.
# Requires bash >= 5.1. Run `bash scripts/grid.sh -h` for the flags; every flag also has a variable below.
set -euo pipefail

# ---- options: edit here, export the variable, or pass the flag named in the comment ----
TRAINER="${TRAINER:-dynamic_selection}"  # --trainer: dynamic_selection or dividemix
SETTINGS_FILE="${SETTINGS_FILE:-}"       # --settings: file with one line of trainer flags per setting ('#' comments);
                                         #   empty: the SETTINGS list below
SEEDS="${SEEDS:-1 2 3}"                  # --seeds: every setting runs once per seed
OUTPUT="${OUTPUT:-runs}"                 # --output: root of the run directories; logs go to OUTPUT/logs/TRAINER/
DATA_PATH="${DATA_PATH:-data}"           # --data_path: dataset folder given to every run
JOBS="${JOBS:-1}"                        # --jobs: parallel runs when no GPU is listed in CUDA_VISIBLE_DEVICES
                                         #   (with GPUs listed: one run per GPU at a time)
EXTRA_FLAGS="${EXTRA_FLAGS:-}"           # --extra: trainer flags appended to every setting, e.g. "--workers 8"
PYTHON="${PYTHON:-}"                     # interpreter (empty: the repository's .venv/bin/python, else python3)
TRAINER_CMD="${TRAINER_CMD:-}"           # command that trains one run (empty: "$PYTHON -m $TRAINER.train");
                                         #   split on whitespace

# ---- hyperparameters: empty keeps the trainer's paper default for each dataset and method (its recipe table);
# a value overrides it in every run. A setting line may also carry any hyperparameter flag of the trainer.
EPOCHS="${EPOCHS:-}"                     # --epochs
BATCH_SIZE="${BATCH_SIZE:-}"             # --batch_size
LR="${LR:-}"                             # --lr, initial learning rate
WEIGHT_DECAY="${WEIGHT_DECAY:-}"         # --weight_decay

# ---- settings used when no settings file is given: one string of trainer flags each ----
SETTINGS=(
  "--dataset digits --noise_kind sym --noise_rate 0.5 --method standard"
  "--dataset digits --noise_kind sym --noise_rate 0.5 --method fine"
)

usage() {
  cat <<'EOF'
usage: bash scripts/grid.sh [--trainer NAME] [--settings FILE] [--seeds "1 2 3"] [--output DIR] [--data_path DIR]
                            [--jobs N] [--extra "FLAGS"] [--dry-run] [-h]

Runs every setting (a line of trainer flags) once per seed. Each run gets
  --seed S --output OUTPUT --data_path DATA_PATH --resume
and --resume makes the grid restartable: the trainer skips a finished run (summary.json present), continues a
killed one from its last.pt and starts a missing one. Runs are spread over the GPUs in CUDA_VISIBLE_DEVICES, one
run per GPU at a time; with no GPU listed, JOBS runs at a time on the CPU (GPUs hidden). Each run's output is
appended to OUTPUT/logs/TRAINER/<setting>_seed<S>.log. Exit status 1 when a run failed (listed at the end).

  --trainer NAME     dynamic_selection or dividemix (default dynamic_selection)
  --settings FILE    one line of trainer flags per setting, '#' starts a comment; default: SETTINGS in this script
  --seeds "S ..."    seeds, space-separated (default "1 2 3")
  --output DIR       root of the run directories (default runs)
  --data_path DIR    dataset folder (default data)
  --jobs N           parallel CPU runs when no GPU is listed (default 1)
  --extra "FLAGS"    trainer flags appended to every setting
  --dry-run          print the commands without running them
  -h, --help         this message

Variables at the top of the script (also read from the environment) set the same options, the hyperparameter
overrides EPOCHS, BATCH_SIZE, LR, WEIGHT_DECAY, and TRAINER_CMD, the command that trains one run.

examples:
  bash scripts/grid.sh --settings scripts/grids/demo_digits.txt --seeds "1 2" --jobs 2
  CUDA_VISIBLE_DEVICES=0,1,2,3 bash scripts/grid.sh --settings scripts/grids/paper_cifar10.txt --output runs
  python -m engine.report runs
EOF
}

die() {
  echo "error: $*" >&2
  exit 2
}

DRY_RUN=0
while (($#)); do
  case "$1" in
    --trainer) TRAINER="${2:?--trainer needs a value}"; shift 2 ;;
    --settings) SETTINGS_FILE="${2:?--settings needs a file}"; shift 2 ;;
    --seeds) SEEDS="${2:?--seeds needs a list}"; shift 2 ;;
    --output) OUTPUT="${2:?--output needs a folder}"; shift 2 ;;
    --data_path) DATA_PATH="${2:?--data_path needs a folder}"; shift 2 ;;
    --jobs) JOBS="${2:?--jobs needs a number}"; shift 2 ;;
    --extra) EXTRA_FLAGS="${2?--extra needs flags}"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument '$1'; see bash scripts/grid.sh -h" ;;
  esac
done

((BASH_VERSINFO[0] > 5 || (BASH_VERSINFO[0] == 5 && BASH_VERSINFO[1] >= 1))) \
  || die "bash ${BASH_VERSION} is too old (wait -n -p needs 5.1); run the script with a newer bash"
[[ "$TRAINER" == dynamic_selection || "$TRAINER" == dividemix ]] \
  || die "--trainer '$TRAINER' is not dynamic_selection or dividemix"
[[ "$JOBS" =~ ^[1-9][0-9]*$ ]] || die "--jobs '$JOBS' is not a positive integer"
read -ra SEED_LIST <<<"$SEEDS"
((${#SEED_LIST[@]})) || die "--seeds is empty; pass e.g. --seeds \"1 2 3\""
for seed in "${SEED_LIST[@]}"; do
  [[ "$seed" =~ ^[0-9]+$ ]] || die "seed '$seed' is not a non-negative integer"
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"  # `python -m TRAINER.train` works from any folder
if [[ -z "$PYTHON" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
read -ra CMD <<<"${TRAINER_CMD:-$PYTHON -m $TRAINER.train}"

if [[ -n "$SETTINGS_FILE" ]]; then
  [[ -f "$SETTINGS_FILE" ]] || die "settings file '$SETTINGS_FILE' not found"
  SETTINGS=()
  while IFS= read -r line || [[ -n "$line" ]]; do
    read -ra words <<<"${line%%#*}"
    if ((${#words[@]})); then SETTINGS+=("${words[*]}"); fi
  done <"$SETTINGS_FILE"
fi
((${#SETTINGS[@]})) || die "no settings: ${SETTINGS_FILE:-the SETTINGS list} holds no line of flags"

read -ra EXTRA <<<"$EXTRA_FLAGS"
for pair in "--epochs:$EPOCHS" "--batch_size:$BATCH_SIZE" "--lr:$LR" "--weight_decay:$WEIGHT_DECAY"; do
  if [[ -n "${pair#*:}" ]]; then EXTRA+=("${pair%%:*}" "${pair#*:}"); fi
done

# Log name of a setting: its flags with the dashes dropped, e.g. dataset_cifar10_noise_kind_sym_noise_rate_0.5.
slug() {
  sed -E 's/(^|[[:space:]])--/\1/g; s/[[:space:]]+/_/g; s/[^A-Za-z0-9._+=-]/-/g' <<<"$1"
}

declare -A SEEN=()
for setting in "${SETTINGS[@]}"; do
  read -ra words <<<"$setting"
  for word in "${words[@]}" "${EXTRA[@]}"; do
    case "$word" in
      --seed | --seed=* | --output | --output=* | --resume | --overwrite)
        die "setting '$setting' passes $word; the script sets --seed, --output and --resume itself" ;;
    esac
  done
  name="$(slug "$setting")"
  [[ -z "${SEEN[$name]:-}" ]] || die "setting '$setting' appears twice; remove the duplicate line"
  SEEN[$name]=1
done

IFS=, read -ra VISIBLE <<<"${CUDA_VISIBLE_DEVICES:-}"
SLOTS=()
for gpu in "${VISIBLE[@]}"; do
  if [[ -n "${gpu// /}" ]]; then SLOTS+=("${gpu// /}"); fi
done
if ((${#SLOTS[@]})); then
  echo "GPUs ${SLOTS[*]}: one run per GPU at a time"
else
  for ((i = 0; i < JOBS; i++)); do SLOTS+=(cpu); done
  echo "no GPU listed in CUDA_VISIBLE_DEVICES: $JOBS run(s) at a time on the CPU"
fi

LOG_DIR="$OUTPUT/logs/$TRAINER"
TOTAL=$((${#SETTINGS[@]} * ${#SEED_LIST[@]}))
echo "$TOTAL runs: ${#SETTINGS[@]} setting(s) x seeds ${SEED_LIST[*]}; logs in $LOG_DIR"
[[ $DRY_RUN == 1 ]] || mkdir -p "$LOG_DIR"

# One training run in the background, its output appended to the log; exec so that its pid is the trainer's.
run_job() {
  local device="$1" log="$2"
  shift 2
  printf '# %s %s\n' "$(date '+%F %T')" "$*" >>"$log"
  if [[ "$device" == cpu ]]; then
    CUDA_VISIBLE_DEVICES="" exec "$@" >>"$log" 2>&1
  else
    CUDA_VISIBLE_DEVICES="$device" exec "$@" >>"$log" 2>&1
  fi
}

declare -A JOB_SLOT=() JOB_NAME=() JOB_LOG=()
FREE=("${!SLOTS[@]}")
FAILED=()

# Wait for any run to end, report it and free its slot.
reap() {
  local pid="" status=0 candidate
  wait -n -p pid || status=$?
  if [[ -z "${pid:-}" ]]; then
    # wait -n reported no job: bash already collected the one that ended. Find it and read its saved status.
    for candidate in "${!JOB_SLOT[@]}"; do
      if ! kill -0 "$candidate" 2>/dev/null; then
        pid=$candidate
        status=0
        wait "$pid" || status=$?
        break
      fi
    done
    if [[ -z "$pid" ]]; then
      sleep 1
      return 0
    fi
  fi
  if ((status == 0)); then
    echo "done    ${JOB_NAME[$pid]}"
  else
    echo "FAILED  ${JOB_NAME[$pid]} (exit $status), see ${JOB_LOG[$pid]}"
    FAILED+=("${JOB_NAME[$pid]}: ${JOB_LOG[$pid]}")
  fi
  FREE+=("${JOB_SLOT[$pid]}")
  unset "JOB_SLOT[$pid]" "JOB_NAME[$pid]" "JOB_LOG[$pid]"
}

stop_all() {
  if ((${#JOB_SLOT[@]})); then kill "${!JOB_SLOT[@]}" 2>/dev/null || true; fi
  echo "interrupted: stopped ${#JOB_SLOT[@]} run(s); run the same command again to resume" >&2
  exit 130
}
trap stop_all INT TERM

count=0
for seed in "${SEED_LIST[@]}"; do
  for setting in "${SETTINGS[@]}"; do
    count=$((count + 1))
    read -ra flags <<<"$setting"
    cmd=("${CMD[@]}" "${flags[@]}" "${EXTRA[@]}" --seed "$seed" --output "$OUTPUT" --data_path "$DATA_PATH" --resume)
    log="$LOG_DIR/$(slug "$setting")_seed$seed.log"
    if [[ $DRY_RUN == 1 ]]; then
      echo "${cmd[*]}"
      continue
    fi
    while ((${#FREE[@]} == 0)); do reap; done
    slot="${FREE[0]}"
    FREE=("${FREE[@]:1}")
    device="${SLOTS[$slot]}"
    where="gpu $device"
    if [[ "$device" == cpu ]]; then where=cpu; fi
    run_job "$device" "$log" "${cmd[@]}" &
    JOB_SLOT[$!]="$slot"
    JOB_NAME[$!]="$setting --seed $seed"
    JOB_LOG[$!]="$log"
    echo "[$count/$TOTAL] start on $where: $setting --seed $seed"
  done
done
while ((${#JOB_SLOT[@]})); do reap; done

if ((${#FAILED[@]})); then
  echo "${#FAILED[@]} of $TOTAL run(s) failed (run the same command again to resume them):"
  printf '  %s\n' "${FAILED[@]}"
  exit 1
fi
[[ $DRY_RUN == 1 ]] || echo "all $TOTAL runs finished; tables: python -m engine.report $OUTPUT"
