"""``--kinds`` / ``--max-utts``: a store on part of a corpus, the same utterances for every model."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from deepwide.cli import cli
from deepwide.corpora.common import subset_utterances
from deepwide.errors import CorpusError
from deepwide.extract import ExtractConfig, extract_features
from deepwide.store import json_attr, open_store, read_attrs
from tests.extract.helpers import FakeEncoder, make_corpus


def _rank(utt_id: str) -> int:
    """The subset's order, written out independently: sha256("subset\\0" + id), first 8 bytes."""
    return int.from_bytes(hashlib.sha256(f"subset\0{utt_id}".encode()).digest()[:8], "big")


def test_subset_keeps_the_lowest_hashes_per_split(tmp_path: Path) -> None:
    m = make_corpus(tmp_path / "c", n_utts=24)
    sub = subset_utterances(m, ("sentence",), 2)
    want = []
    for split in ("train", "dev", "test"):
        ids = sorted((u.utt_id for u in m if u.kind == "sentence" and u.split == split), key=_rank)
        want += ids[:2]
    assert sorted(u.utt_id for u in sub) == sorted(want)
    assert all(Counter(u.split for u in sub)[s] <= 2 for s in ("train", "dev", "test"))
    assert [u.utt_id for u in sub] == [u.utt_id for u in m if u.utt_id in set(want)]  # corpus order
    assert subset_utterances(m).utterances == m.utterances
    with pytest.raises(CorpusError, match=r"has no utterance of kind command; its kinds are: keyword, sentence"):
        subset_utterances(m, ("command",))


def test_extract_keeps_the_subset_and_records_it(tmp_path: Path) -> None:
    m = make_corpus(tmp_path / "c", n_utts=24)
    cfg = ExtractConfig(frames="all", dtype="float32", batch_seconds=8.0, kinds=("sentence",), max_utts=3)
    out = tmp_path / "s.zarr"
    extract_features(FakeEncoder(num_layers=2, dim=8), m, out, cfg, jobs=0, workers=0, progress=False)
    ds = open_store(out)
    assert sorted(ds["utt_id"].values) == sorted(u.utt_id for u in subset_utterances(m, ("sentence",), 3))
    assert set(ds["kind"].values) == {"sentence"}
    ident = json_attr(read_attrs(out), "extract_config")
    assert ident["kinds"] == ["sentence"] and ident["max_utts"] == 3
    plain = ExtractConfig(frames="all").identity(2)
    assert "kinds" not in plain and "max_utts" not in plain  # old stores keep their identity


def test_cli_options_and_their_errors(tmp_path: Path) -> None:
    make_corpus(tmp_path / "c", n_utts=12)
    runner = CliRunner()
    out = tmp_path / "s.zarr"
    result = runner.invoke(cli, ["extract", "--model", "mfcc", "--corpus", str(tmp_path / "c"), "--out", str(out),
                                 "--kinds", "keyword", "--max-utts", "1", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert set(open_store(out)["kind"].values) == {"keyword"} and open_store(out).sizes["utt"] <= 3
    result = runner.invoke(cli, ["extract", "--model", "mfcc", "--corpus", str(tmp_path / "c"),
                                 "--out", str(tmp_path / "t.zarr"), "--kinds", "command", "--no-progress"])
    assert result.exit_code != 0 and "has no utterance of kind command" in result.output
    assert not (tmp_path / "t.zarr").exists()
    result = runner.invoke(cli, ["extract", "--model", "mfcc", "--corpus", str(tmp_path / "c"),
                                 "--out", str(tmp_path / "u.zarr"), "--max-utts", "0"])
    assert result.exit_code == 2 and "--max-utts" in result.output
