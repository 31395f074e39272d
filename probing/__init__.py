"""deepwide.probing — layerwise probes: where in a model phonetic and speaker information lives.

Modules (imported on demand; this package imports nothing heavy, so ``deepwide --help`` stays
fast):

* :mod:`~deepwide.probing.tasks` — the task registry ``TASKS`` (``phone``, ``ks``, ``ic``,
  ``sid``, ``sid-frame``, ``asv``, ``er``): level, labels, split policy, metric;
  ``Task.prepare(store)`` selects samples without reading features.
* :mod:`~deepwide.probing.solver` — ``fit_softmax_path``: L2-penalised multinomial logistic
  regression for every layer and every penalty of a grid in one batched, warm-started,
  preconditioned float32 solve (torch, CPU or CUDA).
* :mod:`~deepwide.probing.weighted` — the SUPERB weighted-sum probe and layer norms.
* :mod:`~deepwide.probing.stats` — utterance-bootstrap CIs, EER, macro-F1, majority baseline.
* :mod:`~deepwide.probing.estimator` — ``LinearProbe``, a scikit-learn classifier.
* :mod:`~deepwide.probing.run` — ``probe_stores(stores, tasks, ProbeConfig(), nulls=…)`` →
  results ``xr.Dataset`` (``docs/results-schema.md``), ``write_results``, ``format_table``.
* :mod:`~deepwide.probing.cli` — ``deepwide probe``.

Example:
    >>> from deepwide.probing.run import ProbeConfig, probe_stores, write_results
    >>> res = probe_stores(["teacher.zarr"], ["phone", "sid"], ProbeConfig(), nulls=["random.zarr"])
    >>> res["score"].sel(task="phone")   # (model, layer) test accuracy
    >>> write_results(res, "results/")    # probe.nc + probe.csv
"""
