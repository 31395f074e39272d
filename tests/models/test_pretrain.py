"""The tiny-teacher recipe: targets, quality measures, a short run whose loss falls, resume."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from deepwide.framing import num_frames
from deepwide.models import load_model
from deepwide.models.pretrain import (
    PretrainConfig,
    cluster_quality,
    mfcc_features,
    pretrain_teacher,
    quick_config,
)


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory):
    from deepwide.corpora.synth import SynthConfig, generate_synth

    out = tmp_path_factory.mktemp("synth")
    cfg = replace(SynthConfig(), n_speakers=4, utts_per_speaker=6)
    return generate_synth(cfg, out, seed=0, workers=1)


def test_mfcc_features_on_model_grid_and_normalised() -> None:
    wav = np.random.default_rng(0).normal(size=16000).astype(np.float32)
    f = mfcc_features(wav)
    assert f.shape == (num_frames(16000), 39) == (49, 39)
    assert np.allclose(f.mean(0), 0, atol=1e-4) and np.allclose(f.std(0), 1, atol=1e-2)


def test_cluster_quality_known_values() -> None:
    phones = np.array([0, 0, 1, 1, 2, 2, -1])
    perfect = cluster_quality(np.array([5, 5, 3, 3, 1, 1, 0]), phones)
    assert perfect["phone_purity"] == pytest.approx(1.0) and perfect["pnmi"] == pytest.approx(1.0)
    one = cluster_quality(np.zeros(7, int), phones)
    assert one["phone_purity"] == pytest.approx(1 / 3) and one["pnmi"] == pytest.approx(0.0, abs=1e-12)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="multiple of heads"):
        PretrainConfig(width=250, heads=4)
    with pytest.raises(ValueError, match="contrastive_layer"):
        PretrainConfig(contrastive_weight=0.5, contrastive_layer=13)
    with pytest.raises(ValueError, match="contrastive_weight"):
        PretrainConfig(contrastive_weight=-1.0)


def test_augmented_halves_split_each_row_on_the_frame_grid() -> None:
    from deepwide.models.pretrain import augmented_halves

    torch.manual_seed(0)
    lengths = torch.tensor([48000, 20000, 400])
    wavs = torch.zeros(3, 48000)
    for b, n in enumerate(lengths.tolist()):
        wavs[b, :n] = 0.1 * torch.randn(n)
    halves, half_len = augmented_halves(wavs, lengths)
    assert halves.shape[0] == 6 and half_len.tolist()[4:] == [400, 400]  # a one-frame row: that frame twice
    for b, n in enumerate(lengths.tolist()[:2]):
        a, c = (num_frames(int(x)) for x in half_len[2 * b: 2 * b + 2])
        # two disjoint, consecutive frame ranges that cover the row, cut in its middle third
        assert a + c == num_frames(n) and num_frames(n) // 3 <= a <= 2 * num_frames(n) // 3 + 1
        for j in (2 * b, 2 * b + 1):
            assert torch.all(halves[j, int(half_len[j]):] == 0) and torch.isfinite(halves[j]).all()
    # each half has its own channel: the halves are filtered copies, not the raw samples
    first = halves[0, : int(half_len[0])]
    assert not torch.allclose(first, wavs[0, : len(first)], atol=1e-3)
    # every half draws its own channel: two identical rows give different first halves
    torch.manual_seed(1)
    same = (0.1 * torch.randn(1, 16000)).repeat(2, 1)
    h, _ = augmented_halves(same, torch.tensor([16000, 16000]))
    assert not torch.allclose(h[0, :400], h[2, :400], atol=1e-3)


def test_random_channel_keeps_length_and_draws_gain_only_when_asked() -> None:
    from deepwide.models.pretrain import augmented_batch, random_channel

    x = 0.1 * torch.randn(8000, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    plain = random_channel(x)
    torch.manual_seed(0)
    loud = random_channel(x, gain_db=6.0)
    assert plain.shape == loud.shape == x.shape and torch.isfinite(loud).all()
    # the gain is drawn after the channel: same channel, the level scaled by ≤ ±6 dB
    ratio = float(loud.norm() / plain.norm())
    assert 10 ** (-6 / 20) - 1e-4 <= ratio <= 10 ** (6 / 20) + 1e-4
    assert torch.allclose(loud / ratio, plain, atol=1e-5)
    wavs = torch.zeros(2, 8000)
    wavs[0], wavs[1, :3000] = x, x[:3000]
    out = augmented_batch(wavs, torch.tensor([8000, 3000]), 6.0)
    assert torch.all(out[1, 3000:] == 0) and not torch.allclose(out[0], wavs[0], atol=1e-3)


def test_utterance_infonce_rewards_matching_halves() -> None:
    from deepwide.models.pretrain import utterance_infonce

    rng = np.random.default_rng(0)
    ids = torch.from_numpy(rng.normal(size=(4, 16))).float()
    paired = ids.repeat_interleave(2, dim=0) + 0.01 * torch.randn(8, 16, generator=torch.Generator().manual_seed(0))
    good, acc = utterance_infonce(paired, 0.1)
    assert acc == 1.0 and float(good) < 0.1
    bad, _ = utterance_infonce(paired[torch.randperm(8, generator=torch.Generator().manual_seed(0))], 0.1)
    assert float(bad) > float(good) + 1
    # the reference value: cross-entropy over cosine similarities / temperature, self excluded
    z = torch.nn.functional.normalize(paired, dim=-1)
    sim = (z @ z.T / 0.1).fill_diagonal_(-1e9)
    ref = torch.nn.functional.cross_entropy(sim, torch.tensor([1, 0, 3, 2, 5, 4, 7, 6]))
    assert float(good) == pytest.approx(float(ref), rel=1e-5)
    with pytest.raises(ValueError, match="iter_layers"):
        PretrainConfig(steps=(10, 10), iter_layers=())


def test_short_run_learns_resumes_and_loads(tiny_corpus, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    cfg = replace(quick_config(), steps=(200,), eval_every=100, lr=3e-3)
    ckpt = pretrain_teacher(tiny_corpus, tmp_path / "a", cfg, seed=3)
    recs = [json.loads(line) for line in (tmp_path / "a" / "pretrain_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in recs if "loss" in r]
    # the masked-prediction loss falls (mean of the last three logged steps vs the first three)
    assert len(losses) >= 6 and np.mean(losses[-3:]) < np.mean(losses[:3])
    targets = [r for r in recs if r.get("event") == "targets"][0]
    assert 0 < targets["train_phone_purity"] <= 1
    model = load_model(str(ckpt))
    assert model.num_layers == 2 and model.dim == 32
    # the same seed and config reproduce the same weights
    ckpt_b = pretrain_teacher(tiny_corpus, tmp_path / "b", cfg, seed=3)
    assert load_model(str(ckpt_b)).weights_hash() == model.weights_hash()
    # a finished run resumes to the same checkpoint; without --resume it is refused
    from deepwide.errors import ConfigError

    with pytest.raises(ConfigError, match="--resume"):
        pretrain_teacher(tiny_corpus, tmp_path / "a", cfg, seed=3)
    again = pretrain_teacher(tiny_corpus, tmp_path / "a", cfg, seed=3, resume=True)
    assert load_model(str(again)).weights_hash() == model.weights_hash()


def test_contrastive_term_learns(tiny_corpus, tmp_path: Path) -> None:
    """With the utterance InfoNCE term on, both terms are logged and the total loss falls; the
    same seed reproduces the weights (the augmentation draws from the seeded generator)."""
    torch.set_num_threads(1)
    cfg = replace(quick_config(), steps=(150,), eval_every=75, lr=3e-3, contrastive_weight=0.5, contrastive_layer=1)
    ckpt = pretrain_teacher(tiny_corpus, tmp_path / "c", cfg, seed=3)
    recs = [json.loads(line) for line in (tmp_path / "c" / "pretrain_log.jsonl").read_text().splitlines()]
    steps = [r for r in recs if "loss" in r]
    assert all("infonce" in r and 0 <= r["infonce_acc"] <= 1 for r in steps)
    assert np.mean([r["loss"] for r in steps[-3:]]) < np.mean([r["loss"] for r in steps[:3]])
    again = pretrain_teacher(tiny_corpus, tmp_path / "d", cfg, seed=3)
    assert load_model(str(again)).weights_hash() == load_model(str(ckpt)).weights_hash()


def test_augmented_run_on_a_clean_corpus(tmp_path: Path) -> None:
    """`augment_channel` on a cleanly recorded corpus, InfoNCE on its own larger batch of crops:
    both terms logged, loss falls, seeded."""
    from deepwide.corpora.synth import SynthConfig, generate_synth

    torch.set_num_threads(1)
    corpus = generate_synth(replace(SynthConfig(), n_speakers=4, utts_per_speaker=4).without_recording(),
                            tmp_path / "clean", seed=0, workers=1)
    cfg = replace(quick_config(), steps=(120,), eval_every=60, lr=3e-3, contrastive_weight=0.5,
                  contrastive_layer=1, augment_channel=True, contrastive_batch=6)
    ckpt = pretrain_teacher(corpus, tmp_path / "c", cfg, seed=3)
    recs = [json.loads(line) for line in (tmp_path / "c" / "pretrain_log.jsonl").read_text().splitlines()]
    steps = [r for r in recs if "loss" in r]
    assert all("infonce" in r for r in steps)
    assert np.mean([r["loss"] for r in steps[-3:]]) < np.mean([r["loss"] for r in steps[:3]])
    again = pretrain_teacher(corpus, tmp_path / "d", cfg, seed=3)
    assert load_model(str(again)).weights_hash() == load_model(str(ckpt)).weights_hash()
    with pytest.raises(ValueError, match="augment_gain_db"):
        PretrainConfig(augment_gain_db=-1.0)
    with pytest.raises(ValueError, match="contrastive_batch"):
        PretrainConfig(contrastive_weight=0.5, contrastive_batch=1)
    with pytest.raises(ValueError, match="set contrastive_weight"):
        PretrainConfig(contrastive_batch=32)
    with pytest.raises(ValueError, match="batch_size ≥ 2"):
        PretrainConfig(contrastive_weight=0.5, batch_size=1)
    PretrainConfig(contrastive_weight=0.5, batch_size=1, contrastive_batch=8)  # its own batch gives the negatives


def test_export_writes_the_runs_encoder(tiny_corpus, tmp_path: Path) -> None:
    from deepwide.models.pretrain import export_teacher

    cfg = replace(quick_config(), steps=(10,), eval_every=5)
    ckpt = pretrain_teacher(tiny_corpus, tmp_path / "run", cfg, seed=1)
    exported = export_teacher(tmp_path / "run", tmp_path / "exp", half=False)
    assert load_model(str(exported)).weights_hash() == load_model(str(ckpt)).weights_hash()
    # float16 storage (the bundled teacher): half the bytes, weights within float16 rounding,
    # and the recorded hash verifies on load
    small = export_teacher(tmp_path / "run", tmp_path / "exp16")
    assert (small / "model.safetensors").stat().st_size < 0.6 * (exported / "model.safetensors").stat().st_size
    a, b = load_model(str(small)).state_dict(), load_model(str(ckpt)).state_dict()
    assert all(torch.allclose(a[k], b[k], rtol=1e-3, atol=1e-4) for k in a)
    info = json.loads((exported / "config.json").read_text())["extra"]
    assert info["total_steps_done"] == info["total_steps_planned"] == 10
    # the run's own final checkpoint records its run exactly as the export does
    assert json.loads((ckpt / "config.json").read_text())["extra"] == info


def test_each_iteration_is_kept_as_the_recipe_cut_there(tiny_corpus, tmp_path: Path) -> None:
    """`model-iter1` of a two-iteration run is the final model of the one-iteration recipe
    (weights and record), so an iteration-1 teacher is reproducible from its own config."""
    from deepwide.errors import ConfigError
    from deepwide.models.pretrain import export_teacher

    torch.set_num_threads(1)
    two = replace(quick_config(), steps=(6, 4), iter_layers=(1,), eval_every=3)
    one = replace(two, steps=(6,), iter_layers=())
    pretrain_teacher(tiny_corpus, tmp_path / "two", two, seed=2)
    solo = pretrain_teacher(tiny_corpus, tmp_path / "one", one, seed=2)
    kept = tmp_path / "two" / "model-iter1"
    assert load_model(str(kept)).weights_hash() == load_model(str(solo)).weights_hash()
    assert json.loads((kept / "config.json").read_text())["extra"] == json.loads((solo / "config.json").read_text())["extra"]
    assert not (tmp_path / "two" / "model-iter2").exists()  # the last iteration is `model`
    # export --iterations: the one-iteration run's final state is the end of iteration 1 ...
    cut = export_teacher(tmp_path / "one", tmp_path / "exp", half=False, iterations=1)
    assert load_model(str(cut)).weights_hash() == load_model(str(solo)).weights_hash()
    assert json.loads((cut / "config.json").read_text())["extra"] == json.loads((solo / "config.json").read_text())["extra"]
    # ... the two-iteration run's final state is not
    with pytest.raises(ConfigError, match="not at the end of iteration 1"):
        export_teacher(tmp_path / "two", tmp_path / "bad", iterations=1)
    with pytest.raises(ConfigError, match="has 2 iteration"):
        export_teacher(tmp_path / "two", tmp_path / "bad", iterations=3)


class _Killed(BaseException):
    """Stands in for SIGKILL: nothing after it runs."""


def _old_format(state_path: Path) -> None:
    """Rewrite a state as deepwide wrote it before format 2 (numpy labels, no format tag)."""
    state = torch.load(state_path, weights_only=True)
    del state["format"], state["format_version"]
    state["labels"] = [lab.numpy() for lab in state["labels"]]
    torch.save(state, state_path)


@pytest.mark.parametrize("written_by", ["current", "older"])
def test_killed_run_resumes_to_the_same_weights(tiny_corpus, tmp_path: Path, monkeypatch, caplog, written_by) -> None:
    """A run killed mid-iteration resumes from state.pt (loaded weights-only; an older state's
    numpy labels converted) to exactly the weights of the uninterrupted run; a torn last log
    line (a kill mid-append) is dropped with a warning."""
    import logging

    from deepwide.models import pretrain as pretrain_mod
    from deepwide.models.pretraining import run as run_mod

    torch.set_num_threads(1)
    cfg = replace(quick_config(), steps=(20,), eval_every=10)
    whole = pretrain_teacher(tiny_corpus, tmp_path / "whole", cfg, seed=4)
    real, calls = run_mod.pretrain_loss, {"n": 0}

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 15:
            raise _Killed()
        return real(*args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(run_mod, "pretrain_loss", dying)
        with pytest.raises(_Killed):
            pretrain_teacher(tiny_corpus, tmp_path / "run", cfg, seed=4)
    state = torch.load(tmp_path / "run" / "state.pt", weights_only=True)  # plain data only
    assert state["format_version"] == pretrain_mod.STATE_VERSION and state["step"] == 10
    if written_by == "older":
        _old_format(tmp_path / "run" / "state.pt")
        with pytest.raises(Exception, match="numpy"):
            torch.load(tmp_path / "run" / "state.pt", weights_only=True)  # what torch alone refuses
    with (tmp_path / "run" / "pretrain_log.jsonl").open("a") as fh:
        fh.write('{"iteration": 1, "step": 16, "lo')
    with caplog.at_level(logging.WARNING):
        resumed = pretrain_teacher(tiny_corpus, tmp_path / "run", cfg, seed=4, resume=True)
    assert load_model(str(resumed)).weights_hash() == load_model(str(whole)).weights_hash()
    assert "torn last line" in caplog.text
    lines = (tmp_path / "run" / "pretrain_log.jsonl").read_text().splitlines()
    assert all(isinstance(json.loads(line), dict) for line in lines)


def test_damaged_state_is_one_line(tiny_corpus, tmp_path: Path) -> None:
    """A truncated state.pt (resume and export) or a broken run record: one line, exit 2."""
    from click.testing import CliRunner

    from deepwide.cli import cli

    cfg = replace(quick_config(), steps=(2,), eval_every=2)
    pretrain_teacher(tiny_corpus, tmp_path / "run", cfg, seed=0)
    state = tmp_path / "run" / "state.pt"
    state.write_bytes(state.read_bytes()[:1000])
    for args in (["teacher", "pretrain", "--corpus", str(tiny_corpus.root), "--out", str(tmp_path / "run"),
                  "--quick", "--resume"],
                 ["teacher", "export", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "exp")]):
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 2 and isinstance(res.exception, SystemExit), res.output
        error = res.output.strip().splitlines()[-1]
        assert error.startswith(f"Error: {state} is truncated or not a torch file") and "weights_only" not in error
        assert ("delete" in error) if args[1] == "pretrain" else ("fresh --out" in error)
    (tmp_path / "run" / "pretrain_config.json").write_text('{"config": {"depth": 2')
    res = CliRunner().invoke(cli, ["teacher", "export", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "exp")])
    assert res.exit_code == 2 and res.output.strip().splitlines()[-1].startswith("Error: cannot read")


def test_resume_clears_a_cut_short_state_write_and_refuses_a_damaged_log(tiny_corpus, tmp_path: Path) -> None:
    """A kill while state.pt was being written leaves its temporary file: resuming removes it.
    A log line other than the last that is not a record is one ConfigError (the rule
    distillation's metrics.jsonl follows), not silently carried on."""
    from deepwide.errors import ConfigError

    torch.set_num_threads(1)
    cfg = replace(quick_config(), steps=(2,), eval_every=2)
    run = tmp_path / "run"
    pretrain_teacher(tiny_corpus, run, cfg, seed=5)
    (run / ".state.pt.x7k2q9.tmp").write_bytes(b"half a state")
    pretrain_teacher(tiny_corpus, run, cfg, seed=5, resume=True)
    assert not list(run.glob(".*.tmp"))

    log_path = run / "pretrain_log.jsonl"
    lines = log_path.read_text().splitlines()
    log_path.write_text("\n".join([lines[0], '{"iteration": 1, "st', *lines[1:]]) + "\n")
    with pytest.raises(ConfigError, match=r"line 2 of .*pretrain_log.jsonl is not a log record") as info:
        pretrain_teacher(tiny_corpus, run, cfg, seed=5, resume=True)
    assert "\n" not in str(info.value)
