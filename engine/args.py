"""Command-line flags shared by every trainer, defined once: a flag both trainers take means the same in both.

Flags whose paper default depends on the dataset or method default to ``None`` here and are filled in by the
trainer's recipe table before the run starts; the resolved values are printed and saved in ``args.json``
(``--dry_run`` prints them as JSON and stops).
"""
from __future__ import annotations

import argparse

from data_loader import DATASETS, NOISE_KINDS, REAL_DATASETS
from data_loader.user_data import npz_kind
from fine.amp import AMP_MODES
from fine.distributed import resolve_device
from fine.errors import UserError
from fine.models import ARCHS, INITS
from fine.selection import FITS, SCORES, VECTORS, SelectorConfig


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """Add the data, model, optimisation and run flags every trainer shares."""
    data = parser.add_argument_group("data and label noise")
    data.add_argument("--dataset", type=str, default="digits", choices=DATASETS,
                      help="dataset; digits is bundled with scikit-learn and needs no download; folder (an "
                           "ImageFolder tree at --data_path) and npz (a .npz file at --data_path) are your own data, "
                           "see data_loader/user_data.py")
    data.add_argument("--data_path", type=str, default="data",
                      help="folder holding the dataset files (see scripts/download_*.sh); noisy labels are saved "
                           "under <data_path>/noisy_labels/")
    data.add_argument("--noise_kind", type=str, default=None, choices=NOISE_KINDS,
                      help="label noise: sym (uniform over all classes, true class included), asym (class-dependent "
                           "map), pairflip, instance (Xia et al. 2020), human (CIFAR-N), real (the labels Clothing1M "
                           "and WebVision come with), none (default: real for clothing1m/webvision, else sym)")
    data.add_argument("--noise_label", type=str, default=None,
                      help="CIFAR-N label set for --noise_kind human: aggre, random1, random2, random3 or worst "
                           "(cifar10), noisy (cifar100); files from scripts/download_cifar_n.sh")
    data.add_argument("--noise_rate", type=float, default=None,
                      help="noise rate r in [0, 1] (default 0.5); its exact meaning per kind is in "
                           "data_loader/noise.py")
    data.add_argument("--noise_file", type=str, default=None,
                      help="use the noisy labels in this .npy file (aligned with the standard training order) "
                           "instead of generating them")
    data.add_argument("--noise_seed", type=int, default=None,
                      help="seed of the label noise and the train/validation split (default: --seed, a fresh draw "
                           "per seed; the published code used one fixed draw for every run: pass the same "
                           "--noise_seed to all seeds to do the same)")
    data.add_argument("--imagenet_path", type=str, default=None,
                      help="webvision: ILSVRC12 folder (val/<wnid>/*.JPEG) for the second test set, top-1 and top-5")
    data.add_argument("--val_size", type=int, default=None,
                      help="size of the class-balanced validation split carved from the noisy training set "
                           "(0 = train on everything; default per recipe)")

    model = parser.add_argument_group("model and optimisation")
    model.add_argument("--arch", type=str, default=None, choices=ARCHS, help="network (default per dataset)")
    model.add_argument("--init", type=str, default=None, choices=INITS,
                       help="weights of the CIFAR ResNets and the small CNN: pytorch (each layer's default, as the "
                            "published FINE and DivideMix networks) or kaiming (Kaiming-normal convolutions, as the "
                            "published Co-teaching trainers); default per recipe")
    model.add_argument("--pretrained", type=str, default=None,
                       help="resnet50 initial weights: 'imagenet' (torchvision's cached file, never downloaded at run "
                            "time), a state-dict file, or 'none' (default per recipe: imagenet on clothing1m)")
    model.add_argument("--epochs", type=int, default=None, help="training epochs (default per recipe)")
    model.add_argument("--num_batches", type=int, default=None,
                       help="Clothing1M recipe: work on fresh class-balanced draws, not the whole training set. An "
                            "epoch without a selection trains on num_batches batches drawn from all samples; a "
                            "selection round scores only such a draw (DivideMix: every epoch, of 2 x num_batches x "
                            "batch_size samples) and trains on what it selects there. Default: one pass over the "
                            "training samples, all of them scored")
    model.add_argument("--batch_size", type=int, default=None, help="mini-batch size (default per recipe)")
    model.add_argument("--lr", type=float, default=None, help="initial learning rate (default per recipe)")
    model.add_argument("--optimizer", type=str, default=None, choices=("sgd", "adam"),
                       help="optimiser (default per recipe: sgd; adam for Co-teaching+)")
    model.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    model.add_argument("--weight_decay", type=float, default=None, help="weight decay (default per recipe)")
    model.add_argument("--lr_schedule", type=str, default=None, choices=("multistep", "cosine", "linear-decay"),
                       help="multistep: multiply by --gamma at each of --milestones; cosine: to 0 over the run; "
                            "linear-decay: linear to 0 from --decay_start (Co-teaching+)")
    model.add_argument("--milestones", type=int, nargs="*", default=None,
                       help="epochs at which multistep multiplies the lr by --gamma (default per recipe)")
    model.add_argument("--gamma", type=float, default=None, help="multistep lr factor (default per recipe)")
    model.add_argument("--decay_start", type=int, default=None,
                       help="linear-decay: epoch from which the lr falls linearly to 0 (and Adam's beta1 drops from "
                            "0.9 to 0.1), before --epochs; default 2/3 of --epochs, rounded down (the published "
                            "Co-teaching+ start, 80 of 120), in both trainers")

    run = parser.add_argument_group("run")
    run.add_argument("--seed", type=int, default=1, help="seed of initialisation, shuffling and augmentation")
    run.add_argument("--device", type=str, default="auto",
                     help="auto (CUDA when present), cpu, cuda or cuda:N")
    run.add_argument("--workers", type=int, default=None,
                     help="data-loader worker processes (default: 4 on CUDA, 0 on CPU)")
    run.add_argument("--output", type=str, default="runs",
                     help="root of the run directories; each run gets <output>/<trainer>/<dataset>_<noise>/<name>")
    run.add_argument("--resume", action="store_true",
                     help="continue the run in its directory from last.pt (a finished run is skipped, a missing "
                          "one is started)")
    run.add_argument("--overwrite", action="store_true", help="delete an existing run directory and start again")
    run.add_argument("--dry_run", action="store_true",
                     help="print the resolved configuration (command line + recipe) as one JSON object and exit "
                          "without loading data or touching the run directory")


def add_speed_args(parser: argparse.ArgumentParser) -> None:
    """Flags of the fast GPU path: mixed precision, memory format, compilation, GPU-resident data."""
    speed = parser.add_argument_group("speed and scale (CUDA, torchrun)")
    speed.add_argument("--amp", type=str, default="off", choices=AMP_MODES,
                       help="autocast precision of the forward pass: off, bf16, or fp16 (CUDA, with loss scaling)")
    speed.add_argument("--channels_last", action="store_true", help="channels-last memory format for convolutions")
    speed.add_argument("--compile", action="store_true", help="torch.compile the networks' forward pass")
    speed.add_argument("--sync_bn", action="store_true",
                       help="under torchrun: synchronise batch-norm statistics across GPUs (SyncBatchNorm)")
    speed.add_argument("--data_on_gpu", type=str, default="auto", choices=("auto", "on", "off"),
                       help="hold the training images on the device as uint8 and augment whole batches there "
                            "(auto: on for CIFAR-sized in-memory datasets on CUDA)")


def add_selector_args(parser: argparse.ArgumentParser, *, choices: tuple[str, ...], default: str | None,
                      title: str) -> None:
    """The selection-round flags: which detector, FINE's options, and the clean-probability threshold zeta."""
    s = parser.add_argument_group(title)
    s.add_argument("--selector", type=str, default=default, choices=choices,
                   help="detector of each selection round: fine (FINE, Kim et al. 2021: eigenvector alignment of "
                        "penultimate features), loss-gmm (DivideMix's mixture on the per-sample loss), small-loss "
                        "(the --forget_rate largest losses of each class dropped)")
    s.add_argument("--p_threshold", type=float, default=None,
                   help="zeta: a sample is clean when the clean component's posterior exceeds it (default per "
                        "recipe: 0.5)")
    s.add_argument("--fit", type=str, default="gmm", choices=FITS,
                   help="FINE: per-class 2-component model fitted on the scores: gmm (Gaussian mixture, as "
                        "published), kmeans (2-means, hard split; FINE_official's KMeans variant), bmm (a beta "
                        "mixture fitted by EM with a convergence test and split at --p_threshold; not a port of "
                        "FINE_official's, whose split bound mixes normalised and raw scores)")
    s.add_argument("--score", type=str, default=None, choices=SCORES,
                   help="FINE score: abs = |<u, z/|z|>| as the published code, squared = the paper's squared "
                        "alignment, margin = abs minus the sample's best abs against another class's direction, a "
                        "class split only when part of it lies closer to another class (default per recipe: abs on "
                        "the paper's datasets, margin on digits, Fashion-MNIST and users' data)")
    s.add_argument("--vector", type=str, default="eigen", choices=VECTORS,
                   help="FINE class direction: top eigenvector of the class's gram matrix (published), or the "
                        "normalised class mean (as FINE_official's unused eigen=False path, which no published run "
                        "takes)")
    s.add_argument("--gmm_max_iter", type=int, default=None,
                   help="FINE: EM iterations of each class's mixture (default per recipe: 100, as FINE_official's "
                        "selection/gmm.py:30; 10 in F-DivideMix, as its dividemix/Train_cifar.py:320)")
    s.add_argument("--reference", type=str, default=None, choices=("previous", "class"),
                   help="FINE: samples whose features define each class's direction in a network's features: "
                        "previous = those the network trained on since the last round (FINE: its own previous "
                        "selection; F-Coteaching and DivideMix: its peer's, as FINE_official's F-Coteaching), the "
                        "whole class in the first round; class = always the whole class (default per recipe)")
    s.add_argument("--aug_features", action="store_true",
                   help="extract the selection features from augmented images (the published sample-selection "
                        "code's behaviour; off by default: un-augmented images)")


# FINE's score per dataset: the published |<u, z/|z|>| where a script reproduces a published run, the margin elsewhere
# (bench/detection.py: it keeps clean classes whole under asymmetric noise and holds its recall round after round).
PAPER_DATASETS = ("cifar10", "cifar100", "clothing1m", "webvision")


def default_score(dataset: str) -> str:
    """The recipes' FINE score for ``dataset``: "abs" on the paper's datasets, "margin" on the others."""
    return "abs" if dataset in PAPER_DATASETS else "margin"


def selector_config(args: argparse.Namespace, *, keep_ratio: float | None = None) -> SelectorConfig:
    """The :class:`fine.selection.SelectorConfig` the resolved flags describe."""
    return SelectorConfig(kind=args.selector, threshold=args.p_threshold, fit=args.fit, score=args.score,
                          vector=args.vector, max_iter=args.gmm_max_iter, keep_ratio=keep_ratio)


def recipe_variant(args: argparse.Namespace) -> str:
    """Which of a dataset's recipes applies, for the recipe tables: for ``--dataset npz`` what the file holds
    ("table", "signal"; read from its header, the data is not loaded; "" for images), for Fashion-MNIST the device
    ("cpu": a small CNN in minutes, "cuda": PreAct ResNet-18), else ""."""
    if args.dataset == "npz":
        kind = npz_kind(args.data_path)
        return "" if kind == "image" else kind
    if args.dataset == "fashion_mnist":
        return resolve_device(args.device).type if resolve_device(args.device).type == "cuda" else "cpu"
    return ""


def fill_defaults(args: argparse.Namespace, recipe: dict) -> None:
    """Replace every ``None`` flag that ``recipe`` names with the recipe's value; the recipe's ``--pretrained``
    weights go with its ResNet-50 only, not with another ``--arch`` the user chose."""
    for key, value in recipe.items():
        if key == "pretrained" and args.arch != "resnet50":
            continue
        if getattr(args, key, None) is None:
            setattr(args, key, value)


def check_common_args(args: argparse.Namespace) -> None:
    """Refuse inconsistent common flags with a one-line :class:`UserError` before any work starts.

    Also resolves ``--noise_kind`` (real-noise datasets default to ``real``, the others to ``sym``).
    """
    if args.noise_kind is None:
        args.noise_kind = "real" if args.dataset in REAL_DATASETS else "sym"
    if args.noise_kind in ("real", "human"):  # the labels come from files; a rate means nothing
        args.noise_rate = None
    elif args.noise_rate is None:
        args.noise_rate = 0.5
    if args.noise_rate is not None and not 0.0 <= args.noise_rate <= 1.0:
        raise UserError(f"--noise_rate {args.noise_rate} is outside [0, 1]; pass a fraction such as 0.5")
    if args.resume and args.overwrite:
        raise UserError("--resume and --overwrite contradict each other; pass only one")
    for flag in ("epochs", "batch_size", "num_batches"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise UserError(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    if args.lr is not None and args.lr <= 0:
        raise UserError(f"--lr must be positive, got {args.lr}")
    if args.val_size is not None and args.val_size < 0:
        raise UserError(f"--val_size must be 0 or more, got {args.val_size}")
    if args.workers is not None and args.workers < 0:
        raise UserError(f"--workers must be 0 or more, got {args.workers}")
    if args.decay_start is not None and args.decay_start < 0:
        raise UserError(f"--decay_start must be 0 or more, got {args.decay_start}")


def check_selector_args(args: argparse.Namespace) -> None:
    """Refuse selector flags out of range (after the recipe has filled them)."""
    if not 0.0 < args.p_threshold < 1.0:
        raise UserError(f"--p_threshold {args.p_threshold} is outside (0, 1)")
    if args.gmm_max_iter < 1:
        raise UserError(f"--gmm_max_iter must be at least 1, got {args.gmm_max_iter}")
    check_fit_and_score(args.fit, args.score)


def check_fit_and_score(fit: str, score: str) -> None:
    """Refuse a beta mixture on margins (they lie in [-1, 1]), for the trainers and ``engine.detect``."""
    if fit == "bmm" and score == "margin":
        raise UserError("--fit bmm needs scores in [0, 1] but --score margin lies in [-1, 1]; add --score abs (or "
                        "use --fit gmm)")
