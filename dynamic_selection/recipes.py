"""Paper defaults of the sample-selection runs (``../shared/reference/protocol.md``), by dataset, method and loss.

Every value here fills a flag the user left unset; anything given on the command line wins.
"""
from __future__ import annotations

# FINE / standard / F-Coteaching with cross-entropy.
_BASE = {
    "cifar10": dict(arch="resnet34", epochs=120, batch_size=128, lr=0.02, weight_decay=1e-3, lr_schedule="multistep",
                    milestones=[40, 80], gamma=0.01, val_size=5000, warmup=40, every=10),
    "cifar100": dict(arch="resnet34", epochs=150, batch_size=128, lr=0.02, weight_decay=1e-3,
                     lr_schedule="multistep", milestones=[80, 120], gamma=0.01, val_size=5000, warmup=40, every=10),
    # CPU demo scale: a small CNN that trains in seconds per epoch and memorises noisy labels late in the run.
    "digits": dict(arch="small_cnn", epochs=60, batch_size=64, lr=0.05, weight_decay=5e-4, lr_schedule="multistep",
                   milestones=[40], gamma=0.1, val_size=140, warmup=10, every=5),
    # Users' own data (data_loader/user_data.py): the CIFAR-10 recipe, without a validation split (class counts
    # are unknown in advance).
    "folder": dict(arch="resnet34", epochs=120, batch_size=128, lr=0.02, weight_decay=1e-3, lr_schedule="multistep",
                   milestones=[40, 80], gamma=0.01, val_size=0, warmup=40, every=10),
    "npz": dict(arch="resnet34", epochs=120, batch_size=128, lr=0.02, weight_decay=1e-3, lr_schedule="multistep",
                milestones=[40, 80], gamma=0.01, val_size=0, warmup=40, every=10),
    # Tables and 1-D signals in a user's .npz (data_loader/user_data.py): an MLP or a small 1-D CNN, a 10-epoch
    # warm-up (measured on scikit-learn's tables at 40% noise: 11-43% of the wrong labels fitted by epoch 10, 64-100%
    # by epoch 60, so selection starts before memorisation).
    "npz-table": dict(arch="mlp", epochs=60, batch_size=64, lr=0.01, weight_decay=5e-4, lr_schedule="multistep",
                      milestones=[40], gamma=0.1, val_size=0, warmup=10, every=5),
    # ImageNet-pretrained ResNet-50, constant lr 0.002, 10 epochs of 2,000 class-balanced batches of 64; selection
    # every epoch from the second, each class's eigenvector from the whole class. Best epoch on the clean val set.
    "clothing1m": dict(arch="resnet50", pretrained="imagenet", epochs=10, batch_size=64, num_batches=2000, lr=0.002,
                       weight_decay=1e-3, lr_schedule="multistep", milestones=[], gamma=0.1, val_size=0, warmup=1,
                       every=1, reference="class"),
    # No FINE-only WebVision recipe is published: DivideMix's (InceptionResNetV2 from scratch, lr 0.01 divided by 10
    # at 40, 80 epochs of batch 32), selecting every epoch after one warm-up epoch.
    "webvision": dict(arch="inception_resnet_v2", epochs=80, batch_size=32, lr=0.01, weight_decay=5e-4,
                      lr_schedule="multistep", milestones=[40], gamma=0.1, val_size=0, warmup=1, every=1),
}

# FINE combined with a noise-robust loss selects earlier and more often.
_ROBUST_LOSS = {"cifar10": dict(warmup=50, every=5), "cifar100": dict(warmup=50, every=5)}
_GCE_CIFAR100 = dict(lr=0.01, gamma=0.1, weight_decay=1e-4)

# Co-teaching and Co-teaching+ use their own published recipes.
_COTEACHING = {
    "cifar10": dict(lr=0.01, weight_decay=1e-4, milestones=[40, 80], gamma=0.01, num_gradual=40),
    "cifar100": dict(lr=0.01, weight_decay=1e-4, milestones=[40, 80], gamma=0.01, num_gradual=40),
    "digits": dict(num_gradual=10),
}
_COTEACHING_PLUS = {
    "cifar10": dict(optimizer="adam", lr=1e-3, weight_decay=0.0, lr_schedule="linear-decay", epochs=200,
                    decay_start=80, init_steps=5000, num_gradual=10),
    "cifar100": dict(optimizer="adam", lr=1e-3, weight_decay=0.0, lr_schedule="linear-decay", epochs=200,
                     decay_start=80, init_steps=5000, num_gradual=10),
    "digits": dict(optimizer="adam", lr=1e-3, weight_decay=0.0, lr_schedule="linear-decay", decay_start=40,
                   init_steps=200, num_gradual=10),
}


_BASE["npz-signal"] = dict(_BASE["npz-table"], arch="cnn1d")


def recipe(dataset: str, method: str, loss: str, kind: str = "image") -> dict:
    """The defaults for one (dataset, method, loss) combination, later entries overriding earlier ones; ``kind``
    (image, table, signal) picks the recipe of a user's .npz."""
    base = _BASE[f"npz-{kind}" if dataset == "npz" and kind != "image" else dataset]
    out = dict({"reference": "previous", "p_threshold": 0.5}, **base, optimizer="sgd", num_gradual=10,
               decay_start=80, init_steps=0)
    if loss != "ce":
        out.update(_ROBUST_LOSS.get(dataset, {}))
        if loss == "gce" and dataset == "cifar100":
            out.update(_GCE_CIFAR100)
    if method == "coteaching":
        out.update(_COTEACHING.get(dataset, {}))
    if method == "coteaching+":
        out.update(_COTEACHING_PLUS.get(dataset, {}))
    return out
