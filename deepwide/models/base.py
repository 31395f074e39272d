"""The one model interface every stage uses: :class:`SpeechEncoder`.

``hidden_states(wavs (B, S) float32 16 kHz, lengths (B,)) -> (states, frame_lengths)`` where
``states`` is a list of ``num_layers + 1`` tensors ``(B, T, D)``: index 0 is the input to the
first transformer layer, index ``i`` the output of layer ``i``; ``frame_lengths (B,)`` counts
the valid frames of each row (50 Hz grid).

Every model source of :func:`deepwide.models.load_model` returns one, and every stage reads a
model through these members only.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class SpeechEncoder(Protocol):
    """A frozen-or-trainable speech encoder exposing every layer.

    Attributes:
        num_layers: transformer layers ``L`` (``hidden_states`` returns ``L + 1`` tensors).
        dim: feature width ``D`` of every returned layer.
        frame_rate_hz: frames per second of the output grid (50 for HuBERT-family models).
        sample_rate: input sample rate in Hz (16,000).
        model_id: a short, human-readable name (``tiny-teacher``, ``random:hubert-base`` …).
    """

    num_layers: int
    dim: int
    frame_rate_hz: float
    sample_rate: int
    model_id: str

    def hidden_states(
        self, wavs: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Run the encoder.

        Args:
            wavs: (B, S) float32 waveforms at :attr:`sample_rate`, zero-padded on the right.
            lengths: (B,) valid samples per row; ``None`` means all rows are full length.

        Returns:
            ``(states, frame_lengths)``: ``L + 1`` tensors (B, T, D) and (B,) valid frames.
        """
        ...

    def num_frames(self, num_samples: int) -> int:
        """Valid output frames for an input of ``num_samples`` samples (0 if under one frame).

        ``hidden_states`` returns exactly this many valid frames for a row of that length;
        extraction plans its store with it before running the model.
        """
        ...

    def num_params(self) -> int:
        """Parameters of the encoder (0 for a model without weights)."""
        ...

    def config_dict(self) -> dict[str, Any]:
        """JSON-able architecture config (enough to rebuild the model without weights)."""
        ...

    def weights_hash(self) -> str:
        """Content hash of the weights (hex), for store attrs and cache keys."""
        ...
