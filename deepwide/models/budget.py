"""Parameter counts and the depth/width budget solver (pure Python; no torch needed).

:func:`count_params` counts what :meth:`Encoder.num_params` counts — front-end, feature
projection, positional convolution, transformer; no prediction heads — analytically, so the
solver can try hundreds of widths instantly. The tests check it against built models.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from deepwide.errors import ModelError
from deepwide.models.config import EncoderConfig, FrontendConfig

_MAX_WIDTH = 16384


def frontend_params(config: FrontendConfig) -> int:
    """Trainable parameters of a front-end."""
    if config.kind == "spectral":
        # Conv1d(n_mels, channels, kernel) with bias + LayerNorm(channels)
        return config.n_mels * config.channels * config.kernel + 3 * config.channels
    total, in_ch = 0, 1
    for i, (out_ch, kernel, _) in enumerate(config.conv_layers):
        total += in_ch * out_ch * kernel + (out_ch if config.conv_bias else 0)
        if config.norm == "layer_norm" or i == 0:  # group norm: first layer only
            total += 2 * out_ch
        in_ch = out_ch
    return total


def layer_params(config: EncoderConfig, index: int = 1) -> int:
    """Parameters of transformer layer ``index`` (WavLM's layer 0 also holds the bucket table)."""
    d, f = config.width, config.ffn
    attention = 4 * (d * d + d)
    if config.arch == "wavlm":
        attention += config.head_dim * 8 + 8 + config.heads  # gated relative position
        if index == 0:
            attention += config.num_buckets * config.heads
    feed_forward = d * f + f + f * d + d
    return attention + feed_forward + 2 * (2 * d)  # + two layer norms


def count_params(config: EncoderConfig) -> int:
    """Trainable parameters of the encoder of ``config`` (no prediction heads).

    Example:
        >>> count_params(PRESETS.get("hubert-base"))
        94370944
    """
    c, d, k = config.frontend.out_channels, config.width, config.pos_conv_kernel
    projection = 2 * c + c * d + d  # LayerNorm(C) + Linear(C, D)
    pos_conv = k + d * (d // config.pos_conv_groups) * k + d  # weight-norm g, v, bias
    final_norm = 2 * d
    layers = sum(layer_params(config, i) for i in range(config.depth))
    return frontend_params(config.frontend) + projection + pos_conv + final_norm + layers


@dataclass(frozen=True)
class BudgetRow:
    """One depth's solution: the width whose parameter count is nearest the budget.

    Attributes:
        depth: layers.
        width: model dimension (a multiple of the head size).
        ffn: feed-forward dimension.
        heads: attention heads.
        params: parameter count of that architecture.
        deviation: ``(params - budget) / budget`` (signed fraction).
    """

    depth: int
    width: int
    ffn: int
    heads: int
    params: int
    deviation: float


#: How :func:`solve_budget` meets a budget: by width alone, or by width then FFN dimension.
BUDGET_MATCHES = ("width", "ffn")


def _match_ffn(cfg: EncoderConfig, params: int) -> tuple[int, EncoderConfig]:
    """``cfg`` with the FFN dimension whose count is nearest ``params`` (the count is affine in it)."""
    n0 = count_params(cfg)
    per_unit = count_params(replace(cfg, ffn=cfg.ffn + 1)) - n0
    best = (n0, cfg)
    guess = cfg.ffn + round((params - n0) / per_unit)
    for ffn in (guess - 1, guess, guess + 1):
        if ffn >= 1:
            c = replace(cfg, ffn=int(ffn))
            n = count_params(c)
            if abs(n - params) < abs(best[0] - params):
                best = (n, c)
    return best


def solve_budget(
    params: int,
    depths: Sequence[int],
    *,
    template: EncoderConfig,
    ffn_ratio: float = 4.0,
    head_dim: int = 64,
    match: str = "width",
) -> list[BudgetRow]:
    """For each depth, the width (a multiple of ``head_dim``) whose count is nearest ``params``.

    Students copy everything but depth/width/FFN/heads from ``template`` (front-end, arch,
    positional convolution); ``heads = width / head_dim``. Widths are also multiples of the
    positional-conv groups.

    Args:
        match: ``"width"`` (the paper's rule): ``ffn = round(width * ffn_ratio)``, so the
            count is only as close as the width grid allows (the embedded study's 12-layer
            students: −14 %); ``"ffn"``: that width, then the FFN dimension (any positive
            integer) whose count is nearest ``params`` — counts match to about one FFN unit per
            layer, the FFN/width ratio moves off ``ffn_ratio`` (see ``BudgetRow.ffn``).

    Raises:
        ModelError: a non-positive budget, depth, ratio or head size, or an unknown ``match``.
    """
    # imported here: presets build configs, whose validation counts their parameters here
    from deepwide.models.presets import student_config

    if params <= 0:
        raise ModelError(f"the parameter budget must be positive, got {params}")
    if head_dim < 1 or ffn_ratio <= 0:
        raise ModelError(f"head_dim ({head_dim}) and ffn_ratio ({ffn_ratio}) must be positive")
    if match not in BUDGET_MATCHES:
        raise ModelError(f"unknown budget match {match!r}; use one of: {', '.join(BUDGET_MATCHES)}")
    step = math.lcm(head_dim, template.pos_conv_groups)
    rows = []
    for depth in depths:
        if int(depth) < 1:
            raise ModelError(f"depths must be positive, got {depth}")
        best: tuple[int, EncoderConfig] | None = None
        width = step
        while width <= _MAX_WIDTH:
            cfg = student_config(template, int(depth), width, ffn_ratio=ffn_ratio, head_dim=head_dim)
            n = count_params(cfg)
            if best is None or abs(n - params) < abs(best[0] - params):
                best = (n, cfg)
            if n > params:
                break
            width += step
        assert best is not None
        n, cfg = best
        if match == "ffn":
            n, cfg = _match_ffn(cfg, params)
        rows.append(BudgetRow(cfg.depth, cfg.width, cfg.ffn, cfg.heads, n, (n - params) / params))
    return rows


def format_count(n: int) -> str:
    """``23492224`` -> ``23.49 M``."""
    return f"{n / 1e6:.2f} M"


def format_params_table(rows: Sequence[tuple[str, EncoderConfig]]) -> str:
    """One line per ``(name, config)``: name, count in millions, exact count, architecture."""
    width = max((len(name) for name, _ in rows), default=4)
    lines = []
    for name, cfg in rows:
        n = count_params(cfg)
        lines.append(f"{name:<{width}}  {format_count(n):>10}  {n:>12,}  {cfg.describe()}")
    return "\n".join(lines)


def format_budget_table(rows: Sequence[BudgetRow], params: int) -> str:
    """The solver's table: depth, width, FFN, heads, count and deviation from the budget."""
    lines = [
        f"budget {format_count(params)} ({params:,} parameters)",
        f"{'depth':>5}  {'width':>5}  {'ffn':>5}  {'heads':>5}  {'params':>10}  {'deviation':>9}",
    ]
    for r in rows:
        lines.append(
            f"{r.depth:>5}  {r.width:>5}  {r.ffn:>5}  {r.heads:>5}  {format_count(r.params):>10}  "
            f"{100 * r.deviation:>+8.2f}%"
        )
    return "\n".join(lines)
