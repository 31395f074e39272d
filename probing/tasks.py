"""The probing tasks: what each one reads from a feature store, how it splits, how it scores.

Every task is a :class:`Task` in the :data:`TASKS` registry. ``Task.prepare(ds, …)`` turns a
store (an ``xarray.Dataset`` with the schema of ``deepwide.store``) into index arrays and
labels — it never reads features; :meth:`TaskData.load_layer` then reads one layer at a time.

| task | level | samples | labels | split (coord) | metric |
|---|---|---|---|---|---|
| ``phone`` | frame | stored frames with a phone (silence excluded by default) | ``phone`` | ``split`` | accuracy |
| ``pr`` | sequence | whole utterances (every frame) with phones | ``phones`` (silence dropped) | ``split`` | PER |
| ``asr`` | sequence | whole utterances (every frame) with a transcript | ``text`` (characters) | ``split`` | WER (+ CER) |
| ``ks`` | utterance | ``kind == "keyword"`` | ``keyword`` | ``split`` | accuracy |
| ``ic`` | utterance | ``kind == "command"`` | ``intent`` | ``split`` | accuracy |
| ``sid`` | utterance | ``sid_split != ""`` | ``speaker`` | ``sid_split`` | accuracy |
| ``sid-frame`` | frame / K-frame segment | frames of the ``sid`` utterances | ``speaker`` | ``sid_split`` | accuracy |
| ``asv`` | utterance | the store's trial list | target / non-target | held-out speakers | EER |
| ``er`` | utterance | ``emotion != ""`` | ``emotion`` | ``split`` | accuracy |

Split policies:
* content tasks (``phone``, ``ks``, ``ic``) use the corpus's speaker-disjoint ``split``; as a
  guard, dev/test samples of any speaker that also appears in train are dropped (warning).
* ``sid`` and ``sid-frame`` are closed-set: the same speakers in train, dev and test with
  disjoint utterances (``sid_split``); dev/test utterances of speakers absent from train are
  dropped. The corpus decides which utterances are in the speaker-ID set (``sid_split``).
* ``asv`` scores the trial list (``attrs["trials"]``, held-out speakers); its LDA back-end is
  fitted on the ``sid_split == "train"`` utterances of speakers that appear in no trial
  (falling back to ``split == "train"`` utterances of those speakers). With fewer than 2 such
  speakers (or no more utterances than speakers) there is no LDA: trials are scored by plain
  cosine (``backend == "cosine"``, a warning says so).
* without dev utterances, dev is carved from train: ~20 % of the training speakers (content
  tasks) or ~20 % of each speaker's training utterances, at least one of every speaker with 2
  or more (speaker ID); the warning says how many.
* ``er`` uses ``split`` as the corpus defines it (no speaker guard). It counts as a
  ``"speaker"``-kind (paralinguistic) task, as the paper groups it with speaker ID. On a store
  with ``folds`` (a cross-validation protocol: ``iemocap:PATH``, SUPERB's five
  leave-one-session-out folds) it is prepared once per fold (:class:`FoldedData`, each fold's
  split read from ``folds``) and scored as the mean over folds, with the spread beside it.

Silence: the ``phone`` task excludes frames labelled with a silence symbol (``sil``, ``sp``,
``spn``, ``h#``, ``pau``, ``<sil>``, case-insensitive) unless ``include_silence=True``:
silence is easy, frequent, and would both inflate accuracy and become the majority class, which
says little about phonetic content.

Sizes: training *frames* are subsampled uniformly at random (seeded) to ``max_train_frames``;
dev and test are subsampled by whole *utterances* (seeded) to ``max_eval_frames`` frames, so
the utterance bootstrap sees complete utterances.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deepwide.corpora.lexicon import ARPABET_PLAIN, ARPABET_STRESSED
from deepwide.errors import TaskError
from deepwide.registry import Registry

log = logging.getLogger(__name__)

SILENCE_SYMBOLS = frozenset({"sil", "sp", "spn", "h#", "pau", "<sil>"})
#: metrics where a lower score is better
LOWER_IS_BETTER = frozenset({"eer", "per", "wer", "cer"})
SPLIT_NAMES = ("train", "dev", "test")
#: utterance coordinates that may carry a task label
UTT_LABELS = ("speaker", "keyword", "intent", "emotion")


@dataclass(frozen=True)
class PrepareOptions:
    """Sampling options shared by every task.

    Attributes:
        max_train_frames: cap on training frames of frame-level tasks (random frames).
        max_eval_frames: cap on dev and on test frames of frame-level tasks (whole utterances).
        include_silence: keep silence frames in ``phone``.
        segment_frames: ``sid-frame`` sample size: 1 = single frames, K > 1 = the mean of K
            consecutive stored frames of one utterance.
        seed: seed for every subsample.
    """

    max_train_frames: int = 50_000
    max_eval_frames: int = 50_000
    include_silence: bool = False
    segment_frames: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_train_frames < 1 or self.max_eval_frames < 1:
            raise ValueError("frame caps must be positive")
        if self.segment_frames < 1:
            raise ValueError("segment_frames must be ≥ 1")


@dataclass
class SplitData:
    """One split of a classification task.

    Attributes:
        rows: ``(n, K)`` int64 indices along the store's ``frame`` dim (frame tasks; K frames
            averaged per sample) or ``(n, 1)`` along ``utt`` (utterance tasks).
        labels: ``(n,)`` int64 class index (``-1``: a class never seen in training).
        groups: ``(n,)`` int64 utterance index of each sample (the bootstrap resamples these).
    """

    rows: np.ndarray
    labels: np.ndarray
    groups: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class TaskData:
    """A classification task prepared on one store.

    Attributes:
        task: the task.
        classes: class names; labels index into it.
        train, dev, test: the splits.
        source: ``"hidden"`` (frames) or ``"pooled"`` (utterances).
    """

    task: Task
    classes: list[str]
    train: SplitData
    dev: SplitData
    test: SplitData
    source: str

    def load_layer(self, ds: Any, layer: int) -> dict[str, np.ndarray]:
        """Read one layer's features for the three splits.

        Args:
            ds: the store dataset.
            layer: layer index (0 = input to the first transformer layer).

        Returns:
            ``{"train": (n_train, D), "dev": (n_dev, D), "test": (n_test, D)}`` float32.

        Raises:
            StoreError: the features read hold NaN/Inf (a missing chunk reads as NaN).
        """
        splits = {"train": self.train, "dev": self.dev, "test": self.test}
        dim = "frame" if self.source == "hidden" else "utt"
        flat = np.unique(np.concatenate([s.rows.ravel() for s in splits.values()]))
        from deepwide.store import check_finite  # lazy: keeps xarray/zarr off `deepwide --help`

        block = np.asarray(ds[self.source].isel({"layer": layer, dim: flat}).values, np.float32)
        check_finite(block, ds, self.source, int(ds["layer"].values[layer]))
        out = {}
        for name, s in splits.items():
            pos = np.searchsorted(flat, s.rows)  # (n, K)
            out[name] = block[pos].mean(axis=1, dtype=np.float32) if s.rows.shape[1] > 1 else block[pos[:, 0]]
        return out


@dataclass
class FoldedData:
    """A classification task prepared once per fold of the store's cross-validation protocol.

    Attributes:
        task: the task.
        folds: one :class:`TaskData` per fold (fold ``k`` at index ``k - 1``), each with the
            splits of that fold.
    """

    task: Task
    folds: list[TaskData]


@dataclass
class SequenceSplit:
    """One split of a sequence task: whole utterances and one label sequence each.

    Attributes:
        utts: ``(U,)`` int64 utterance indices (sorted).
        targets: ``U`` int64 arrays of labels ``1..V`` (0 is the CTC blank).
    """

    utts: np.ndarray
    targets: tuple[np.ndarray, ...]

    def __len__(self) -> int:
        return int(self.utts.shape[0])


@dataclass
class SequenceData:
    """A sequence task (``pr``) prepared on one store: every frame of whole utterances.

    Attributes:
        task: the task.
        vocabulary: label names; label ``i + 1`` is ``vocabulary[i]``.
        train, dev, test: the splits.
        frame_offset, n_frames: ``(n_utt,)`` the store's rows of each utterance.
    """

    task: Task
    vocabulary: list[str]
    train: SequenceSplit
    dev: SequenceSplit
    test: SequenceSplit
    frame_offset: np.ndarray
    n_frames: np.ndarray
    source: str = "hidden"

    def offsets(self, split: SequenceSplit) -> np.ndarray:
        """``(U + 1,)`` where each utterance of ``split`` starts in :meth:`load_layer`'s rows."""
        return np.concatenate([[0], np.cumsum(self.n_frames[split.utts])]).astype(np.int64)

    def load_layer(self, ds: Any, layer: int) -> dict[str, np.ndarray]:
        """``{"train"|"dev"|"test": (N_split, D) float32}``: the frames of each split's
        utterances, concatenated in utterance order (see :meth:`offsets`).

        Raises:
            StoreError: the features read hold NaN/Inf (a missing chunk reads as NaN).
        """
        from deepwide.store import check_finite

        splits = {"train": self.train, "dev": self.dev, "test": self.test}
        rows = {name: np.concatenate([np.arange(self.frame_offset[u], self.frame_offset[u] + self.n_frames[u])
                                      for u in s.utts] or [np.zeros(0, np.int64)]).astype(np.int64)
                for name, s in splits.items()}
        flat = np.unique(np.concatenate(list(rows.values())))
        block = np.asarray(ds[self.source].isel({"layer": layer, "frame": flat}).values, np.float32)
        check_finite(block, ds, self.source, int(ds["layer"].values[layer]))
        return {name: block[np.searchsorted(flat, r)] for name, r in rows.items()}


@dataclass
class TrialData:
    """The ``asv`` task prepared on one store.

    Attributes:
        utt_a, utt_b: ``(n_trials,)`` utterance indices of each trial's two sides.
        target: ``(n_trials,)`` bool, same speaker.
        lda_utts: ``(m,)`` utterance indices used to fit the LDA back-end.
        lda_speakers: ``(m,)`` int64 speaker index of each of them.
        backend: ``"lda"`` (cosine after an LDA fitted on ``lda_utts``) or ``"cosine"`` (fewer
            than 2 training speakers outside the trial list: plain cosine scoring only).
        centre_utts: ``(c,)`` utterance indices whose mean and spread standardise the features
            before scoring (``lda_utts`` when there are any).
    """

    task: Task
    utt_a: np.ndarray
    utt_b: np.ndarray
    target: np.ndarray
    lda_utts: np.ndarray
    lda_speakers: np.ndarray
    source: str = "pooled"
    backend: str = "lda"
    centre_utts: np.ndarray | None = None

    def load_layer(self, ds: Any, layer: int) -> np.ndarray:
        """``(n_utt, D)`` float32 pooled features of ``layer`` (all utterances).

        Raises:
            StoreError: they hold NaN/Inf (a missing chunk reads as NaN).
        """
        from deepwide.store import check_finite

        x = np.asarray(ds["pooled"].isel(layer=layer).values, np.float32)
        check_finite(x, ds, "pooled", int(ds["layer"].values[layer]))
        return x


@dataclass(frozen=True)
class Task:
    """A probing task: where its samples and labels come from, how it splits and scores.

    Attributes:
        name: registry name.
        level: ``"frame"``, ``"utterance"`` or ``"sequence"`` (every frame of whole utterances,
            one label sequence each).
        kind: ``"content"`` or ``"speaker"``.
        metric: ``"accuracy"``, ``"eer"``, ``"per"`` (phone error rate) or ``"wer"`` (word).
        label: the label it needs (a coord name, or ``"trials"``).
        split_coord: the coord that assigns samples to train/dev/test.
        utt_kinds: keep only utterances whose ``kind`` is one of these (None: all).
        speaker_disjoint: drop dev/test samples of speakers seen in training.
        description: one line for ``--help``.
        cross_validated: on a store with ``folds``, run every fold (:class:`FoldedData`).
    """

    name: str
    level: str
    kind: str
    metric: str
    label: str
    split_coord: str
    description: str
    utt_kinds: tuple[str, ...] | None = None
    speaker_disjoint: bool = False
    cross_validated: bool = False
    prepare_fn: Callable[..., TaskData | TrialData | SequenceData | FoldedData] | None = field(default=None, compare=False, repr=False)

    @property
    def higher_is_better(self) -> bool:
        """Accuracy: higher is better; EER and error rates (PER, WER, CER): lower is better."""
        return self.metric not in LOWER_IS_BETTER

    def prepare(self, ds: Any, options: PrepareOptions | None = None) -> TaskData | TrialData | SequenceData | FoldedData:
        """Select samples and labels of this task from store ``ds`` (no features are read).

        Raises:
            TaskError: the store lacks the labels, frames or splits this task needs.
        """
        options = options or PrepareOptions()
        if self.prepare_fn is None:
            raise NotImplementedError(self.name)
        return self.prepare_fn(self, ds, options)


TASKS: Registry[Task] = Registry("task")


# ---------------------------------------------------------------- store helpers
def store_name(ds: Any) -> str:
    """The store's model id (for messages)."""
    return str(ds.attrs.get("model_id", "?"))


def _coord(ds: Any, name: str) -> np.ndarray | None:
    if name not in ds.coords and name not in ds.variables:
        return None
    return np.asarray(ds[name].values)


def _strings(values: np.ndarray | None) -> np.ndarray | None:
    if values is None:
        return None
    return np.array(["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in values], dtype=object)


def _frames_available(ds: Any) -> bool:
    mode = str(ds.attrs.get("frames_mode", "all"))
    return mode != "none" and "hidden" in ds.variables and int(ds.sizes.get("frame", 0)) > 0


def _trials(ds: Any) -> list[list[Any]]:
    raw = ds.attrs.get("trials", "[]")
    try:
        trials = json.loads(raw) if isinstance(raw, str) else list(raw)
    except json.JSONDecodeError:
        return []
    return trials if isinstance(trials, list) else []


def store_labels(ds: Any) -> list[str]:
    """Labels the store carries (non-empty), e.g. ``["phone", "speaker", "keyword"]``."""
    have = []
    if _frames_available(ds) and "phone" in ds.coords and bool((np.asarray(ds["phone"].values) >= 0).any()):
        have.append("phone")
    for name in ("phones", "text"):  # the sequence tasks' targets
        values = _strings(_coord(ds, name))
        if _frames_available(ds) and values is not None and bool((values != "").any()):
            have.append(name)
    for name in UTT_LABELS:
        vals = _strings(_coord(ds, name))
        if vals is not None and bool((vals != "").any()):
            have.append(name)
    if _trials(ds):
        have.append("trials")
    return have


def _missing(task: Task, ds: Any, what: str) -> TaskError:
    have = store_labels(ds)
    servable = [n for n in TASKS.names() if TASKS.get(n).label in have]
    return TaskError(
        f"task {task.name!r} needs {what}, which store {store_name(ds)!r} lacks; "
        f"it has labels: {', '.join(have) or 'none'} (tasks it can serve: {', '.join(servable) or 'none'})"
    )


def store_folds(ds: Any) -> np.ndarray | None:
    """The store's cross-validation folds: ``(n_utt, K)`` split names (``""`` for an utterance
    in no fold), or None when the store has no ``folds``.

    Raises:
        TaskError: utterances list different numbers of folds.
    """
    vals = _strings(_coord(ds, "folds"))
    if vals is None or not (vals != "").any():
        return None
    parts = [v.split(",") if v else [] for v in vals]
    counts = sorted({len(p) for p in parts if p})
    if len(counts) > 1:
        raise TaskError(f"store {store_name(ds)!r}: its 'folds' list {' or '.join(map(str, counts))} folds "
                        "per utterance; re-extract it from its corpus")
    out = np.full((len(parts), counts[0]), "", dtype=object)
    for i, p in enumerate(parts):
        if p:
            out[i] = p
    return out


def _split_codes(ds: Any, task: Task, values: np.ndarray | None = None) -> np.ndarray:
    """``(n_utt,)`` int: 0 train, 1 dev, 2 test, -1 not used (from ``values`` when given,
    else from the task's split coordinate)."""
    vals = _strings(_coord(ds, task.split_coord)) if values is None else values
    if vals is None:
        raise _missing(task, ds, f"utterance split coordinate {task.split_coord!r}")
    code = np.full(vals.shape[0], -1, np.int64)
    for i, s in enumerate(SPLIT_NAMES):
        code[vals == s] = i
    return code


def _carve_dev(code: np.ndarray, speakers: np.ndarray, by_speaker: bool, seed: int, task: Task) -> np.ndarray:
    """When a store has no dev utterances for a task, move some training utterances to dev (seeded).

    ``by_speaker`` (speaker-disjoint content tasks): ~20 % of the training speakers (at least
    one, and only when at least 2 train). Otherwise (closed-set speaker ID): ~20 % of each
    speaker's training utterances, at least one of every speaker that has 2 or more — small
    corpora have 3–4 per speaker, where a plain 20 % would move none. The warning says what was
    moved; when nothing could be, it says so (the probe then warns that no penalty was chosen).
    """
    rng = np.random.default_rng(seed)
    train = np.flatnonzero(code == 0)
    spk = np.unique(speakers[train])
    if by_speaker:
        if spk.size < 2:
            log.warning(
                "task %s: the store has no dev utterances and only %d training speaker(s), too few to "
                "hold one out as dev (splits are speaker-disjoint); training without dev", task.name, spk.size,
            )
            return code
        pick = rng.choice(spk, size=max(1, round(0.2 * spk.size)), replace=False)
        move = train[np.isin(speakers[train], pick)]
        what = f"{move.size} training utterances of {pick.size} of {spk.size} speakers"
    else:
        parts = [
            rng.choice(idx, size=max(1, len(idx) // 5), replace=False)
            for s in spk
            for idx in [train[speakers[train] == s]]
            if len(idx) >= 2
        ]
        move = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        if move.size == 0:
            log.warning(
                "task %s: the store has no dev utterances and no speaker has 2 or more training "
                "utterances to spare one for dev; training without dev", task.name,
            )
            return code
        what = f"{move.size} training utterances ({len(parts)} of {spk.size} speakers: at least one each)"
    out = code.copy()
    out[move] = 1
    log.warning("task %s: the store has no dev utterances; using %s as dev", task.name, what)
    return out


def _utterance_selection(task: Task, ds: Any, labels: np.ndarray, options: PrepareOptions,
                         splits: np.ndarray | None = None) -> np.ndarray:
    """Split code per utterance after filters and split policy (-1 = unused); ``splits``:
    ``(n_utt,)`` split names to use instead of the task's split coordinate (one fold)."""
    speakers = _strings(_coord(ds, "speaker"))
    if speakers is None:
        raise _missing(task, ds, "utterance coordinate 'speaker'")
    code = _split_codes(ds, task, splits)
    use = labels != ""
    if task.utt_kinds is not None:
        kinds = _strings(_coord(ds, "kind"))
        if kinds is not None:
            use &= np.isin(kinds, task.utt_kinds)
    code = np.where(use, code, -1)
    if not (code == 0).any():
        raise TaskError(
            f"task {task.name!r}: store {store_name(ds)!r} has no training utterances "
            f"with a {task.label!r} label ({task.split_coord} == 'train'); check the corpus splits"
        )
    if not (code == 1).any():
        code = _carve_dev(code, speakers, task.speaker_disjoint, options.seed, task)
    train_spk = set(speakers[code == 0])
    held = (code > 0) & np.isin(speakers, list(train_spk))
    if task.speaker_disjoint and held.any():
        log.warning(
            "task %s: dropping %d dev/test utterances of speakers seen in training (split is not speaker-disjoint)",
            task.name, int(held.sum()),
        )
        code = np.where(held, -1, code)
    if task.label == "speaker":  # closed-set speaker ID: test speakers must be known
        unseen = (code > 0) & ~np.isin(speakers, list(train_spk))
        code = np.where(unseen, -1, code)
    if not (code == 2).any():
        raise TaskError(
            f"task {task.name!r}: store {store_name(ds)!r} has no test utterances with a "
            f"{task.label!r} label after applying the split policy; check the corpus splits"
        )
    return code


def _encode(labels: np.ndarray, train_mask: np.ndarray, task: Task, ds: Any) -> tuple[list[str], np.ndarray]:
    classes = sorted(set(labels[train_mask].tolist()))
    if len(classes) < 2:
        log.warning(
            "task %s: store %r has only %d class (%s) among its training samples, so every probe scores "
            "100 %%; check the store's labels and the corpus splits",
            task.name, store_name(ds), len(classes), ", ".join(map(repr, classes)) or "none",
        )
    lookup = {c: i for i, c in enumerate(classes)}
    return classes, np.array([lookup.get(v, -1) for v in labels], np.int64)


# ---------------------------------------------------------------- utterance tasks
def _prepare_utterance(task: Task, ds: Any, options: PrepareOptions) -> TaskData | FoldedData:
    labels = _strings(_coord(ds, task.label))
    if labels is None or not (labels != "").any():
        raise _missing(task, ds, f"utterance label {task.label!r}")
    folds = store_folds(ds) if task.cross_validated else None
    if folds is not None:
        return FoldedData(task, [_utterance_task(task, ds, labels, options, folds[:, k])
                                 for k in range(folds.shape[1])])
    return _utterance_task(task, ds, labels, options)


def _utterance_task(task: Task, ds: Any, labels: np.ndarray, options: PrepareOptions,
                    splits: np.ndarray | None = None) -> TaskData:
    code = _utterance_selection(task, ds, labels, options, splits)
    classes, y = _encode(labels, code == 0, task, ds)
    splits = []
    for i in range(3):
        idx = np.flatnonzero(code == i)
        splits.append(SplitData(rows=idx[:, None], labels=y[idx], groups=idx))
    return TaskData(task, classes, *splits, source="pooled")


# ---------------------------------------------------------------- frame tasks
def _sample_train_frames(idx: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    if idx.size <= cap:
        return idx
    return np.sort(rng.choice(idx, size=cap, replace=False))


def _sample_eval_utts(frames: np.ndarray, utt_of: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    """Keep whole utterances, in random order, until ``cap`` frames are reached."""
    if frames.size <= cap:
        return frames
    utts = rng.permutation(np.unique(utt_of[frames]))
    counts = np.bincount(utt_of[frames], minlength=int(utt_of.max()) + 1)[utts]
    keep = utts[: max(1, int(np.searchsorted(np.cumsum(counts), cap, side="right")))]
    return frames[np.isin(utt_of[frames], keep)]


def _segments(frames: np.ndarray, utt_of: np.ndarray, k: int) -> np.ndarray:
    """Group sorted frame indices into non-overlapping runs of ``k`` frames of one utterance."""
    if k == 1:
        return frames[:, None]
    rows = []
    utt = utt_of[frames]
    bounds = np.flatnonzero(np.diff(utt)) + 1
    for chunk in np.split(frames, bounds):
        m = (chunk.size // k) * k
        if m:
            rows.append(chunk[:m].reshape(-1, k))
    return np.concatenate(rows) if rows else np.zeros((0, k), np.int64)


def _prepare_frames(task: Task, ds: Any, options: PrepareOptions) -> TaskData:
    if not _frames_available(ds):
        raise TaskError(
            f"task {task.name!r} needs frame features, but store {store_name(ds)!r} was "
            f"extracted with frames_mode={ds.attrs.get('frames_mode', 'none')!r}; re-extract with frames"
        )
    utt_of = np.asarray(ds["utt_index"].values, np.int64)
    rng = np.random.default_rng(options.seed)
    if task.label == "phone":
        phone = _coord(ds, "phone")
        if phone is None or not (phone >= 0).any():
            raise _missing(task, ds, "frame label 'phone'")
        from deepwide.store import phone_set_of

        phone_set = phone_set_of(ds)  # refuses labels outside the phone set (one-line StoreError)
        n_ph = len(phone_set)
        valid = (phone >= 0) & (phone < n_ph)
        if not options.include_silence:
            sil_ids = [i for i, p in enumerate(phone_set) if p.lower() in SILENCE_SYMBOLS]
            valid &= ~np.isin(phone, sil_ids)
        names = np.array(phone_set + [""], dtype=object)
        frame_labels = names[np.where(valid, phone, n_ph).astype(np.int64)]
        utt_code = _utterance_selection(task, ds, np.full(ds.sizes["utt"], "x", dtype=object), options)
    else:  # speaker from frames: the sid utterances
        speakers = _strings(_coord(ds, "speaker"))
        if speakers is None:
            raise _missing(task, ds, "utterance coordinate 'speaker'")
        utt_code = _utterance_selection(task, ds, speakers, options)
        frame_labels = speakers[utt_of]
    frame_code = np.where(frame_labels != "", utt_code[utt_of], -1)
    train = _sample_train_frames(np.flatnonzero(frame_code == 0), options.max_train_frames, rng)
    if train.size == 0:
        raise TaskError(f"task {task.name!r}: store {store_name(ds)!r} has no labelled training frames")
    classes, y_all = _encode(frame_labels, np.isin(np.arange(frame_labels.size), train), task, ds)
    splits = []
    for i, frames in enumerate(
        [train]
        + [_sample_eval_utts(np.flatnonzero(frame_code == c), utt_of, options.max_eval_frames, rng) for c in (1, 2)]
    ):
        rows = _segments(frames, utt_of, options.segment_frames if task.name == "sid-frame" else 1)
        if i == 2 and rows.shape[0] == 0:
            raise TaskError(f"task {task.name!r}: store {store_name(ds)!r} has no labelled test frames")
        splits.append(SplitData(rows=rows, labels=y_all[rows[:, 0]], groups=utt_of[rows[:, 0]]))
    return TaskData(task, classes, *splits, source="hidden")


# ---------------------------------------------------------------- sequence tasks
def _whole_utterances(utts: np.ndarray, n_frames: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    """Whole utterances of ``utts`` in random order until ``cap`` frames (at least one); sorted."""
    if n_frames[utts].sum() <= cap:
        return utts
    order = rng.permutation(utts)
    keep = max(1, int(np.searchsorted(np.cumsum(n_frames[order]), cap, side="right")))
    return np.sort(order[:keep])


#: Characters of the ``asr`` task (lower-cased text; anything else becomes a word break).
ASR_ALPHABET = tuple(" '" + "abcdefghijklmnopqrstuvwxyz")


def normalise_text(text: str) -> str:
    """Lower-case, letters and apostrophes only, single spaces: what ``asr`` transcribes."""
    kept = "".join(c if c in ASR_ALPHABET else " " for c in text.lower())
    return " ".join(kept.split())


#: ``pr`` vocabulary of a store whose phones came from a lexicon (attr ``phone_source``, keyed
#: by its ``stress``): SUPERB PR's fixed ARPAbet inventory, so that every store of a corpus
#: shares it (69 stressed phones; 39 without stress). SIL/SPN are silence, never targets.
PR_LEXICON_VOCABULARY: dict[bool, tuple[str, ...]] = {True: ARPABET_STRESSED, False: ARPABET_PLAIN}


def _phone_targets(task: Task, ds: Any) -> tuple[list[str], list[np.ndarray]]:
    seqs = _strings(_coord(ds, "phones"))
    if seqs is None or not (seqs != "").any():
        raise _missing(task, ds, "phone sequences (utterance coordinate 'phones', written by "
                       "`deepwide extract` from the corpus's phone segments or, without them, from its "
                       "transcripts through a pronunciation lexicon; re-extract older stores)")
    from deepwide.store import json_attr, phone_set_of

    vocabulary = [p for p in phone_set_of(ds) if p.lower() not in SILENCE_SYMBOLS]
    symbols = {p for text in seqs for p in text.split() if p.lower() not in SILENCE_SYMBOLS}
    source = json_attr(ds.attrs, "phone_source")
    where = "phone set"
    if not symbols <= set(vocabulary) and isinstance(source, dict):
        vocabulary = list(PR_LEXICON_VOCABULARY[bool(source.get("stress", True))])
        where = f"ARPAbet inventory ({len(vocabulary)} phones)"
    index = {p: i + 1 for i, p in enumerate(vocabulary)}
    unknown = symbols - set(index)
    if unknown:
        raise TaskError(
            f"task {task.name!r}: store {store_name(ds)!r} has phone sequences with symbols outside its "
            f"{where} ({', '.join(sorted(unknown)[:5])}); re-extract it from a consistent manifest"
        )
    return vocabulary, [np.array([index[p] for p in text.split() if p in index], np.int64) for text in seqs]


def _char_targets(task: Task, ds: Any) -> tuple[list[str], list[np.ndarray]]:
    texts = _strings(_coord(ds, "text"))
    if texts is None or not (texts != "").any():
        raise _missing(task, ds, "transcripts (utterance coordinate 'text')")
    index = {c: i + 1 for i, c in enumerate(ASR_ALPHABET)}
    return list(ASR_ALPHABET), [np.array([index[c] for c in normalise_text(t)], np.int64) for t in texts]


def _prepare_sequences(task: Task, ds: Any, options: PrepareOptions) -> SequenceData:
    mode = str(ds.attrs.get("frames_mode", "none"))
    if mode != "all" or not _frames_available(ds):
        raise TaskError(
            f"task {task.name!r} needs every frame of each utterance, but store {store_name(ds)!r} was "
            f"extracted with --frames {mode}; re-extract it with `deepwide extract --frames all`"
        )
    vocabulary, targets = (_phone_targets if task.label == "phones" else _char_targets)(task, ds)
    has = np.array([len(t) > 0 for t in targets])
    code = _utterance_selection(task, ds, np.where(has, "x", "").astype(object), options)
    n_frames = np.asarray(ds["n_stored"].values, np.int64)
    offset = np.asarray(ds["frame_offset"].values, np.int64)
    rng = np.random.default_rng(options.seed)
    caps = (options.max_train_frames, options.max_eval_frames, options.max_eval_frames)
    splits = []
    for c, cap in enumerate(caps):
        utts = _whole_utterances(np.flatnonzero((code == c) & (n_frames > 0)), n_frames, cap, rng)
        splits.append(SequenceSplit(utts=utts, targets=tuple(targets[u] for u in utts)))
    if not len(splits[0]) or not len(splits[2]):
        raise TaskError(f"task {task.name!r}: store {store_name(ds)!r} has no labelled train or test utterances")
    return SequenceData(task, vocabulary, *splits, frame_offset=offset, n_frames=n_frames)


# ---------------------------------------------------------------- speaker verification
def _prepare_trials(task: Task, ds: Any, options: PrepareOptions) -> TrialData:
    trials = _trials(ds)
    if not trials:
        raise _missing(task, ds, "a speaker-verification trial list (attrs['trials'])")
    utt_ids = _strings(_coord(ds, "utt_id"))
    speakers = _strings(_coord(ds, "speaker"))
    if utt_ids is None or speakers is None:
        raise _missing(task, ds, "utterance coordinates 'utt_id' and 'speaker'")
    pos = {u: i for i, u in enumerate(utt_ids)}
    rows = [(pos.get(str(a)), pos.get(str(b)), bool(int(t))) for a, b, t in trials]
    kept = [(a, b, t) for a, b, t in rows if a is not None and b is not None]
    if len(kept) < len(rows):
        log.warning("task asv: %d trials name utterances missing from the store; skipped", len(rows) - len(kept))
    if not kept or len({t for _, _, t in kept}) < 2:
        raise TaskError(
            f"task 'asv': store {store_name(ds)!r} has no usable trials with both target and non-target pairs"
        )
    a, b, t = (np.array(v) for v in zip(*kept, strict=True))
    trial_spk = set(speakers[a]) | set(speakers[b])
    other = ~np.isin(speakers, list(trial_spk))
    sid = _strings(_coord(ds, "sid_split"))
    split = _strings(_coord(ds, "split"))
    lda = np.flatnonzero(other & (sid == "train")) if sid is not None else np.zeros(0, np.int64)
    if np.unique(speakers[lda]).size < 2 and split is not None:
        lda = np.flatnonzero(other & (split == "train"))
    a, b, t = a.astype(np.int64), b.astype(np.int64), t.astype(bool)
    n_spk = int(np.unique(speakers[lda]).size)
    most = int(np.unique(speakers[lda], return_counts=True)[1].max()) if lda.size else 0
    # an LDA needs 2 classes and more samples than classes, and some speaker with 3 or more
    # utterances: with at most 2 each, sklearn's per-class standardised Ledoit-Wolf estimate of
    # the within-speaker covariance is singular and its eigen solver fails
    if n_spk < 2 or lda.size <= n_spk or most < 3:
        # cosine scoring needs no back-end: centre on the training utterances outside the trial
        # list when there are any, else on every utterance outside it, else on all of them
        # (label-free statistics only)
        centre = lda if lda.size else np.flatnonzero(other)
        where = "training utterances outside the trial list"
        if not lda.size:
            where = "utterances outside the trial list"
        if not centre.size:
            centre, where = np.arange(speakers.size), "all utterances (none lie outside the trial list)"
        why = (f"{n_spk} training speaker(s) outside the trial list, fewer than the 2 an LDA needs" if n_spk < 2
               else f"{lda.size} training utterances of {n_spk} speakers outside the trial list, too few for an "
                    f"LDA (it needs more utterances than speakers)" if lda.size <= n_spk
               else f"{lda.size} training utterances of {n_spk} speakers outside the trial list, at most {most} per "
                    f"speaker, too few for an LDA (it needs a speaker with 3 or more)")
        log.warning("task asv: store %r has %s; scoring with plain cosine (backend 'cosine', centred on %d %s)",
                    store_name(ds), why, centre.size, where)
        empty = np.zeros(0, np.int64)
        return TrialData(task, a, b, t, empty, empty, backend="cosine", centre_utts=centre.astype(np.int64))
    _, spk_idx = np.unique(speakers[lda], return_inverse=True)
    return TrialData(task, a, b, t, lda, spk_idx.astype(np.int64), backend="lda", centre_utts=lda)


def _register(task: Task) -> None:
    TASKS.add(task.name, task)


_register(Task("phone", "frame", "content", "accuracy", "phone", "split",
               "phone of each frame (silence excluded), speaker-disjoint splits",
               speaker_disjoint=True, prepare_fn=_prepare_frames))
_register(Task("ks", "utterance", "content", "accuracy", "keyword", "split",
               "keyword spotting on kind=='keyword' utterances, speaker-disjoint splits",
               utt_kinds=("keyword",), speaker_disjoint=True, prepare_fn=_prepare_utterance))
_register(Task("ic", "utterance", "content", "accuracy", "intent", "split",
               "intent of kind=='command' utterances, speaker-disjoint splits",
               utt_kinds=("command",), speaker_disjoint=True, prepare_fn=_prepare_utterance))
_register(Task("sid", "utterance", "speaker", "accuracy", "speaker", "sid_split",
               "closed-set speaker ID on pooled utterances (same speakers, disjoint utterances)",
               prepare_fn=_prepare_utterance))
_register(Task("sid-frame", "frame", "speaker", "accuracy", "speaker", "sid_split",
               "speaker ID from single frames (or K-frame segments) of the sid utterances",
               prepare_fn=_prepare_frames))
_register(Task("asv", "utterance", "speaker", "eer", "trials", "split",
               "speaker verification EER on the trial list (cosine, and cosine after LDA)",
               prepare_fn=_prepare_trials))
_register(Task("pr", "sequence", "content", "per", "phones", "split",
               "phone recognition (SUPERB PR): linear CTC heads on every frame, greedy decoding, PER",
               speaker_disjoint=True, prepare_fn=_prepare_sequences))
_register(Task("asr", "sequence", "content", "wer", "text", "split",
               "speech recognition (SUPERB ASR): character CTC heads, greedy decoding, WER (and CER)",
               speaker_disjoint=True, prepare_fn=_prepare_sequences))
_register(Task("er", "utterance", "speaker", "accuracy", "emotion", "split",
               "emotion recognition on utterances with an emotion label (corpus splits; every fold of "
               "a store with folds, e.g. IEMOCAP's five sessions: mean and spread)",
               cross_validated=True, prepare_fn=_prepare_utterance))
