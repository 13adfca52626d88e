"""Clean-sample selectors: FINE (eigenvector alignment + per-class mixture) and the loss-based baselines, each a
pure function of tensors returning a :class:`Selection` and registered in :data:`REGISTRY` (``registry``), so a
trainer swaps them with one flag.

FINE, per noisy class k (:func:`fine_select`, module ``fine``):

1. ``u_k`` = top eigenvector of the uncentred gram ``sum z z^T`` of the class's reference samples
   (:func:`class_top_eigenvectors`, module ``linalg``; never a full SVD, never an ``n_k x n_k`` or ``N x N`` matrix);
2. every sample gets ``score_i = |<u_{y_i}, z_i / |z_i|>|`` (:func:`alignment_scores`, module ``scores``);
3. a 2-component 1-D mixture per class on the scores (:func:`split_scores`, module ``split``, on ``fine.mixture``,
   all classes batched); a sample is clean when the posterior of the higher-mean component exceeds ``threshold``.

``score="margin"`` replaces step 2 by the sample's score against its own class minus its best score against any
other class, and step 3 splits only the classes whose lower component has a negative mean; the others stay whole.
:func:`fine_select_distributed` runs FINE on features sharded across processes: per-class grams
(:func:`class_grams`) are all-reduced and turned into directions by :func:`eigvecs_from_grams`, each process scores
its own rows, and the scores are gathered by sample index before the mixture fit.

Module ``loss`` holds the baselines (:func:`small_loss_select`, :func:`loss_gmm_select`), ``metrics`` the detection
quality of a selection (:func:`selection_metrics`), ``checks`` and ``result`` what they share. Every module of this
package is imported here, so a selector module that calls :func:`register` needs no other edit to be available.
"""
from __future__ import annotations

import importlib
import pkgutil

from fine.selection.fine import fine_select, fine_select_distributed
from fine.selection.linalg import class_grams, class_sums, class_top_eigenvectors, eigvecs_from_grams
from fine.selection.loss import loss_gmm_select, small_loss_select
from fine.selection.metrics import selection_metrics
from fine.selection.registry import (REGISTRY, Inputs, Option, SelectorConfig, SelectorSpec, get_selector, register,
                                     select_samples)
from fine.selection.result import Selection
from fine.selection.scores import SCORES, alignment_scores
from fine.selection.split import FITS, VECTORS, split_scores

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["FITS", "REGISTRY", "SCORES", "VECTORS", "Inputs", "Option", "Selection", "SelectorConfig", "SelectorSpec",
           "alignment_scores", "class_grams", "class_sums", "class_top_eigenvectors", "eigvecs_from_grams",
           "fine_select", "fine_select_distributed", "get_selector", "loss_gmm_select", "register", "select_samples",
           "selection_metrics", "small_loss_select", "split_scores"]
