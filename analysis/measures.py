"""Layer-grid similarity measures: the :data:`MEASURES` registry behind ``--measure``.

Each :class:`Measure` is either streamed (linear CKA through
:class:`~deepwide.analysis.cka.LinearCKAAccumulator`, one pass over row blocks) or pairwise: a
``prepare`` step run once per layer on its ``(n, d)`` float64 rows (an SVD basis or a centred
Gram) and a ``compare`` step on two prepared views.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from deepwide.analysis.cca import (
    ViewBasis,
    keep_for_variance,
    pwcca_from_bases,
    svcca_from_bases,
    view_basis,
)
from deepwide.analysis.cka import gram_rbf
from deepwide.registry import Registry


@dataclass(frozen=True)
class Measure:
    """A layer-grid similarity measure.

    Attributes:
        name: CLI / results name.
        description: one line for help texts.
        streaming: computed in one pass by :class:`LinearCKAAccumulator` (linear CKA).
        debiased: for streaming measures, use the unbiased HSIC estimator.
        prepare: for pairwise measures, ``(n, d) float64 → prepared view`` (once per layer).
        compare: for pairwise measures, ``(prepared a, prepared b) → similarity``.
    """

    name: str
    description: str
    streaming: bool = False
    debiased: bool = False
    prepare: Callable[[np.ndarray], Any] | None = None
    compare: Callable[[Any, Any], float] | None = None


MEASURES: Registry[Measure] = Registry("measure")


def _prepare_rbf(x: np.ndarray) -> np.ndarray:
    k = gram_rbf(x, threshold=0.5)
    k -= k.mean(axis=0, keepdims=True)
    k -= k.mean(axis=1, keepdims=True)
    norm = float(np.linalg.norm(k))
    return k / norm if norm > 0 else k * math.nan


def _compare_rbf(ka: np.ndarray, kb: np.ndarray) -> float:
    return float(np.vdot(ka, kb))


def _prepare_svcca(x: np.ndarray) -> ViewBasis:
    basis = view_basis(x)
    return basis.truncated(keep_for_variance(basis.s, 0.99))


for _m in (
    Measure("cka", "linear CKA (biased HSIC), streamed", streaming=True),
    Measure(
        "cka-debiased", "linear CKA with unbiased HSIC, streamed", streaming=True, debiased=True
    ),
    Measure(
        "cka-rbf",
        "RBF-kernel CKA, bandwidth 0.5 × median distance",
        prepare=_prepare_rbf,
        compare=_compare_rbf,
    ),
    Measure(
        "svcca",
        "SVCCA, 99 % variance kept per view",
        prepare=_prepare_svcca,
        compare=lambda a, b: svcca_from_bases(a, b, variance=1.0),
    ),
    Measure(
        "pwcca",
        "PWCCA weighted by model A's neurons",
        prepare=view_basis,
        compare=lambda a, b: pwcca_from_bases(a, b, weights_from="x"),
    ),
):
    MEASURES.add(_m.name, _m)
