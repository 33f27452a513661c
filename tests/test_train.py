"""Training the trace stage: targets on the ink, crops that know their page position,
and a run that resumes where it stopped and leaves loadable weights with a model card."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from cardioscan.models import ModelConfig
from cardioscan.synth.dataset import generate
from cardioscan.synth.render import RenderOptions
from cardioscan.trace import TraceNet
from cardioscan.train import TrainConfig, load_training_page, sample_crop, train


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pages")
    generate(3, out, seed=5, categories=["clean", "colour_scan", "fax"], options=RenderOptions(dpi=100))
    return out


def test_target_lies_on_the_dark_trace_ink(pages: Path) -> None:
    page = load_training_page(sorted(pages.glob("*.json"))[0].with_suffix(""))
    on = page.target > 128
    assert 0.002 < on.mean() < 0.1
    grey = page.rgb.mean(axis=2)
    assert np.median(grey[on]) < np.median(grey[~on]) - 60


def test_crop_carries_its_page_coordinates(pages: Path) -> None:
    page = load_training_page(sorted(pages.glob("*.json"))[0].with_suffix(""))
    h, w = page.rgb.shape[:2]
    image, target, coords = sample_crop(page, (32, 64), 1.0, np.random.default_rng(0), centred=True)
    assert image.shape == (32, 64, 3) and target.shape == (32, 64) and coords.shape == (2, 32, 64)
    # One network pixel is one image pixel at scale 1; the x coordinate steps by 2 / width.
    assert np.allclose(np.diff(coords[0, 0]), 2 / w, atol=1e-6)
    assert np.allclose(np.diff(coords[1, :, 0]), 2 / h, atol=1e-6)


def test_training_resumes_and_leaves_weights_and_a_model_card(pages: Path, tmp_path: Path) -> None:
    config = TrainConfig(stage="trace", model=ModelConfig(encoder="tu-mobilenetv3_small_050", encoder_depth=3,
                                                          decoder_channels=[16, 8, 8]),
                         train_dir=str(pages), val_dir=str(pages), val_pages=2, crop=(64, 128), batch=2,
                         pages_per_batch=2, steps=2, warmup=1, val_every=2)
    run = tmp_path / "run"
    train(config, run, log=lambda _: None)
    train(replace(config, steps=4), run, log=lambda _: None)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == [2, 4]
    assert 0.0 <= log[-1]["f1"] <= 1.0
    assert "Steps: 4 of a 4-step schedule" in (run / "MODEL_CARD.md").read_text()
    net = TraceNet(run / "model.safetensors")
    assert net.info["steps"] == 4
    rgb = load_training_page(sorted(pages.glob("*.json"))[0].with_suffix("")).rgb[:100, :150]
    prob = net.probability(rgb)
    assert prob.shape == rgb.shape[:2] and 0.0 <= prob.min() <= prob.max() <= 1.0


def test_a_new_run_can_start_from_shipped_weights(pages: Path, tmp_path: Path) -> None:
    config = TrainConfig(stage="trace", model=ModelConfig(encoder="tu-mobilenetv3_small_050", encoder_depth=3,
                                                          decoder_channels=[16, 8, 8]),
                         train_dir=str(pages), val_dir=str(pages), val_pages=2, crop=(64, 128), batch=2,
                         pages_per_batch=2, steps=1, warmup=1, val_every=1)
    train(config, tmp_path / "first", log=lambda _: None)
    init = tmp_path / "first" / "model.safetensors"
    train(replace(config, lr=0.0, seed=1, init=str(init)), tmp_path / "tuned", log=lambda _: None)
    before, after = load_file(str(init)), load_file(str(tmp_path / "tuned" / "model.safetensors"))
    assert before.keys() == after.keys()
    learned = [k for k in before if "running_" not in k]  # batch-norm statistics move even at lr 0
    assert all(torch.equal(before[k], after[k]) for k in learned)  # lr 0: the tuned run is its starting point
