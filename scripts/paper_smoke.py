"""Rehearse the published study (``configs/paper.toml``) for real on CPU, at real shapes.

``python scripts/paper_smoke.py --out DIR`` (or ``scripts/paper-smoke --out DIR``):

1. fabricates, under ``DIR/inputs`` (once; a stamp records the seed):
   * a HuBERT-Base-shaped teacher with random weights (94.37 M, seed :data:`SEED`) as a
     fairseq ``.pt`` of the real key layout (``teacher/hubert_base_random.pt``) and as a
     Hugging Face folder of the same weights (``teacher/hubert-base-random-hf``), and checks
     that deepwide's loaders read both to the same hidden states on one batch;
   * small copies of the real corpus layouts (LibriSpeech with MFA alignments, VoxCeleb1,
     Speech Commands, Fluent Speech Commands, TIMIT) with synthetic audio, written by the
     test fabricators ``tests/corpora/fabricate.py`` — so this script runs from a checkout;
2. writes ``DIR/paper-smoke.toml`` from the template ``configs/paper-smoke.toml`` (its
   ``/tmp/deepwide-paper-smoke`` replaced by ``DIR``);
3. runs ``deepwide study --config DIR/paper-smoke.toml --out DIR/study``.

The inputs are built in a hidden sibling folder and renamed into place, so ``DIR/inputs``
holds either nothing or all of them. A rerun reuses them and the study's cache.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the checkout's test fabricators (tests.corpora, tests.models)
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from deepwide.config import atomic_write_json, atomic_write_text  # noqa: E402
from deepwide.errors import DeepwideError, ModelError  # noqa: E402
from deepwide.models import PRESETS, build_encoder, load_model  # noqa: E402
from deepwide.models.hf_export import export_hf  # noqa: E402
from deepwide.study import load_study_config  # noqa: E402
from tests.corpora import fabricate  # noqa: E402
from tests.models.fairseq_layout import write_fairseq_hubert  # noqa: E402

log = logging.getLogger("paper_smoke")

TEMPLATE = ROOT / "configs" / "paper-smoke.toml"
#: The folder the template's paths name; replaced by ``--out``.
PREFIX = "/tmp/deepwide-paper-smoke"
#: Seed of the teacher's random weights.
SEED = 16
#: Bumped when what is fabricated changes (a stale ``DIR/inputs`` is rebuilt).
INPUTS_VERSION = 2
STAMP = ".paper-smoke-inputs.json"
TEACHER_PT = Path("teacher") / "hubert_base_random.pt"
TEACHER_HF = Path("teacher") / "hubert-base-random-hf"
#: Largest |difference| allowed between the fairseq and Hugging Face teachers' hidden states.
SAME_ATOL = 1e-5


def fabricate_teacher(folder: Path, *, seed: int = SEED) -> tuple[Path, Path]:
    """Write the random HuBERT-Base-shaped teacher as a fairseq ``.pt`` and an HF folder.

    Returns:
        ``(pt_path, hf_folder)``.
    """
    model = build_encoder(PRESETS.get("hubert-base"), seed=seed, model_id="hubert-base-random").eval()
    pt = write_fairseq_hubert(model, folder / TEACHER_PT)
    hf = export_hf(model, folder / TEACHER_HF)
    return pt, hf


def teacher_difference(pt: Path, hf: Path, *, seed: int = SEED) -> float:
    """Largest |difference| of the hidden states of the two teacher files on one batch.

    The batch: two rows of 1.0 s and 0.75 s (zero-padded), every layer's valid frames.

    Raises:
        ModelError: the two files load to different configs or weights.
    """
    a, b = load_model(str(pt)), load_model(str(hf))
    if a.config != b.config:
        raise ModelError(f"{pt} and {hf} load to different configs: {a.config} != {b.config}")
    if a.weights_hash() != b.weights_hash():
        raise ModelError(f"{pt} and {hf} load to different weights ({a.weights_hash()} != {b.weights_hash()})")
    g = torch.Generator().manual_seed(seed)
    wavs = 0.1 * torch.randn(2, 16_000, generator=g)
    lengths = torch.tensor([16_000, 12_000])
    wavs[1, 12_000:] = 0.0
    with torch.no_grad():
        sa, la = a.hidden_states(wavs, lengths)
        sb, lb = b.hidden_states(wavs, lengths)
    if not torch.equal(la, lb):
        raise ModelError(f"{pt} and {hf} give different frame counts: {la.tolist()} != {lb.tolist()}")
    diff = 0.0
    for x, y in zip(sa, sb, strict=True):
        for row, n in enumerate(la.tolist()):
            diff = max(diff, float((x[row, :n] - y[row, :n]).abs().max()))
    return diff


def fabricate_corpora(folder: Path) -> dict[str, Path]:
    """Write the five corpus layouts under ``folder``; returns ``{corpus: root}``."""
    return {
        "librispeech": fabricate.make_librispeech(folder / "librispeech").root,
        # 6 utterances per speaker, 4 of them in sid train: asv fits its LDA back-end, as on VoxCeleb1
        "voxceleb1": fabricate.make_voxceleb1(folder / "voxceleb1", videos=3).root,
        "speechcommands": fabricate.make_speechcommands(folder / "speechcommands").root,
        "fluent": fabricate.make_fluent(folder / "fluent").root,
        "timit": fabricate.make_timit(folder / "timit").root,
    }


def fabricate_inputs(out: Path, *, seed: int = SEED) -> Path:
    """``out/inputs``: the teacher files and the corpora, built once (checked by a stamp).

    Raises:
        ModelError: the fairseq and Hugging Face teachers differ by more than :data:`SAME_ATOL`
            (nothing is left in ``out``).
    """
    inputs = out / "inputs"
    want = {"seed": seed, "version": INPUTS_VERSION}
    stamp = inputs / STAMP
    if stamp.is_file():
        try:
            if {k: v for k, v in json.loads(stamp.read_text()).items() if k in want} == want:
                log.info("inputs: %s (fabricated before)", inputs)
                return inputs
        except json.JSONDecodeError:
            pass
        log.info("inputs: %s is stale; rebuilding it", inputs)
        shutil.rmtree(inputs)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".inputs-", dir=out))
    try:
        log.info("inputs: fabricating the teacher (fairseq .pt and Hugging Face folder) and the corpora")
        pt, hf = fabricate_teacher(tmp, seed=seed)
        diff = teacher_difference(pt, hf, seed=seed)
        if diff > SAME_ATOL:
            raise ModelError(f"the fairseq and Hugging Face teachers' hidden states differ by {diff:.3g} "
                             f"(> {SAME_ATOL}); the loaders disagree")
        log.info("inputs: fairseq .pt and HF folder give the same hidden states (max |diff| %.2g)", diff)
        fabricate_corpora(tmp / "corpora")
        atomic_write_json(tmp / STAMP, {**want, "teacher_max_abs_diff": diff})
        os.replace(tmp, inputs)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return inputs


def write_config(out: Path) -> Path:
    """``out/paper-smoke.toml``: the template with its paths moved under ``out`` (validated)."""
    path = out / "paper-smoke.toml"
    text = TEMPLATE.read_text().replace(PREFIX, str(out))
    atomic_write_text(path, text)
    load_study_config(path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(PREFIX),
                        help=f"folder of the inputs, the config and the study (default {PREFIX})")
    parser.add_argument("--no-run", action="store_true", help="fabricate and write the config; run nothing")
    parser.add_argument("--dry-run", action="store_true", help="list the study's plan (deepwide study --dry-run)")
    parser.add_argument("-v", "--verbose", action="store_true", help="the study's debug logging")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[paper-smoke] %(message)s")
    out = args.out.expanduser().resolve()
    try:
        fabricate_inputs(out)
        config = write_config(out)
    except DeepwideError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    log.info("config: %s", config)
    if args.no_run:
        return 0
    cmd = [sys.executable, "-m", "deepwide", *(["-v"] if args.verbose else []), "study",
           "--config", str(config), "--out", str(out / "study"), *(["--dry-run"] if args.dry_run else [])]
    log.info("running: %s", " ".join(cmd[1:]))
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
