"""The one encoder class: a front-end plus torchaudio's wav2vec 2.0 / HuBERT / WavLM encoder.

:class:`Encoder` implements :class:`deepwide.models.base.SpeechEncoder`. It is assembled from
torchaudio's components (``FeatureExtractor``, ``FeatureProjection``, ``Transformer``,
``EncoderLayer``, ``WavLMSelfAttention``) — the transformer is not rewritten — and keeps their
state-dict names, so torchaudio bundles and :meth:`Encoder.as_torchaudio` share weights
one-to-one.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import torch
from torch import Tensor, nn
from torchaudio.models.wav2vec2 import components

from deepwide.audio import SAMPLE_RATE, check_sample_rate
from deepwide.errors import AudioError
from deepwide.models.config import EncoderConfig
from deepwide.models.frontend import build_frontend, frames_for
from deepwide.models.torchaudio_private import (
    build_transformer_encoder,
    build_wavlm_encoder,
    init_transformer_params,
    transformer_input,
)

log = logging.getLogger(__name__)


def _build_transformer(config: EncoderConfig) -> components.Encoder:
    """torchaudio ``components.Encoder`` (feature projection + transformer) of ``config``."""
    kwargs = dict(
        in_features=config.frontend.out_channels,
        embed_dim=config.width,
        dropout_input=config.projection_dropout,
        pos_conv_kernel=config.pos_conv_kernel,
        pos_conv_groups=config.pos_conv_groups,
        num_layers=config.depth,
        num_heads=config.heads,
        attention_dropout=config.attention_dropout,
        ff_interm_features=config.ffn,
        ff_interm_dropout=config.ffn_dropout,
        dropout=config.dropout,
        layer_norm_first=config.layer_norm_first,
        layer_drop=config.layer_drop,
    )
    if config.arch == "wavlm":
        return build_wavlm_encoder(num_buckets=config.num_buckets, max_distance=config.max_distance, **kwargs)
    return build_transformer_encoder(**kwargs)


class Encoder(nn.Module):
    """A HuBERT-family speech encoder exposing every layer (a ``SpeechEncoder``).

    Attributes:
        config: the architecture.
        model_id: short human-readable name (``tiny-teacher``, ``random:hubert-base`` …).
        frontend: waveform -> frames module, torchaudio ``FeatureExtractor`` interface:
            ``forward(wavs (B, S), lengths (B,) | None) -> (feats (B, T, C), lengths | None)``.
        encoder: torchaudio ``wav2vec2.components.Encoder`` (feature projection + transformer).
        num_layers: transformer layers L.
        dim: width D of every hidden state.
        frame_rate_hz: output frames per second (50).
        sample_rate: input sample rate (16,000 Hz; the model never resamples).
    """

    sample_rate: int = SAMPLE_RATE

    def __init__(self, config: EncoderConfig, *, model_id: str = "custom") -> None:
        super().__init__()
        self.config = config
        self.model_id = model_id
        self.frontend = build_frontend(config.frontend)
        self.encoder = _build_transformer(config)
        self.num_layers = config.depth
        self.dim = config.width
        self.frame_rate_hz = float(config.frame_rate_hz)

    # ------------------------------------------------------------------ interface
    def hidden_states(
        self,
        wavs: Tensor,
        lengths: Tensor | None = None,
        *,
        sample_rate: int = SAMPLE_RATE,
    ) -> tuple[list[Tensor], Tensor]:
        """Run the encoder and return the input of the first layer and every layer's output.

        Padding never changes a result: row ``b`` of the batched output equals the output of
        ``wavs[b, :lengths[b]]`` run alone (to float round-off). How:

        * group-norm CNN front-ends (HuBERT/wav2vec 2.0 Base) normalise the first conv layer
          over time, so rows are grouped by valid length and each group runs through the
          front-end separately, unpadded; the frames are then padded and batched;
        * layer-norm CNN and spectral front-ends run batched: a valid frame only sees valid
          samples, and the spectral conv sees padded frames zeroed;
        * the transformer runs batched with padded frames zeroed after the feature projection
          and masked out of attention (key padding), which is exact.

        Nothing here is wrapped in ``no_grad``: the states are differentiable (students are
        trained through this method). Call ``model.eval()`` for deterministic outputs.

        Args:
            wavs: (B, S) float waveforms at 16 kHz, zero-padded on the right.
            lengths: (B,) valid samples per row; ``None`` means every row is full length.
            sample_rate: sample rate of ``wavs``; anything but 16,000 raises ``AudioError``.

        Returns:
            ``(states, frame_lengths)``: ``num_layers + 1`` tensors (B, T, D) with
            ``T = frames(S)`` (``floor((S - 400) / 320) + 1`` for HuBERT) and padded frames set
            to 0; index 0 is the transformer input (after positional convolution, and after
            the input layer norm in post-LN models), index ``i`` the output of layer ``i`` —
            in pre-LN models before the encoder's final layer norm, as torchaudio's
            ``extract_features`` and transformers' (5.x) ``output_hidden_states`` return it.
            ``frame_lengths`` (B,) int64 counts valid frames.

        Raises:
            AudioError: wrong sample rate, shape or dtype, or an utterance shorter than one
                frame (400 samples).
        """
        check_sample_rate(sample_rate, self.sample_rate, what="audio given to the model")
        wavs, lengths = self._check_inputs(wavs, lengths)
        feats, frame_lengths = self._frontend_exact(wavs, lengths)
        states = self._transformer_states(feats, frame_lengths)
        return states, frame_lengths

    def forward(self, wavs: Tensor, lengths: Tensor | None = None) -> tuple[list[Tensor], Tensor]:
        """Same as :meth:`hidden_states` (so DDP and hooks see a normal ``forward``)."""
        return self.hidden_states(wavs, lengths)

    def num_frames(self, num_samples: int) -> int:
        """Valid frames for ``num_samples`` samples: the front-end's frame rule
        (``floor((S - 400) / 320) + 1`` for HuBERT's CNN; 0 under one frame)."""
        return self.config.frontend.num_frames(int(num_samples))

    def config_dict(self) -> dict[str, Any]:
        """JSON-able architecture config (``EncoderConfig.from_dict`` rebuilds it)."""
        return self.config.to_dict()

    def weights_hash(self) -> str:
        """sha256 (16 hex chars) over every state-dict tensor: name, dtype, shape and bytes."""
        h = hashlib.sha256()
        for name, tensor in sorted(self.state_dict().items()):
            t = tensor.detach().to("cpu").contiguous()
            h.update(name.encode())
            h.update(str(t.dtype).encode())
            h.update(str(tuple(t.shape)).encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        return h.hexdigest()[:16]

    def num_params(self) -> int:
        """Trainable parameters of the encoder (front-end + transformer; no heads)."""
        return sum(p.numel() for p in self.parameters())

    def as_torchaudio(self) -> Any:
        """A ``torchaudio.models.Wav2Vec2Model`` sharing this encoder's modules (no copy).

        Training the returned model (e.g. inside ``HuBERTPretrainModel``) trains this one.
        """
        from torchaudio.models import Wav2Vec2Model

        return Wav2Vec2Model(self.frontend, self.encoder)

    def extra_repr(self) -> str:
        return f"model_id={self.model_id!r}, {self.config.describe()}"

    # ------------------------------------------------------------------ internals
    def _check_inputs(self, wavs: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor | None]:
        if not isinstance(wavs, Tensor) or wavs.ndim != 2:
            shape = list(wavs.shape) if isinstance(wavs, Tensor) else type(wavs).__name__
            raise AudioError(
                f"the model takes (batch, samples) waveforms, got {shape}; stack mono 16 kHz rows"
            )
        if not wavs.is_floating_point():
            raise AudioError(f"waveforms must be float, got {wavs.dtype}; convert to float32 in [-1, 1]")
        param = next(self.parameters())
        wavs = wavs.to(device=param.device, dtype=param.dtype)
        batch, num_samples = wavs.shape
        min_samples = self.config.frontend.receptive_field
        if lengths is None:
            if num_samples < min_samples:
                raise AudioError(
                    f"input of {num_samples} samples is shorter than one frame ({min_samples} samples); "
                    f"drop or pad such utterances"
                )
            return wavs, None
        lengths = torch.as_tensor(lengths, device=param.device).long().reshape(-1)
        if lengths.shape[0] != batch:
            raise AudioError(f"got {lengths.shape[0]} lengths for {batch} waveforms; give one per row")
        if bool((lengths > num_samples).any()):
            raise AudioError(
                f"a length exceeds the padded width ({int(lengths.max())} > {num_samples} samples)"
            )
        if bool((lengths < min_samples).any()):
            raise AudioError(
                f"an utterance of {int(lengths.min())} samples is shorter than one frame "
                f"({min_samples} samples); drop or pad such utterances"
            )
        return wavs, lengths

    def _frontend_exact(self, wavs: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor]:
        """(B, S) -> (B, T, C) features equal, row by row, to the unpadded ones; (B,) frames."""
        batch, num_samples = wavs.shape
        full = frames_for(self.config.frontend, torch.tensor([num_samples]))[0].item()
        if lengths is None:
            feats, _ = self.frontend(wavs, None)
            return feats, torch.full((batch,), feats.shape[1], dtype=torch.long, device=wavs.device)
        frame_lengths = frames_for(self.config.frontend, lengths)
        if not getattr(self.frontend, "time_normalised", False) or bool((lengths == num_samples).all()):
            feats, _ = self.frontend(wavs, lengths)
            return feats, frame_lengths
        rows: list[Tensor | None] = [None] * batch
        for n in sorted(set(lengths.tolist())):
            idx = (lengths == n).nonzero().squeeze(1)
            group, _ = self.frontend(wavs[idx, :n], None)  # (b, t_n, C), unpadded
            group = nn.functional.pad(group, (0, 0, 0, full - group.shape[1]))
            for j, i in enumerate(idx.tolist()):
                rows[i] = group[j]
        return torch.stack(rows), frame_lengths  # type: ignore[arg-type]

    def _transformer_states(self, feats: Tensor, frame_lengths: Tensor) -> list[Tensor]:
        """(B, T, C) features -> L + 1 states (B, T, D), padded frames zeroed and masked."""
        enc, cfg = self.encoder, self.config
        x = enc.feature_projection(feats)
        batch, frames, _ = x.shape
        valid = torch.arange(frames, device=x.device)[None, :] < frame_lengths[:, None]  # (B, T)
        padded = not bool(valid.all())
        if padded:
            x = x.masked_fill(~valid[..., None], 0.0)
        transformer = enc.transformer
        x = transformer_input(transformer, x)
        states = [x]
        attn_mask = key_padding_mask = None
        if padded:
            if cfg.arch == "wavlm":
                # additive float mask, the same type as WavLM's position bias
                key_padding_mask = torch.zeros_like(valid, dtype=x.dtype).masked_fill(~valid, float("-inf"))
            else:
                attn_mask = valid[:, None, None, :].expand(batch, 1, frames, frames)  # True = attend
        position_bias = None
        for i, layer in enumerate(transformer.layers):
            droppable = not (cfg.arch == "wavlm" and i == 0)  # layer 0 makes WavLM's position bias
            if self.training and cfg.layer_drop > 0 and droppable and torch.rand(1).item() < cfg.layer_drop:
                states.append(x)
                continue
            if cfg.arch == "wavlm":
                x, position_bias = layer(
                    x, None, position_bias=position_bias, key_padding_mask=key_padding_mask
                )
            else:
                x, _ = layer(x, attn_mask)
            states.append(x)
        if padded:
            states = [s.masked_fill(~valid[..., None], 0.0) for s in states]
        return states


def build_encoder(config: EncoderConfig, *, seed: int | None = 0, model_id: str = "custom") -> Encoder:
    """Build a randomly initialised :class:`Encoder`.

    The front-end uses PyTorch's default initialisation, the transformer fairseq's BERT
    initialisation (linear/embedding weights ~ N(0, 0.02), biases 0), as in HuBERT. With a
    seed the weights depend on the seed only (the global RNG state is left untouched).

    Args:
        config: the architecture.
        seed: initialisation seed; ``None`` draws from the global RNG.
        model_id: name carried by the model.

    Returns:
        The encoder on the CPU, in training mode.
    """
    if seed is None:
        return _init(Encoder(config, model_id=model_id))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return _init(Encoder(config, model_id=model_id))


def _init(model: Encoder) -> Encoder:
    model.encoder.transformer.apply(init_transformer_params)
    return model
