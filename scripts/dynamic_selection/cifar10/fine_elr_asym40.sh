#!/usr/bin/env bash
# FINE sample selection (Kim et al. 2021: eigenvector alignment of penultimate features) with the ELR loss
# on CIFAR-10, 40% asymmetric label noise.
# Usage: CUDA_VISIBLE_DEVICES=0 bash scripts/dynamic_selection/cifar10/fine_elr_asym40.sh [extra trainer flags]
# Each variable below is the trainer flag of the same name in lower case (scripts/common.sh);
# DATA_PATH, OUTPUT, SEEDS and PYTHON come from the environment. Tables: python -m engine.report runs
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"

DATASET=cifar10
METHOD=fine
LOSS=elr
NOISE_KIND=asym           # class-dependent flips of a fraction NOISE_RATE of each source class (data_loader/noise.py)
NOISE_RATE=0.4            # noise rate r
ARCH=resnet34             # network [FO hyperparams/multistep/config_cifar10_elr_rn34_asym.json]
INIT=pytorch              # pytorch (each layer's default) or kaiming (Kaiming-normal convolutions) [FO model/CIFAR_ResNet_Zoo.py:30-62]
EPOCHS=120                # training epochs [FO hyperparams/multistep/config_cifar10_elr_rn34_asym.json:54]
BATCH_SIZE=128            # mini-batch size [FO hyperparams/multistep/config_cifar10_elr_rn34_asym.json:17]
OPTIMIZER=sgd             # sgd (momentum 0.9) or adam [FO hyperparams/multistep/config_cifar10_elr_rn34_asym.json]
LR=0.02                   # initial learning rate [FO hyperparams/multistep/config_cifar10_elr_rn34_asym.json:30]
LR_SCHEDULE=multistep     # multistep | cosine | linear-decay [FO hyperparams/multistep/config_cifar10_elr_rn34_asym.json]
MILESTONES="40 80"        # epochs at which multistep multiplies the lr by GAMMA [FO hyperparams/multistep/config_cifar10_elr_rn34_asym.json:48]
GAMMA=0.01                # lr factor at each milestone [FO hyperparams/multistep/config_cifar10_elr_rn34_asym.json:49]
WEIGHT_DECAY=0.001        # weight decay [FO hyperparams/multistep/config_cifar10_elr_rn34_asym.json:32]
VAL_SIZE=5000             # noisy validation split; the best epoch is chosen on it (0: none, test accuracy picks it) [FO data_loader/cifar10.py:64-80 train_val_split: int(50000*0.9/num_classes) per class for training, rest validation]
WARMUP=50                 # epochs on all data before the first selection round [FO scripts/robust_loss/fine_dynamic_elr.sh]
EVERY=5                   # epochs between selection rounds [FO scripts/robust_loss/fine_dynamic_elr.sh]
P_THRESHOLD=0.5           # zeta: clean when the clean component's posterior exceeds it [FO utils/args.py:112-115]
REFERENCE=previous        # samples defining each class direction: previous selection, or the whole class [FO trainer/dynamic_trainer.py:88-91]
GMM_MAX_ITER=100          # EM iterations of FINE's per-class mixtures
BN_AFTER_SELECTION=train  # batch norm while training on a selection: train (batch statistics) or eval (frozen)
ELR_BETA=0.9              # ELR target momentum [FO hyperparams/multistep/config_cifar10_elr_rn34_asym.json:39]
ELR_LAMBDA=1.0            # ELR regularisation weight [FO hyperparams/multistep/config_cifar10_elr_rn34_asym.json:40]

run_trainer dynamic_selection "$@"
