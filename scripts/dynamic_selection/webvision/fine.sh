#!/usr/bin/env bash
# FINE sample selection (Kim et al. 2021: eigenvector alignment of penultimate features)
# on mini-WebVision (first 50 classes of WebVision 1.0, Google images), its real label noise.
# Usage: CUDA_VISIBLE_DEVICES=0 bash scripts/dynamic_selection/webvision/fine.sh [extra trainer flags]
# Each variable below is the trainer flag of the same name in lower case (scripts/common.sh);
# DATA_PATH, OUTPUT, SEEDS and PYTHON come from the environment. Tables: python -m engine.report runs
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"

DATA_PATH=${DATA_PATH:-data/webvision}  # WebVision 1.0: info/, google/, val_images_256/
IMAGENET_PATH=${IMAGENET_PATH:-data/imagenet}  # ILSVRC12 validation images in val/<wnid>/
DATASET=webvision
METHOD=fine
LOSS=ce
NOISE_KIND=real           # the labels the dataset comes with
ARCH=inception_resnet_v2  # network
INIT=pytorch              # pytorch (each layer's default) or kaiming (Kaiming-normal convolutions)
EPOCHS=80                 # training epochs
BATCH_SIZE=32             # mini-batch size
OPTIMIZER=sgd             # sgd (momentum 0.9) or adam
LR=0.01                   # initial learning rate
LR_SCHEDULE=multistep     # multistep | cosine | linear-decay
MILESTONES="40"           # epochs at which multistep multiplies the lr by GAMMA
GAMMA=0.1                 # lr factor at each milestone
WEIGHT_DECAY=0.0005       # weight decay
VAL_SIZE=0                # noisy validation split; the best epoch is chosen on it (0: none, test accuracy picks it)
WARMUP=1                  # epochs on all data before the first selection round
EVERY=1                   # epochs between selection rounds
P_THRESHOLD=0.5           # zeta: clean when the clean component's posterior exceeds it
REFERENCE=previous        # samples defining each class direction: previous selection, or the whole class
GMM_MAX_ITER=100          # EM iterations of FINE's per-class mixtures
BN_AFTER_SELECTION=train  # batch norm while training on a selection: train (batch statistics) or eval (frozen)

run_trainer dynamic_selection "$@"
