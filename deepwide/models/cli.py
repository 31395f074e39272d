"""``deepwide models``: parameter counts, the depth/width budget solver, and the model list.

Parses options and hands off to :mod:`deepwide.models.budget` / :mod:`deepwide.models.loading`;
nothing here imports torch at import time.
"""

from __future__ import annotations

import click

from deepwide.params import COUNT_LIST, PARAM_COUNT


@click.group("models")
def models() -> None:
    """Model architectures: parameter counts, budgets, and what --model accepts."""


@models.command("params")
@click.argument("names", nargs=-1, required=True)
def params_command(names: tuple[str, ...]) -> None:
    """Print the encoder parameter count (no prediction heads) of each model NAME.

    NAME is any model spec: a preset (distilhubert, 3l-one, 12l-half, hubert-base …), a
    checkpoint folder, torchaudio:NAME, random:SPEC …
    """
    from deepwide.models.budget import format_params_table
    from deepwide.models.loading import resolve_config

    click.echo(format_params_table([(name, resolve_config(name)) for name in names]))


@models.command("budget")
@click.option("--params", "budget", type=PARAM_COUNT, required=True, help="Parameter budget, e.g. 26.9M, 900k, 26900000.")
@click.option("--depths", type=COUNT_LIST, default="2,3,4,6,8,12", show_default=True, help="Comma-separated depths.")
@click.option("--template", default="hubert-base", show_default=True,
              help="Model spec whose front-end, arch and positional conv the students copy.")
@click.option("--ffn-ratio", type=float, default=4.0, show_default=True, help="FFN width / model width.")
@click.option("--head-dim", type=int, default=64, show_default=True, help="Width of one attention head.")
@click.option("--match", type=click.Choice(["width", "ffn"]), default="width", show_default=True,
              help="width: nearest width, FFN at --ffn-ratio (the paper's rule); ffn: then the FFN size that meets the budget.")
def budget_command(budget: int, depths: tuple[int, ...], template: str, ffn_ratio: float, head_dim: int,
                   match: str) -> None:
    """For each depth, the width (a multiple of the head size) nearest the parameter budget."""
    from deepwide.models.budget import format_budget_table, solve_budget
    from deepwide.models.loading import resolve_config

    rows = solve_budget(
        budget, list(depths), template=resolve_config(template), ffn_ratio=ffn_ratio, head_dim=head_dim,
        match=match,
    )
    click.echo(format_budget_table(rows, budget))


@models.command("list")
@click.option("--no-torchaudio", is_flag=True, help="Skip the torchaudio bundles (avoids importing torch).")
def list_command(no_torchaudio: bool) -> None:
    """List presets, bundled checkpoints, torchaudio bundles and the spec forms --model accepts."""
    from deepwide.models.loading import model_listing

    rows = model_listing(include_torchaudio=not no_torchaudio)
    width = max(len(spec) for _, spec, _ in rows)
    for kind, spec, description in rows:
        click.echo(f"{kind:<10}  {spec:<{width}}  {description}")
