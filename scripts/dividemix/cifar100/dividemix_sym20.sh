#!/usr/bin/env bash
# DivideMix (Li et al. 2020)
# on CIFAR-100, 20% symmetric label noise.
# Published test accuracy: best 77.3 (DivideMix paper (arXiv 2002.07394))
# Usage: CUDA_VISIBLE_DEVICES=0 bash scripts/dividemix/cifar100/dividemix_sym20.sh [extra trainer flags]
# Each variable below is the trainer flag of the same name in lower case (scripts/common.sh);
# DATA_PATH, OUTPUT, SEEDS and PYTHON come from the environment. Tables: python -m engine.report runs
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"

DATASET=cifar100
SELECTOR=loss-gmm      # how each selection round splits the samples
NOISE_KIND=sym         # a fraction NOISE_RATE of the labels redrawn uniformly over all classes (true class included)
NOISE_RATE=0.2         # noise rate r
ARCH=preact_resnet18   # network
EPOCHS=300             # training epochs
BATCH_SIZE=64          # mini-batch size
OPTIMIZER=sgd          # sgd (momentum 0.9) or adam
LR=0.02                # initial learning rate
LR_SCHEDULE=multistep  # multistep | cosine | linear-decay
MILESTONES="150"       # epochs at which multistep multiplies the lr by GAMMA
GAMMA=0.1              # lr factor at each milestone
WEIGHT_DECAY=0.0005    # weight decay
VAL_SIZE=0             # noisy validation split; the best epoch is chosen on it (0: none, test accuracy picks it)
WARMUP=30              # epochs on all data before the first selection round
P_THRESHOLD=0.5        # zeta: clean when the clean component's posterior exceeds it
LAMBDA_U=25.0          # weight of the unlabelled loss, ramped up over 16 epochs after warm-up
TEMPERATURE=0.5        # sharpening temperature of refined and guessed labels
ALPHA=4.0              # mixup Beta(ALPHA, ALPHA)
LOSS_HISTORY=1         # loss-gmm: average the normalised loss over this many epochs

run_trainer dividemix "$@"
