#!/usr/bin/env bash
# DivideMix (Li et al. 2020)
# on Clothing1M, its real label noise.
# Published test accuracy: reported 74.30* (FINE paper Clothing1M table as quoted by a secondary source)
#   reported 74.76* (DivideMix paper as quoted by a secondary source)
# Usage: CUDA_VISIBLE_DEVICES=0 bash scripts/dividemix/clothing1m/dividemix.sh [extra trainer flags]
# Each variable below is the trainer flag of the same name in lower case (scripts/common.sh);
# DATA_PATH, OUTPUT, SEEDS and PYTHON come from the environment. Tables: python -m engine.report runs
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"

DATA_PATH=${DATA_PATH:-data/clothing1m}  # images/ + annotation files (from Xiao et al. 2015)
DATASET=clothing1m
SELECTOR=loss-gmm      # how each selection round splits the samples
NOISE_KIND=real        # the labels the dataset comes with
ARCH=resnet50          # network
PRETRAINED=imagenet    # initial weights: torchvision's ImageNet file in the local torch hub cache, or a state-dict path
EPOCHS=80              # training epochs
NUM_BATCHES=1000       # an epoch / selection round works on a fresh class-balanced draw of this many batches
BATCH_SIZE=32          # mini-batch size
OPTIMIZER=sgd          # sgd (momentum 0.9) or adam
LR=0.002               # initial learning rate
LR_SCHEDULE=multistep  # multistep | cosine | linear-decay
MILESTONES="40"        # epochs at which multistep multiplies the lr by GAMMA
GAMMA=0.1              # lr factor at each milestone
WEIGHT_DECAY=0.001     # weight decay
VAL_SIZE=0             # noisy validation split; the best epoch is chosen on it (0: none, test accuracy picks it)
WARMUP=1               # epochs on all data before the first selection round
P_THRESHOLD=0.5        # zeta: clean when the clean component's posterior exceeds it
LAMBDA_U=0.0           # weight of the unlabelled loss, ramped up over 16 epochs after warm-up
TEMPERATURE=0.5        # sharpening temperature of refined and guessed labels
ALPHA=0.5              # mixup Beta(ALPHA, ALPHA)
LOSS_HISTORY=1         # loss-gmm: average the normalised loss over this many epochs

run_trainer dividemix "$@"
