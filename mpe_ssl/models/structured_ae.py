"""The weak-label autoencoder of Ewert & Sandler (ICASSP 2017): analysis ``h``, synthesis ``f``.

A frame of the magnitude spectrogram ``V`` (or, with ``context`` frames, the frame and its
neighbours) goes through the analysis network ``h`` to a non-negative representation of
``n_units`` units, one block per instrument-pitch class (see :class:`mpe_ssl.data.score.UnitLayout`),
and back through the synthesis network ``f`` to a non-negative magnitude frame::

    V (batch, bins, frames) -> h -> R (batch, units, frames) -> [L ⊙ R] -> f -> V̂ (batch, bins, frames)

As in the paper: feed-forward layers, sigmoid on every hidden layer, ReLU on the
representation and the output (non-negativity); three analysis and two synthesis layers;
1500 hidden units. ``nonnegative_synthesis`` clips every weight matrix of ``f`` to >= 0
after each optimiser step (:meth:`project`), the paper's "projection onto the non-negative
orthant", so that ``f`` builds its output only by adding what the active units contribute.

Frames are independent (a 1x1 convolution over time would be the same thing): the network
works on ``(batch * frames, features)`` rows internally.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


#: the representation's activation: name -> module
REPRESENTATIONS = {"relu": nn.ReLU, "softplus": nn.Softplus}


def _mlp(sizes: list[int], last: nn.Module) -> nn.Sequential:
    layers: list[nn.Module] = []
    for index, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        layers.append(last if index == len(sizes) - 2 else nn.Sigmoid())
    return nn.Sequential(*layers)


def context_frames(spectrogram: Tensor, context: int) -> Tensor:
    """Stack each frame with its ``context`` neighbours on each side (edges replicated).

    Args:
        spectrogram: ``(batch, bins, frames)``.
        context: frames on each side; 0 returns the input.

    Returns:
        ``(batch, bins * (2 * context + 1), frames)``, neighbour ``-context`` first.
    """
    if context == 0:
        return spectrogram
    padded = F.pad(spectrogram, (context, context), mode="replicate")
    frames = spectrogram.shape[-1]
    return torch.cat([padded[..., offset:offset + frames] for offset in range(2 * context + 1)], dim=1)


class StructuredAutoencoder(nn.Module):
    """Frame-wise autoencoder with a representation whose units follow a score's classes.

    Args:
        n_bins: magnitude bins per frame (``n_fft // 2 + 1``).
        n_units: units of the representation (``UnitLayout.n_units``).
        hidden: units of every hidden layer (the paper: 1500).
        analysis_layers: weight layers of ``h`` (the paper: 3).
        synthesis_layers: weight layers of ``f`` (the paper: 2).
        context: neighbouring input frames on each side given to ``h`` (0: one frame); the
            output is always the centre frame.
        nonnegative_synthesis: keep ``f``'s weight matrices >= 0 (see :meth:`project`).
        input_compression: ``c > 0``: ``h`` sees ``log(1 + c V)`` instead of ``V`` (the
            output still models ``V``); 0: ``V`` as in the paper.
        synthesis_bias: initial bias of ``f``'s hidden layers; a negative value (e.g. -4:
            sigmoid 0.018) starts ``f`` near silence when no unit is active, so that units
            must switch on to explain the input (None: PyTorch's default init).
        input_bins: ``h`` sees only the lowest ``input_bins`` bins of each frame (None: all);
            the output still has every bin. A cheaper analysis network: the pitches of a
            score sit in the low bins (at 22050 Hz and n_fft 2048, 256 bins reach 2.8 kHz).
        representation: the representation's activation: ``relu`` (the paper) or
            ``softplus`` (no unit can die: a ReLU unit whose input is negative on every
            frame gets no gradient again).

    With ``synthesis_layers=1``, ``f`` is one linear layer, ``V̂ = W R + b``: an NMF-like
    decoder whose columns :meth:`load_templates` can set to harmonic templates (the
    harmonic prior of ``mpe-ssl separate``, see :mod:`mpe_ssl.separate`).
    """

    def __init__(
        self,
        n_bins: int,
        n_units: int,
        hidden: int = 1500,
        analysis_layers: int = 3,
        synthesis_layers: int = 2,
        context: int = 0,
        nonnegative_synthesis: bool = False,
        input_compression: float = 0.0,
        synthesis_bias: float | None = None,
        input_bins: int | None = None,
        representation: str = "relu",
    ) -> None:
        super().__init__()
        for name, value, low in (("n_bins", n_bins, 1), ("n_units", n_units, 1), ("hidden", hidden, 1),
                                 ("analysis_layers", analysis_layers, 1), ("synthesis_layers", synthesis_layers, 1),
                                 ("context", context, 0)):
            if int(value) != value or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        self.n_bins, self.n_units, self.context = int(n_bins), int(n_units), int(context)
        self.nonnegative_synthesis = bool(nonnegative_synthesis)
        if input_compression < 0:
            raise ValueError(f"input_compression must be >= 0, got {input_compression!r}")
        self.input_compression = float(input_compression)
        if representation not in REPRESENTATIONS:
            raise ValueError(f"representation must be one of {', '.join(REPRESENTATIONS)}, got {representation!r}")
        if input_bins is not None and not 1 <= input_bins <= n_bins:
            raise ValueError(f"input_bins must be in [1, n_bins={n_bins}] or None, got {input_bins!r}")
        self.input_bins = self.n_bins if input_bins is None else int(input_bins)
        inputs = self.input_bins * (2 * self.context + 1)
        self.analysis = _mlp([inputs] + [hidden] * (analysis_layers - 1) + [n_units], REPRESENTATIONS[representation]())
        self.synthesis = _mlp([n_units] + [hidden] * (synthesis_layers - 1) + [n_bins], nn.ReLU())
        if synthesis_bias is not None:
            with torch.no_grad():
                for layer in list(self.synthesis)[:-2]:
                    if isinstance(layer, nn.Linear):
                        layer.bias.fill_(float(synthesis_bias))
        if self.nonnegative_synthesis:
            # |w| of PyTorch's default init would sum to ~0.25 sqrt(fan_in) per output: start
            # from uniform(0, 1/fan_in) instead, so f's first output is of the input's scale
            with torch.no_grad():
                for layer in self.synthesis:
                    if isinstance(layer, nn.Linear):
                        layer.weight.uniform_(0.0, 1.0 / layer.in_features)

    @torch.no_grad()
    def load_templates(self, templates: Tensor) -> None:
        """Make the one-layer ``f`` the templates ``W (bins, units)``: ``V̂ = W R``, no bias.

        Raises ``ValueError`` when ``f`` has more than one layer or ``W`` the wrong shape.
        """
        if len(self.synthesis) != 2:
            raise ValueError("load_templates needs a one-layer synthesis network (synthesis_layers=1)")
        layer = self.synthesis[0]
        if tuple(templates.shape) != tuple(layer.weight.shape):
            raise ValueError(f"templates must be (bins, units) = {tuple(layer.weight.shape)}, got {tuple(templates.shape)}")
        layer.weight.copy_(templates)
        layer.bias.zero_()

    @staticmethod
    def _rows(x: Tensor) -> Tensor:  # (batch, features, frames) -> (batch * frames, features)
        return x.transpose(1, 2).reshape(-1, x.shape[1])

    @staticmethod
    def _frames(rows: Tensor, batch: int) -> Tensor:  # inverse of _rows
        return rows.reshape(batch, -1, rows.shape[-1]).transpose(1, 2)

    def encode(self, spectrogram: Tensor) -> Tensor:
        """``h``: ``(batch, bins, frames)`` magnitudes -> ``(batch, units, frames)`` >= 0."""
        if spectrogram.dim() != 3 or spectrogram.shape[1] != self.n_bins:
            raise ValueError(f"spectrogram must be (batch, {self.n_bins}, frames), got {tuple(spectrogram.shape)}")
        spectrogram = spectrogram[:, : self.input_bins]
        if self.input_compression > 0:
            spectrogram = torch.log1p(self.input_compression * spectrogram)
        stacked = context_frames(spectrogram, self.context)
        return self._frames(self.analysis(self._rows(stacked)), spectrogram.shape[0])

    def decode(self, representation: Tensor) -> Tensor:
        """``f``: ``(batch, units, frames)`` -> ``(batch, bins, frames)`` magnitudes >= 0."""
        if representation.dim() != 3 or representation.shape[1] != self.n_units:
            raise ValueError(f"representation must be (batch, {self.n_units}, frames), got {tuple(representation.shape)}")
        return self._frames(self.synthesis(self._rows(representation)), representation.shape[0])

    def forward(self, spectrogram: Tensor, labels: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Reconstruction and representation; ``labels`` (units, frames) or (batch, units,
        frames) in {0, 1} zero the units they mark 0 before synthesis (structured dropout).

        Returns:
            ``(reconstruction (batch, bins, frames), representation (batch, units, frames))``;
            the representation is ``h``'s output before the labels are applied.
        """
        representation = self.encode(spectrogram)
        kept = representation if labels is None else representation * labels
        return self.decode(kept), representation

    @torch.no_grad()
    def project(self) -> None:
        """Clip ``f``'s weight matrices to >= 0 when ``nonnegative_synthesis`` (else nothing).

        Called after every optimiser step by the system; biases stay free.
        """
        if not self.nonnegative_synthesis:
            return
        for layer in self.synthesis:
            if isinstance(layer, nn.Linear):
                layer.weight.clamp_(min=0.0)
