#!/usr/bin/env bash
# FINE sample selection (Kim et al. 2021: eigenvector alignment of penultimate features) with the GCE loss
# on CIFAR-100, 80% symmetric label noise.
# Published test accuracy: reported 37.0* (FINE paper robust-loss table as quoted by a secondary source)
# Usage: CUDA_VISIBLE_DEVICES=0 bash scripts/dynamic_selection/cifar100/fine_gce_sym80.sh [extra trainer flags]
# Each variable below is the trainer flag of the same name in lower case (scripts/common.sh);
# DATA_PATH, OUTPUT, SEEDS and PYTHON come from the environment. Tables: python -m engine.report runs
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"

DATASET=cifar100
METHOD=fine
LOSS=gce
NOISE_KIND=sym         # a fraction NOISE_RATE of the labels redrawn uniformly over all classes (true class included)
NOISE_RATE=0.8         # noise rate r
ARCH=resnet34          # network
EPOCHS=150             # training epochs
BATCH_SIZE=128         # mini-batch size
OPTIMIZER=sgd          # sgd (momentum 0.9) or adam
LR=0.01                # initial learning rate
LR_SCHEDULE=multistep  # multistep | cosine | linear-decay
MILESTONES="80 120"    # epochs at which multistep multiplies the lr by GAMMA
GAMMA=0.1              # lr factor at each milestone
WEIGHT_DECAY=0.0001    # weight decay
VAL_SIZE=5000          # noisy validation split; the best epoch is chosen on it (0: none, test accuracy picks it)
WARMUP=50              # epochs on all data before the first selection round
EVERY=5                # epochs between selection rounds
P_THRESHOLD=0.5        # zeta: clean when the clean component's posterior exceeds it
REFERENCE=previous     # samples defining each class direction: previous selection, or the whole class
GCE_Q=0.7              # GCE exponent q

run_trainer dynamic_selection "$@"
