# Sourced by every experiment script under scripts/: runs a trainer once per seed with the script's variables.
#
# Each variable a script assigns at the start of a line (NAME=value) becomes the trainer flag of the same name in
# lower case (--name value); a value with spaces gives several values (MILESTONES="40 80" -> --milestones 40 80), an
# empty one the bare flag (MILESTONES="" -> --milestones, no lr step). These variables are not flags:
#   DATA_PATH  dataset folder (default data; relative paths start at the repository root)
#   OUTPUT     root of the run directories (default runs; tensorboard --logdir runs)
#   SEEDS      one run per seed (default "1 2 3")
#   PYTHON     interpreter (default: the README's .venv, else python3 on PATH)
# Set them in the environment, e.g. SEEDS=1 DATA_PATH=/data bash scripts/dividemix/cifar10/dividemix_sym50.sh.
# Arguments after the script name go to the trainer last, so they win: --resume, --workers 8, --dry_run (print the
# resolved configuration and stop), --epochs 10, ...
set -euo pipefail

run_trainer() {  # usage: run_trainer TRAINER "$@"  (TRAINER: dynamic_selection or dividemix)
  local trainer=$1 script=${BASH_SOURCE[1]} root name flags=() seed
  shift
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  for name in $(grep -oE '^[A-Z][A-Z0-9_]*=' "$script" | tr -d '='); do
    case $name in DATA_PATH | OUTPUT | SEEDS | PYTHON) continue ;; esac
    flags+=("--${name,,}")
    # shellcheck disable=SC2206  # split on purpose: a list value becomes several arguments
    [ -n "${!name}" ] && flags+=(${!name})
  done
  cd "$root"
  local python=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
  for seed in ${SEEDS:-1 2 3}; do
    "$python" -m "$trainer.train" --data_path "${DATA_PATH:-data}" --output "${OUTPUT:-runs}" --seed "$seed" \
      "${flags[@]}" "$@"
  done
}
