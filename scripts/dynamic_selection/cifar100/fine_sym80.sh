#!/usr/bin/env bash
# FINE sample selection (Kim et al. 2021: eigenvector alignment of penultimate features)
# on CIFAR-100, 80% symmetric label noise.
# Published test accuracy: best 25.6* (FINE paper sample-selection table (ResNet-34) as quoted by a secondary source)
# Usage: CUDA_VISIBLE_DEVICES=0 bash scripts/dynamic_selection/cifar100/fine_sym80.sh [extra trainer flags]
# Each variable below is the trainer flag of the same name in lower case (scripts/common.sh);
# DATA_PATH, OUTPUT, SEEDS and PYTHON come from the environment. Tables: python -m engine.report runs
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"

DATASET=cifar100
METHOD=fine
LOSS=ce
NOISE_KIND=sym            # a fraction NOISE_RATE of the labels redrawn uniformly over all classes (true class included)
NOISE_RATE=0.8            # noise rate r
ARCH=resnet34             # network [FO hyperparams/multistep/config_cifar100_cce_rn34.json]
INIT=pytorch              # pytorch (each layer's default) or kaiming (Kaiming-normal convolutions) [FO model/CIFAR_ResNet_Zoo.py:30-62]
EPOCHS=150                # training epochs [FO hyperparams/multistep/config_cifar100_cce_rn34.json:54]
BATCH_SIZE=128            # mini-batch size [FO hyperparams/multistep/config_cifar100_cce_rn34.json:17]
OPTIMIZER=sgd             # sgd (momentum 0.9) or adam [FO hyperparams/multistep/config_cifar100_cce_rn34.json]
LR=0.02                   # initial learning rate [FO hyperparams/multistep/config_cifar100_cce_rn34.json:30]
LR_SCHEDULE=multistep     # multistep | cosine | linear-decay [FO hyperparams/multistep/config_cifar100_cce_rn34.json]
MILESTONES="80 120"       # epochs at which multistep multiplies the lr by GAMMA [FO hyperparams/multistep/config_cifar100_cce_rn34.json:48]
GAMMA=0.01                # lr factor at each milestone [FO hyperparams/multistep/config_cifar100_cce_rn34.json:49]
WEIGHT_DECAY=0.001        # weight decay [FO hyperparams/multistep/config_cifar100_cce_rn34.json:32]
VAL_SIZE=5000             # noisy validation split; the best epoch is chosen on it (0: none, test accuracy picks it) [FO data_loader/cifar100.py:65-81 train_val_split: int(50000*0.9/num_classes) per class for training, rest validation]
WARMUP=40                 # epochs on all data before the first selection round [FO scripts/sample_selection_based/fine_cifar.sh]
EVERY=10                  # epochs between selection rounds [FO utils/args.py:108-111]
P_THRESHOLD=0.5           # zeta: clean when the clean component's posterior exceeds it [FO utils/args.py:112-115]
REFERENCE=previous        # samples defining each class direction: previous selection, or the whole class [FO trainer/dynamic_trainer.py:88-91]
GMM_MAX_ITER=100          # EM iterations of FINE's per-class mixtures
BN_AFTER_SELECTION=train  # batch norm while training on a selection: train (batch statistics) or eval (frozen)

run_trainer dynamic_selection "$@"
