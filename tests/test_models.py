"""The stage network: shapes, CoordConv, and weights that load back exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cardioscan.models import CoordUnet, ModelConfig, load_weights, save_weights

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
