#!/usr/bin/env bash
# DivideMix (Li et al. 2020)
# on Clothing1M, its real label noise.
# Published test accuracy: best 74.30* (FINE paper Clothing1M table as quoted by a secondary source)
#   best 74.76* (DivideMix paper as quoted by a secondary source)
# Usage: CUDA_VISIBLE_DEVICES=0 bash scripts/dividemix/clothing1m/dividemix.sh [extra trainer flags]
# Each variable below is the trainer flag of the same name in lower case (scripts/common.sh);
# DATA_PATH, OUTPUT, SEEDS and PYTHON come from the environment. Tables: python -m engine.report runs
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"

DATA_PATH=${DATA_PATH:-data/clothing1m}  # images/ + annotation files (from Xiao et al. 2015)
DATASET=clothing1m
SELECTOR=loss-gmm      # how each selection round splits the samples
NOISE_KIND=real        # the labels the dataset comes with
ARCH=resnet50          # network [DM Train_clothing1M.py:211-215]
INIT=pytorch           # pytorch (each layer's default) or kaiming (Kaiming-normal convolutions)
PRETRAINED=imagenet    # initial weights: torchvision's ImageNet file in the local torch hub cache, or a state-dict path [DM Train_clothing1M.py:212 models.resnet50(pretrained=True)]
EPOCHS=81              # training epochs [DM Train_clothing1M.py:24,235 range(num_epochs+1)]
NUM_BATCHES=1000       # an epoch / selection round works on a fresh class-balanced draw of this many batches [DM Train_clothing1M.py:30]
BATCH_SIZE=32          # mini-batch size [DM Train_clothing1M.py:18]
OPTIMIZER=sgd          # sgd (momentum 0.9) or adam [DM Train_clothing1M.py:227]
LR=0.002               # initial learning rate [DM Train_clothing1M.py:19]
LR_SCHEDULE=multistep  # multistep | cosine | linear-decay [DM Train_clothing1M.py:236-238]
MILESTONES="40"        # epochs at which multistep multiplies the lr by GAMMA [DM Train_clothing1M.py:237]
GAMMA=0.1              # lr factor at each milestone [DM Train_clothing1M.py:238]
WEIGHT_DECAY=0.001     # weight decay [DM Train_clothing1M.py:227]
VAL_SIZE=0             # noisy validation split; the best epoch is chosen on it (0: none, test accuracy picks it) [no split of the noisy training set; the official clean val set is used for checkpointing: DM Train_clothing1M.py:139-158]
WARMUP=1               # epochs on all data before the first selection round [DM Train_clothing1M.py:244]
P_THRESHOLD=0.5        # zeta: clean when the clean component's posterior exceeds it [DM Train_clothing1M.py:22]
LAMBDA_U=0.0           # weight of the unlabelled loss, ramped up over 16 epochs after warm-up [DM Train_clothing1M.py:21]
TEMPERATURE=0.5        # sharpening temperature of refined and guessed labels [DM Train_clothing1M.py:23]
ALPHA=0.5              # mixup Beta(ALPHA, ALPHA) [DM Train_clothing1M.py:20]
LOSS_HISTORY=1         # loss-gmm: average the normalised loss over this many epochs
UNLABELLED=ignore      # mix: MixMatch uses the unlabelled samples too; ignore: labelled ones only
WARMUP_PENALTY=on      # confidence penalty (negative entropy) in the warm-up loss [DM Train_clothing1M.py:129-130]

run_trainer dividemix "$@"
