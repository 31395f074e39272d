"""CTC probes (deepwide.probing.ctc): batched per-layer losses, greedy decoding, error rates."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepwide.probing.ctc import (
    CtcSet,
    edit_counts,
    error_rate,
    fit_ctc_layers,
    greedy_collapse,
    layer_ctc_losses,
)


def _levenshtein(a: list[int], b: list[int]) -> int:
    """Textbook dynamic programme, as an independent check of torchaudio's edit distance."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def _planted(n_utts: int, seed: int, num_labels: int = 6, dim: int = 12) -> CtcSet:
    """Layer 0: noise; layer 1: a noisy embedding of the frame's label (3-6 frames per label)."""
    rng = np.random.default_rng(seed)
    emb = np.random.default_rng(99).normal(size=(num_labels + 1, dim)) * 3
    frames0, frames1, targets, offsets = [], [], [], [0]
    for _ in range(n_utts):
        seq = rng.integers(1, num_labels + 1, rng.integers(3, 8))
        seq = seq[np.r_[True, seq[1:] != seq[:-1]]]  # no immediate repeats (they need a blank)
        frame_labels = np.concatenate([[0] * int(rng.integers(0, 3)), *[[s] * int(rng.integers(3, 7)) for s in seq]])
        frame_labels = frame_labels.astype(np.int64)
        frames1.append(emb[frame_labels] + rng.normal(size=(len(frame_labels), dim)))
        frames0.append(rng.normal(size=(len(frame_labels), dim)))
        targets.append(seq.astype(np.int64))
        offsets.append(offsets[-1] + len(frame_labels))
    x = np.stack([np.concatenate(frames0), np.concatenate(frames1)]).astype(np.float16)
    return CtcSet(x=x, offsets=np.array(offsets), targets=tuple(targets))


def test_greedy_collapse_and_edit_counts() -> None:
    assert greedy_collapse(np.array([0, 3, 3, 0, 3, 5, 5, 0])) == [3, 3, 5]
    assert greedy_collapse(np.array([], np.int64)) == []
    rng = np.random.default_rng(0)
    hyps = [list(rng.integers(1, 5, rng.integers(0, 9))) for _ in range(50)]
    refs = [rng.integers(1, 5, rng.integers(1, 9)) for _ in range(50)]
    edits, n = edit_counts(hyps, refs)
    assert edits.tolist() == [_levenshtein(list(r), h) for h, r in zip(hyps, refs, strict=True)]
    assert error_rate(hyps, refs) == pytest.approx(edits.sum() / n.sum())


def test_edit_counts_match_torchaudio_on_words_characters_and_empty_sequences() -> None:
    import torchaudio.functional as taf

    for seed in range(20):
        rng = np.random.default_rng(seed)
        n, v = int(rng.integers(1, 25)), int(rng.integers(1, 6))
        seqs = [[f"w{t}" for t in rng.integers(0, v, rng.integers(0, 30))] for _ in range(2 * n)]
        hyps, refs = seqs[:n], seqs[n:]
        if seed % 2:
            hyps, refs = ["".join(h) for h in hyps], ["".join(r) for r in refs]  # characters
        edits, lens = edit_counts(hyps, refs)
        assert edits.tolist() == [taf.edit_distance(list(r), list(h)) for h, r in zip(hyps, refs, strict=True)]
        assert lens.tolist() == [len(r) for r in refs]
    assert edit_counts([[], [1, 2]], [[3], []])[0].tolist() == [1, 2]
    assert edit_counts([], [])[0].shape == (0,)


def test_word_error_rate_matches_jiwer() -> None:
    """The WER of :func:`error_rate` on words is jiwer's (corpus-level: Σ edits / Σ reference words)."""
    jiwer = pytest.importorskip("jiwer")
    rng = np.random.default_rng(7)
    words = ["the", "cat", "sat", "on", "a", "mat", "dog"]
    refs = [list(rng.choice(words, rng.integers(1, 9))) for _ in range(40)]
    hyps = [list(rng.choice(words, rng.integers(0, 10))) for _ in range(40)]
    hyps[0] = []  # an empty hypothesis: every reference word deleted
    want = jiwer.wer([" ".join(r) for r in refs], [" ".join(h) for h in hyps])
    assert error_rate(hyps, refs) == pytest.approx(want, abs=1e-12)
    out = jiwer.process_words(" ".join(refs[1]), " ".join(hyps[1]))
    assert edit_counts([hyps[1]], [refs[1]])[0][0] == out.substitutions + out.deletions + out.insertions


def test_batch_pads_with_zeros_and_keeps_every_frame() -> None:
    data = _planted(9, 3)
    utts = np.array([1, 4, 7])
    xb, lens = data.batch(utts, torch.device("cpu"))
    assert xb.dtype == torch.float32 and xb.shape == (2, 3, int(lens.max()), 12)
    for i, u in enumerate(utts):
        frames = data.x[:, data.offsets[u] : data.offsets[u + 1]].astype(np.float32)
        assert lens[i] == len(frames[0]) and np.array_equal(xb[:, i, : lens[i]].numpy(), frames)
        assert not xb[:, i, lens[i] :].any()
    readonly = CtcSet(x=data.x.copy(), offsets=data.offsets, targets=data.targets)
    readonly.x.setflags(write=False)
    swapped = CtcSet(x=data.x.astype(">f2"), offsets=data.offsets, targets=data.targets)  # torch cannot view it
    for other in (readonly, swapped):
        assert torch.equal(other.batch(utts, torch.device("cpu"))[0], xb)


def test_batched_losses_equal_one_ctc_loss_per_layer() -> None:
    g = torch.Generator().manual_seed(0)
    logp = torch.log_softmax(torch.randn(3, 4, 20, 6, generator=g), -1)
    lengths = torch.tensor([20, 15, 9, 12])
    targets = [np.array([1, 2, 3]), np.array([4]), np.array([5, 5]), np.array([2, 1, 2, 1])]
    got = layer_ctc_losses(logp, lengths, targets)
    flat, t_lens = torch.tensor(np.concatenate(targets)), torch.tensor([len(t) for t in targets])
    for layer in range(3):
        want = torch.nn.functional.ctc_loss(logp[layer].transpose(0, 1), flat, lengths, t_lens, reduction="sum") / 4
        torch.testing.assert_close(got[layer], want)


def test_layerwise_heads_find_the_layer_that_carries_the_labels() -> None:
    train, dev, test = _planted(200, 0), _planted(40, 1), _planted(60, 2)
    fit = fit_ctc_layers(train, 6, dev=dev, steps=300, batch_utts=16, lr=3e-2, eval_every=50, seed=0)
    errors = [error_rate(h, test.targets) for h in fit.decode(test)]
    assert errors[1] < 0.1 < 0.6 < errors[0]
    assert fit.dev_error[1] < 0.1 and 50 <= fit.best_step[1] <= 300
    again = fit_ctc_layers(train, 6, dev=dev, steps=300, batch_utts=16, lr=3e-2, eval_every=50, seed=0)
    assert torch.equal(fit.weight, again.weight)  # seeded


def test_without_dev_the_last_state_is_kept() -> None:
    train = _planted(30, 0)
    fit = fit_ctc_layers(train, 6, steps=5, batch_utts=8, seed=0)
    assert np.isnan(fit.dev_error).all() and (fit.best_step == 5).all() and fit.weight.shape == (2, 12, 7)


def test_weighted_sum_head_weights_the_informative_layer() -> None:
    from deepwide.probing.ctc import fit_ctc_weighted

    train, dev, test = _planted(200, 0), _planted(40, 1), _planted(60, 2)
    fit = fit_ctc_weighted(train, 6, dev=dev, steps=300, batch_utts=16, lr=3e-2, eval_every=50, seed=0)
    assert error_rate(fit.decode(test), test.targets) < 0.15
    assert fit.weights.sum() == pytest.approx(1.0) and fit.weights[1] > fit.weights[0]
