"""A scaled-down ``deepwide study`` end to end: every stage, caching, and partial reruns."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import matplotlib.image as mpimg
import pytest
from click.testing import CliRunner

from deepwide.cli import cli
from deepwide.errors import ConfigError
from deepwide.study import StudyConfig, load_study_config, plan_students, run_study


@pytest.fixture(scope="module")
def mini(tmp_path_factory: pytest.TempPathFactory) -> tuple[StudyConfig, Path]:
    """A 10-speaker corpus, a random 2-layer teacher and a study config sized for CI."""
    import torch

    from deepwide.corpora.synth import SynthConfig, generate_synth
    from deepwide.models import EncoderConfig, FrontendConfig, build_encoder, save_checkpoint

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("study")
    generate_synth(replace(SynthConfig(), n_speakers=10, utts_per_speaker=9), root / "corpus", seed=0, workers=1)
    teacher = EncoderConfig(depth=2, width=32, ffn=64, heads=2, layer_norm_first=True,
                            frontend=FrontendConfig(kind="spectral", channels=32))
    save_checkpoint(build_encoder(teacher, seed=0, model_id="mini-teacher"), root / "teacher")
    cfg = StudyConfig(corpus=str(root / "corpus"), teacher=str(root / "teacher"), shallow_depth=1,
                      deep_depths=(2,), head_dim=16, distill_steps=4, distill_batch_seconds=2.0,
                      distill_max_crop_seconds=1.0, frames="sample:6", n_boot=30, max_train_frames=3000,
                      ctc_steps=10, sequence_max_utts=8, pairing="crossed", distilhubert=True)
    return cfg, root


def test_students_are_parameter_matched(mini: tuple[StudyConfig, Path]) -> None:
    from deepwide.models import count_params, resolve_config, student_config

    cfg, _ = mini
    t = resolve_config(cfg.teacher)
    students = plan_students(cfg, t)
    names = [s.name for s in students]
    assert names == ["1x32-predlayer", "1x32-l2l", "2x16-predlayer", "2x16-l2l", "distilhubert-2x32"]
    # the default pairing is the paper's: 3-L One with PredLayer, 12-L Half with L2L
    paper = plan_students(replace(cfg, pairing="paper"), t)
    assert [s.name for s in paper] == ["1x32-predlayer", "2x16-l2l", "distilhubert-2x32"]
    assert StudyConfig().pairing == "paper"
    with pytest.raises(ValueError, match="pairing = 'crossed'"):
        replace(cfg, pairing="paper", objectives=("l2l",))
    with pytest.raises(ValueError, match="pairing must be"):
        replace(cfg, pairing="both")
    shallow = count_params(student_config(t, 1, 32, ffn=64, heads=2))
    deep = [s for s in students if s.name == "2x16-l2l"][0]
    n_deep = count_params(student_config(t, 2, deep.width, ffn=deep.ffn, heads=deep.heads))
    # the solver's width is the nearest to the shallow student's budget on its 16-wide grid
    for w in (deep.width - 16, deep.width + 16):
        if w > 0:
            other = count_params(student_config(t, 2, w, ffn=4 * w, heads=w // 16))
            assert abs(n_deep - shallow) <= abs(other - shallow)


def test_study_end_to_end_then_cached_then_partial_rerun(mini: tuple[StudyConfig, Path]) -> None:
    cfg, root = mini
    out = root / "out"
    lines: list[str] = []
    steps = run_study(cfg, out, seed=0, echo=lines.append)
    kinds = {s.kind for s in steps}
    assert {"targets", "distill", "extract", "probe", "similarity", "labels", "spectrum", "figures", "report"} <= kinds
    results = out / "results"
    for name in ("probe.nc", "probe.csv", "labels.nc", "spectrum.nc", "distill.csv"):
        assert (results / name).is_file(), name
    import xarray as xr

    probe = xr.load_dataset(results / "probe.nc")
    assert set(probe["task"].values) == set(cfg.tasks)
    # one random twin per shape: the teacher's, 1x32's, 2x16's and DistilHuBERT's (2x32); the
    # PredLayer and L2L students of one shape share theirs
    assert int(probe["is_null"].sum()) == 4
    # pr: on stores of every frame of (at most 8 per split) sentences, the trained models and the
    # teacher's random twin
    pr = probe["score"].sel(task="pr").max("layer")
    has_pr = {str(m) for m in probe["model"].values if bool(pr.sel(model=m).notnull())}
    assert has_pr == {str(m) for m, null in zip(probe["model"].values, probe["is_null"].values, strict=True)
                      if not bool(null)} | {"random:mini-teacher"}
    assert str(probe["metric"].sel(task="pr").item()) == "per"
    from deepwide.store import open_store

    seq = open_store(next((out / "stores").glob("teacher-*-sequences.zarr")))
    assert set(seq["kind"].values) == {"sentence"} and seq.sizes["utt"] <= 24
    assert str(seq.attrs["frames_mode"]) == "all"
    roles = json.loads((results / "study.json").read_text())["roles"]
    assert set(roles) == {str(m) for m in probe["model"].values}  # every probed model has its role
    assert sorted(roles.values()).count("teacher") == 1 and roles["mini-teacher"] == "teacher"
    assert {roles[str(m)] for m, null in zip(probe["model"].values, probe["is_null"].values, strict=True)
            if bool(null)} == {"random"}
    assert sorted(set(roles.values())) == ["baseline", "random", "student", "teacher"]
    twins = json.loads((results / "study.json").read_text())["twins"]
    trained = [str(m) for m, null in zip(probe["model"].values, probe["is_null"].values, strict=True)
               if not bool(null) and roles[str(m)] != "baseline"]
    assert sorted(twins) == sorted(trained) and set(twins.values()) <= set(roles)
    assert twins["mini-teacher"] == "random:mini-teacher"
    by_shape = {m: z for m, z in twins.items() if "1x32" in m}
    assert len(by_shape) == 2 and len(set(by_shape.values())) == 1  # PredLayer and L2L: one twin
    # the premise of sharing: the random twins of one shape's PredLayer and L2L students are the
    # same network, weight for weight
    import torch

    from deepwide.models import load_model

    a = load_model(f"random:{out / 'students' / '1x32-predlayer'}", seed=0).state_dict()
    b = load_model(f"random:{out / 'students' / '1x32-l2l'}", seed=0).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the report compares every trained model with its (shared) twin
    report = (out / "report" / "report.md").read_text()
    for m, z in twins.items():
        assert f"| {m} | {z} |" in report, m
    assert (out / "report" / "report.html").stat().st_size > 10_000
    pngs = sorted((out / "figures").glob("*.png"))
    assert len(pngs) >= 6
    for p in pngs:
        img = mpimg.imread(p)
        assert img.shape[0] > 100 and img.std() > 0.01, p

    # nothing changed: every step is cached
    timings = json.loads((out / "timings.json").read_text())
    assert not any(t["cached"] for t in timings["steps"])
    run_study(cfg, out, seed=0, echo=lines.append)
    timings = json.loads((out / "timings.json").read_text())
    assert all(t["cached"] for t in timings["steps"])

    # a probe setting changed: probes and what reads them rerun, students and stores do not
    run_study(replace(cfg, n_boot=40), out, seed=0, echo=lines.append)
    rerun = {t["kind"] for t in json.loads((out / "timings.json").read_text())["steps"] if not t["cached"]}
    assert rerun == {"probe", "collect", "figures", "report"}


def test_matched_budgets_option(mini: tuple[StudyConfig, Path]) -> None:
    """budget_match = "ffn": the deep students meet the shallow ones' count within 0.1 %, named by FFN."""
    from deepwide.models import count_params, resolve_config, student_config

    cfg, _ = mini
    t = resolve_config(cfg.teacher)
    students = plan_students(replace(cfg, budget_match="ffn"), t)
    count = {s.name: count_params(student_config(t, s.depth, s.width, ffn=s.ffn, heads=s.heads)) for s in students}
    deep = [s for s in students if s.depth == 2 and s.targets is None]
    shallow = count["1x32-predlayer"]
    assert deep and all(abs(count[s.name] - shallow) / shallow < 1e-3 for s in deep)
    assert all(s.name == f"2x{s.width}f{s.ffn}-{s.objective}" for s in deep)
    assert [s.name for s in plan_students(cfg, t)][:2] == ["1x32-predlayer", "1x32-l2l"]
    with pytest.raises(ValueError, match="budget_match must be 'width' or 'ffn'"):
        replace(cfg, budget_match="heads")


def test_seeds_distil_each_student_once_per_seed_with_one_twin_per_architecture(mini: tuple[StudyConfig, Path]) -> None:
    from deepwide.models import resolve_config
    from deepwide.study import build_plan

    cfg, root = mini
    seeded = replace(cfg, seeds=(3, 5))
    students = plan_students(seeded, resolve_config(cfg.teacher))
    assert [s.name for s in students][:4] == ["1x32-predlayer-s3", "1x32-predlayer-s5", "1x32-l2l-s3", "1x32-l2l-s5"]
    assert {(s.group, s.seed) for s in students if s.name.startswith("1x32-l2l")} == {("1x32-l2l", 3), ("1x32-l2l", 5)}
    steps, _ = build_plan(seeded, root / "seeded")
    distill = {s.name: s for s in steps if s.kind == "distill"}
    assert len(distill) == 9 and distill["distill 1x32-l2l-s3"].key != distill["distill 1x32-l2l-s5"].key
    # the seed reaches the distillation run
    assert distill["distill 1x32-l2l-s5"].run.args[0].seed == 5
    twins = sorted(s.name for s in steps if s.kind == "extract" and "-random on" in s.name and "teacher" not in s.name)
    # one per shape, the first seed's first objective's: neither seed nor objective changes it
    assert twins == sorted([f"extract {n}-s3-random on {cfg.corpus}" for n in ["1x32-predlayer", "2x16-predlayer"]]
                           + [f"extract distilhubert-2x32-random on {cfg.corpus}"])  # DistilHuBERT: one seed
    # no seeds: the names, keys and twins of today's study
    plain, _ = build_plan(cfg, root / "seeded")
    assert "distill 1x32-l2l" in {s.name for s in plain}
    with pytest.raises(ValueError, match="seeds must be distinct"):
        replace(cfg, seeds=(1, 1))


def test_step_keys_do_not_depend_on_where_the_study_lives(mini: tuple[StudyConfig, Path]) -> None:
    """A study folder moved or renamed is still cached: no key holds the output path."""
    from deepwide.study import build_plan

    cfg, root = mini
    a, _ = build_plan(cfg, root / "here")
    b, _ = build_plan(cfg, root / "elsewhere" / "there")
    assert [s.name for s in a] == [s.name for s in b]
    assert [s.key for s in a] == [s.key for s in b]


def test_dry_run_lists_plan_and_names_missing_paths(tmp_path: Path) -> None:
    cfg_file = tmp_path / "paper.toml"
    cfg_file.write_text('corpus = "librispeech:/nonexistent/LibriSpeech"\nteacher = "/nonexistent/hubert.pt"\n')
    res = CliRunner().invoke(cli, ["study", "--config", str(cfg_file), "--out", str(tmp_path / "o"), "--dry-run"])
    assert res.exit_code != 0
    assert "missing  corpus librispeech:/nonexistent/LibriSpeech" in res.output
    assert "missing  teacher /nonexistent/hubert.pt" in res.output


def test_config_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("distill_stepz = 3\n")
    with pytest.raises(ConfigError, match="unknown key.*distill_stepz"):
        load_study_config(bad)
    bad.write_text('frames = "none"\n')
    with pytest.raises(ConfigError, match="frames must be"):
        load_study_config(bad)


@pytest.mark.parametrize(("line", "says"), [
    ('tasks = ["phone", "bogus"]', "tasks: unknown task 'bogus'; valid tasks: asr, asv"),
    ('tasks = "phone"', "tasks must be a list"),
    ('measures = ["nope"]', "measures: unknown measure 'nope'"),
    ('labels = ["x"]', "unknown label 'x'"),
    ('baselines = ["mfccc"]', "unknown feature baseline 'mfccc'"),
    ('pairing = "crossed"\nobjectives = ["l3l"]', "unknown objective 'l3l'"),
    ('objectives = ["l2l"]', "objectives are used only with pairing = 'crossed'"),
    ('pairing = "zip"', "pairing must be 'paper' or 'crossed'"),
    ('store_dtype = "int8"', "dtype 'int8'"),
    ("n_boot = -5", "n_boot must be at least 10"),
    ('device = "banana"', "device must be auto, cpu or cuda"),
    ("head_dim = 0", "head_dim must be > 0"),
    ("max_train_frames = 0", "max_train_frames must be > 0"),
    ('probe_corpora = ["a"]', "probe_corpora must be a table"),
    ('probe_corpora = { sidd = "synth" }', "probe_corpora names task(s) not in tasks: sidd"),
    ('frames = "sample:x"', "study config: frames"),
    ("distill_steps = 1.5", "distill_steps must be int"),
    ('deep_depths = [12, "x"]', "deep_depths[1] must be int"),
    ("seeds = [0, 0]", "seeds must be distinct"),
])
def test_every_study_config_error_is_refused_by_dry_run_in_one_line(tmp_path: Path, line: str, says: str) -> None:
    """Each setting a later stage would refuse is refused before any step runs (issue #18.12)."""
    cfg_file = tmp_path / "bad.toml"
    cfg_file.write_text(line + "\n")
    res = CliRunner().invoke(cli, ["study", "--config", str(cfg_file), "--out", str(tmp_path / "o"), "--dry-run"])
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and says in lines[0], res.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("name", ["paper.toml", "embedded-long-distill.toml", "embedded-full.toml", "embedded-full-content.toml",
                                  "embedded-content-teacher.toml"])
def test_shipped_study_configs_load(name: str) -> None:
    cfg = load_study_config(Path(__file__).resolve().parents[1] / "configs" / name)
    assert isinstance(cfg, StudyConfig)


def test_collect_merges_probes_of_several_corpora(tmp_path: Path) -> None:
    """Tasks probed on different corpora (paper setup) end up in one probe.nc / probe.csv."""
    import xarray as xr

    from deepwide.probing.run import write_results
    from deepwide.study.stages import collect_results
    from tests.figures.fake_results import build_probe

    probe = build_probe(0)
    tasks = [str(t) for t in probe["task"].values]
    results = tmp_path / "results"
    for i, part in enumerate((tasks[:2], tasks[2:])):
        write_results(probe.sel(task=part), results / "steps" / f"probe-corpus{i}")
    collect_results(results, [], [], {}, {}, {}, StudyConfig(), 0)
    merged = xr.load_dataset(results / "probe.nc")
    assert sorted(str(t) for t in merged["task"].values) == sorted(tasks)
    xr.testing.assert_allclose(merged["score"].sel(task=tasks), probe["score"])
    assert (results / "probe.csv").read_text().startswith("model,task,layer,")
    assert not list(results.glob("*.tmp")) and not list(results.glob(".*tmp"))



def test_collect_keeps_task_names_longer_than_the_first_parts(tmp_path: Path) -> None:
    """The paper's probe parts sort as fluent (ic), …, voxceleb1 (sid, sid-frame, asv): the merged
    probe.nc keeps every name whole."""
    import numpy as np
    import xarray as xr

    from deepwide.probing.run import write_results
    from deepwide.study.stages import collect_results
    from tests.figures.fake_results import build_probe

    probe = build_probe(0)
    results = tmp_path / "results"
    for i, part in enumerate((["ic"], ["ks"], ["phone", "sid", "asv"])):
        one = probe.sel(task=part)
        write_results(one.assign_coords(task=np.array(part)), results / "steps" / f"probe-corpus{i}")
    collect_results(results, [], [], {}, {}, {}, StudyConfig(), 0)
    merged = xr.load_dataset(results / "probe.nc")
    assert [str(t) for t in merged["task"].values] == ["ic", "ks", "phone", "sid", "asv"]
