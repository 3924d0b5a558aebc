"""Timbre-Trap-style 2D convolutional autoencoder mapping an HCQT to pitch salience logits.

Data flow, shapes as ``(batch, channels, bins, frames)``::

    HCQT (B, 6, 440, T)
      -> conv 3x3 (6 -> c0) + LayerNorm + ELU                 (B, c0, 440, T)
      -> 4 x EncoderBlock: 3 dilated residual blocks, then a
         (4, 1) stride-(2, 1) conv that halves frequency only (B, c4, 25, T)
                                        440 -> 219 -> 108 -> 53 -> 25
      -> conv (25, 1) to the latent + LayerNorm                (B, D, T)   one vector per frame
      -> transposed conv (25, 1) + 4 x DecoderBlock (mirror)  (B, c0, 440, T)
      -> conv 3x3 (c0 -> 1)                                    (B, 440, T) logits

Time is never strided, so the model takes excerpts of any length and one latent vector
stands for one frame.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mpe_ssl.grid import HARMONICS, N_BINS


class FrameLayerNorm(nn.LayerNorm):
    """LayerNorm of each frame over (channels, bins): ``(B, C, F, T) -> (B, C, F, T)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


#: the nonlinearities a TimbreTrapAE can use: ELU (Timbre-Trap's) or a cheaper leaky ReLU
ACTIVATIONS = {"elu": lambda: nn.ELU(inplace=True), "leaky_relu": lambda: nn.LeakyReLU(0.01, inplace=True)}


def make_activation(name: str) -> nn.Module:
    """A fresh in-place activation of :data:`ACTIVATIONS`; a one-line error for another name."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation={name!r}: expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class ResidualBlock(nn.Module):
    """``x + act(conv1x1(act(conv3x3_dilated(x))))``; shape preserved ``(B, C, F, T)``."""

    def __init__(self, channels: int, dilation: int, activation: str = "elu") -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=3, dilation=dilation, padding="same"),
            make_activation(activation),
            nn.Conv2d(channels, channels, kernel_size=1),
            make_activation(activation),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


#: dilations of the residual blocks of each encoder and decoder block (Timbre-Trap's)
DILATIONS = (1, 2, 3)


def _residual_stack(channels: int, dilations: tuple[int, ...] = DILATIONS, activation: str = "elu") -> nn.Sequential:
    return nn.Sequential(*(ResidualBlock(channels, dilation, activation) for dilation in dilations))


class EncoderBlock(nn.Module):
    """Residual blocks (dilations 1, 2, 3 by default), then halve frequency with a (4, 1) stride-(2, 1) conv.

    ``(B, C_in, F, T) -> (B, C_out, F // 2 - 1, T)``.
    """

    def __init__(self, in_channels: int, out_channels: int, in_bins: int,
                 dilations: tuple[int, ...] = DILATIONS, activation: str = "elu") -> None:
        super().__init__()
        self.residual = _residual_stack(in_channels, dilations, activation)
        self.down = nn.Conv2d(in_channels, out_channels, kernel_size=(4, 1), stride=(2, 1))
        self.norm = FrameLayerNorm([out_channels, in_bins // 2 - 1])
        self.act = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.down(self.residual(x))))


class DecoderBlock(nn.Module):
    """Double frequency with a (4, 1) stride-(2, 1) transposed conv, then residual blocks.

    ``(B, C_in, F, T) -> (B, C_out, out_bins, T)`` with ``out_bins = 2 F + 2 + (out_bins % 2)``.
    """

    def __init__(self, in_channels: int, out_channels: int, out_bins: int,
                 dilations: tuple[int, ...] = DILATIONS, activation: str = "elu") -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(
            in_channels, out_channels, kernel_size=(4, 1), stride=(2, 1), output_padding=(out_bins % 2, 0)
        )
        self.norm = FrameLayerNorm([out_channels, out_bins])
        self.act = make_activation(activation)
        self.residual = _residual_stack(out_channels, dilations, activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(self.act(self.norm(self.up(x))))


def encoder_channels(model_complexity: int, n_blocks: int = 4) -> list[int]:
    """Channel widths ``c0 .. c_n`` of the encoder: ``2^(i+1) * 2^(model_complexity-1)``."""
    return [2 ** (i + 1) * 2 ** (model_complexity - 1) for i in range(n_blocks + 1)]


class TimbreTrapAE(nn.Module):
    """Convolutional autoencoder from HCQT ``(B, H, F, T)`` to salience logits ``(B, F, T)``.

    Args:
        n_harmonics: input channels H (HCQT harmonics).
        n_bins: frequency bins F of input and output.
        model_complexity: width knob; channels ``(2, 4, 8, 16, 32) * 2^(complexity-1)``.
            The paper's setting is 3 (about 1.3 M parameters, a 128-d latent).
        latent_size: latent dimension D per frame; defaults to the widest encoder channel.
        n_blocks: encoder/decoder blocks; each roughly halves the bins.
        initial_salience: if given, the output bias starts at ``logit(initial_salience)`` so
            the untrained model predicts that prior instead of 0.5 everywhere (the prior
            initialisation of RetinaNet); it skips the first hundreds of steps in which BCE
            only pushes every bin down. None keeps PyTorch's default (the paper's code).
        dilations: the time-and-frequency dilations of the residual blocks in every encoder
            and decoder block (Timbre-Trap's ``(1, 2, 3)``); fewer blocks make a cheaper
            network (each block costs about a sixth of the default network's time on CPU).
        activation: ``"elu"`` (Timbre-Trap's) or ``"leaky_relu"`` (slope 0.01): ELU is about
            a third of the network's CPU time, the leaky ReLU almost free (docs/model.md).
    """

    def __init__(
        self,
        n_harmonics: int = len(HARMONICS),
        n_bins: int = N_BINS,
        model_complexity: int = 3,
        latent_size: int | None = None,
        n_blocks: int = 4,
        initial_salience: float | None = None,
        dilations: tuple[int, ...] = DILATIONS,
        activation: str = "elu",
    ) -> None:
        super().__init__()
        make_activation(activation)  # a wrong name fails here, in one line
        dilations = tuple(int(d) for d in dilations)
        if not dilations or min(dilations) < 1:
            raise ValueError(f"dilations={dilations}: give at least one dilation, each >= 1")
        channels = encoder_channels(model_complexity, n_blocks)
        sizes = [n_bins]
        for _ in range(n_blocks):
            sizes.append(sizes[-1] // 2 - 1)
        if sizes[-1] < 1:
            raise ValueError(f"n_bins={n_bins} is too small for n_blocks={n_blocks}")
        latent_size = latent_size or channels[-1]
        self.latent_size = latent_size
        self.dilations, self.activation = list(dilations), activation  # for export (mpe_ssl.pretrained)

        self.encoder_in = nn.Sequential(
            nn.Conv2d(n_harmonics, channels[0], kernel_size=3, padding="same"),
            FrameLayerNorm([channels[0], n_bins]),
            make_activation(activation),
        )
        self.encoder_blocks = nn.Sequential(
            *(EncoderBlock(channels[i], channels[i + 1], sizes[i], dilations, activation) for i in range(n_blocks))
        )
        self.to_latent = nn.Conv2d(channels[-1], latent_size, kernel_size=(sizes[-1], 1))
        self.latent_norm = nn.LayerNorm(latent_size)

        self.decoder_in = nn.Sequential(
            nn.ConvTranspose2d(latent_size, channels[-1], kernel_size=(sizes[-1], 1)),
            FrameLayerNorm([channels[-1], sizes[-1]]),
            make_activation(activation),
        )
        self.decoder_blocks = nn.Sequential(
            *(
                DecoderBlock(channels[n_blocks - i], channels[n_blocks - i - 1], sizes[n_blocks - i - 1],
                             dilations, activation)
                for i in range(n_blocks)
            )
        )
        self.decoder_out = nn.Conv2d(channels[0], 1, kernel_size=3, padding="same")
        if initial_salience is not None:
            if not 0 < initial_salience < 1:
                raise ValueError(f"initial_salience={initial_salience} must be in (0, 1)")
            nn.init.constant_(self.decoder_out.bias, math.log(initial_salience / (1 - initial_salience)))
        # Channels-last runs the small-channel convolutions about twice as fast on CPU
        # (oneDNN) and suits tensor cores on GPU; the layout is invisible to callers.
        self.to(memory_format=torch.channels_last)

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """HCQT ``(B, H, F, T)`` -> layer-normalised latents ``(B, D, T)``."""
        if features.ndim != 4:
            raise ValueError(f"expected HCQT of shape (batch, harmonics, bins, frames), got {tuple(features.shape)}")
        features = features.contiguous(memory_format=torch.channels_last)
        embedding = self.encoder_blocks(self.encoder_in(features))
        latents = self.to_latent(embedding).squeeze(-2)
        return self.latent_norm(latents.transpose(1, 2)).transpose(1, 2)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents ``(B, D, T)`` -> salience logits ``(B, F, T)``."""
        embedding = self.decoder_blocks(self.decoder_in(latents.unsqueeze(-2)))
        return self.decoder_out(embedding).squeeze(1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """HCQT ``(B, H, F, T)`` in [0, 1] -> salience logits ``(B, F, T)``."""
        return self.decode(self.encode(features))

    def encoder_parameters(self) -> list[nn.Parameter]:
        """Parameters from the HCQT up to the normalised latent."""
        modules = (self.encoder_in, self.encoder_blocks, self.to_latent, self.latent_norm)
        return [p for module in modules for p in module.parameters()]

    def decoder_parameters(self) -> list[nn.Parameter]:
        """Parameters from the latent to the salience logits."""
        modules = (self.decoder_in, self.decoder_blocks, self.decoder_out)
        return [p for module in modules for p in module.parameters()]

    def forward_with_latents(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Like ``forward`` but also returns the latents ``(B, D, T)`` (for latent-space losses)."""
        latents = self.encode(features)
        return self.decode(latents), latents
