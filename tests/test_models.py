"""The stage network: shapes, CoordConv, and weights that load back exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cardioscan.models import CoordUnet, ModelConfig, PartsConv2d, fold_batchnorm, load_weights, save_weights

TINY = ModelConfig(encoder="tu-mobilenetv3_small_050", encoder_depth=3, decoder_channels=[16, 8, 8], classes=2,
                   image_classes=4)


def test_maps_at_input_resolution_and_image_logits() -> None:
    out = CoordUnet(TINY).eval()(torch.rand(2, 3, 64, 96))
    assert out["maps"].shape == (2, 2, 64, 96)
    assert out["image_logits"].shape == (2, 4)


def test_page_coordinates_change_the_output() -> None:
    """The CoordConv decoder sees where a crop lies on the page."""
    model = CoordUnet(TINY).eval()
    image = torch.rand(1, 3, 64, 96)
    left = torch.full((1, 2, 64, 96), -0.8)
    right = torch.full((1, 2, 64, 96), 0.8)
    with torch.no_grad():
        assert not torch.allclose(model(image, left)["maps"], model(image, right)["maps"])


def test_weights_round_trip_through_safetensors(tmp_path: Path) -> None:
    model = CoordUnet(TINY).eval()
    path = tmp_path / "m.safetensors"
    save_weights(model, path, {"stage": "trace", "steps": 3})
    loaded, info = load_weights(path)
    image = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.allclose(model(image)["maps"], loaded(image)["maps"], atol=1e-6)
    assert info == {"stage": "trace", "steps": 3}
    assert loaded.config == TINY


def test_mismatched_decoder_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="one entry per encoder stage"):
        CoordUnet(ModelConfig(encoder_depth=4, decoder_channels=[8, 8]))


def test_parts_convolution_is_the_convolution_of_the_concatenation() -> None:
    conv = PartsConv2d(7, 4, 3, padding=1, bias=True)
    parts = [torch.rand(1, 4, 16, 20), torch.rand(1, 3, 16, 20)]
    with torch.no_grad():
        expected = torch.nn.functional.conv2d(torch.cat(parts, dim=1), conv.weight, conv.bias, padding=1)
        assert torch.allclose(conv(parts), expected, atol=1e-5)


@pytest.mark.parametrize("encoder", ["tu-mobilenetv3_small_050", "resnet18"])
def test_folding_batch_norm_keeps_the_outputs(encoder: str) -> None:
    """Inference folds every batch norm into its convolution: the same maps, fewer operations."""
    model = CoordUnet(ModelConfig(encoder=encoder, encoder_depth=3, decoder_channels=[16, 8, 8])).train()
    with torch.no_grad():
        for _ in range(3):  # running statistics that are not the identity
            model(torch.rand(2, 3, 64, 96) * 2)
    model.eval()
    image = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        before = model(image)["maps"]
        folded = fold_batchnorm(model)
        after = folded(image)["maps"]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert torch.allclose(before, after, atol=1e-4)
