"""LVEF learning proven on a task with a known answer (a noisy function of the simulator's QRS
width, rate and amplitude), and the commands' refusal to guess without trained weights."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import uniform_filter1d
from typer.testing import CliRunner

from cardioscan.cli import app
from cardioscan.io import write_wfdb
from cardioscan.lvef import (
    LvefConfig,
    LvefModel,
    hide_like_paper,
    load_signals,
    read_table,
    synthetic_table,
    train_lvef,
)
from cardioscan.record import EcgRecord

runner = CliRunner()
# A small, fast configuration (125 Hz is enough to see QRS width); measured here: 400 steps in about 80 s.
SMALL = LvefConfig(fs=125, channels=(16, 32, 48, 64), rnn_hidden=32, attention=32, batch=32, steps=400,
                   val_every=400, lr=3e-3, seed=0, threads=1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, Path]:
    root = tmp_path_factory.mktemp("lvef")
    table = synthetic_table(root / "toy", 500, seed=1)
    figures = train_lvef(table, SMALL, root / "run", log=lambda m: None)
    return table, figures, root / "run" / "lvef.safetensors"


def test_learns_a_known_function_far_better_than_the_median(trained: tuple[Path, dict, Path]) -> None:
    _, figures, weights = trained
    baseline = figures["baseline"]
    assert figures["mae"] < 0.7 * baseline["mae"] and figures["rmse"] < 0.7 * baseline["rmse"], figures
    assert figures["auroc_lt40"] > 0.9
    assert weights.is_file() and (weights.parent / "MODEL_CARD.md").read_text().count("Beats the baseline") == 1


def _qrs_share(signals: np.ndarray, saliency: np.ndarray, fs: float) -> tuple[float, float]:
    """Share of saliency within the QRS complexes (steepest 12 % of the spatial velocity) vs their share of time."""
    velocity = uniform_filter1d(np.nansum(np.abs(np.diff(np.nan_to_num(signals), axis=1)), axis=0), round(0.04 * fs))
    qrs = velocity > np.quantile(velocity, 0.88)
    mass = saliency[:, 1:].sum(axis=0)
    return float(mass[qrs].sum() / mass.sum()), float(qrs.mean())


def test_saliency_points_at_the_qrs_the_label_depends_on(trained: tuple[Path, dict, Path]) -> None:
    table, _, weights = trained
    model = LvefModel(weights)
    ratios = []
    for row in read_table(table, SMALL)[:8]:
        record = EcgRecord(load_signals(row.path, row.fs, SMALL).astype(float), fs=SMALL.fs)
        in_qrs, time_share = _qrs_share(record.signals, model.saliency(record), SMALL.fs)
        ratios.append(in_qrs / time_share)
    assert np.median(ratios) > 1.5, ratios


def test_reads_what_digitization_gives(trained: tuple[Path, dict, Path]) -> None:
    table, _, weights = trained
    model = LvefModel(weights)
    row = read_table(table, SMALL)[0]
    full = load_signals(row.path, row.fs, SMALL)
    paper = hide_like_paper(full, np.random.default_rng(0), replace(SMALL, p_paper=1.0, p_lead_drop=0.0))
    for signals, fs in ((full, SMALL.fs), (paper, SMALL.fs), (np.repeat(full, 2, axis=1), 2 * SMALL.fs)):
        prediction = model.predict(EcgRecord(signals.astype(float), fs=fs))
        assert 0 < prediction.lvef < 100 and prediction.sd > 0
        assert sum(prediction.class_probabilities.values()) == pytest.approx(1.0, abs=1e-5)


def test_lvef_command_with_and_without_weights(trained: tuple[Path, dict, Path], tmp_path: Path) -> None:
    table, _, weights = trained
    row = read_table(table, SMALL)[0]
    write_wfdb(EcgRecord(np.load(row.path).astype(float), fs=500), tmp_path / "rec")
    result = runner.invoke(app, ["lvef", str(tmp_path / "rec"), "--weights", str(weights), "--json",
                                 "--saliency", str(tmp_path / "saliency.png")])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert {"lvef", "sd", "class"} <= set(summary) and (tmp_path / "saliency.png").stat().st_size > 10_000
    result = runner.invoke(app, ["lvef", str(tmp_path / "rec")])
    assert result.exit_code == 2 and "ships none" in result.output
    result = runner.invoke(app, ["digitize", "missing.png", "--lvef"])
    assert result.exit_code == 2 and "ships none" in result.output  # refused before any reading
