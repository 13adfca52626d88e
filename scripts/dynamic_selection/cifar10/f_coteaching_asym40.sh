#!/usr/bin/env bash
# F-Coteaching (Co-teaching with FINE's selection instead of small-loss samples)
# on CIFAR-10, 40% asymmetric label noise.
# Published test accuracy: reported 90.5* (FINE paper sample-selection table (ResNet-34) as quoted by a secondary source)
# Usage: CUDA_VISIBLE_DEVICES=0 bash scripts/dynamic_selection/cifar10/f_coteaching_asym40.sh [extra trainer flags]
# Each variable below is the trainer flag of the same name in lower case (scripts/common.sh);
# DATA_PATH, OUTPUT, SEEDS and PYTHON come from the environment. Tables: python -m engine.report runs
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"

DATASET=cifar10
METHOD=f-coteaching
LOSS=ce
NOISE_KIND=asym        # class-dependent flips of a fraction NOISE_RATE of each source class (data_loader/noise.py)
NOISE_RATE=0.4         # noise rate r
ARCH=resnet34          # network
EPOCHS=120             # training epochs
BATCH_SIZE=128         # mini-batch size
OPTIMIZER=sgd          # sgd (momentum 0.9) or adam
LR=0.02                # initial learning rate
LR_SCHEDULE=multistep  # multistep | cosine | linear-decay
MILESTONES="40 80"     # epochs at which multistep multiplies the lr by GAMMA
GAMMA=0.01             # lr factor at each milestone
WEIGHT_DECAY=0.001     # weight decay
VAL_SIZE=5000          # noisy validation split; the best epoch is chosen on it (0: none, test accuracy picks it)
WARMUP=40              # epochs on all data before the first selection round
EVERY=10               # epochs between selection rounds
P_THRESHOLD=0.5        # zeta: clean when the clean component's posterior exceeds it
REFERENCE=previous     # samples defining each class direction: previous selection, or the whole class

run_trainer dynamic_selection "$@"
