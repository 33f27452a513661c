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

from cardioscan.align import LABEL_PX_PER_MM, LabelNet, heatmap_labels
from cardioscan.models import ModelConfig
from cardioscan.record import LEAD_NAMES
from cardioscan.synth.dataset import generate
from cardioscan.synth.render import RenderOptions
from cardioscan.trace import TraceNet
from cardioscan.train import (
    LABEL_PAGE_PX_PER_MM,
    TrainConfig,
    load_label_page,
    load_training_page,
    sample_crop,
    sample_label_crop,
    train,
)


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


def test_label_crop_is_the_straightened_page_at_reading_scale_with_a_peak_on_each_label(pages: Path) -> None:
    page = load_label_page(sorted(pages.glob("*.json"))[0].with_suffix(""))
    image, target, coords = sample_label_crop(page, (128, 256), 1.0, np.random.default_rng(0), centred=True)
    assert image.shape == (128, 256, 3) and target.shape == (13, 128, 256) and coords.shape == (2, 128, 256)
    # One crop pixel is 1 / LABEL_PX_PER_MM of paper (tilted by at most 2 degrees).
    step_mm = np.hypot(*(coords[:, 0, 1] - coords[:, 0, 0]) / 2 * np.array(page.size_mm))
    assert step_mm == pytest.approx(1 / LABEL_PX_PER_MM, rel=0.001)
    labels = heatmap_labels(target, 0.99)
    assert labels, "a centred crop shows a label"
    grey = image.mean(axis=2)
    for label in labels:  # the letters' ink lies around each peak
        x, y = round(label.x), round(label.y)
        around = grey[max(0, y - 6) : y + 7, max(0, x - 10) : x + 11]
        assert around.min() < np.median(grey) - 80


def test_align_training_leaves_label_weights_that_the_pipeline_loads(pages: Path, tmp_path: Path) -> None:
    config = TrainConfig(stage="align", model=ModelConfig(encoder="tu-mobilenetv3_small_050", encoder_depth=3,
                                                          decoder_channels=[16, 8, 8], classes=13, coord=False),
                         train_dir=str(pages), val_dir=str(pages), val_pages=2, crop=(64, 128), batch=2,
                         pages_per_batch=2, steps=2, warmup=1, val_every=2)
    run = tmp_path / "run"
    train(config, run, log=lambda _: None)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 2 and 0.0 <= log[-1]["recall"] <= 1.0
    assert "median error" in (run / "MODEL_CARD.md").read_text()
    net = LabelNet(run / "model.safetensors")
    page = load_label_page(sorted(pages.glob("*.json"))[0].with_suffix(""))
    found = net.find(page.rgb[:200, :300], px_per_mm=LABEL_PAGE_PX_PER_MM)
    assert all(label.lead in LEAD_NAMES and 0.3 < label.confidence <= 1 for label in found)
