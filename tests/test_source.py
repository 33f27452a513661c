"""The source classifier (training, resuming, loading) and the preprocessing branches it routes
pages to."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cardioscan.io.images import load_page
from cardioscan.preprocess import (
    BRANCHES,
    branches_for,
    load_routing,
    preprocess,
    remove_illumination,
    white_balance,
)
from cardioscan.source import (
    SOURCE_WEIGHTS,
    SourceClassifier,
    SourceConfig,
    SourceEstimate,
    category_of,
    train_source,
)
from cardioscan.synth.dataset import generate
from cardioscan.synth.degrade import CAPTURES, PAPER_CONDITIONS
from cardioscan.synth.render import RenderOptions

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ptbxl_HR06008_clean.png"


def _estimate(capture: str, conditions: dict[str, float] | None = None) -> SourceEstimate:
    captures = {c: (0.9 if c == capture else 0.1 / (len(CAPTURES) - 1)) for c in CAPTURES}
    present = {c: 0.0 for c in PAPER_CONDITIONS} | (conditions or {})
    return SourceEstimate(capture, 0.9, captures, present)


def test_category_is_the_present_condition_else_the_capture() -> None:
    captures = np.eye(len(CAPTURES))[CAPTURES.index("phone_photo")]
    assert category_of(captures, np.zeros(len(PAPER_CONDITIONS)))[0] == "phone_photo"
    stained = np.array([0.1, 0.2, 0.8, 0.6])  # the order of PAPER_CONDITIONS
    assert category_of(captures, stained) == (PAPER_CONDITIONS[2], pytest.approx(0.8))


def test_routing_applies_the_capture_and_every_present_condition_once_in_order() -> None:
    routing = {"phone_photo": ["white_balance", "illumination"], "stained": ["illumination"], "fax": ["repair_fax"]}
    page = _estimate("phone_photo", {"stained": 0.9, "wrinkled": 0.3})
    assert branches_for(page, routing) == ["illumination", "white_balance"]  # BRANCHES order, no repeats
    assert branches_for(_estimate("clean"), routing) == []


def test_unknown_branch_in_the_routing_table_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "source.yaml"
    config.write_text("routing:\n  fax: [sharpen_everything]\n")
    with pytest.raises(ValueError, match="sharpen_everything"):
        load_routing(config)


def test_every_branch_keeps_the_page_an_rgb_page() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    for name in BRANCHES:
        out = preprocess(rgb, [name])
        assert out.shape == rgb.shape and out.dtype == np.uint8, name


def test_illumination_removal_flattens_uneven_light_and_keeps_the_line() -> None:
    h, w = 400, 600
    light = np.linspace(0.55, 1.0, w)[None, :, None] * np.ones((h, 1, 1))
    page = np.full((h, w, 3), 245.0)
    page[200:203, :] = 40  # a dark line across the page
    lit = (page * light).astype(np.uint8)
    flat = remove_illumination(lit)
    paper = np.delete(flat, range(195, 210), axis=0)[..., 1]
    assert np.ptp(np.median(paper, axis=0)) < 20 < np.ptp(np.median(lit[..., 1], axis=0))
    assert flat[201, :, 1].max() < 120  # the line stays dark everywhere


def test_white_balance_makes_tinted_paper_neutral() -> None:
    tinted = np.full((50, 50, 3), (250, 235, 200), np.uint8)
    assert np.ptp(white_balance(tinted)[25, 25].astype(int)) <= 2


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("source_pages")
    generate(4, out, seed=3, categories=["clean", "fax", "phone_photo", "stained"], options=RenderOptions(dpi=60))
    return out


def test_training_resumes_and_leaves_loadable_weights_with_a_model_card(pages: Path, tmp_path: Path) -> None:
    config = SourceConfig(stage="source", input_size=(64, 96), train_dirs=[str(pages)], val_dir=str(pages),
                          batch=4, steps=2, val_every=1, warmup=1)
    run = tmp_path / "run"
    train_source(config, run, log=lambda m: None)
    train_source(SourceConfig(**{**config.__dict__, "steps": 3}), run, log=lambda m: None)  # resumes at step 2
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    assert "category accuracy" in (run / "MODEL_CARD.md").read_text()
    classifier = SourceClassifier(run / "model.safetensors")
    estimate = classifier.classify(np.full((300, 400, 3), 240, np.uint8))
    assert sum(estimate.captures.values()) == pytest.approx(1.0, abs=1e-4)
    assert estimate.category in (*CAPTURES, *PAPER_CONDITIONS)


@pytest.mark.skipif(not SOURCE_WEIGHTS.exists(), reason="no shipped source weights")
def test_shipped_classifier_tells_a_clean_export_from_a_fax_and_a_phone_photo() -> None:
    from cardioscan.synth.render import render_page

    classifier = SourceClassifier()
    assert classifier.classify(load_page(EXAMPLE).rgb).category == "clean"
    for category in ("fax", "phone_photo"):
        image, _ = render_page(11, RenderOptions(category=category, layout="3x4_r1", dpi=100, p_real=0.0))
        assert max(classifier.classify(image).captures.items(), key=lambda kv: kv[1])[0] == category
