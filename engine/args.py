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
from fine.selection import REGISTRY, Option, SelectorConfig, get_selector
from fine.selection.registry import all_options


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
    model.add_argument("--augment", type=str, default="on", choices=("on", "off"),
                       help="the dataset's training augmentation of images (random crop and flip); off trains on the "
                            "un-augmented images, where a network memorises noisy labels within a few epochs (e.g. "
                            "bench/real_cifar.py's CPU scale). Tables and signals have none either way")
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
    run.add_argument("--init_from", type=str, default=None, metavar="CKPT",
                     help="start this run from another run's checkpoint (e.g. a warm-up's epoch_NNN.pt): its networks, "
                          "optimisers, schedules, RNG states and epoch, with this run's method and selector; the "
                          "flags that define the data, networks and schedule must equal the checkpoint's")
    run.add_argument("--save_epochs", type=int, nargs="*", default=None, metavar="EPOCH",
                     help="also keep the checkpoint written after each of these 0-based epochs as epoch_NNN.pt "
                          "(starting points for --init_from)")
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


def add_selector_args(parser: argparse.ArgumentParser, *, default: str | None, title: str,
                      own: tuple[str, ...] = ()) -> None:
    """The selection-round flags: ``--selector`` (any registered selector), every registered selector's options
    (``fine.selection.REGISTRY``) but the ``own`` ones the trainer defines itself, and where the features come from."""
    s = parser.add_argument_group(title)
    s.add_argument("--selector", type=str, default=default, choices=tuple(REGISTRY),
                   help="detector of each selection round: " + ", ".join(spec.help for spec in REGISTRY.values()))
    for option in all_options().values():
        if option.name not in own:
            add_option_flag(s, option)
    s.add_argument("--reference", type=str, default=None, choices=("previous", "class"),
                   help="FINE: samples whose features define each class's direction in a network's features: "
                        "previous = those the network trained on since the last round (FINE: its own previous "
                        "selection; F-Coteaching and DivideMix: its peer's, as FINE_official's F-Coteaching), the "
                        "whole class in the first round; class = always the whole class (default per recipe)")
    s.add_argument("--aug_features", action="store_true",
                   help="extract the selection features from augmented images (the published sample-selection "
                        "code's behaviour; off by default: un-augmented images)")


def add_option_flag(group: argparse._ArgumentGroup, option: Option) -> None:
    """``--<option.name>``, unset (None) by default: a recipe or the selector's default fills it."""
    group.add_argument(f"--{option.name}", type=option.type, default=None, choices=option.choices, help=option.help)


# FINE's score per dataset: the published |<u, z/|z|>| where a script reproduces a published run, the margin elsewhere
# (bench/detection.py: it keeps clean classes whole under asymmetric noise and holds its recall round after round).
PAPER_DATASETS = ("cifar10", "cifar100", "clothing1m", "webvision")


def default_score(dataset: str) -> str:
    """The recipes' FINE score for ``dataset``: "abs" on the paper's datasets, "margin" on the others."""
    return "abs" if dataset in PAPER_DATASETS else "margin"


def selector_config(args: argparse.Namespace, **values: object) -> SelectorConfig:
    """The :class:`fine.selection.SelectorConfig` of ``--selector`` with its options from the resolved flags;
    ``values`` replace flags the trainer resolves into another form (``--forget_rate auto``: the estimate)."""
    spec = get_selector(args.selector)
    options = {o.name: values[o.name] if o.name in values else getattr(args, o.name) for o in spec.options}
    return SelectorConfig(args.selector, options)


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


def check_selector_flags(args: argparse.Namespace, own: tuple[str, ...] = ()) -> None:
    """Before the recipe fills them: refuse options of another selector than ``--selector`` given on the command
    line (``own``: flags the trainer also reads for other purposes)."""
    mine = {o.name for o in get_selector(args.selector).options}
    for name in all_options():
        if name not in mine and name not in own and getattr(args, name, None) is not None:
            users = [spec.name for spec in REGISTRY.values() if name in {o.name for o in spec.options}]
            raise UserError(f"--{name} applies to --selector {' or '.join(users)}, not {args.selector}; drop it")


def resolve_selector_args(args: argparse.Namespace, own: tuple[str, ...] = (), **values: object) -> None:
    """After the recipe: fill ``--selector``'s unset options with the selector's defaults, set the other selectors'
    options to None (so the resolved flags show what applies) and refuse values that cannot work, in one line.
    ``own`` options stay as the trainer resolved them; ``values`` stand in for those not yet numbers."""
    mine = {o.name for o in get_selector(args.selector).options}
    for name in all_options():
        if name not in mine and name not in own:
            setattr(args, name, None)
    try:
        options = selector_config(args, **values).options
    except ValueError as err:
        raise UserError(str(err)) from None
    for name, value in options.items():
        if name not in own:
            setattr(args, name, value)
    if (args.loss_history or 1) > 1 and args.num_batches is not None:  # the state of loss-gmm's rounds
        raise UserError(f"--loss_history {args.loss_history} averages losses over epochs, but with --num_batches "
                        f"every epoch splits a different draw of samples; drop one of them")
