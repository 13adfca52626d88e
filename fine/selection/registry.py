"""The selector registry: every detector is one module that declares a :class:`SelectorSpec` and calls
:func:`register`; the trainers' flags, their selection rounds, ``engine.detect``, the report and the bench read
:data:`REGISTRY` instead of keeping lists of their own.

A spec holds the selector's name, a readable label, what it needs (penultimate features, logits), its options (each
becomes a command-line flag ``--<name>`` of every entry point), a pure ``select(inputs, options, state)`` and, for
selectors that carry something from round to round, the initial state (a dict of tensors and lists the trainers
checkpoint and hand back next round). Modules of this package are imported by ``fine.selection`` itself, so a new
``fine/selection/<detector>.py`` that calls :func:`register` is available everywhere without other edits.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from fine.distributed import gather_by_index, is_distributed
from fine.selection.result import Selection

NEEDS = ("features", "logits")


@dataclass(frozen=True)
class Option:
    """One option of a selector, which is also the flag ``--<name>`` of the trainers and ``engine.detect``.

    ``default`` is the value when neither the flag nor a trainer's recipe sets it (None: the option must be given);
    ``valid`` tells good values from bad and ``requirement`` says what it demands ("must lie in (0, 1)").
    Selectors that share an option declare the same :class:`Option` object.
    """

    name: str
    type: type
    default: Any
    help: str
    choices: tuple | None = None
    valid: Callable[[Any], bool] | None = None
    requirement: str = ""


@dataclass
class Inputs:
    """What one selection round gives a selector, all rows on one device.

    Attributes
    ----------
    labels : (N,) int64 noisy labels in [0, num_classes)
    num_classes : C
    features : (N, D) float penultimate features (None unless the spec needs "features")
    logits : (N, C) float network outputs (None unless the spec needs "logits")
    ref_mask : (N,) bool, the samples that define class-level statistics (the previous round's selection; None = all)
    """

    labels: torch.Tensor
    num_classes: int
    features: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    ref_mask: torch.Tensor | None = None

    def losses(self) -> torch.Tensor:
        """(N,) float32 per-sample cross-entropy of the logits against the noisy labels."""
        return F.cross_entropy(self.logits.float(), self.labels.to(self.logits.device).long(), reduction="none")


def _no_check(options: dict) -> None:
    return None


def _no_state() -> dict:
    return {}


@dataclass(frozen=True)
class SelectorSpec:
    """A registered selector.

    Attributes
    ----------
    name : the ``--selector`` value
    label : readable name in reports (e.g. "FINE")
    help : one line for the ``--selector`` help
    needs : which of :data:`NEEDS` ``select`` reads from its :class:`Inputs`
    options : the options ``select`` reads, by name
    select : ``select(inputs, options, state) -> Selection``; may update ``state`` in place
    check : raises ValueError (naming the flags) on a combination of option values that cannot work
    higher_is_cleaner : the ``scores`` of its selections rank clean samples high (FINE's alignment), else low (losses)
    init_state : the state before the first round (default: an empty dict)
    select_sharded : ``select_sharded(inputs, options, state, positions, num_samples)`` on rows sharded across
        processes (positions: (n_local,) int); None: the rows are gathered and ``select`` runs on every process
    """

    name: str
    label: str
    help: str
    needs: tuple[str, ...]
    options: tuple[Option, ...]
    select: Callable[[Inputs, dict, dict], Selection]
    check: Callable[[dict], None] = _no_check
    higher_is_cleaner: bool = True
    init_state: Callable[[], dict] = _no_state
    select_sharded: Callable[..., Selection] | None = None


REGISTRY: dict[str, SelectorSpec] = {}


def register(spec: SelectorSpec) -> SelectorSpec:
    """Add ``spec`` to :data:`REGISTRY`; an option name other selectors already use must be the same option."""
    if spec.name in REGISTRY:
        raise ValueError(f"a selector named {spec.name!r} is already registered")
    unknown = set(spec.needs) - set(NEEDS)
    if unknown:
        raise ValueError(f"selector {spec.name!r} needs {sorted(unknown)}; a selector can need {', '.join(NEEDS)}")
    known = all_options()
    for option in spec.options:
        if option.name in known and known[option.name] != option:
            raise ValueError(f"selector {spec.name!r} redefines option {option.name!r}; share the registered one")
    REGISTRY[spec.name] = spec
    return spec


def get_selector(name: str) -> SelectorSpec:
    """The registered spec called ``name``; ValueError naming the choices otherwise."""
    if name not in REGISTRY:
        raise ValueError(f"unknown selector {name!r}; choose one of {', '.join(REGISTRY)}")
    return REGISTRY[name]


def all_options() -> dict[str, Option]:
    """Every registered selector's options by name, in registration order."""
    return {option.name: option for spec in REGISTRY.values() for option in spec.options}


def resolve_options(name: str, values: dict) -> dict:
    """The options of selector ``name``: ``values`` where given (not None), else the defaults; ValueError naming
    the flag when an option is foreign to the selector, a required one is missing or a value is out of range."""
    spec = get_selector(name)
    unknown = set(values) - {option.name for option in spec.options}
    if unknown:
        raise ValueError(f"--selector {name} takes no option {', '.join(sorted(unknown))}")
    options = {}
    for option in spec.options:
        value = values.get(option.name)
        value = option.default if value is None else value
        if value is None:
            raise ValueError(f"--selector {name} needs --{option.name}; pass it")
        if option.choices is not None and value not in option.choices:
            raise ValueError(f"--{option.name} {value} is not one of {', '.join(map(str, option.choices))}")
        if option.valid is not None and not option.valid(value):
            raise ValueError(f"--{option.name} {value} {option.requirement}")
        options[option.name] = value
    spec.check(options)
    return options


@dataclass(frozen=True)
class SelectorConfig:
    """A selector and its resolved options (missing ones take their defaults; checked on construction)."""

    name: str = "fine"
    options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", resolve_options(self.name, self.options))

    @property
    def spec(self) -> SelectorSpec:
        return REGISTRY[self.name]


def select_samples(config: SelectorConfig, features: torch.Tensor | None, logits: torch.Tensor | None,
                   labels: torch.Tensor, num_classes: int, *, positions: torch.Tensor | None = None,
                   num_samples: int | None = None, ref_mask: torch.Tensor | None = None,
                   state: dict | None = None) -> Selection:
    """One selection round over ``num_samples`` samples, of which this process holds some rows.

    In a plain run the process holds every row, in order (``positions`` None), and the selector runs on the tensors
    as given. Under torchrun each process passes its own rows and their ``positions``; a selector with a sharded
    path runs it (FINE all-reduces its per-class grams), the others get the rows they need gathered by position.
    Every process gets the same selection of all rows.

    Parameters
    ----------
    config : the selector and its options
    features : (n_local, D) float penultimate features; logits : (n_local, C) float (either may be None when the
        selector does not need it)
    labels : (n_local,) int noisy labels of the rows
    num_classes : C
    positions : (n_local,) int positions of the rows in [0, num_samples), each on exactly one process; None in a
        plain run (the rows are all the samples, in order)
    num_samples : n, the samples of the round (default: n_local)
    ref_mask : (n_local,) bool, reference samples among the rows (None = all)
    state : the selector's state from the previous round (updated in place; default: a fresh one)

    Returns
    -------
    Selection over the n samples.
    """
    spec = config.spec
    state = spec.init_state() if state is None else state
    given = {"features": features, "logits": logits}
    missing = [need for need in spec.needs if given[need] is None]
    if missing:
        raise ValueError(f"selector {spec.name!r} needs {' and '.join(missing)}")
    rows = next(t for t in (features, logits) if t is not None)
    n = rows.shape[0] if num_samples is None else num_samples
    distributed = is_distributed()
    if distributed and positions is None:
        raise ValueError("under torchrun every process must pass the positions of its rows")
    if not distributed and positions is not None:
        positions = torch.as_tensor(positions).to(rows.device)
        if len(positions) != n or not bool((positions == torch.arange(n, device=positions.device)).all()):
            raise ValueError("in a plain run the rows must be all the samples in order (pass positions=None)")
        positions = None
    inputs = Inputs(labels, num_classes, **{need: given[need] for need in spec.needs}, ref_mask=ref_mask)
    if positions is None:
        return spec.select(inputs, config.options, state)
    if spec.select_sharded is not None:
        return spec.select_sharded(inputs, config.options, state, positions, n)
    return spec.select(_gathered(inputs, positions, n, rows.device), config.options, state)


def _gathered(inputs: Inputs, positions: torch.Tensor, n: int, device: torch.device) -> Inputs:
    """Every process's rows of ``inputs`` assembled in position order (n rows), on ``device``."""
    positions = positions.to(device)

    def gather(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else gather_by_index(t.to(device), positions, n)

    return Inputs(gather(inputs.labels.long()), inputs.num_classes, gather(inputs.features), gather(inputs.logits),
                  gather(inputs.ref_mask))


# The option every mixture-based selector shares: the threshold on the clean component's posterior.
P_THRESHOLD = Option("p_threshold", float, 0.5,
                     "zeta: a sample is clean when the clean component's posterior exceeds it (default per recipe: "
                     "0.5)",
                     valid=lambda v: 0.0 < v < 1.0, requirement="is outside (0, 1)")
