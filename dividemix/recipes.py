"""Paper defaults of the (F-)DivideMix runs (``../shared/reference/protocol.md``), by dataset and label noise.

Every value here fills a flag the user left unset; anything given on the command line wins.
"""
from __future__ import annotations

# PreAct ResNet-18, SGD 0.02 divided by 10 at epoch 150, 300 epochs on the full 50k training set.
_BASE = {
    "cifar10": dict(arch="preact_resnet18", epochs=300, batch_size=64, lr=0.02, weight_decay=5e-4,
                    lr_schedule="multistep", milestones=[150], gamma=0.1, val_size=0, warmup=10),
    "cifar100": dict(arch="preact_resnet18", epochs=300, batch_size=64, lr=0.02, weight_decay=5e-4,
                     lr_schedule="multistep", milestones=[150], gamma=0.1, val_size=0, warmup=30),
    # CPU demo scale: a small CNN, a short warm-up before it memorises the noisy labels, the lr dropped for the last
    # third of the run.
    "digits": dict(arch="small_cnn", epochs=30, batch_size=32, lr=0.02, weight_decay=5e-4, lr_schedule="multistep",
                   milestones=[20], gamma=0.1, val_size=0, warmup=5),
    # ImageNet-pretrained ResNet-50, 80 epochs of 1000 batches of 32, lr 0.002 divided by 10 at 40.
    "clothing1m": dict(arch="resnet50", pretrained="imagenet", epochs=80, batch_size=32, num_batches=1000,
                       lr=0.002, weight_decay=1e-3, lr_schedule="multistep", milestones=[40], gamma=0.1, val_size=0,
                       warmup=1, alpha=0.5),
    # InceptionResNetV2 from scratch on the first 50 WebVision classes, lr 0.01 divided by 10 at 40.
    "webvision": dict(arch="inception_resnet_v2", epochs=80, batch_size=32, lr=0.01, weight_decay=5e-4,
                      lr_schedule="multistep", milestones=[40], gamma=0.1, val_size=0, warmup=1, alpha=0.5),
    # Users' data: the CIFAR-10 recipe.
    "folder": dict(arch="preact_resnet18", epochs=300, batch_size=64, lr=0.02, weight_decay=5e-4,
                   lr_schedule="multistep", milestones=[150], gamma=0.1, val_size=0, warmup=10),
}
_BASE["npz"] = _BASE["folder"]
# Tables and 1-D signals in a user's .npz: an MLP or a small 1-D CNN (their two "views" are identical, since such
# inputs are not augmented; the unlabelled loss then self-trains on mixed inputs, which cost 15-25 points on a binary
# table at lambda_u 25 against 0 in our runs, hence lambda_u 0 by default).
_BASE["npz-table"] = dict(arch="mlp", epochs=60, batch_size=64, lr=0.01, weight_decay=5e-4, lr_schedule="multistep",
                          milestones=[40], gamma=0.1, val_size=0, warmup=10)
_BASE["npz-signal"] = dict(_BASE["npz-table"], arch="cnn1d")

# Weight of the unlabelled loss, lambda_u, per (dataset, noise kind, noise rate), from the DivideMix paper.
LAMBDA_U = {
    ("cifar10", "sym", 0.2): 0.0, ("cifar10", "sym", 0.5): 25.0, ("cifar10", "sym", 0.8): 25.0,
    ("cifar10", "sym", 0.9): 50.0, ("cifar10", "asym", 0.4): 0.0,
    ("cifar100", "sym", 0.2): 25.0, ("cifar100", "sym", 0.5): 150.0, ("cifar100", "sym", 0.8): 150.0,
    ("cifar100", "sym", 0.9): 150.0,
}
_DIGITS_LAMBDA_U = 25.0


def lambda_u_default(dataset: str, noise_kind: str, noise_rate: float, kind: str = "image") -> float | None:
    """The published lambda_u of this setting (any setting for digits), or None when the paper gives none."""
    if dataset == "digits":
        return _DIGITS_LAMBDA_U
    if kind != "image":  # tables and signals (see _BASE["npz-table"])
        return 0.0
    if noise_kind == "real":  # Clothing1M and WebVision: no unlabelled loss
        return 0.0
    if noise_rate is None:
        return None
    return LAMBDA_U.get((dataset, noise_kind, round(noise_rate, 4)))


def recipe(dataset: str, noise_kind: str, noise_rate: float, kind: str = "image") -> dict:
    """The defaults for one (dataset, label noise) setting; ``kind`` (image, table, signal) picks the recipe of a
    user's .npz.

    At 90% symmetric noise DivideMix raises the clean-probability threshold to 0.6 and averages the normalised
    per-sample loss over the last 5 epochs before fitting its mixture.
    """
    extreme = noise_kind == "sym" and noise_rate is not None and noise_rate >= 0.9
    base = _BASE[f"npz-{kind}" if dataset == "npz" and kind != "image" else dataset]
    return dict({"alpha": 4.0, "optimizer": "sgd", "reference": "class"}, **base,
                lambda_u=lambda_u_default(dataset, noise_kind, noise_rate, kind), p_threshold=0.6 if extreme else 0.5,
                loss_history=5 if extreme else 1)
