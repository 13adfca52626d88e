"""Defaults of the (F-)DivideMix runs, by dataset, label noise and selector: the configurations that produced the
published numbers, each value's source named beside it.

Every value fills a flag the user left unset; anything given on the command line wins. Sources (repository:path):
  DM  LiJunnan1992/DivideMix (DivideMix)
  FO  Kthyeon/FINE_official at d5ab341, paths under dividemix/ (F-DivideMix: DivideMix with FINE's split)
"""
from __future__ import annotations

from engine.args import default_score

# CIFAR: DM Train_cifar.py: PreAct ResNet-18 (:210-213, PreResNet.py) with PyTorch's default init, SGD lr 0.02
# (:18), momentum 0.9 and wd 5e-4 (:232), lr divided by 10 from epoch 150 (:244-245), 301 epochs (range(num_epochs +
# 1), :24,242), 64 labelled + 64 unlabelled samples per step (:17), all 50k training images, warm-up 10 / 30 epochs
# on CIFAR-10 / 100 (:218-221).
_CIFAR = dict(arch="preact_resnet18", init="pytorch", epochs=301, batch_size=64, lr=0.02, weight_decay=5e-4,
              lr_schedule="multistep", milestones=[150], gamma=0.1, val_size=0)
_BASE = {
    "cifar10": dict(_CIFAR, warmup=10),
    "cifar100": dict(_CIFAR, warmup=30),
    # CPU demo scale (no published run): a small CNN, a short warm-up before it memorises the noisy labels, the lr
    # dropped for the last third of the run.
    "digits": dict(arch="small_cnn", init="kaiming", epochs=30, batch_size=32, lr=0.02, weight_decay=5e-4,
                   lr_schedule="multistep", milestones=[20], gamma=0.1, val_size=0, warmup=5),
    # DM Train_clothing1M.py: ImageNet-pretrained ResNet-50, lr 0.002 (:18) divided by 10 from epoch 40 (:237), wd
    # 1e-3, 81 epochs (:235) of 1,000 batches of 32 (:20-21), one warm-up epoch (:244), mixup alpha 0.5, no
    # unlabelled loss, and MixMatch on the labelled rows only (:96-109); the confidence penalty in every warm-up
    # (:129-130).
    "clothing1m": dict(arch="resnet50", pretrained="imagenet", init="pytorch", epochs=81, batch_size=32,
                       num_batches=1000, lr=0.002, weight_decay=1e-3, lr_schedule="multistep", milestones=[40],
                       gamma=0.1, val_size=0, warmup=1, alpha=0.5, unlabelled="ignore", warmup_penalty="on"),
    # DM Train_webvision.py: InceptionResNetV2 from scratch, lr 0.01 (:19) divided by 10 from epoch 40 (:234), wd
    # 5e-4, 81 epochs (:25,234), batch 32, one warm-up epoch, alpha 0.5, MixMatch on the labelled rows only.
    "webvision": dict(arch="inception_resnet_v2", init="pytorch", epochs=81, batch_size=32, lr=0.01,
                      weight_decay=5e-4, lr_schedule="multistep", milestones=[40], gamma=0.1, val_size=0, warmup=1,
                      alpha=0.5, unlabelled="ignore"),
    # Fashion-MNIST (no published run): on the CPU a small CNN on draws of --num_batches 30 (about 75 s an epoch on 2
    # cores), on a GPU PreAct ResNet-18 on full epochs.
    "fashion_mnist-cpu": dict(arch="small_cnn", init="kaiming", epochs=12, batch_size=64, num_batches=30, lr=0.02,
                              weight_decay=5e-4, lr_schedule="multistep", milestones=[9], gamma=0.1, val_size=0,
                              warmup=3),
    "fashion_mnist-cuda": dict(_CIFAR, epochs=100, milestones=[50], warmup=10),
    # Users' images: the CIFAR-10 recipe.
    "folder": dict(_CIFAR, warmup=10),
    # Tables and 1-D signals in a user's .npz: an MLP or a small 1-D CNN (their two "views" are the same standardised
    # sample, the identity, since such inputs are not augmented; the unlabelled loss then self-trains on mixed inputs,
    # which cost 15-25 points on a binary table at lambda_u 25 against 0 in our runs, hence lambda_u 0 by default).
    "npz-table": dict(arch="mlp", epochs=60, batch_size=64, lr=0.01, weight_decay=5e-4, lr_schedule="multistep",
                      milestones=[40], gamma=0.1, val_size=0, warmup=10),
}
_BASE["npz"] = _BASE["folder"]
_BASE["npz-signal"] = dict(_BASE["npz-table"], arch="cnn1d")

# F-DivideMix: FO's copy of DivideMix warms up longer, 20 / 50 epochs on CIFAR-10 / 100 (Train_cifar.py:422-425), and
# fits FINE's per-class mixtures with max_iter 10 (Train_cifar.py:320; FINE's default elsewhere is 100). On WebVision
# only FO's Train_webvision_parallel.py runs F-DivideMix (its Train_webvision.py cannot extract InceptionResNetV2
# features): no warm-up (:386, warm_up = -1), 101 epochs with the lr divided by 10 at 50 (DM's parallel schedule).
_F_DIVIDEMIX = {"cifar10": dict(warmup=20), "cifar100": dict(warmup=50),
                "webvision": dict(epochs=101, milestones=[50], warmup=0)}
# F-DivideMix's lambda_u where FINE's code departs from the DivideMix paper. FO's dividemix/README.md says F-DivideMix's
# "hyper-parameter settings are the same with baselines", and FO's dividemix/scripts/baseline_c100.sh runs CIFAR-100
# with CIFAR-10's lambda_u (0/25/25 at sym 20/50/80: the lines of baseline_c10.sh with the data set changed), where
# the DivideMix paper uses 25/150/150; its only other CIFAR-100 command (refinement_dynamic_c100.sh, sym 90) keeps
# the paper's 150. Reproduced by default; --lambda_u 25/150/150 gives the DivideMix paper's values.
_F_DIVIDEMIX_LAMBDA_U = {("cifar100", "sym", 0.2): 0.0, ("cifar100", "sym", 0.5): 25.0, ("cifar100", "sym", 0.8): 25.0}
_F_DIVIDEMIX_GMM_MAX_ITER = 10

# Weight of the unlabelled loss, lambda_u, per (dataset, noise kind, noise rate): the DivideMix paper's (DM's README
# gives the command per setting; Train_cifar.py:21 defaults to 25).
LAMBDA_U = {
    ("cifar10", "sym", 0.2): 0.0, ("cifar10", "sym", 0.5): 25.0, ("cifar10", "sym", 0.8): 25.0,
    ("cifar10", "sym", 0.9): 50.0, ("cifar10", "asym", 0.4): 0.0,
    ("cifar100", "sym", 0.2): 25.0, ("cifar100", "sym", 0.5): 150.0, ("cifar100", "sym", 0.8): 150.0,
    ("cifar100", "sym", 0.9): 150.0,
}
_DIGITS_LAMBDA_U = 25.0  # DM Train_cifar.py:21's default: digits and users' images


def lambda_u_default(dataset: str, noise_kind: str, noise_rate: float, variant: str = "") -> float | None:
    """The published lambda_u of this setting (any setting for digits), or None when the paper gives none."""
    if dataset == "npz" and variant:  # tables and signals (see _BASE["npz-table"])
        return 0.0
    if dataset in ("folder", "npz"):  # users' images: DM's default (Train_cifar.py:21)
        return _DIGITS_LAMBDA_U
    if dataset in ("digits", "fashion_mnist"):  # Fashion-MNIST: CIFAR-10's value where there is one
        default = None if noise_rate is None else LAMBDA_U.get(("cifar10", noise_kind, round(noise_rate, 4)))
        return _DIGITS_LAMBDA_U if dataset == "digits" or default is None else default
    if noise_kind == "real":  # Clothing1M and WebVision: no unlabelled loss
        return 0.0
    if noise_rate is None:
        return None
    return LAMBDA_U.get((dataset, noise_kind, round(noise_rate, 4)))


def recipe(dataset: str, noise_kind: str, noise_rate: float, variant: str = "", selector: str = "loss-gmm") -> dict:
    """The defaults for one (dataset, label noise, selector) setting; ``variant`` (:func:`engine.args.recipe_variant`)
    picks among a dataset's recipes (a user's .npz of tables or signals, Fashion-MNIST on the CPU or a GPU).

    At 90% symmetric noise DivideMix raises the clean-probability threshold to 0.6 and averages the normalised
    per-sample loss over the last 5 epochs before fitting its mixture (DM Train_cifar.py:178-183 and README). Its
    warm-up adds the confidence penalty under asymmetric noise (:132-136).
    """
    extreme = noise_kind == "sym" and noise_rate is not None and noise_rate >= 0.9
    base = _BASE[f"{dataset}-{variant}" if variant else dataset]
    out = dict({"alpha": 4.0, "optimizer": "sgd", "init": "pytorch", "reference": "class", "unlabelled": "mix",
                "warmup_penalty": "on" if noise_kind == "asym" else "off", "gmm_max_iter": 100}, **base,
               lambda_u=lambda_u_default(dataset, noise_kind, noise_rate, variant), p_threshold=0.6 if extreme else 0.5,
               loss_history=5 if extreme else 1, score=default_score(dataset))
    if selector == "fine":
        out.update(_F_DIVIDEMIX.get(dataset, {}), gmm_max_iter=_F_DIVIDEMIX_GMM_MAX_ITER)
        if noise_rate is not None and (dataset, noise_kind, round(noise_rate, 4)) in _F_DIVIDEMIX_LAMBDA_U:
            out["lambda_u"] = _F_DIVIDEMIX_LAMBDA_U[(dataset, noise_kind, round(noise_rate, 4))]
    return out
