#!/usr/bin/env bash
# F-DivideMix (DivideMix with FINE's split instead of the loss mixture)
# on mini-WebVision (first 50 classes of WebVision 1.0, Google images), its real label noise.
# Published test accuracy: max 77.28* (FINE paper WebVision table (top-1) as quoted by a secondary source)
#   top5 91.44* (FINE paper WebVision table (top-5) as quoted by a secondary source)
# Usage: CUDA_VISIBLE_DEVICES=0 bash scripts/dividemix/webvision/f_dividemix.sh [extra trainer flags]
# Each variable below is the trainer flag of the same name in lower case (scripts/common.sh);
# DATA_PATH, OUTPUT, SEEDS and PYTHON come from the environment. Tables: python -m engine.report runs
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"

DATA_PATH=${DATA_PATH:-data/webvision}  # WebVision 1.0: info/, google/, val_images_256/
IMAGENET_PATH=${IMAGENET_PATH:-data/imagenet}  # ILSVRC12 validation images in val/<wnid>/
DATASET=webvision
SELECTOR=fine             # how each selection round splits the samples
NOISE_KIND=real           # the labels the dataset comes with
ARCH=inception_resnet_v2  # network [DM Train_webvision.py:205]
INIT=pytorch              # pytorch (each layer's default) or kaiming (Kaiming-normal convolutions)
EPOCHS=101                # training epochs [FO dividemix/Train_webvision_parallel.py:27]
BATCH_SIZE=32             # mini-batch size [DM Train_webvision.py:19]
OPTIMIZER=sgd             # sgd (momentum 0.9) or adam [DM Train_webvision.py:222]
LR=0.01                   # initial learning rate [DM Train_webvision.py:20]
LR_SCHEDULE=multistep     # multistep | cosine | linear-decay [DM Train_webvision.py:234-235]
MILESTONES="50"           # epochs at which multistep multiplies the lr by GAMMA [FO dividemix/Train_webvision_parallel.py:410]
GAMMA=0.1                 # lr factor at each milestone [DM Train_webvision.py:235]
WEIGHT_DECAY=0.0005       # weight decay [DM Train_webvision.py:222]
VAL_SIZE=0                # noisy validation split; the best epoch is chosen on it (0: none, test accuracy picks it) [DM Train_webvision.py]
WARMUP=0                  # epochs on all data before the first selection round [FO dividemix/Train_webvision_parallel.py:386 warm_up=-1]
P_THRESHOLD=0.5           # zeta: clean when the clean component's posterior exceeds it [DM Train_webvision.py:23]
GMM_MAX_ITER=10           # EM iterations of FINE's per-class mixtures
LAMBDA_U=0.0              # weight of the unlabelled loss, ramped up over 16 epochs after warm-up [DM Train_webvision.py:22]
TEMPERATURE=0.5           # sharpening temperature of refined and guessed labels [DM Train_webvision.py:24]
ALPHA=0.5                 # mixup Beta(ALPHA, ALPHA) [DM Train_webvision.py:21]
UNLABELLED=ignore         # mix: MixMatch uses the unlabelled samples too; ignore: labelled ones only
WARMUP_PENALTY=off        # confidence penalty (negative entropy) in the warm-up loss [DM Train_webvision.py:130]

run_trainer dividemix "$@"
