#!/usr/bin/env bash
# Co-teaching+ (Yu et al. 2019)
# on CIFAR-10, 20% symmetric label noise.
# Usage: CUDA_VISIBLE_DEVICES=0 bash scripts/dynamic_selection/cifar10/coteaching_plus_sym20.sh [extra trainer flags]
# Each variable below is the trainer flag of the same name in lower case (scripts/common.sh);
# DATA_PATH, OUTPUT, SEEDS and PYTHON come from the environment. Tables: python -m engine.report runs
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"

DATASET=cifar10
METHOD=coteaching+
LOSS=ce
NOISE_KIND=sym            # a fraction NOISE_RATE of the labels redrawn uniformly over all classes (true class included)
NOISE_RATE=0.2            # noise rate r
ARCH=resnet18             # network [FO hyperparams/coteach/config_cifar10_coteach+_rn18.json:7]
INIT=kaiming              # pytorch (each layer's default) or kaiming (Kaiming-normal convolutions)
EPOCHS=120                # training epochs [FO hyperparams/coteach/config_cifar10_coteach+_rn18.json:55]
BATCH_SIZE=128            # mini-batch size [FO hyperparams/coteach/config_cifar10_coteach+_rn18.json:17]
OPTIMIZER=adam            # sgd (momentum 0.9) or adam [FO hyperparams/coteach/config_cifar10_coteach+_rn18.json]
LR=0.001                  # initial learning rate [FO hyperparams/coteach/config_cifar10_coteach+_rn18.json:30]
LR_SCHEDULE=linear-decay  # multistep | cosine | linear-decay [FO traintools/coteachingtrain.py:186-187]
DECAY_START=80            # linear-decay: the lr falls linearly to 0 from this epoch (Adam's beta1 0.9 -> 0.1) [FO hyperparams/coteach/config_cifar10_coteach+_rn18.json:56]
WEIGHT_DECAY=0.0          # weight decay [FO hyperparams/coteach/config_cifar10_coteach+_rn18.json]
VAL_SIZE=5000             # noisy validation split; the best epoch is chosen on it (0: none, test accuracy picks it) [FO data_loader/cifar10.py:64-80 train_val_split: int(50000*0.9/num_classes) per class for training, rest validation]
FORGET_RATE=0.18          # tau: fraction of large-loss samples dropped per batch [FO loss/coteach.py:64]
NUM_GRADUAL=40            # epochs over which the forget rate ramps up to tau [FO hyperparams/coteach/config_cifar10_coteach+_rn18.json:37]
INIT_EPOCHS=0             # epochs of plain co-teaching before disagreement is used

run_trainer dynamic_selection "$@"
