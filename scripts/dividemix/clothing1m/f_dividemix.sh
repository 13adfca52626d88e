#!/usr/bin/env bash
# F-DivideMix (DivideMix with FINE's split) on Clothing1M (real label noise), two ImageNet-pretrained ResNet-50s.
# One run per seed in SEEDS, on the GPU in CUDA_VISIBLE_DEVICES. Extra arguments go to the trainer: --resume
# continues killed runs and skips finished ones, --workers 8 ... Results: python -m fine.report OUTPUT
#   CUDA_VISIBLE_DEVICES=0 bash scripts/dividemix/clothing1m/f_dividemix.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."

DATA_PATH="${DATA_PATH:-data/clothing1m}"  # images/ + annotation files (request Clothing1M from Xiao et al. 2015)
OUTPUT="${OUTPUT:-runs}"        # root of the run directories
SEEDS="${SEEDS:-1 2 3}"         # one run per seed
PYTHON="${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}"

SELECTOR=fine                 # FINE on eval-mode penultimate features of un-augmented images
P_THRESHOLD=0.5        # a sample is labelled when its clean probability exceeds this
LAMBDA_U=0             # no unlabelled loss on Clothing1M
T=0.5                  # sharpening temperature of refined and guessed labels
ALPHA=0.5              # mixup Beta(ALPHA, ALPHA)
WARMUP=1               # epochs of cross-entropy on all data before the first split
ARCH=resnet50          # network (two copies)
PRETRAINED=imagenet    # torchvision IMAGENET1K_V1 weights from the local torch hub cache (or a file path)
EPOCHS=80
NUM_BATCHES=1000       # iterations per epoch; each epoch draws 2 x NUM_BATCHES x BATCH_SIZE class-balanced samples,
                       # which both networks warm up on and split (not the whole million)
BATCH_SIZE=32          # labelled and unlabelled samples per iteration (warm-up: twice this)
LR=0.002               # SGD, momentum 0.9
MILESTONES=40          # epoch at which the lr is multiplied by GAMMA
GAMMA=0.1
WEIGHT_DECAY=1e-3

for SEED in $SEEDS; do
  "$PYTHON" -m dividemix.train --dataset clothing1m --data_path "$DATA_PATH" --output "$OUTPUT" --seed "$SEED" \
    --selector "$SELECTOR" --p_threshold "$P_THRESHOLD" --lambda_u "$LAMBDA_U" --T "$T" --alpha "$ALPHA" \
    --warmup "$WARMUP" --arch "$ARCH" --pretrained "$PRETRAINED" --epochs "$EPOCHS" --num_batches "$NUM_BATCHES" \
    --batch_size "$BATCH_SIZE" --lr "$LR" --lr_schedule multistep --milestones "$MILESTONES" --gamma "$GAMMA" \
    --weight_decay "$WEIGHT_DECAY" --val_size 0 "$@"
done
