"""k-nearest-neighbour label consistency: SimiFeat (Zhu, Dong, Liu, "Detecting Corrupted Labels Without Training a
Model to Predict", ICML 2022), a detector that needs features and labels but no classifier.

Per round, every sample's k nearest neighbours by cosine similarity (itself excluded) vote with their noisy labels:

- ``decision="vote"`` (SimiFeat-V): a sample is wrongly labelled when its label is not the neighbours' majority;
- ``decision="rank"`` (SimiFeat-R): within each noisy class j, samples are ranked by the fraction of neighbours that
  agree with j, and the ``n_j - c_j`` lowest are flagged, where ``c_j`` is the number of class-j samples whose majority
  vote is j (the class's clean count estimated from the votes; the paper estimates it from a transition matrix).

Round 0 uses the features as given; every further round draws a random local augmentation of the feature space (each
coordinate kept with probability ``keep``), standing in for the paper's image augmentations across epochs. The
rounds' decisions are combined by majority, and the score is the mean agreement fraction over rounds.

Neighbours are found blockwise (``_BLOCK`` rows against all N at a time, then ``topk``): memory ``_BLOCK x N``, never
an N x N matrix.

Registered as the selector ``knn`` (``--selector knn`` of both trainers and ``engine.detect``, options ``--knn_k``,
``--knn_rounds``, ``--knn_keep``, ``--knn_decision``); it keeps no state between rounds.
"""
from __future__ import annotations

import torch

from fine.selection.checks import check_inputs
from fine.selection.registry import Inputs, Option, SelectorSpec, register
from fine.selection.result import Selection

DECISIONS = ("vote", "rank")
_BLOCK = 2048  # query rows per similarity block


def knn_neighbours(features: torch.Tensor, k: int) -> torch.Tensor:
    """(N, k) int64 indices of each row's k most cosine-similar other rows (ties: lower index first).

    Parameters
    ----------
    features : (N, D) float tensor; rows of zero norm are similar to nothing (similarity 0)
    k : neighbours per row, 1 <= k < N
    """
    n = features.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k must lie in [1, {n - 1}] for {n} samples, got {k}")
    unit = features / torch.linalg.vector_norm(features, dim=1, keepdim=True).clamp_min(1e-12)
    out = torch.empty(n, k, dtype=torch.int64, device=features.device)
    for start in range(0, n, _BLOCK):
        stop = min(start + _BLOCK, n)
        sims = unit[start:stop] @ unit.T  # (rows, N)
        rows = torch.arange(stop - start, device=features.device)
        sims[rows, rows + start] = -torch.inf  # a sample is not its own neighbour
        out[start:stop] = sims.topk(k, dim=1, sorted=True).indices
    return out


def neighbour_votes(neighbours: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, C) float32 label counts among each row's neighbours ((N, k) indices, (N,) int64 labels)."""
    votes = torch.zeros(neighbours.shape[0], num_classes, dtype=torch.float32, device=labels.device)
    return votes.scatter_add_(1, labels[neighbours], torch.ones_like(neighbours, dtype=torch.float32))


def _round_decision(votes: torch.Tensor, labels: torch.Tensor, num_classes: int,
                    decision: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One round's (N,) bool clean mask and (N,) float agreement fraction from its (N, C) votes."""
    agree = votes.gather(1, labels.unsqueeze(1)).squeeze(1) / votes.sum(1).clamp_min(1)
    # majority with ties in favour of the given label: clean unless another class has strictly more votes
    own = votes.gather(1, labels.unsqueeze(1)).squeeze(1)
    vote_clean = own >= votes.max(1).values
    if decision == "vote":
        return vote_clean, agree
    clean = torch.zeros_like(vote_clean)
    for j in range(num_classes):
        members = (labels == j).nonzero().squeeze(1)
        keep = int(vote_clean[members].sum())
        if keep:
            order = torch.argsort(-agree[members], stable=True)
            clean[members[order[:keep]]] = True
    return clean, agree


def knn_select(features: torch.Tensor, labels: torch.Tensor, num_classes: int, *, k: int = 10, rounds: int = 5,
               keep: float = 0.8, decision: str = "vote", seed: int = 0) -> Selection:
    """SimiFeat: select the samples whose label agrees with their nearest neighbours' labels.

    Parameters
    ----------
    features : (N, D) float features (any device; computed there); labels : (N,) int noisy labels in [0, C)
    num_classes : C
    k : neighbours per sample (the paper's default 10)
    rounds : number of rounds; round 0 uses the raw features, the others a random coordinate subset
    keep : probability that a coordinate is kept in an augmented round
    decision : "vote" (SimiFeat-V) or "rank" (SimiFeat-R), see the module docstring
    seed : seed of the augmentations' local generator

    Returns
    -------
    Selection with ``clean_mask`` = clean in a majority of rounds (ties: clean), ``clean_prob`` = the fraction of
    rounds that call the sample clean, and ``scores`` = the mean fraction of neighbours sharing the sample's label
    (higher = cleaner).
    """
    if decision not in DECISIONS:
        raise ValueError(f"unknown decision {decision!r}; choose one of {', '.join(DECISIONS)}")
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must lie in (0, 1], got {keep}")
    features, labels = check_inputs(features, labels, num_classes)
    if not bool(torch.isfinite(features).all()):
        raise ValueError("features contain NaN or Inf; check the model's outputs before selecting")
    gen = torch.Generator().manual_seed(seed)
    clean_votes = torch.zeros(features.shape[0], dtype=torch.float32, device=features.device)
    score = torch.zeros_like(clean_votes)
    for r in range(rounds):
        feats = features
        if r:
            kept = (torch.rand(features.shape[1], generator=gen) < keep).to(features.device)
            feats = features[:, kept] if bool(kept.any()) else features
        votes = neighbour_votes(knn_neighbours(feats, k), labels, num_classes)
        clean, agree = _round_decision(votes, labels, num_classes, decision)
        clean_votes += clean.float()
        score += agree
    prob = clean_votes / rounds
    return Selection(clean_mask=prob >= 0.5, clean_prob=prob, scores=score / rounds)


def _select(inputs: Inputs, options: dict, state: dict) -> Selection:
    return knn_select(inputs.features, inputs.labels, inputs.num_classes, k=options["knn_k"],
                      rounds=options["knn_rounds"], keep=options["knn_keep"], decision=options["knn_decision"])


register(SelectorSpec(
    name="knn", label="SimiFeat k-NN", needs=("features",), select=_select,
    help="knn (SimiFeat, Zhu et al. 2022: label agreement of each sample's k nearest neighbours by cosine)",
    options=(
        Option("knn_k", int, 10, valid=lambda v: v >= 1, requirement="must be at least 1",
               help="knn: neighbours per sample (the paper's 10; fewer than the samples of a round)"),
        Option("knn_rounds", int, 5, valid=lambda v: v >= 1, requirement="must be at least 1",
               help="knn: rounds whose decisions are combined by majority; round 0 on the raw features, the others "
                    "on a random subset of coordinates"),
        Option("knn_keep", float, 0.8, valid=lambda v: 0.0 < v <= 1.0, requirement="is outside (0, 1]",
               help="knn: probability that a coordinate is kept in an augmented round"),
        Option("knn_decision", str, "vote", choices=DECISIONS,
               help="knn: vote = clean when the label is the neighbours' majority (SimiFeat-V), rank = per class "
                    "keep the samples with most agreeing neighbours, as many as the majority votes call clean "
                    "(SimiFeat-R)"),
    )))
