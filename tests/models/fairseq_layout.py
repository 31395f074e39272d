"""fairseq's key names and config for an :class:`Encoder`: fabricated HuBERT / wav2vec 2.0 checkpoints.

The names are written out from fairseq's module names (independently of
:func:`deepwide.models.fairseq.map_fairseq_state`, which reads them), so a checkpoint built
here tests the reader. Used by the model tests and by ``scripts/paper_smoke.py`` (a
HuBERT-Base-shaped teacher as a fairseq ``.pt``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

TINY_CONV = "[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2"
#: fairseq's ``conv_feature_layers`` of HuBERT / wav2vec 2.0 Base and Large.
BASE_CONV = "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2"


def fairseq_key(key: str, layer_norm: bool) -> str:
    """deepwide/torchaudio name -> fairseq name (written out from fairseq's module names).

    fairseq's conv block is Sequential(conv, dropout, norm, GELU); the norm is a GroupNorm
    (``.2.``, first layer only) or Sequential(TransposeLast, LayerNorm, TransposeLast) (``.2.1.``).
    """
    rules = [] if layer_norm else [
        ("frontend.conv_layers.0.layer_norm.", "feature_extractor.conv_layers.0.2."),
    ]
    rules += [
        ("encoder.feature_projection.layer_norm.", "layer_norm."),
        ("encoder.feature_projection.projection.", "post_extract_proj."),
        ("encoder.transformer.pos_conv_embed.conv.parametrizations.weight.original0", "encoder.pos_conv.0.weight_g"),
        ("encoder.transformer.pos_conv_embed.conv.parametrizations.weight.original1", "encoder.pos_conv.0.weight_v"),
        ("encoder.transformer.pos_conv_embed.conv.", "encoder.pos_conv.0."),
        ("encoder.transformer.layer_norm.", "encoder.layer_norm."),
    ]
    for ours, theirs in rules:
        if key.startswith(ours):
            return theirs + key[len(ours):]
    if key.startswith("frontend.conv_layers."):
        idx, rest = key[len("frontend.conv_layers."):].split(".", 1)
        rest = rest.replace("conv.", "0.", 1).replace("layer_norm.", "2.1.", 1)
        return f"feature_extractor.conv_layers.{idx}.{rest}"
    if key.startswith("encoder.transformer.layers."):
        idx, rest = key[len("encoder.transformer.layers."):].split(".", 1)
        for ours, theirs in [
            ("attention.", "self_attn."),
            ("layer_norm.", "self_attn_layer_norm."),
            ("feed_forward.intermediate_dense.", "fc1."),
            ("feed_forward.output_dense.", "fc2."),
            ("final_layer_norm.", "final_layer_norm."),
        ]:
            if rest.startswith(ours):
                return f"encoder.layers.{idx}.{theirs}{rest[len(ours):]}"
    raise AssertionError(f"no fairseq name for {key}")


def fairseq_parts(model: Any, *, name: str = "hubert", layer_norm: bool = False, prefix: str = "",
                  conv_feature_layers: str = TINY_CONV, final_dim: int = 16,
                  n_labels: int = 504) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(state, model_cfg)`` of a fairseq checkpoint holding ``model``'s weights.

    ``state`` also carries the pre-training extras a real HuBERT / wav2vec 2.0 checkpoint has
    (``mask_emb`` (D,), ``label_embs_concat`` (n_labels, final_dim), ``final_proj``
    (final_dim, D)), zeros; ``model_cfg`` is ``cfg["model"]`` as fairseq >= 0.10 saves it.
    """
    width = model.config.width
    state = {prefix + fairseq_key(k, layer_norm): v.clone() for k, v in model.state_dict().items()}
    # pre-training extras a real HuBERT / wav2vec 2.0 checkpoint carries
    state[prefix + "mask_emb"] = torch.zeros(width)
    state[prefix + "label_embs_concat"] = torch.zeros(n_labels, final_dim)
    state[prefix + "final_proj.weight"] = torch.zeros(final_dim, width)
    state[prefix + "final_proj.bias"] = torch.zeros(final_dim)
    model_cfg = {
        "_name": name,
        "extractor_mode": "layer_norm" if layer_norm else "default",
        "encoder_layers": model.config.depth,
        "encoder_embed_dim": width,
        "encoder_ffn_embed_dim": model.config.ffn,
        "encoder_attention_heads": model.config.heads,
        "activation_fn": "gelu",
        "layer_norm_first": model.config.layer_norm_first,
        "conv_feature_layers": conv_feature_layers,
        "conv_bias": model.config.frontend.conv_bias,
        "conv_pos": model.config.pos_conv_kernel,
        "conv_pos_groups": model.config.pos_conv_groups,
        "dropout": 0.1,
        "encoder_layerdrop": 0.05,
        "label_rate": 50.0,
        "final_dim": final_dim,
    }
    return state, model_cfg


def write_fairseq_hubert(model: Any, path: str | Path, *, conv_feature_layers: str = BASE_CONV,
                         final_dim: int = 256) -> Path:
    """Save ``model`` as a pre-trained fairseq HuBERT checkpoint (``cfg``/``model``/
    ``optimizer_history``, as ``hubert_base_ls960.pt`` holds them) at ``path``."""
    state, model_cfg = fairseq_parts(model, conv_feature_layers=conv_feature_layers, final_dim=final_dim)
    ckpt = {
        "cfg": {"model": model_cfg, "task": {"_name": "hubert_pretraining", "normalize": False,
                                              "sample_rate": 16000, "label_rate": 50.0}},
        "model": state,
        "optimizer_history": [{"criterion_name": "HubertCriterion", "num_updates": 400000}],
        "extra_state": {"epoch": 1},
        "last_optimizer_state": None,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)
    return path
