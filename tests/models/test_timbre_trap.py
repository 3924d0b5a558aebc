"""The autoencoder has the architecture of the paper's public code."""

import pytest
import torch

from mpe_ssl.models import TimbreTrapAE


def test_paper_setting_has_about_1_3m_parameters_and_a_128d_latent():
    model = TimbreTrapAE(model_complexity=3)
    n_parameters = sum(p.numel() for p in model.parameters())
    assert 1.2e6 < n_parameters < 1.4e6
    logits, latents = model.forward_with_latents(torch.rand(2, 6, 440, 30))
    assert logits.shape == (2, 440, 30) and latents.shape == (2, 128, 30)


def test_frequency_is_halved_four_times_and_time_is_never_strided():
    model = TimbreTrapAE(model_complexity=1)
    sizes, x = [], model.encoder_in(torch.rand(1, 6, 440, 17))
    for block in model.encoder_blocks:
        x = block(x)
        sizes.append(tuple(x.shape[-2:]))
    assert sizes == [(219, 17), (108, 17), (53, 17), (25, 17)]


def test_frames_are_processed_independently_of_excerpt_length_away_from_edges():
    torch.manual_seed(0)
    model = TimbreTrapAE(model_complexity=1).eval()
    x = torch.rand(1, 6, 440, 200)
    with torch.no_grad():
        full = model(x)
        crop = model(x[..., 50:150])
    # far from the crop's edges, the receptive field sees the same input
    assert torch.allclose(full[..., 90:110], crop[..., 40:60], atol=1e-4)


def test_encoder_and_decoder_parameters_partition_the_model():
    model = TimbreTrapAE(model_complexity=1)
    ids = [id(p) for p in model.encoder_parameters() + model.decoder_parameters()]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))


def test_fewer_residual_dilations_make_a_smaller_network_with_a_shorter_reach():
    from mpe_ssl.pretrained import time_major_twin
    from mpe_ssl.transcribe import network_receptive_field

    default, one = TimbreTrapAE(model_complexity=1), TimbreTrapAE(model_complexity=1, dilations=[3])
    assert network_receptive_field(default) == 1 + 8 * (1 + 2 + 3) + 1
    assert network_receptive_field(one) == 1 + 8 * 3 + 1
    blocks = [m for m in one.modules() if type(m).__name__ == "ResidualBlock"]
    assert len(blocks) == 8 and all(b.body[0].dilation == (3, 3) for b in blocks)
    assert sum(p.numel() for p in one.parameters()) < sum(p.numel() for p in default.parameters())
    features = torch.rand(1, 6, 440, 40)
    assert one.eval()(features).shape == (1, 440, 40)
    assert time_major_twin(one) is not None  # the fast CPU inference layout takes it too
    with pytest.raises(ValueError, match="dilations"):
        TimbreTrapAE(dilations=[])
