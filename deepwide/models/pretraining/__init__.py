"""The tiny teacher's pre-training recipe, one module per job.

* :mod:`.config` — :class:`PretrainConfig`, :func:`quick_config`, the frame grid;
* :mod:`.data` — the corpus in memory, frame phones, random crops;
* :mod:`.targets` — MFCC and layer features, k-means targets, their quality;
* :mod:`.augment` — random recording channels, augmented halves;
* :mod:`.model` — the HuBERT pre-training model and its losses (masked prediction, InfoNCE);
* :mod:`.state` — ``state.pt`` and the run record;
* :mod:`.run` — :func:`pretrain_teacher`, the run and its loop;
* :mod:`.export` — :func:`export_teacher`.

The recipe and its public names are documented in :mod:`deepwide.models.pretrain`, which
re-exports them; the shared training plumbing (schedule, atomic saves, RNG state, JSON-lines
log) is :mod:`deepwide.training`'s.
"""
