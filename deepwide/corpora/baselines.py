"""Reference baselines that say how hard a corpus is, before any model is involved.

- **Speaker ID from MFCC means** and **from log-mel means**: one vector per utterance (the
  mean over its frames of 20 MFCCs from 40 mel bands, or of 80 log-mel energies), a
  standardised multinomial logistic regression trained on ``sid_split == "train"``, its
  inverse regularisation ``C`` chosen on ``dev``, accuracy on ``test``.
- **Frame phone accuracy from MFCCs**: 20 MFCCs per 25 ms frame at the models' 50 Hz rate,
  labelled with the phone at the frame centre, a standardised logistic regression trained on
  frames of ``split == "train"`` utterances and scored on ``split == "test"`` (speaker-disjoint),
  with ``C`` chosen on ``dev``.

These are the "how much is in the raw signal" numbers that probes of learnt representations
are read against; the synthetic corpus is calibrated with them (docs/corpus.md).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from deepwide.corpora.manifest import SPLITS, Manifest, Utterance
from deepwide.framing import FRAME_WINDOW, SAMPLE_RATE, mfcc_transform, phone_labels
from deepwide.system import torch_threads

log = logging.getLogger(__name__)

C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)


@dataclass(frozen=True)
class BaselineResult:
    """One baseline's score.

    Attributes:
        name: ``sid_mfcc_mean``, ``sid_logmel_mean`` or ``phone_mfcc_frame``.
        accuracy: fraction correct on the test part (a similarity-like score: 1.0 is perfect).
        chance: accuracy of always predicting the most frequent training class.
        n_train, n_test: samples (utterances or frames) used to train and to test.
        n_classes: classes seen in training.
        c: the regularisation chosen on dev.
        split: which manifest field and values gave train/dev/test.
        skipped: a reason when the corpus cannot serve this baseline (then accuracy is NaN).
    """

    name: str
    accuracy: float
    chance: float
    n_train: int
    n_test: int
    n_classes: int
    c: float
    split: str
    skipped: str | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _skipped(name: str, split: str, reason: str) -> BaselineResult:
    nan = float("nan")
    return BaselineResult(name, nan, nan, 0, 0, 0, nan, split, skipped=reason)


class _Features:
    """MFCC and log-mel extractors (torchaudio), built once."""

    def __init__(self) -> None:
        import torchaudio

        self.mfcc_utt = mfcc_transform(20, hop_length=160, center=True)
        self.mfcc_frame = mfcc_transform(20)
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE, n_fft=FRAME_WINDOW, win_length=FRAME_WINDOW, hop_length=160, n_mels=80
        )

    def utterance_means(self, wav: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(mfcc mean (20,), log-mel mean (80,))`` of ``wav`` (S,) at 16 kHz."""
        import torch

        x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))
        with torch.no_grad():
            mfcc = self.mfcc_utt(x).mean(dim=-1)
            logmel = torch.log(self.mel(x) + 1e-6).mean(dim=-1)
        return mfcc.numpy().astype(np.float64), logmel.numpy().astype(np.float64)

    def frames(self, wav: np.ndarray) -> np.ndarray:
        """MFCC frames ``(T, 20)``; frame ``t`` spans samples ``[320 t, 320 t + 400)``."""
        import torch

        if len(wav) < FRAME_WINDOW:
            return np.zeros((0, 20))
        x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))
        with torch.no_grad():
            return self.mfcc_frame(x).T.numpy().astype(np.float64)


def _fit_select(
    x_tr: np.ndarray, y_tr: np.ndarray, x_dev: np.ndarray, y_dev: np.ndarray, seed: int
) -> tuple[object, float]:
    """Standardised logistic regression; ``C`` from :data:`C_GRID` by dev accuracy.

    Ties (common on small dev sets) are broken by the dev log-likelihood of the true class.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    best, best_c, best_score = None, C_GRID[0], (-1.0, -np.inf)
    for c in C_GRID:
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000, random_state=seed))
        # small problems: one BLAS/OpenMP thread is far faster than several contending ones
        with threadpool_limits(1):
            clf.fit(x_tr, y_tr)
        acc = float(np.mean(clf.predict(x_dev) == y_dev))
        proba = clf.predict_proba(x_dev)
        col = {k: i for i, k in enumerate(clf.classes_)}
        p_true = np.array([proba[i, col[y]] if y in col else 0.0 for i, y in enumerate(y_dev)])
        score = (acc, float(np.mean(np.log(np.maximum(p_true, 1e-12)))))
        if score > best_score:
            best, best_c, best_score = clf, c, score
    return best, best_c


def _chance(y_tr: np.ndarray, y_te: np.ndarray) -> float:
    values, counts = np.unique(y_tr, return_counts=True)
    return float(np.mean(y_te == values[np.argmax(counts)]))


def speaker_id_baselines(manifest: Manifest, *, seed: int = 0) -> list[BaselineResult]:
    """Speaker ID from MFCC means and from log-mel means (see module docstring).

    Returns:
        ``[sid_mfcc_mean, sid_logmel_mean]`` results (skipped when no ``sid_split`` exists).
    """
    from deepwide.audio import load_audio

    split = "sid_split train→C on dev→test"
    utts = [u for u in manifest if u.sid_split is not None]
    parts = {s: [u for u in utts if u.sid_split == s] for s in ("train", "dev", "test")}
    if not parts["train"] or not parts["test"]:
        reason = "the corpus has no speaker-ID split (sid_split)"
        return [_skipped("sid_mfcc_mean", split, reason), _skipped("sid_logmel_mean", split, reason)]
    feats = _Features()
    cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    with torch_threads(1):  # short clips gain nothing from more
        for u in _progress(utts, "sid baseline features"):
            cache[u.utt_id] = feats.utterance_means(load_audio(manifest.audio_path(u), expected_s=u.duration_s))
    results = []
    for k, name in enumerate(("sid_mfcc_mean", "sid_logmel_mean")):
        xs = {s: np.stack([cache[u.utt_id][k] for u in p]) if p else np.zeros((0, 1)) for s, p in parts.items()}
        ys = {s: np.array([u.speaker for u in p]) for s, p in parts.items()}
        dev_x, dev_y = (xs["dev"], ys["dev"]) if len(ys["dev"]) else (xs["train"], ys["train"])
        clf, c = _fit_select(xs["train"], ys["train"], dev_x, dev_y, seed)
        acc = float(np.mean(clf.predict(xs["test"]) == ys["test"]))  # type: ignore[attr-defined]
        results.append(BaselineResult(
            name, acc, _chance(ys["train"], ys["test"]), len(ys["train"]), len(ys["test"]),
            len(set(ys["train"])), c, split,
        ))
    return results


def phone_baseline(
    manifest: Manifest, *, seed: int = 0, max_train_frames: int = 40_000, max_eval_frames: int = 20_000
) -> BaselineResult:
    """Frame phone accuracy from single-frame MFCCs (see module docstring).

    Args:
        manifest: a corpus with phone segments and a content split.
        seed: frame subsampling and classifier seed.
        max_train_frames, max_eval_frames: frames sampled (uniformly) from train and from each
            of dev/test, to bound the cost.
    """
    from deepwide.audio import load_audio

    split = "split train→C on dev→test (speaker-disjoint)"
    name = "phone_mfcc_frame"
    if not manifest.phone_set:
        return _skipped(name, split, "the corpus has no phone set / phone segments")
    utts = [u for u in manifest if u.phones and (u.kind == "sentence" or u.kind is None)]
    if not any(u.split == "train" for u in utts) or not any(u.split == "test" for u in utts):
        return _skipped(name, split, "the corpus has no phone-labelled train and test utterances")
    feats = _Features()
    phone_index = {p: i for i, p in enumerate(manifest.phone_set)}
    data: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {s: ([], []) for s in ("train", "dev", "test")}
    with torch_threads(1):  # short clips gain nothing from more
        for u in _progress(utts, "phone baseline features"):
            x = feats.frames(load_audio(manifest.audio_path(u), expected_s=u.duration_s))
            y = phone_labels(u.phones, len(x), phone_index).astype(np.int64)
            keep = y >= 0
            data[u.split][0].append(x[keep])
            data[u.split][1].append(y[keep])
    rng = np.random.default_rng(seed)

    def take(s: str, limit: int) -> tuple[np.ndarray, np.ndarray]:
        if not data[s][0]:
            return np.zeros((0, 20)), np.zeros(0, np.int64)
        x, y = np.concatenate(data[s][0]), np.concatenate(data[s][1])
        if len(y) > limit:
            idx = np.sort(rng.choice(len(y), limit, replace=False))
            x, y = x[idx], y[idx]
        return x, y

    x_tr, y_tr = take("train", max_train_frames)
    x_dev, y_dev = take("dev", max_eval_frames)
    x_te, y_te = take("test", max_eval_frames)
    if not len(y_dev):
        x_dev, y_dev = x_tr, y_tr
    clf, c = _fit_select(x_tr, y_tr, x_dev, y_dev, seed)
    acc = float(np.mean(clf.predict(x_te) == y_te))  # type: ignore[attr-defined]
    return BaselineResult(name, acc, _chance(y_tr, y_te), len(y_tr), len(y_te), len(set(y_tr.tolist())), c, split)


def run_baselines(manifest: Manifest, *, seed: int = 0) -> list[BaselineResult]:
    """All three baselines on ``manifest`` (each skipped with a reason if it cannot run)."""
    return [*speaker_id_baselines(manifest, seed=seed), phone_baseline(manifest, seed=seed)]


def _progress(items: list[Utterance], desc: str):  # type: ignore[no-untyped-def]
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="utt", disable=None, leave=False)


# -- corpus description (what `deepwide corpus info` prints) -----------------------------------
def describe_corpus(manifest: Manifest) -> dict[str, Any]:
    """Counts and label sets of a corpus, as a JSON-able dict.

    Keys: ``corpus_id``, ``root``, ``utterances``, ``hours``, ``speakers``, ``kinds``
    (utterances per kind), ``splits`` (utterances and speakers per content split),
    ``sid_splits`` (utterances per speaker-ID split), ``phone_set_size``,
    ``with_phones`` / ``with_words`` (utterances carrying segments), ``label_sets``,
    ``trials`` (total, target, non-target, speakers).
    """
    utts = manifest.utterances
    splits: dict[str, dict[str, int]] = {}
    for s in SPLITS:
        part = [u for u in utts if u.split == s]
        splits[s] = {"utterances": len(part), "speakers": len({u.speaker for u in part})}
    sid = Counter(u.sid_split for u in utts if u.sid_split is not None)
    by_id = manifest.by_id()
    n_target = sum(t.target for t in manifest.trials)
    trial_speakers = {by_id[x].speaker for t in manifest.trials for x in (t.utt_a, t.utt_b) if x in by_id}
    return {
        "corpus_id": manifest.corpus_id,
        "root": str(manifest.root),
        "utterances": len(utts),
        "hours": sum(u.duration_s for u in utts) / 3600,
        "speakers": len({u.speaker for u in utts}),
        "kinds": dict(sorted(Counter(u.kind for u in utts).items())),
        "splits": splits,
        "sid_splits": {s: sid.get(s, 0) for s in SPLITS},
        "sid_speakers": len({u.speaker for u in utts if u.sid_split is not None}),
        "phone_set_size": len(manifest.phone_set),
        "with_phones": sum(1 for u in utts if u.phones),
        "with_words": sum(1 for u in utts if u.words),
        "label_sets": manifest.label_sets(),
        "trials": {
            "total": len(manifest.trials),
            "target": n_target,
            "nontarget": len(manifest.trials) - n_target,
            "speakers": len(trial_speakers),
        },
    }


_BASELINE_TITLES = {
    "sid_mfcc_mean": "speaker ID, MFCC means",
    "sid_logmel_mean": "speaker ID, log-mel means",
    "phone_mfcc_frame": "frame phones, MFCC frames",
}


def format_description(d: dict[str, Any]) -> str:
    """Human-readable text of :func:`describe_corpus` (plus ``baselines`` when present)."""
    kinds = ", ".join(f"{k} {n}" for k, n in d["kinds"].items())
    sp = d["splits"]
    lines = [
        f"corpus          {d['corpus_id']}",
        f"root            {d['root']}",
        f"utterances      {d['utterances']}  ({kinds})",
        f"hours           {d['hours']:.2f}",
        f"speakers        {d['speakers']}",
        "splits          " + " / ".join(
            f"{s} {sp[s]['utterances']} utts, {sp[s]['speakers']} spk" for s in SPLITS
        ),
        "sid split       " + " / ".join(f"{s} {d['sid_splits'][s]}" for s in SPLITS)
        + f"  ({d['sid_speakers']} speakers)",
        f"phone set       {d['phone_set_size']} phones; phone segments in {d['with_phones']} utts, "
        f"word segments in {d['with_words']}",
    ]
    for name, values in d["label_sets"].items():
        shown = ", ".join(values[:12]) + (", …" if len(values) > 12 else "")
        lines.append(f"{name + ' labels':<16}{len(values)}: {shown}")
    t = d["trials"]
    lines.append(
        f"trials          {t['total']} ({t['target']} target, {t['nontarget']} non-target) "
        f"over {t['speakers']} speakers"
    )
    for r in d.get("baselines", []):
        title = _BASELINE_TITLES.get(r["name"], r["name"])
        if r.get("skipped"):
            lines.append(f"baseline        {title}: skipped ({r['skipped']})")
        else:
            lines.append(
                f"baseline        {title}: {100 * r['accuracy']:.1f} % "
                f"(chance {100 * r['chance']:.1f} %, {r['n_classes']} classes, "
                f"{r['n_train']} train / {r['n_test']} test, C={r['c']:g})"
            )
    return "\n".join(lines)
