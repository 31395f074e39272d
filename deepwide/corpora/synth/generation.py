"""Generating a corpus: plans rendered by a pool of worker processes into a folder that appears
whole (temporary sibling, then rename), with its manifest."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from deepwide.corpora.manifest import Manifest
from deepwide.corpora.synth.annotation import build_manifest
from deepwide.corpora.synth.config import SynthConfig
from deepwide.corpora.synth.plans import plan_utterances
from deepwide.corpora.synth.rendering import Rendered, init_worker, write_utterance
from deepwide.corpora.synth.speakers import plan_speakers
from deepwide.errors import ConfigError, CorpusError
from deepwide.system import current_umask, usable_cpus

log = logging.getLogger(__name__)


def generate_synth(
    config: SynthConfig, out_dir: str | Path, *, seed: int = 0, workers: int = 1
) -> Manifest:
    """Generate the corpus defined by ``(config, seed)`` into ``out_dir``.

    The corpus is written to a temporary sibling folder and renamed into place at the end,
    so ``out_dir`` either holds a complete corpus or nothing.

    Args:
        config: what to generate.
        out_dir: destination folder; must not exist or be empty.
        seed: every random choice derives from it.
        workers: worker processes (one espeak engine each); the output does not depend on it.

    Returns:
        The :class:`Manifest`, rooted at ``out_dir`` (also saved as ``out_dir/manifest.jsonl``).

    Raises:
        CorpusError: ``out_dir`` already holds files.
    """
    out = Path(out_dir).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CorpusError(f"{out} already exists and is not empty; remove it or choose another --out")
    if workers < 1:
        raise ConfigError(f"workers must be ≥ 1, got {workers}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        umask = current_umask()
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the corpus is an ordinary folder
        manifest = _generate_into(config, tmp, seed=seed, workers=workers)
        if out.exists():
            out.rmdir()
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    manifest.root = out
    log.info("synthetic corpus: %d utterances, %.1f min in %s", len(manifest),
             sum(u.duration_s for u in manifest) / 60, out)
    return manifest


def _generate_into(config: SynthConfig, root: Path, *, seed: int, workers: int) -> Manifest:
    from tqdm import tqdm

    speakers = plan_speakers(config, seed)
    plans = plan_utterances(config, speakers, seed)
    log.info("rendering %d utterances of %d speakers with %d worker(s)", len(plans), len(speakers), workers)
    bar = tqdm(total=len(plans), desc="synth corpus", unit="utt", disable=None)
    rendered: list[Rendered] = []
    try:
        if workers == 1:
            for plan in plans:
                rendered.append(write_utterance(plan, str(root)))
                bar.update()
        else:
            import multiprocessing as mp

            # fork where possible: spawned workers would re-run an unguarded __main__ (scripts,
            # `python -m`); the workers use no thread pools, only numpy/scipy/espeak.
            method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
            ctx = mp.get_context(method)
            chunk = max(1, min(32, len(plans) // (workers * 8)))
            with ProcessPoolExecutor(workers, mp_context=ctx, initializer=init_worker) as pool:
                for r in pool.map(write_utterance, plans, [str(root)] * len(plans), chunksize=chunk):
                    rendered.append(r)
                    bar.update()
    finally:
        bar.close()
    manifest = build_manifest(config, seed, speakers, plans, rendered, root)
    manifest.save(root)
    return manifest


def default_workers() -> int:
    """Worker processes to use by default: the CPUs this process may run on (at most 8)."""
    return max(1, min(8, usable_cpus()))
