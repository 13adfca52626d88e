#!/usr/bin/env bash
# Co-teaching (Han et al. 2018)
# on CIFAR-100, 80% symmetric label noise.
# Published test accuracy: max 20.5* (FINE paper sample-selection table (ResNet-34) as quoted by a secondary source)
# Usage: CUDA_VISIBLE_DEVICES=0 bash scripts/dynamic_selection/cifar100/coteaching_sym80.sh [extra trainer flags]
# Each variable below is the trainer flag of the same name in lower case (scripts/common.sh);
# DATA_PATH, OUTPUT, SEEDS and PYTHON come from the environment. Tables: python -m engine.report runs
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"

DATASET=cifar100
METHOD=coteaching
LOSS=ce
NOISE_KIND=sym         # a fraction NOISE_RATE of the labels redrawn uniformly over all classes (true class included)
NOISE_RATE=0.8         # noise rate r
ARCH=resnet34          # network [FO hyperparams/coteach/config_cifar100_coteach_rn34.json:7]
INIT=kaiming           # pytorch (each layer's default) or kaiming (Kaiming-normal convolutions) [FO trainer/coteaching_trainer.py:46-53]
EPOCHS=150             # training epochs [FO hyperparams/coteach/config_cifar100_coteach_rn34.json:57]
BATCH_SIZE=128         # mini-batch size [FO hyperparams/coteach/config_cifar100_coteach_rn34.json:17]
OPTIMIZER=sgd          # sgd (momentum 0.9) or adam [FO hyperparams/coteach/config_cifar100_coteach_rn34.json]
LR=0.01                # initial learning rate [FO hyperparams/coteach/config_cifar100_coteach_rn34.json:30]
LR_SCHEDULE=multistep  # multistep | cosine | linear-decay [FO hyperparams/coteach/config_cifar100_coteach_rn34.json]
MILESTONES="80 120"    # epochs at which multistep multiplies the lr by GAMMA [FO hyperparams/coteach/config_cifar100_coteach_rn34.json:51]
GAMMA=0.01             # lr factor at each milestone [FO hyperparams/coteach/config_cifar100_coteach_rn34.json:52]
WEIGHT_DECAY=0.0001    # weight decay [FO hyperparams/coteach/config_cifar100_coteach_rn34.json:32]
VAL_SIZE=5000          # noisy validation split; the best epoch is chosen on it (0: none, test accuracy picks it) [FO data_loader/cifar100.py:65-81 train_val_split: int(50000*0.9/num_classes) per class for training, rest validation]
FORGET_RATE=0.72       # tau: fraction of large-loss samples dropped per batch [FO loss/coteach.py:64]
NUM_GRADUAL=40         # epochs over which the forget rate ramps up to tau [FO hyperparams/coteach/config_cifar100_coteach_rn34.json:39]

run_trainer dynamic_selection "$@"
