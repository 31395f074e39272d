"""HuBERT-family encoders: configs, front-ends, the Encoder, presets, budgets and loading.

Names are re-exported lazily (PEP 562), so importing :mod:`deepwide.models` — which the CLI
does to find ``deepwide.models.cli`` — does not import torch::

    from deepwide.models import load_model, build_encoder, EncoderConfig, PRESETS
    model = load_model("random:hubert-base", seed=0)
    states, frame_lengths = model.hidden_states(wavs, lengths)  # L+1 x (B, T, D), (B,)
"""

from __future__ import annotations

from deepwide.lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    # config (no torch)
    "HUBERT_CNN": "deepwide.models.config",
    "FrontendConfig": "deepwide.models.config",
    "EncoderConfig": "deepwide.models.config",
    # presets / budget (no torch)
    "PRESETS": "deepwide.models.presets",
    "student_config": "deepwide.models.presets",
    "heads_for": "deepwide.models.presets",
    "count_params": "deepwide.models.budget",
    "solve_budget": "deepwide.models.budget",
    "BudgetRow": "deepwide.models.budget",
    "parse_param_count": "deepwide.params",
    "ZOO": "deepwide.models.zoo",
    # torch
    "SpeechEncoder": "deepwide.models.base",
    "Encoder": "deepwide.models.encoder",
    "build_encoder": "deepwide.models.encoder",
    "build_frontend": "deepwide.models.frontend",
    "save_checkpoint": "deepwide.models.checkpoint",
    "load_checkpoint": "deepwide.models.checkpoint",
    "read_checkpoint_info": "deepwide.models.checkpoint",
    "load_model": "deepwide.models.loading",
    "resolve_config": "deepwide.models.loading",
    "torchaudio_bundles": "deepwide.models.bundles",
    "check_sample_rate": "deepwide.audio",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
