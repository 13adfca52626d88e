#!/usr/bin/env bash
# FINE sample selection (Kim et al. 2021: eigenvector alignment of penultimate features)
# on CIFAR-10, CIFAR-N human labels ('random2').
# Usage: CUDA_VISIBLE_DEVICES=0 bash scripts/dynamic_selection/cifar10n/fine_random2.sh [extra trainer flags]
# Each variable below is the trainer flag of the same name in lower case (scripts/common.sh);
# DATA_PATH, OUTPUT, SEEDS and PYTHON come from the environment. Tables: python -m engine.report runs
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"

DATASET=cifar10
METHOD=fine
LOSS=ce
NOISE_KIND=human          # human annotations (CIFAR-N)
NOISE_LABEL=random2       # CIFAR-N label set (bash scripts/download_cifar_n.sh data; CC BY-NC, not shipped)
ARCH=resnet34             # network
INIT=pytorch              # pytorch (each layer's default) or kaiming (Kaiming-normal convolutions)
EPOCHS=120                # training epochs
BATCH_SIZE=128            # mini-batch size
OPTIMIZER=sgd             # sgd (momentum 0.9) or adam
LR=0.02                   # initial learning rate
LR_SCHEDULE=multistep     # multistep | cosine | linear-decay
MILESTONES="40 80"        # epochs at which multistep multiplies the lr by GAMMA
GAMMA=0.01                # lr factor at each milestone
WEIGHT_DECAY=0.001        # weight decay
VAL_SIZE=5000             # noisy validation split; the best epoch is chosen on it (0: none, test accuracy picks it)
WARMUP=40                 # epochs on all data before the first selection round
EVERY=10                  # epochs between selection rounds
P_THRESHOLD=0.5           # zeta: clean when the clean component's posterior exceeds it
REFERENCE=previous        # samples defining each class direction: previous selection, or the whole class
GMM_MAX_ITER=100          # EM iterations of FINE's per-class mixtures
BN_AFTER_SELECTION=train  # batch norm while training on a selection: train (batch statistics) or eval (frozen)

run_trainer dynamic_selection "$@"
