#!/usr/bin/env bash
# F-Coteaching (Co-teaching with FINE's selection instead of small-loss samples)
# on CIFAR-100, 20% symmetric label noise.
# Usage: CUDA_VISIBLE_DEVICES=0 bash scripts/dynamic_selection/cifar100/f_coteaching_sym20.sh [extra trainer flags]
# Each variable below is the trainer flag of the same name in lower case (scripts/common.sh);
# DATA_PATH, OUTPUT, SEEDS and PYTHON come from the environment. Tables: python -m engine.report runs
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"

DATASET=cifar100
METHOD=f-coteaching
LOSS=ce
NOISE_KIND=sym           # a fraction NOISE_RATE of the labels redrawn uniformly over all classes (true class included)
NOISE_RATE=0.2           # noise rate r
ARCH=resnet34            # network [FO hyperparams/multistep/config_cifar100_cce_rn34.json]
INIT=kaiming             # pytorch (each layer's default) or kaiming (Kaiming-normal convolutions) [FO trainer/dynamic_coteach_trainer.py:55-62]
EPOCHS=150               # training epochs [FO hyperparams/multistep/config_cifar100_cce_rn34.json:54]
BATCH_SIZE=128           # mini-batch size [FO hyperparams/multistep/config_cifar100_cce_rn34.json:17]
OPTIMIZER=sgd            # sgd (momentum 0.9) or adam [FO hyperparams/multistep/config_cifar100_cce_rn34.json]
LR=0.02                  # initial learning rate [FO hyperparams/multistep/config_cifar100_cce_rn34.json:30]
LR_SCHEDULE=multistep    # multistep | cosine | linear-decay [FO traintools/coteachingtrain.py:131 lr_scheduler=None -> trainer/dynamic_coteach_trainer.py:97,283-285]
MILESTONES=""            # PUBLISHED BUG reproduced: FINE_official's F-Coteaching never steps its lr scheduler (FO traintools/coteachingtrain.py:131, trainer/dynamic_coteach_trainer.py:97,283), so the lr stays constant; the intended schedule is one flag away: MILESTONES="40 80" (CIFAR-100: "80 120")
GAMMA=0.01               # lr factor at each milestone
WEIGHT_DECAY=0.001       # weight decay [FO hyperparams/multistep/config_cifar100_cce_rn34.json:32]
VAL_SIZE=5000            # noisy validation split; the best epoch is chosen on it (0: none, test accuracy picks it) [FO data_loader/cifar100.py:65-81 train_val_split: int(50000*0.9/num_classes) per class for training, rest validation]
WARMUP=42                # epochs on all data before the first selection round [FO trainer/dynamic_coteach_trainer.py:178]
EVERY=10                 # epochs between selection rounds [FO scripts/sample_selection_based/f-coteaching.sh --every 10]
P_THRESHOLD=0.5          # zeta: clean when the clean component's posterior exceeds it [FO trainer/dynamic_coteach_trainer.py:125-126]
REFERENCE=previous       # samples defining each class direction: previous selection, or the whole class [FO trainer/dynamic_coteach_trainer.py:118-126]
GMM_MAX_ITER=100         # EM iterations of FINE's per-class mixtures
BN_AFTER_SELECTION=eval  # PUBLISHED BUG reproduced: FINE_official's F-Coteaching trains both networks in eval mode (frozen batch norm) after its first round (FO selection/util.py:56, trainer/dynamic_coteach_trainer.py:192); batch statistics are one flag away: BN_AFTER_SELECTION=train

run_trainer dynamic_selection "$@"
