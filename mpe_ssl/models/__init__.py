"""Models: plain ``nn.Module``s that know tensors, not datasets or Lightning."""

from mpe_ssl.models.timbre_trap import TimbreTrapAE

__all__ = ["TimbreTrapAE"]
