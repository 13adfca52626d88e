#!/usr/bin/env bash
# FINE sample selection (Kim et al. 2021: eigenvector alignment of penultimate features)
# on Clothing1M, its real label noise.
# Usage: CUDA_VISIBLE_DEVICES=0 bash scripts/dynamic_selection/clothing1m/fine.sh [extra trainer flags]
# Each variable below is the trainer flag of the same name in lower case (scripts/common.sh);
# DATA_PATH, OUTPUT, SEEDS and PYTHON come from the environment. Tables: python -m engine.report runs
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"

DATA_PATH=${DATA_PATH:-data/clothing1m}  # images/ + annotation files (from Xiao et al. 2015)
DATASET=clothing1m
METHOD=fine
LOSS=ce
NOISE_KIND=real           # the labels the dataset comes with
ARCH=resnet50             # network [FO traintools/trainClothing1m.py:79 resnet50(pretrained=True, num_classes=14)]
INIT=pytorch              # pytorch (each layer's default) or kaiming (Kaiming-normal convolutions)
PRETRAINED=imagenet       # initial weights: torchvision's ImageNet file in the local torch hub cache, or a state-dict path [FO model/model.py:77-83 torchvision resnet50-19c8e357.pth]
EPOCHS=10                 # training epochs [FO hyperparams/clothing1m/config_clothing1m_cce_rn50.json:52]
NUM_BATCHES=2000          # an epoch / selection round works on a fresh class-balanced draw of this many batches [FO hyperparams/clothing1m/config_clothing1m_cce_rn50.json:18]
BATCH_SIZE=64             # mini-batch size [FO hyperparams/clothing1m/config_clothing1m_cce_rn50.json:16]
OPTIMIZER=sgd             # sgd (momentum 0.9) or adam [FO hyperparams/clothing1m/config_clothing1m_cce_rn50.json]
LR=0.002                  # initial learning rate [FO hyperparams/clothing1m/config_clothing1m_cce_rn50.json:27]
LR_SCHEDULE=multistep     # multistep | cosine | linear-decay [FO hyperparams/clothing1m/config_clothing1m_cce_rn50.json]
MILESTONES="5 6 7 8"      # epochs at which multistep multiplies the lr by GAMMA [FO hyperparams/clothing1m/config_clothing1m_cce_rn50.json:45-47]
GAMMA=0.01                # lr factor at each milestone [FO hyperparams/clothing1m/config_clothing1m_cce_rn50.json:48]
WEIGHT_DECAY=0.001        # weight decay [FO hyperparams/clothing1m/config_clothing1m_cce_rn50.json:29]
VAL_SIZE=0                # noisy validation split; the best epoch is chosen on it (0: none, test accuracy picks it) [FO traintools/trainClothing1m.py:63 valid_data_loader = None]
WARMUP=1                  # epochs on all data before the first selection round [FO scripts/sample_selection_based/fine_clothing1m.sh]
EVERY=1                   # epochs between selection rounds [FO scripts/sample_selection_based/fine_clothing1m.sh]
P_THRESHOLD=0.5           # zeta: clean when the clean component's posterior exceeds it [FO trainer/realdataset_trainer.py:102 p_threshold=0.5]
REFERENCE=class           # samples defining each class direction: previous selection, or the whole class [FO trainer/realdataset_trainer.py:100 prev_features = current_features]
GMM_MAX_ITER=100          # EM iterations of FINE's per-class mixtures
BN_AFTER_SELECTION=train  # batch norm while training on a selection: train (batch statistics) or eval (frozen)

run_trainer dynamic_selection "$@"
