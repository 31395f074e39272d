"""Held-out distillation loss and the plateau rule (#19): never trained on, logged, finite, exact."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from deepwide.corpora import Manifest
from deepwide.distill import data as data_mod
from deepwide.distill.config import make_config
from deepwide.distill.data import CropSpec, split_heldout
from deepwide.distill.metrics import is_plateaued, plateau_fall, read_heldout
from deepwide.distill.trainer import read_metrics, read_result, train_student
from deepwide.errors import ConfigError
from tests.distill.conftest import base_options, write_corpus, write_target_store


def _spec(seed: int = 0) -> CropSpec:
    return CropSpec(batch_seconds=3.0, max_crop_seconds=1.0, min_utt_seconds=0.25, seed=seed)


def _train_manifest(corpus_dir: Path) -> Manifest:
    m = Manifest.load(corpus_dir)
    return dataclasses.replace(m, utterances=[u for u in m if u.split == "train"], trials=[])


def test_the_heldout_split_is_seed_independent_disjoint_and_capped(tmp_path) -> None:
    manifest = write_corpus(tmp_path / "c", n=40)
    train_only = dataclasses.replace(manifest, utterances=[u for u in manifest if u.split == "train"], trials=[])
    train, held = split_heldout(train_only, _spec(0), 0.05, 64)
    assert held is not None and len(held.utterances) == 2  # ⌊0.05 · 40⌋
    assert {u.utt_id for u in held} == {u.utt_id for u in split_heldout(train_only, _spec(7), 0.05, 64)[1]}
    assert not {u.utt_id for u in held} & {u.utt_id for u in train}
    assert len(train.utterances) + len(held.utterances) == len(train_only.utterances)
    assert len(split_heldout(train_only, _spec(), 0.5, 3)[1].utterances) == 3  # the cap
    assert len(split_heldout(train_only, _spec(), 0.001, 64)[1].utterances) == 1  # at least one
    assert split_heldout(train_only, _spec(), 0.0, 64)[1] is None


def test_heldout_utterances_never_reach_a_training_batch(tmp_path, teacher_dir, corpus_dir, monkeypatch) -> None:
    cfg = make_config(**base_options(teacher_dir, corpus_dir, steps=12, heldout_fraction=0.2))
    _, held = split_heldout(_train_manifest(corpus_dir), _spec(), cfg.heldout_fraction, cfg.heldout_max_utts)
    assert held is not None and len(held.utterances) == 2
    trained, evaluated = set(), set()
    real = data_mod.CropBatches.__getitem__

    def spy(self, g):
        batch = real(self, g)
        ids = {self.utts[int(i)].utt_id for i in batch["utt_index"]}
        (trained if torch.is_grad_enabled() else evaluated).update(ids)
        return batch

    monkeypatch.setattr(data_mod.CropBatches, "__getitem__", spy)
    train_student(cfg, tmp_path / "run", progress=False)
    assert evaluated == {u.utt_id for u in held}
    assert trained and not trained & evaluated


def test_heldout_loss_is_logged_finite_and_reproducible(tmp_path, teacher_dir, corpus_dir) -> None:
    cfg = make_config(**base_options(teacher_dir, corpus_dir, steps=20, log_every=5))
    assert cfg.eval_steps == 2
    result = train_student(cfg, tmp_path / "a", progress=False)
    curve = read_heldout(tmp_path / "a")
    assert [r["step"] for r in curve] == list(range(2, 21, 2))
    losses = [r["heldout_loss"] for r in curve]
    assert all(math.isfinite(x) and x > 0 for x in losses)
    assert losses[-1] < losses[0]  # it learns, on utterances it never trained on
    assert len(read_metrics(tmp_path / "a")) == 4  # training lines only
    assert result.heldout_loss == losses[-1]
    assert result.plateau_fall == pytest.approx(plateau_fall(losses))
    assert result.plateaued == is_plateaued(result.plateau_fall, cfg.plateau_threshold)
    summary = json.loads((tmp_path / "a" / "distill.json").read_text())["result"]
    assert summary["heldout_loss"] == losses[-1] and summary["plateaued"] == result.plateaued
    assert read_result(tmp_path / "a") == result

    again = train_student(cfg, tmp_path / "b", progress=False)
    assert [r["heldout_loss"] for r in read_heldout(tmp_path / "b")] == losses
    assert again.heldout_loss == result.heldout_loss


def test_heldout_loss_with_stored_teacher_targets(tmp_path, teacher_dir, corpus_dir) -> None:
    from deepwide.models import load_model

    store = write_target_store(load_model(str(teacher_dir)), _train_manifest(corpus_dir), tmp_path / "targets")
    cfg = make_config(**base_options(teacher_dir, corpus_dir, steps=6, teacher_targets=str(store), eval_every=3))
    result = train_student(cfg, tmp_path / "run", progress=False)
    curve = read_heldout(tmp_path / "run")
    assert [r["step"] for r in curve] == [3, 6]
    assert all(math.isfinite(r["heldout_loss"]) for r in curve)
    assert math.isnan(result.plateau_fall) and not result.plateaued  # two evaluations cannot tell


def test_no_heldout_fraction_means_no_evaluation(tmp_path, teacher_dir, corpus_dir) -> None:
    cfg = make_config(**base_options(teacher_dir, corpus_dir, steps=4, heldout_fraction=0.0))
    result = train_student(cfg, tmp_path / "run", progress=False)
    assert read_heldout(tmp_path / "run") == []
    assert math.isnan(result.heldout_loss) and not result.plateaued


def test_a_summary_from_before_the_heldout_loss_still_reads(tmp_path, teacher_dir, corpus_dir) -> None:
    cfg = make_config(**base_options(teacher_dir, corpus_dir, steps=2))
    train_student(cfg, tmp_path / "run", progress=False)
    path = tmp_path / "run" / "distill.json"
    data = json.loads(path.read_text())
    for key in ("heldout_loss", "plateau_fall", "plateaued"):
        del data["result"][key]
    path.write_text(json.dumps(data))
    old = read_result(tmp_path / "run")
    assert old is not None and math.isnan(old.heldout_loss) and not old.plateaued


def test_plateau_rule_on_fabricated_curves() -> None:
    # ten evaluations: the last max(3, 10 // 4 + 1) = 3 decide, from the 8th to the 10th
    still_falling = [10, 8, 6, 5, 4, 3.5, 3.2, 3.0, 2.9, 2.8]
    assert plateau_fall(still_falling) == pytest.approx((3.0 - 2.8) / 3.0)
    assert not is_plateaued(plateau_fall(still_falling), 0.01)
    flat = [10, 8, 6, 5, 4, 3.5, 3.2, 3.0, 2.99, 2.985]
    assert plateau_fall(flat) == pytest.approx(0.015 / 3.0)
    assert is_plateaued(plateau_fall(flat), 0.01)
    assert not is_plateaued(plateau_fall(flat), 0.001)  # the threshold is the config's
    rising = [5, 4, 3, 3.1, 3.2]
    assert plateau_fall(rising) < 0 and is_plateaued(plateau_fall(rising), 0.01)
    # forty evaluations: the last 11 (a quarter of the intervals) decide
    long = [1.0 / (1 + i) for i in range(40)]
    assert plateau_fall(long) == pytest.approx((long[29] - long[39]) / long[29])
    # fewer than three evaluations never count as trained
    assert math.isnan(plateau_fall([2.0, 2.0])) and not is_plateaued(plateau_fall([2.0, 2.0]), 0.01)
    assert math.isnan(plateau_fall([]))


@pytest.mark.parametrize("bad", [dict(eval_every=-1), dict(heldout_fraction=0.6), dict(heldout_max_utts=0),
                                 dict(plateau_threshold=0.0)])
def test_heldout_settings_are_validated(teacher_dir, corpus_dir, bad) -> None:
    with pytest.raises(ConfigError, match=next(iter(bad))):
        make_config(**base_options(teacher_dir, corpus_dir, **bad))
