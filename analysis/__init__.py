"""deepwide.analysis: representation similarity, label-CCA and spectra that explain depth vs width.

Metric functions take ``(n_samples, n_features)`` numpy arrays or torch tensors, compute in
float64 and return a Python float whose name says what it is (similarities: 1.0 = identical
under the measure's invariances). Store-level analysis is split by job: the measures
(:mod:`~deepwide.analysis.measures`), configs (:mod:`~deepwide.analysis.configs`), store reading
and frame sampling (:mod:`~deepwide.analysis.stores`), the similarity grid
(:mod:`~deepwide.analysis.similarity`), label-CCA and spectrum tables
(:mod:`~deepwide.analysis.tables`), result files and printed tables
(:mod:`~deepwide.analysis.output`) and the commands' entry points (:mod:`~deepwide.analysis.run`);
the ``deepwide analyze`` commands are in :mod:`deepwide.analysis.cli`.
"""

from __future__ import annotations

from deepwide.analysis.cca import (
    CCAFit,
    UnderdeterminedCCAWarning,
    ViewBasis,
    canonical_correlations,
    cca_similarity,
    fit_cca,
    label_cca,
    pwcca,
    svcca,
    view_basis,
)
from deepwide.analysis.cka import (
    LinearCKAAccumulator,
    gram_linear,
    gram_rbf,
    hsic_biased,
    hsic_unbiased,
    linear_cka,
    minibatch_cka,
    rbf_cka,
)
from deepwide.analysis.configs import LabelsConfig, SimilarityConfig, SpectrumConfig
from deepwide.analysis.measures import MEASURES
from deepwide.analysis.output import write_result
from deepwide.analysis.run import run_labels, run_similarity, run_spectrum
from deepwide.analysis.similarity import similarity_grid
from deepwide.analysis.spectrum import (
    CovarianceAccumulator,
    covariance_eigenvalues,
    effective_rank,
    effective_rank_from_eigenvalues,
    participation_ratio,
    participation_ratio_from_eigenvalues,
)
from deepwide.analysis.stores import open_feature_store, sample_shared_frames
from deepwide.analysis.tables import label_cca_table, spectrum_table

__all__ = [
    "MEASURES",
    "CCAFit",
    "CovarianceAccumulator",
    "LabelsConfig",
    "LinearCKAAccumulator",
    "SimilarityConfig",
    "SpectrumConfig",
    "UnderdeterminedCCAWarning",
    "ViewBasis",
    "canonical_correlations",
    "cca_similarity",
    "covariance_eigenvalues",
    "effective_rank",
    "effective_rank_from_eigenvalues",
    "fit_cca",
    "gram_linear",
    "gram_rbf",
    "hsic_biased",
    "hsic_unbiased",
    "label_cca",
    "label_cca_table",
    "linear_cka",
    "minibatch_cka",
    "open_feature_store",
    "participation_ratio",
    "participation_ratio_from_eigenvalues",
    "pwcca",
    "rbf_cka",
    "run_labels",
    "run_similarity",
    "run_spectrum",
    "sample_shared_frames",
    "similarity_grid",
    "spectrum_table",
    "svcca",
    "view_basis",
    "write_result",
]
