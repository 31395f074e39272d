"""``deepwide probe``: layerwise probes on feature stores (parses options, hands off).

Heavy imports (torch, xarray) happen inside the command, so ``deepwide --help`` stays fast.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click

from deepwide.params import NUMBER_LIST
from deepwide.probing.tasks import TASKS

log = logging.getLogger(__name__)


class _StorePath(click.Path):
    """``click.Path`` that hands an fsspec URL (``memory://NAME``, ``file:///abs`` …) on as the
    string it is (a ``Path`` would fold ``//`` into ``/``); local paths convert as before."""

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> object:
        if isinstance(value, str) and "://" in value:
            return value
        return super().convert(value, param, ctx)


def _task_lines() -> str:
    return "\n".join(f"  {n:<10} {TASKS.get(n).description}" for n in TASKS.names())


@click.command(
    "probe",
    epilog="\b\nTasks:\n" + _task_lines(),
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option("--task", "tasks", multiple=True, required=True, type=click.Choice([*TASKS.names(), "all"]),
              help="Task to probe (repeatable); 'all' = every task the stores can serve.")
@click.option("--store", "stores", multiple=True, required=True, type=_StorePath(path_type=Path),
              help="Feature store of one model (repeatable: several models in one table).")
@click.option("--null", "nulls", multiple=True, type=_StorePath(path_type=Path),
              help="Store of a random-init twin, probed as its own null model entry (repeatable).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write probe.nc and probe.csv here; earlier results there of the same models, seed "
                   "and settings are merged (this run's tasks replace same-named ones), others refused.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--max-train-frames", type=click.IntRange(min=1), default=50_000, show_default=True,
              help="Cap on training frames of frame-level tasks (random frames, seeded).")
@click.option("--max-eval-frames", type=click.IntRange(min=1), default=50_000, show_default=True,
              help="Cap on dev and on test frames (whole utterances, seeded).")
@click.option("--penalties", type=NUMBER_LIST, default=None,
              help="Comma-separated L2 grid on the mean-loss scale [default: 1,0.1,…,1e-5].")
@click.option("--tol", type=click.FloatRange(min=0, min_open=True), default=1e-4, show_default=True,
              help="Solver tolerance on max |gradient| (as scikit-learn's tol) for the chosen fits.")
@click.option("--gap-tol", type=click.FloatRange(min=0, max=1, min_open=True, max_open=True), default=1e-3,
              show_default=True,
              help="Certified relative objective gap of every choosable fit, utterance-level tasks.")
@click.option("--frame-gap-tol", type=click.FloatRange(min=0, max=1, min_open=True, max_open=True), default=1e-2,
              show_default=True, help="The same for frame-level tasks (phone, sid-frame).")
@click.option("--max-iter", type=click.IntRange(min=1), default=500, show_default=True,
              help="Solver iterations per run (sweep and refinement each); a warning names the "
                   "layers whose chosen fit stopped there.")
@click.option("--boot", "n_boot", type=click.IntRange(min=10), default=1000, show_default=True,
              help="Bootstrap replicates for the 95% intervals.")
@click.option("--weighted-sum/--no-weighted-sum", default=True, show_default=True,
              help="Also train the SUPERB weighted-sum probe.")
@click.option("--include-silence", is_flag=True, help="Keep silence frames in the phone task.")
@click.option("--segment-frames", type=click.IntRange(min=1), default=1, show_default=True,
              help="sid-frame: average this many consecutive frames per sample.")
@click.option("--head", "asr_head", type=click.Choice(["linear", "blstm"]), default="linear", show_default=True,
              help="asr: a linear CTC head per layer (and on the weighted sum), or SUPERB's 2 x BiLSTM(1024) "
                   "on the weighted sum (for a GPU).")
@click.option("--ctc-steps", type=click.IntRange(min=1), default=1000, show_default=True,
              help="pr/asr: Adam steps of the CTC heads (16 utterances each).")
@click.pass_context
def probe(
    ctx: click.Context,
    tasks: tuple[str, ...],
    stores: tuple[Path | str, ...],
    nulls: tuple[Path | str, ...],
    out_dir: Path | None,
    device: str,
    max_train_frames: int,
    max_eval_frames: int,
    penalties: tuple[float, ...] | None,
    tol: float,
    gap_tol: float,
    frame_gap_tol: float,
    max_iter: int,
    n_boot: int,
    weighted_sum: bool,
    include_silence: bool,
    segment_frames: int,
    asr_head: str,
    ctc_steps: int,
) -> None:
    """Layerwise linear probes (and the weighted-sum probe) on one or more feature stores.

    Prints a per-layer table per model and task with the best layer marked `*`; with --out
    writes probe.nc and probe.csv (docs/results-schema.md), merged into earlier results there.
    """
    import time

    from deepwide.probing.run import (
        ProbeConfig,
        check_output_folder,
        format_table,
        probe_stores,
        save_results,
    )

    seed = getattr(ctx.obj, "seed", 0)
    use_all = "all" in tasks
    names = TASKS.names() if use_all else list(dict.fromkeys(tasks))
    kwargs = {} if penalties is None else {"penalties": penalties}
    config = ProbeConfig(
        max_train_frames=max_train_frames, max_eval_frames=max_eval_frames, include_silence=include_silence,
        segment_frames=segment_frames, tol=tol, gap_tol=gap_tol, frame_gap_tol=frame_gap_tol, max_iter=max_iter, n_boot=n_boot, weighted_sum=weighted_sum, device=device,
        asr_head=asr_head, ctc_steps=ctc_steps, **kwargs,
    )
    if out_dir is not None:  # refuse an --out this run cannot be merged into before probing
        check_output_folder(out_dir, list(stores), config, nulls=list(nulls), seed=seed)
    started = time.monotonic()
    results = probe_stores(list(stores), names, config, nulls=list(nulls), seed=seed, skip_unservable=use_all)
    click.echo(format_table(results), nl=False)
    if out_dir is not None:
        click.echo(save_results(results, out_dir, started=started).describe())
