"""``deepwide teacher export``: a pre-training run's encoder as a deepwide checkpoint."""

from __future__ import annotations

from pathlib import Path

from deepwide.errors import ConfigError
from deepwide.models.pretraining.config import PretrainConfig
from deepwide.models.pretraining.state import (
    load_encoder,
    load_state,
    read_run_info,
    recipe_cut,
    run_extra,
)


def export_teacher(run_dir: str | Path, out_dir: str | Path, *, half: bool = True,
                   iterations: int | None = None) -> Path:
    """Write the encoder of a (possibly unfinished) pre-training run as a deepwide checkpoint.

    The weights are those of the run's last saved state (``state.pt``); ``config.json`` records
    the iteration and step they come from, so a bundled teacher always says how far it got.

    Args:
        run_dir: the ``--out`` folder of ``deepwide teacher pretrain``.
        out_dir: checkpoint folder to write (e.g. ``deepwide/models/assets/tiny-teacher``).
        half: store the weights as float16 (the bundled teacher: ≈ 20 MB instead of 40 MB).
        iterations: the state must be exactly the end of this iteration; the checkpoint then
            records the recipe cut after it (``steps[:iterations]``), whose final model it is.
    """
    from deepwide.config import config_from_dict
    from deepwide.models import build_encoder, save_checkpoint

    run = Path(run_dir)
    if not (run / "state.pt").is_file() or not (run / "pretrain_config.json").is_file():
        raise ConfigError(f"{run} holds no pre-training state; run `deepwide teacher pretrain --out {run}` first")
    info = read_run_info(run / "pretrain_config.json")
    cfg = config_from_dict(PretrainConfig, info["config"], where=str(run / "pretrain_config.json"))
    if iterations is not None and not 1 <= iterations <= len(cfg.steps):
        raise ConfigError(f"--iterations {iterations}: the recipe in {run} has {len(cfg.steps)} iteration(s)")
    state = load_state(run / "state.pt", hint="the run's state is damaged: rerun `deepwide teacher pretrain` "
                                              "(the same config and seed reproduce it) into a fresh --out")
    encoder = build_encoder(cfg.encoder_config(), seed=info["seed"], model_id="tiny-teacher")
    load_encoder(encoder, state, run / "state.pt")  # shares its modules with the pre-training model
    done, step = state["iteration"], state["step"]
    if iterations is not None:
        if not ((done, step) == (iterations, 0) or (done, step) == (iterations - 1, cfg.steps[iterations - 1])):
            raise ConfigError(f"{run}/state.pt is at iteration {done + 1}, step {step}, not at the end of iteration "
                              f"{iterations}; export without --iterations, or from a copy saved then")
        info, cfg = recipe_cut(info, cfg, iterations)
        done, step = iterations, 0
    return save_checkpoint(encoder, out_dir, extra=run_extra(info, cfg, done, step), half=half)
