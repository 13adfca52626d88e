"""Defaults of the sample-selection runs, by dataset, method, loss and noise: the configuration that produced the
published numbers, each value's source named beside it.

Every value fills a flag the user left unset; anything given on the command line wins. Sources (repository:path):
  FO   Kthyeon/FINE_official at d5ab341, paths under dynamic_selection/
  CT+  xingruiyu/coteaching_plus
Where the published run had a bug that shaped its numbers, the recipe reproduces it and says so; the scripts repeat
the comment beside the value, and the corrected behaviour is one flag away.
"""
from __future__ import annotations

from engine.args import default_score

# FINE and standard training with cross-entropy: FO hyperparams/multistep/config_cifar10_cce_rn34.json (lr :30, wd
# :32, batch :17, milestones :48, gamma :49, epochs :54) and config_cifar100_cce_rn34.json; FINE's warm-up 40 and
# every 10 from FO scripts/sample_selection_based/fine_cifar.sh and utils/args.py:108-111. 45k/5k class-balanced
# split with noisy validation labels (FO data_loader/cifar10.py:64-80), checkpoint on validation accuracy (the
# configs' "monitor": "max val_my_metric"). ResNet-34 with PyTorch's default init (FO model/CIFAR_ResNet_Zoo.py).
_BASE = {
    "cifar10": dict(arch="resnet34", init="pytorch", epochs=120, batch_size=128, lr=0.02, weight_decay=1e-3,
                    lr_schedule="multistep", milestones=[40, 80], gamma=0.01, val_size=5000, warmup=40, every=10),
    "cifar100": dict(arch="resnet34", init="pytorch", epochs=150, batch_size=128, lr=0.02, weight_decay=1e-3,
                     lr_schedule="multistep", milestones=[80, 120], gamma=0.01, val_size=5000, warmup=40, every=10),
    # CPU demo scale (no published run): a small CNN that trains in seconds per epoch and memorises noisy labels late
    # in the run.
    "digits": dict(arch="small_cnn", init="kaiming", epochs=60, batch_size=64, lr=0.05, weight_decay=5e-4,
                   lr_schedule="multistep", milestones=[40], gamma=0.1, val_size=140, warmup=10, every=5),
    # Fashion-MNIST (no published run): on the CPU a small CNN on 6,400-image class-balanced epochs (--num_batches
    # 100 of 64, about 30 s each on 2 cores), 10 epochs; on a GPU PreAct ResNet-18 on full epochs.
    "fashion_mnist-cpu": dict(arch="small_cnn", init="kaiming", epochs=10, batch_size=64, num_batches=100, lr=0.05,
                              weight_decay=5e-4, lr_schedule="multistep", milestones=[7], gamma=0.1, val_size=1000,
                              warmup=3, every=2),
    "fashion_mnist-cuda": dict(arch="preact_resnet18", epochs=60, batch_size=128, lr=0.02, weight_decay=5e-4,
                               lr_schedule="multistep", milestones=[20, 40], gamma=0.1, val_size=5000, warmup=10,
                               every=5),
    # Users' own images (data_loader/user_data.py): the CIFAR-10 recipe, without a validation split (class counts are
    # unknown in advance).
    "folder": dict(arch="resnet34", init="pytorch", epochs=120, batch_size=128, lr=0.02, weight_decay=1e-3,
                   lr_schedule="multistep", milestones=[40, 80], gamma=0.01, val_size=0, warmup=40, every=10),
    # Tables and 1-D signals in a user's .npz: an MLP or a small 1-D CNN, a 10-epoch warm-up (measured on
    # scikit-learn's tables at 40% noise: 11-43% of the wrong labels fitted by epoch 10, 64-100% by epoch 60, so
    # selection starts before memorisation).
    # Weight decay 5e-2 (was 5e-4) and FINE's discriminant score (fine/selection/discriminant.py), measured with
    # python -m bench.peers on 256-d CIFAR-10 embeddings with CIFAR-10N labels (seeds 1-3; 1-2 for 5e-4): with 5e-4
    # standard training ended below a plain logistic regression on the same labels (worst 52.6 vs 57.7, aggre 65.8 vs
    # 66.2), with 5e-2 above it (62.5, 68.8); FINE with "lda" then ends at 66.7 / 69.5 (the margin 63.0 / 63.0;
    # CleanLearning 61.7 / 68.6).
    "npz-table": dict(arch="mlp", epochs=60, batch_size=64, lr=0.01, weight_decay=5e-2, lr_schedule="multistep",
                      milestones=[40], gamma=0.1, val_size=0, warmup=10, every=5, score="lda"),
    # FO hyperparams/clothing1m/config_clothing1m_cce_rn50.json: ImageNet-pretrained ResNet-50 (traintools/
    # trainClothing1m.py:79), lr 0.002 (:27) multiplied by 0.01 after each of epochs 5-8 (:43-49, so training
    # effectively stops after 5 epochs), wd 1e-3 (:29), 10 epochs (:52) of 2,000 batches of 64 (:16,18); selection
    # every epoch from the second with each class's direction from the whole class (scripts/sample_selection_based/
    # fine_clothing1m.sh, trainer/realdataset_trainer.py:100,137). FO picks the checkpoint on test accuracy (no
    # validation, :58); best_test_acc here uses Clothing1M's clean validation list, max_test_acc is FO's number.
    "clothing1m": dict(arch="resnet50", pretrained="imagenet", epochs=10, batch_size=64, num_batches=2000, lr=0.002,
                       weight_decay=1e-3, lr_schedule="multistep", milestones=[5, 6, 7, 8], gamma=0.01, val_size=0,
                       warmup=1, every=1, reference="class"),
    # No FINE-only WebVision run is published: DivideMix's schedule (LiJunnan1992/DivideMix: Train_webvision.py),
    # InceptionResNetV2 from scratch, lr 0.01 divided by 10 at 40, 80 epochs of batch 32, selecting every epoch after
    # one warm-up epoch.
    "webvision": dict(arch="inception_resnet_v2", epochs=80, batch_size=32, lr=0.01, weight_decay=5e-4,
                      lr_schedule="multistep", milestones=[40], gamma=0.1, val_size=0, warmup=1, every=1),
}
_BASE["npz"] = _BASE["folder"]
_BASE["npz-signal"] = dict(arch="cnn1d", epochs=60, batch_size=64, lr=0.01, weight_decay=5e-4, lr_schedule="multistep",
                           milestones=[40], gamma=0.1, val_size=0, warmup=10, every=5)

# FINE with a robust loss: warm-up 50, every 5 (FO scripts/robust_loss/fine_dynamic_{gce,sce,elr}.sh); these configs
# pick the checkpoint on test accuracy ("monitor": "max test_my_metric"), see max_test_acc in the summary.
_ROBUST_LOSS = {"cifar10": dict(warmup=50, every=5), "cifar100": dict(warmup=50, every=5)}
# FO hyperparams/multistep/config_cifar100_gce_rn34.json: lr 0.01 (:30), gamma 0.1, wd 1e-4 (:32).
_GCE_CIFAR100 = dict(lr=0.01, gamma=0.1, weight_decay=1e-4)
# Loss hyperparameters: FO hyperparams/multistep/config_<dataset>_<loss>_rn34.json (GCE q :39; SCE alpha, beta
# :39-40; ELR beta, lambda :39-40); SCE's A = -4 from FO loss/sce.py:17 (the paper's value); ELR on CIFAR-10 asymmetric
# noise from config_cifar10_elr_rn34_asym.json (as shengliu66/ELR: ELR/config_cifar10_asym.json).
_LOSS = {
    "cifar10": {"gce": {"q": 0.7}, "sce": {"alpha": 0.1, "beta": 1.0, "a": -4.0}, "elr": {"beta": 0.7, "lambda": 3.0}},
    "cifar100": {"gce": {"q": 0.7}, "sce": {"alpha": 1.0, "beta": 0.4, "a": -4.0}, "elr": {"beta": 0.9, "lambda": 7.0}},
}
_ELR_CIFAR10_ASYM = {"beta": 0.9, "lambda": 1.0}

# F-Coteaching (FO scripts/sample_selection_based/f-coteaching.sh loads hyperparams/multistep/config_<dataset>_cce_
# rn34.json). PUBLISHED BUG: its trainer never steps the lr scheduler (traintools/coteachingtrain.py:131 passes
# lr_scheduler=None; trainer/dynamic_coteach_trainer.py:97 overwrites the scheduler, so the step at :283 is skipped):
# the published run trains at a constant 0.02, hence no milestones here (--milestones 40 80, or 80 120 on CIFAR-100,
# restores the intended schedule). Rounds at 0-based epochs 42, 52, ... (:178, `epoch % every == 3` on 1-based
# epochs), i.e. warm-up 42; convolutions re-initialised Kaiming-normal (:55-62). PUBLISHED BUG: the first round's
# feature extraction puts both networks in eval mode (selection/util.py:56) and the trainer only ever switches a third,
# untrained copy back to train mode (:192), so both train with frozen batch-norm statistics from then on
# (--bn_after_selection train restores batch statistics).
_F_COTEACHING = {"cifar10": dict(milestones=[], warmup=42, init="kaiming", bn_after_selection="eval"),
                 "cifar100": dict(milestones=[], warmup=42, init="kaiming", bn_after_selection="eval")}

# Co-teaching: FO hyperparams/coteach/config_cifar10_coteach_rn34.json (lr 0.01 :30, wd 1e-4 :32, milestones [40, 80]
# :51-52, 120 epochs :57, num_gradual 40 :39) and config_cifar100_coteach_rn34.json ([80, 120], 150 epochs); forget
# rate 0.9 x the nominal noise rate (loss/coteach.py:64); Kaiming-normal convolutions (trainer/
# coteaching_trainer.py:46-53).
_COTEACHING = {
    "cifar10": dict(lr=0.01, weight_decay=1e-4, milestones=[40, 80], gamma=0.01, num_gradual=40, init="kaiming"),
    "cifar100": dict(lr=0.01, weight_decay=1e-4, milestones=[80, 120], gamma=0.01, num_gradual=40, init="kaiming"),
    "digits": dict(num_gradual=10),
    "fashion_mnist": dict(num_gradual=3),
}
# Co-teaching+: FO hyperparams/coteach/config_cifar100_coteach+_rn34.json and, for CIFAR-10 (no ResNet-34 config is
# published), config_cifar10_coteach+_rn18.json: Adam lr 1e-3 (:30), 120 epochs (:55), linear decay to 0 from epoch
# 80 with beta1 0.9 -> 0.1 (:56; trainer/coteaching_trainer.py:75-86), num_gradual 40 (:37); disagreement from the
# first epoch (no plain co-teaching phase; xingruiyu/coteaching_plus main.py:73,94 has 20 / 5 such epochs:
# --init_epochs). The decay's start is 2/3 of --epochs wherever --decay_start is unset (engine.checks:
# default_decay_start), epoch 80 of the published 120.
_COTEACHING_PLUS = {
    "cifar10": dict(arch="resnet18", optimizer="adam", lr=1e-3, weight_decay=0.0, lr_schedule="linear-decay",
                    epochs=120, num_gradual=40, init_epochs=0, init="kaiming"),
    "cifar100": dict(optimizer="adam", lr=1e-3, weight_decay=0.0, lr_schedule="linear-decay", epochs=120,
                     num_gradual=40, init_epochs=0, init="kaiming"),
    "digits": dict(optimizer="adam", lr=1e-3, weight_decay=0.0, lr_schedule="linear-decay", num_gradual=10,
                   init_epochs=0),
    "fashion_mnist": dict(optimizer="adam", lr=1e-3, weight_decay=0.0, lr_schedule="linear-decay", num_gradual=3,
                          init_epochs=0),
}
# What Co-teaching drops (--forget_rate): 0.9 x --noise_rate on the published datasets' synthetic noise (FO
# loss/coteach.py:64); the measured noise rate where clean labels are known (other synthetic noise, CIFAR-N's human
# labels); FINE's estimate from a warm-up round where they are not (real noise, and labels taken as given, --noise_kind
# none).
_FORGET_RATE = {"cifar10": "published", "cifar100": "published", "clothing1m": "auto", "webvision": "auto"}


def forget_rate_default(dataset: str, noise_kind: str | None) -> str:
    """Co-teaching's default --forget_rate rule for the data and its label noise (see _FORGET_RATE)."""
    if noise_kind == "none":
        return "auto"
    if noise_kind == "human":
        return "realised"
    return _FORGET_RATE.get(dataset, "realised")


def recipe(dataset: str, method: str, loss: str, variant: str = "", noise_kind: str | None = None) -> dict:
    """The defaults for one (dataset, method, loss, label noise) combination, later entries overriding earlier ones;
    ``variant`` (:func:`engine.args.recipe_variant`) picks among a dataset's recipes (a user's .npz of tables or
    signals, Fashion-MNIST on the CPU or a GPU)."""
    base = _BASE[f"{dataset}-{variant}" if variant else dataset]
    out = dict({"reference": "previous", "p_threshold": 0.5, "gmm_max_iter": 100, "init": "pytorch",
                "bn_after_selection": "train", "score": default_score(dataset)}, **base,
               optimizer="sgd", num_gradual=10, init_epochs=0,
               forget_rate=forget_rate_default(dataset, noise_kind))
    if loss != "ce":
        out.update(_ROBUST_LOSS.get(dataset, {}))
        if loss == "gce" and dataset == "cifar100":
            out.update(_GCE_CIFAR100)
    hparams = dict(_LOSS["cifar100" if dataset == "cifar100" else "cifar10"].get(loss, {}))
    if loss == "elr" and dataset == "cifar10" and noise_kind == "asym":
        hparams.update(_ELR_CIFAR10_ASYM)
    out.update({f"{loss}_{k}": v for k, v in hparams.items()})
    if method == "f-coteaching":
        out.update(_F_COTEACHING.get(dataset, {}))
    if method == "coteaching":
        out.update(_COTEACHING.get(dataset, {}))
    if method == "coteaching+":
        out.update(_COTEACHING_PLUS.get(dataset, {}))
    return out
