"""Models: plain ``nn.Module``s that know tensors, not datasets or Lightning."""

from mpe_ssl.models.crepe import CREPE, decode_pitch, frame_audio, gaussian_targets
from mpe_ssl.models.nmf import harmonic_templates, score_informed_nmf
from mpe_ssl.models.structured_ae import StructuredAutoencoder, context_frames
from mpe_ssl.models.timbre_trap import TimbreTrapAE

__all__ = ["StructuredAutoencoder", "TimbreTrapAE", "context_frames", "harmonic_templates", "score_informed_nmf"]
__all__ += ["CREPE", "decode_pitch", "frame_audio", "gaussian_targets"]
from mpe_ssl.models.separator import ResUNetSeparator

__all__ += ["ResUNetSeparator"]
