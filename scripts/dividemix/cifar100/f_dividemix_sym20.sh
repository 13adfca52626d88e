#!/usr/bin/env bash
# F-DivideMix (DivideMix with FINE's split) on CIFAR-100 with 20% symmetric label noise.
# One run per seed in SEEDS, on the GPU in CUDA_VISIBLE_DEVICES. Extra arguments go to the trainer: --resume
# continues killed runs and skips finished ones, --workers 8 ... Results: python -m fine.report OUTPUT
#   CUDA_VISIBLE_DEVICES=0 bash scripts/dividemix/cifar100/f_dividemix_sym20.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."

DATA_PATH="${DATA_PATH:-data}"  # folder holding cifar-100-python/ (scripts/download_cifar.sh)
OUTPUT="${OUTPUT:-runs}"        # root of the run directories
SEEDS="${SEEDS:-1 2 3}"         # one run per seed
PYTHON="${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}"

NOISE_KIND=sym         # sym: a fraction NOISE_RATE of the labels is redrawn uniformly over all classes
NOISE_RATE=0.2         # noise rate r
SELECTOR=fine          # FINE on eval-mode penultimate features of un-augmented images
P_THRESHOLD=0.5        # a sample is labelled when its clean probability exceeds this
LAMBDA_U=25            # weight of the unlabelled loss, ramped up over 16 epochs after warm-up
T=0.5                  # sharpening temperature of refined and guessed labels
ALPHA=4                # mixup Beta(ALPHA, ALPHA)
WARMUP=30              # epochs of cross-entropy on all data before the first split (FINE's code used 50)
ARCH=preact_resnet18   # network (two copies)
EPOCHS=300
BATCH_SIZE=64          # labelled and unlabelled samples per iteration (warm-up: twice this)
LR=0.02                # SGD, momentum 0.9
MILESTONES=150         # epoch at which the lr is multiplied by GAMMA
GAMMA=0.1
WEIGHT_DECAY=5e-4

for SEED in $SEEDS; do
  "$PYTHON" -m dividemix.train --dataset cifar100 --data_path "$DATA_PATH" --output "$OUTPUT" --seed "$SEED" \
    --noise_kind "$NOISE_KIND" --noise_rate "$NOISE_RATE" --selector "$SELECTOR" --p_threshold "$P_THRESHOLD" \
    --lambda_u "$LAMBDA_U" --T "$T" --alpha "$ALPHA" --warmup "$WARMUP" \
    --arch "$ARCH" --epochs "$EPOCHS" --batch_size "$BATCH_SIZE" --lr "$LR" --lr_schedule multistep \
    --milestones "$MILESTONES" --gamma "$GAMMA" --weight_decay "$WEIGHT_DECAY" --val_size 0 "$@"
done
