"""The manifest of a generated corpus: utterance rows from the plans and what rendering measured,
the speaker-ID split, the verification trials and the generator's metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from deepwide.config import config_hash, config_to_dict
from deepwide.corpora.manifest import Manifest, Trial, Utterance
from deepwide.corpora.phones import PHONE_SET
from deepwide.corpora.synth.config import SAMPLE_RATE, SynthConfig
from deepwide.corpora.synth.plans import UttPlan
from deepwide.corpora.synth.rendering import Rendered
from deepwide.corpora.synth.seeds import seeded_rng
from deepwide.corpora.synth.speakers import Speaker
from deepwide.corpora.synth.speech import ESPEAK_RATE
from deepwide.corpora.synth.texts import INTENTS, KEYWORD_CLASSES


def _sec(samples: int) -> float:
    return samples / SAMPLE_RATE


def build_manifest(
    config: SynthConfig,
    seed: int,
    speakers: list[Speaker],
    plans: list[UttPlan],
    rendered: list[Rendered],
    root: Path,
) -> Manifest:
    split_of = {s.speaker_id: s.split for s in speakers}
    sid_of = _sid_splits(config, plans, seed)
    utts = []
    for plan, r in zip(plans, rendered, strict=True):
        assert plan.utt_id == r.utt_id
        utts.append(
            Utterance(
                utt_id=plan.utt_id,
                path=plan.rel_path,
                speaker=plan.speaker,
                split=split_of[plan.speaker],
                duration_s=_sec(r.n_samples),
                kind=plan.kind,
                sid_split=sid_of.get(plan.utt_id),
                text=plan.text,
                keyword=plan.keyword,
                intent=plan.intent,
                phones=tuple((p, _sec(a), _sec(b)) for p, a, b in r.phones),
                words=tuple((w, _sec(a), _sec(b)) for w, a, b in r.words),
            )
        )
    trials = _make_trials(config, utts, seed)
    chash = config_hash(config)
    meta: dict[str, Any] = {
        "generator": "deepwide.corpora.synth",
        "config": config_to_dict(config),
        "config_hash": chash,
        "seed": seed,
        "sample_rate": SAMPLE_RATE,
        "source_sample_rate": ESPEAK_RATE,
        "phone_set_name": "timit39",
        "keyword_classes": list(KEYWORD_CLASSES),
        "intents": list(INTENTS),
        "speakers": {
            s.speaker_id: {
                "variant": s.variant, "pitch": s.pitch, "pitch_range": s.pitch_range,
                "rate": s.rate, "formant": s.formant, "split": s.split,
                "formants": [list(f) for f in s.formants],
            }
            for s in speakers
        },
        "sid_speakers": "all",
    }
    return Manifest(
        corpus_id=f"synth-{chash}-seed{seed}",
        root=root,
        utterances=utts,
        phone_set=PHONE_SET,
        trials=trials,
        meta=meta,
    )


def _sid_splits(config: SynthConfig, plans: list[UttPlan], seed: int) -> dict[str, str]:
    """Per-speaker split of the sentence utterances for speaker identification."""
    by_spk: dict[str, list[str]] = {}
    for p in plans:
        if p.kind == "sentence":
            by_spk.setdefault(p.speaker, []).append(p.utt_id)
    out: dict[str, str] = {}
    for si, (_spk, ids) in enumerate(sorted(by_spk.items())):
        n = len(ids)
        n_test = max(1, round(n * config.sid_fractions[2])) if n >= 2 else 0
        n_dev = round(n * config.sid_fractions[1]) if n - n_test >= 2 else 0
        order = seeded_rng(seed, 3, si).permutation(n)
        for rank, k in enumerate(order):
            out[ids[int(k)]] = "test" if rank < n_test else "dev" if rank < n_test + n_dev else "train"
    return out


def _make_trials(config: SynthConfig, utts: list[Utterance], seed: int) -> list[Trial]:
    """Target and non-target pairs among the test speakers' sentences (equal numbers, capped)."""
    pool = [u for u in utts if u.split == "test" and u.kind == "sentence"]
    by_spk: dict[str, list[str]] = {}
    for u in pool:
        by_spk.setdefault(u.speaker, []).append(u.utt_id)
    rng = seeded_rng(seed, 4)
    targets = [(a, b) for ids in by_spk.values() for i, a in enumerate(ids) for b in ids[i + 1 :]]
    if len(targets) > config.max_trials:
        keep = np.sort(rng.choice(len(targets), config.max_trials, replace=False))
        targets = [targets[int(k)] for k in keep]
    spk_of = {u.utt_id: u.speaker for u in pool}
    ids = [u.utt_id for u in pool]
    n_non = min(max(len(targets), 1), config.max_trials)
    seen: set[tuple[str, str]] = set()
    non: list[tuple[str, str]] = []
    attempts = 0
    while len(non) < n_non and attempts < 100 * n_non and len(by_spk) >= 2:
        attempts += 1
        i, j = (int(x) for x in rng.integers(len(ids), size=2))
        a, b = sorted((ids[i], ids[j]))
        if spk_of[a] != spk_of[b] and (a, b) not in seen:
            seen.add((a, b))
            non.append((a, b))
    trials = [Trial(a, b, True) for a, b in targets] + [Trial(a, b, False) for a, b in non]
    order = rng.permutation(len(trials))
    return [trials[int(k)] for k in order]
