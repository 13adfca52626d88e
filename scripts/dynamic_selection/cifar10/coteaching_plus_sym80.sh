#!/usr/bin/env bash
# Co-teaching+ (Yu et al. 2019)
# on CIFAR-10, 80% symmetric label noise.
# Usage: CUDA_VISIBLE_DEVICES=0 bash scripts/dynamic_selection/cifar10/coteaching_plus_sym80.sh [extra trainer flags]
# Each variable below is the trainer flag of the same name in lower case (scripts/common.sh);
# DATA_PATH, OUTPUT, SEEDS and PYTHON come from the environment. Tables: python -m engine.report runs
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"

DATASET=cifar10
METHOD=coteaching+
LOSS=ce
NOISE_KIND=sym            # a fraction NOISE_RATE of the labels redrawn uniformly over all classes (true class included)
NOISE_RATE=0.8            # noise rate r
ARCH=resnet34             # network
EPOCHS=200                # training epochs
BATCH_SIZE=128            # mini-batch size
OPTIMIZER=adam            # sgd (momentum 0.9) or adam
LR=0.001                  # initial learning rate
LR_SCHEDULE=linear-decay  # multistep | cosine | linear-decay
DECAY_START=80            # linear-decay: the lr falls linearly to 0 from this epoch (Adam's beta1 0.9 -> 0.1)
WEIGHT_DECAY=0.0          # weight decay
VAL_SIZE=5000             # noisy validation split; the best epoch is chosen on it (0: none, test accuracy picks it)
NUM_GRADUAL=10            # epochs over which the forget rate ramps up to tau
INIT_STEPS=5000           # steps of plain co-teaching before disagreement is used

run_trainer dynamic_selection "$@"
