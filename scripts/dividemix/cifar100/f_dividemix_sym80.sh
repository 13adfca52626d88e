#!/usr/bin/env bash
# F-DivideMix (DivideMix with FINE's split instead of the loss mixture)
# on CIFAR-100, 80% symmetric label noise.
# Published test accuracy: max 61.0* (FINE paper as quoted by a secondary source)
# Usage: CUDA_VISIBLE_DEVICES=0 bash scripts/dividemix/cifar100/f_dividemix_sym80.sh [extra trainer flags]
# Each variable below is the trainer flag of the same name in lower case (scripts/common.sh);
# DATA_PATH, OUTPUT, SEEDS and PYTHON come from the environment. Tables: python -m engine.report runs
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"

DATASET=cifar100
SELECTOR=fine          # how each selection round splits the samples
NOISE_KIND=sym         # a fraction NOISE_RATE of the labels redrawn uniformly over all classes (true class included)
NOISE_RATE=0.8         # noise rate r
ARCH=preact_resnet18   # network [DM Train_cifar.py:210-213 ResNet18 = PreResNet.py:162-163]
INIT=pytorch           # pytorch (each layer's default) or kaiming (Kaiming-normal convolutions)
EPOCHS=301             # training epochs [DM Train_cifar.py:24,242 range(args.num_epochs+1) with num_epochs 300]
BATCH_SIZE=64          # mini-batch size [DM Train_cifar.py:17]
OPTIMIZER=sgd          # sgd (momentum 0.9) or adam [DM Train_cifar.py:232-233]
LR=0.02                # initial learning rate [DM Train_cifar.py:18]
LR_SCHEDULE=multistep  # multistep | cosine | linear-decay [DM Train_cifar.py:243-245]
MILESTONES="150"       # epochs at which multistep multiplies the lr by GAMMA [DM Train_cifar.py:244]
GAMMA=0.1              # lr factor at each milestone [DM Train_cifar.py:245]
WEIGHT_DECAY=0.0005    # weight decay [DM Train_cifar.py:232]
VAL_SIZE=0             # noisy validation split; the best epoch is chosen on it (0: none, test accuracy picks it) [DM dataloader_cifar.py:40-54]
WARMUP=50              # epochs on all data before the first selection round [FO dividemix/Train_cifar.py:425]
P_THRESHOLD=0.5        # zeta: clean when the clean component's posterior exceeds it [FO dividemix/Train_cifar.py:28 default 0.5]
GMM_MAX_ITER=10        # EM iterations of FINE's per-class mixtures [FO dividemix/Train_cifar.py:320]
LAMBDA_U=25.0        # weight of the unlabelled loss, ramped up over 16 epochs after warm-up. PUBLISHED: FINE's code runs CIFAR-10's lambda_u here (FO dividemix/scripts/baseline_c100.sh, which FO dividemix/README.md says F-DivideMix shares: "the same with baselines"); the DivideMix paper's CIFAR-100 value is one flag away: LAMBDA_U=150
TEMPERATURE=0.5        # sharpening temperature of refined and guessed labels [DM Train_cifar.py:23]
ALPHA=4.0              # mixup Beta(ALPHA, ALPHA) [DM Train_cifar.py:20]
UNLABELLED=mix         # mix: MixMatch uses the unlabelled samples too; ignore: labelled ones only
WARMUP_PENALTY=off     # confidence penalty (negative entropy) in the warm-up loss [DM Train_cifar.py:132-136]

run_trainer dividemix "$@"
