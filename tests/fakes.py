"""Tiny, schema-conformant feature stores built in code, with planted structure.

Probing, analysis and figure tests use these instead of running a model: speaker identity is
planted strongly in the low layers and fades with depth, phone identity grows with depth, so
tests can assert *where* information sits, not just shapes. The schema is the one in
../shared/ARCHITECTURE.md and ``deepwide.store``; :func:`write_fake_store` writes it to Zarr.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

PHONES = tuple(f"p{i}" for i in range(8)) + ("sil",)
KEYWORDS = ("yes", "no", "up", "down")
INTENTS = ("activate_lights", "deactivate_lights", "increase_volume")


def fake_feature_dataset(
    *,
    n_speakers: int = 12,
    utts_per_speaker: int = 8,
    num_layers: int = 4,
    dim: int = 16,
    frames_per_utt: int = 30,
    seed: int = 0,
    model_id: str = "fake-model",
    speaker_strength: float = 2.0,
    phone_strength: float = 2.0,
    structure: bool = True,
    phone_sequences: bool = False,
    transcripts: bool = False,
) -> xr.Dataset:
    """Build an in-memory feature-store dataset.

    Layer ``l`` of ``L`` carries speaker signal × (1 − l/L) and phone signal × (l/L) (times the
    strengths) plus unit Gaussian noise; with ``structure=False`` every layer is pure noise
    (a stand-in for a random twin). With ``phone_sequences`` the store also carries the
    ``phones`` utterance coordinate (each utterance's 5-frame phone segments, in order), which
    the ``pr`` task reads; with ``transcripts``, ``text`` is one word spelling those segments
    with a letter each (``a`` for phone 0 …), which the ``asr`` task reads.

    Returns:
        ``xr.Dataset`` with ``hidden (layer, frame, feat)`` float32, ``pooled (layer, utt, feat)``
        float32, the utt/frame coordinates and the attrs of a complete store.
    """
    rng = np.random.default_rng(seed)
    speakers = [f"spk{i:03d}" for i in range(n_speakers)]
    n_utt = n_speakers * utts_per_speaker
    spk_vec = rng.normal(size=(n_speakers, dim))
    ph_vec = rng.normal(size=(len(PHONES), dim))
    # content split: speaker-disjoint (first 60 % train, 20 % dev, 20 % test)
    n_tr, n_dev = int(0.6 * n_speakers), int(0.2 * n_speakers)
    split_of_spk = ["train"] * n_tr + ["dev"] * n_dev + ["test"] * (n_speakers - n_tr - n_dev)
    sid_pattern = ["train"] * (utts_per_speaker - 2) + ["dev", "test"]

    utt_rows = []
    sequences, words = [], []
    hidden = np.zeros((num_layers + 1, n_utt * frames_per_utt, dim), np.float32)
    phone_lab = np.zeros(n_utt * frames_per_utt, np.int16)
    utt_index = np.repeat(np.arange(n_utt, dtype=np.int32), frames_per_utt)
    frame_index = np.tile(np.arange(frames_per_utt, dtype=np.int32), n_utt)
    for u in range(n_utt):
        s = u // utts_per_speaker
        j = u % utts_per_speaker
        seg = rng.integers(0, len(PHONES), size=frames_per_utt // 5 + 1)
        ph = np.repeat(seg, 5)[:frames_per_utt]
        sl = slice(u * frames_per_utt, (u + 1) * frames_per_utt)
        phone_lab[sl] = ph
        sequences.append(" ".join(PHONES[k] for k in seg[: -(-frames_per_utt // 5)]))
        words.append("".join(chr(ord("a") + int(k)) for k in seg[: -(-frames_per_utt // 5)]))
        for layer in range(num_layers + 1):
            depth = layer / num_layers
            x = rng.normal(size=(frames_per_utt, dim))
            if structure:
                x += speaker_strength * (1 - depth) * spk_vec[s] + phone_strength * depth * ph_vec[ph]
            hidden[layer, sl] = x
        utt_rows.append(
            dict(
                utt_id=f"{speakers[s]}-u{j:02d}",
                speaker=speakers[s],
                split=split_of_spk[s],
                sid_split=sid_pattern[j],
                kind=("sentence", "keyword", "command")[j % 3],
                keyword=KEYWORDS[j % len(KEYWORDS)] if j % 3 == 1 else "",
                intent=INTENTS[j % len(INTENTS)] if j % 3 == 2 else "",
            )
        )
    pooled = hidden.reshape(num_layers + 1, n_utt, frames_per_utt, dim).mean(axis=2)
    trials = []
    test_utts = [r["utt_id"] for r in utt_rows if r["split"] == "test"]
    for a in range(0, len(test_utts) - 1, 2):
        b = (a + 3) % len(test_utts)
        same = test_utts[a].split("-")[0] == test_utts[b].split("-")[0]
        trials.append([test_utts[a], test_utts[b], int(same)])
        trials.append([test_utts[a], test_utts[a + 1], int(test_utts[a].split("-")[0] == test_utts[a + 1].split("-")[0])])

    def col(name: str) -> np.ndarray:
        return np.array([r[name] for r in utt_rows], dtype=object)

    ds = xr.Dataset(
        data_vars={
            "hidden": (("layer", "frame", "feat"), hidden),
            "pooled": (("layer", "utt", "feat"), pooled.astype(np.float32)),
        },
        coords={
            "layer": np.arange(num_layers + 1),
            "utt_id": ("utt", col("utt_id")),
            "speaker": ("utt", col("speaker")),
            "split": ("utt", col("split")),
            "sid_split": ("utt", col("sid_split")),
            "kind": ("utt", col("kind")),
            "keyword": ("utt", col("keyword")),
            "intent": ("utt", col("intent")),
            "emotion": ("utt", np.full(n_utt, "", dtype=object)),
            "text": ("utt", np.array(words, dtype=object) if transcripts else np.full(n_utt, "", dtype=object)),
            **({"phones": ("utt", np.array(sequences, dtype=object))} if phone_sequences else {}),
            "n_frames": ("utt", np.full(n_utt, frames_per_utt, np.int64)),
            "n_stored": ("utt", np.full(n_utt, frames_per_utt, np.int64)),
            "frame_offset": ("utt", np.arange(n_utt, dtype=np.int64) * frames_per_utt),
            "utt_index": ("frame", utt_index),
            "frame_index": ("frame", frame_index),
            "phone": ("frame", phone_lab),
        },
        attrs={
            "schema_version": 1,
            "model_id": model_id,
            "model_config": json.dumps({"depth": num_layers, "width": dim}),
            "model_weights_hash": f"fake{seed}",
            "model_params": int(num_layers * dim * dim * 12),
            "num_layers": num_layers,
            "dim": dim,
            "corpus_id": "fake",
            "manifest_hash": "fake",
            "phone_set": json.dumps(list(PHONES)),
            "label_sets": json.dumps({"keyword": list(KEYWORDS), "intent": list(INTENTS)}),
            "trials": json.dumps(trials),
            "frame_rate_hz": 50.0,
            "dtype": "float32",
            "frames_mode": "all",
            "deepwide_version": "test",
            "completion": json.dumps({"complete": True, "shards": 1, "done": [0]}),
            "skipped": json.dumps([]),
            "extract_config": json.dumps(
                {"layers": list(range(num_layers + 1)), "frames": "all", "dtype": "float32",
                 "splits": None, "batch_seconds": 64.0, "seed": None, "on_bad_audio": "error"},
                sort_keys=True,
            ),
        },
    )
    return ds


def write_fake_store(path: str | Path, **kwargs: object) -> Path:
    """Write :func:`fake_feature_dataset` to a Zarr v3 store at ``path`` and return it."""
    ds = fake_feature_dataset(**kwargs)  # type: ignore[arg-type]
    ds.to_zarr(str(path), mode="w", consolidated=False, zarr_format=3)
    return Path(path)
