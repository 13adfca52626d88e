#!/usr/bin/env bash
# Co-teaching (Han et al. 2018)
# on CIFAR-100, 20% symmetric label noise.
# Usage: CUDA_VISIBLE_DEVICES=0 bash scripts/dynamic_selection/cifar100/coteaching_sym20.sh [extra trainer flags]
# Each variable below is the trainer flag of the same name in lower case (scripts/common.sh);
# DATA_PATH, OUTPUT, SEEDS and PYTHON come from the environment. Tables: python -m engine.report runs
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"

DATASET=cifar100
METHOD=coteaching
LOSS=ce
NOISE_KIND=sym         # a fraction NOISE_RATE of the labels redrawn uniformly over all classes (true class included)
NOISE_RATE=0.2         # noise rate r
ARCH=resnet34          # network
EPOCHS=150             # training epochs
BATCH_SIZE=128         # mini-batch size
OPTIMIZER=sgd          # sgd (momentum 0.9) or adam
LR=0.01                # initial learning rate
LR_SCHEDULE=multistep  # multistep | cosine | linear-decay
MILESTONES="40 80"     # epochs at which multistep multiplies the lr by GAMMA
GAMMA=0.01             # lr factor at each milestone
WEIGHT_DECAY=0.0001    # weight decay
VAL_SIZE=5000          # noisy validation split; the best epoch is chosen on it (0: none, test accuracy picks it)
NUM_GRADUAL=40         # epochs over which the forget rate ramps up to tau

run_trainer dynamic_selection "$@"
