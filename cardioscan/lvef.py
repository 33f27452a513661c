"""LVEF from a 12-lead record: model, training on a table of records, prediction, saliency.

A 1D CNN (local morphology) → bidirectional GRU (or LSTM; rhythm) → additive attention over
time → heads for LVEF (mean and log-variance, so every estimate carries its own uncertainty),
the clinical class (< 40, 40–49, ≥ 50 %) and optional binary auxiliary labels. Inputs are what
digitization gives: NaN where the paper shows nothing, so the network sees the signal and a
"shown" mask, and training hides segments the way paper layouts do.

No ECG–echo dataset is reachable where this was built, so cardioscan ships no LVEF weights:
`train_lvef` on a licensed table makes them. `synthetic_table` builds a task whose "LVEF" is a
known noisy function of the simulator's parameters, to prove the learning works.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors.torch import load_file, save_file
from scipy.stats import rankdata
from torch import nn

from cardioscan.record import LEAD_INDEX, LEAD_NAMES, EcgRecord, resample

CLASSES = ("reduced (<40%)", "mildly reduced (40-49%)", "preserved (>=50%)")
# The 3x4 paper layout: row-major leads; column c shows [2.5c, 2.5c + 2.5) s, lead II also as a rhythm strip.
PAPER_COLUMNS = (("I", "II", "III"), ("aVR", "aVL", "aVF"), ("V1", "V2", "V3"), ("V4", "V5", "V6"))


class LvefWeightsMissing(FileNotFoundError):
    """No trained LVEF weights: the message says how to get them."""


@dataclass
class LvefConfig:
    fs: float = 500.0
    seconds: float = 10.0
    channels: tuple[int, ...] = (32, 64, 96, 128)  # one strided conv block each: 16x shorter in time
    kernel: int = 7
    rnn: str = "gru"  # or "lstm"
    rnn_hidden: int = 64
    attention: int = 64
    dropout: float = 0.2
    aux_labels: tuple[str, ...] = ()  # binary table columns (e.g. af, lvh); empty cells are masked out
    batch: int = 32
    steps: int = 3000
    lr: float = 1e-3
    weight_decay: float = 1e-4
    val_every: int = 200
    val_fraction: float = 0.2
    p_paper: float = 0.5  # share of training records cut like a 3x4 paper page
    p_lead_drop: float = 0.1  # chance each lead is hidden entirely
    threads: int = 1
    seed: int = 0

    @classmethod
    def load(cls, path: Path) -> LvefConfig:
        raw = yaml.safe_load(Path(path).read_text()) or {}
        raw.pop("stage", None)
        for key in ("channels", "aux_labels"):
            if key in raw:
                raw[key] = tuple(raw[key])
        return cls(**raw)

    @property
    def samples(self) -> int:
        return round(self.fs * self.seconds)


class LvefNet(nn.Module):
    def __init__(self, cfg: LvefConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 2 * len(LEAD_NAMES)  # signal + shown mask per lead
        for c in cfg.channels:
            layers += [nn.Conv1d(c_in, c, cfg.kernel, stride=2, padding=cfg.kernel // 2), nn.BatchNorm1d(c), nn.GELU(),
                       nn.Conv1d(c, c, cfg.kernel, padding=cfg.kernel // 2), nn.BatchNorm1d(c), nn.GELU()]
            c_in = c
        self.features = nn.Sequential(*layers)
        rnn = {"gru": nn.GRU, "lstm": nn.LSTM}[cfg.rnn]
        self.rnn = rnn(c_in, cfg.rnn_hidden, batch_first=True, bidirectional=True)
        width = 2 * cfg.rnn_hidden
        self.score = nn.Sequential(nn.Linear(width, cfg.attention), nn.Tanh(), nn.Linear(cfg.attention, 1))
        self.trunk = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(width, 64), nn.GELU())
        self.lvef = nn.Linear(64, 2)  # normalised mean, log-variance
        self.klass = nn.Linear(64, len(CLASSES))
        self.aux = nn.Linear(64, max(1, len(cfg.aux_labels)))

    def forward(self, signals: torch.Tensor) -> dict[str, torch.Tensor]:
        """signals (B, 12, T) in mV, NaN where not shown."""
        shown = torch.isfinite(signals)
        x = torch.cat([torch.where(shown, signals, 0.0), shown.float()], dim=1)
        h, _ = self.rnn(self.features(x).transpose(1, 2))
        attention = torch.softmax(self.score(h).squeeze(-1), dim=1)
        z = self.trunk((attention.unsqueeze(-1) * h).sum(dim=1))
        lvef = self.lvef(z)
        return {"mean": lvef[:, 0], "log_var": lvef[:, 1].clamp(-8, 6), "class_logits": self.klass(z),
                "aux_logits": self.aux(z), "attention": attention}


# ------------------------------------------------------------------------------------------ data

def fit_length(signals: np.ndarray, samples: int) -> np.ndarray:
    """The first `samples` samples, NaN-padded when the record is shorter."""
    out = np.full((len(LEAD_NAMES), samples), np.nan, dtype=np.float32)
    n = min(samples, signals.shape[1])
    out[:, :n] = signals[:, :n]
    return out


def load_signals(path: Path, fs_in: float | None, cfg: LvefConfig) -> np.ndarray:
    """(12, samples) float32 at cfg.fs from a WFDB record or an .npy array (12 x N or N x 12, at `fs_in`)."""
    path = Path(path)
    if path.suffix == ".npy":
        array = np.load(path).astype(np.float64)
        if array.shape[0] != len(LEAD_NAMES) and array.shape[-1] == len(LEAD_NAMES):
            array = array.T
        if array.shape[0] != len(LEAD_NAMES):
            raise ValueError(f"{path}: expected 12 leads, array shape is {array.shape}")
        record = EcgRecord(array, fs=fs_in or cfg.fs)
    else:
        from cardioscan.io import read_wfdb

        record = read_wfdb(path)
    return fit_length(resample(record.signals, record.fs, cfg.fs), cfg.samples)


@dataclass
class TableRow:
    path: Path
    lvef: float  # NaN when unknown
    patient: str
    fs: float | None
    aux: list[float] = field(default_factory=list)  # NaN when unknown


def _number(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


def read_table(table: Path, cfg: LvefConfig) -> list[TableRow]:
    """Rows of a CSV with `path` (WFDB stem or .npy, relative to the table), `lvef` (%), optional
    `patient_id`, `fs` (for .npy) and the config's auxiliary label columns."""
    with Path(table).open(newline="") as f:
        reader = csv.DictReader(f)
        missing = {"path", "lvef"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{table} lacks the column(s) {', '.join(sorted(missing))}")
        rows = []
        for i, row in enumerate(reader):
            path = Path(row["path"])
            rows.append(TableRow(path if path.is_absolute() else Path(table).parent / path, _number(row["lvef"]),
                                 row.get("patient_id") or f"row{i}", _number(row.get("fs")) or None,
                                 [_number(row.get(name)) for name in cfg.aux_labels]))
    return rows


def is_validation(patient: str, fraction: float) -> bool:
    """Patient-wise split by a stable hash: every record of a patient falls on the same side."""
    return int(hashlib.sha1(patient.encode()).hexdigest()[:8], 16) / 2**32 < fraction


def lvef_class(lvef: np.ndarray) -> np.ndarray:
    return np.where(lvef < 40, 0, np.where(lvef < 50, 1, 2))


def hide_like_paper(signals: np.ndarray, rng: np.random.Generator, cfg: LvefConfig) -> np.ndarray:
    """Training masks: a 3x4 page's 2.5 s windows (+ a rhythm strip) and whole missing leads."""
    out = signals.copy()
    n = out.shape[1]
    if rng.random() < cfg.p_paper:
        width = n // len(PAPER_COLUMNS)
        rhythm = LEAD_INDEX[str(rng.choice(["II", "V1", "V5"]))]
        for c, leads in enumerate(PAPER_COLUMNS):
            for lead in leads:
                if LEAD_INDEX[lead] != rhythm:
                    out[LEAD_INDEX[lead], : c * width] = np.nan
                    out[LEAD_INDEX[lead], (c + 1) * width:] = np.nan
    out[rng.random(len(LEAD_NAMES)) < cfg.p_lead_drop] = np.nan
    return out


# ------------------------------------------------------------------------------------ measures

def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (Mann–Whitney), NaN when a class is absent."""
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def regression_figures(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    error = predicted - truth
    return {"mae": float(np.mean(np.abs(error))), "rmse": float(np.sqrt(np.mean(error**2))),
            "auroc_lt40": auroc(-predicted, truth < 40), "auroc_le35": auroc(-predicted, truth <= 35)}


# ------------------------------------------------------------------------------------- training

def _batch(signals: list[np.ndarray], rng: np.random.Generator | None, cfg: LvefConfig) -> torch.Tensor:
    arrays = [hide_like_paper(s, rng, cfg) if rng is not None else s for s in signals]
    return torch.from_numpy(np.stack(arrays))


def _loss(out: dict[str, torch.Tensor], lvef: torch.Tensor, aux: torch.Tensor, centre: float,
          spread: float) -> torch.Tensor:
    known = torch.isfinite(lvef)
    target = (torch.where(known, lvef, centre) - centre) / spread
    nll = 0.5 * (out["log_var"] + (out["mean"] - target) ** 2 * torch.exp(-out["log_var"]))
    klass = torch.as_tensor(lvef_class(np.nan_to_num(lvef.numpy(), nan=60.0)))
    ce = nn.functional.cross_entropy(out["class_logits"], klass, reduction="none")
    loss = ((nll + ce) * known).sum() / known.sum().clamp(min=1)
    aux_known = torch.isfinite(aux)
    if aux.shape[1]:
        bce = nn.functional.binary_cross_entropy_with_logits(out["aux_logits"][:, : aux.shape[1]],
                                                             torch.nan_to_num(aux), reduction="none")
        loss = loss + (bce * aux_known).sum() / aux_known.sum().clamp(min=1)
    return loss


@torch.inference_mode()
def _predict(model: LvefNet, signals: list[np.ndarray], cfg: LvefConfig, centre: float,
             spread: float) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    means, sds = [], []
    for i in range(0, len(signals), cfg.batch):
        out = model(_batch(signals[i: i + cfg.batch], None, cfg))
        means.append(out["mean"].numpy() * spread + centre)
        sds.append(np.exp(0.5 * out["log_var"].numpy()) * spread)
    model.train()
    return np.concatenate(means), np.concatenate(sds)


def train_lvef(table: Path, cfg: LvefConfig, run: Path, max_minutes: float | None = None,
               log: Callable[[str], None] = print) -> dict:
    """Train (or resume) on `table`; every `val_every` steps log MAE / RMSE / AUROC beside the
    always-the-training-median baseline, and export `run/lvef.safetensors` with a model card."""
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return _train(table, cfg, run, max_minutes, log)
    finally:
        torch.set_num_threads(threads)


def _train(table: Path, cfg: LvefConfig, run: Path, max_minutes: float | None, log: Callable[[str], None]) -> dict:
    from cardioscan.train import resume, save_checkpoint

    rows = [r for r in read_table(table, cfg) if np.isfinite(r.lvef) or any(np.isfinite(r.aux))]
    train_rows = [r for r in rows if not is_validation(r.patient, cfg.val_fraction)]
    val_rows = [r for r in rows if is_validation(r.patient, cfg.val_fraction) and np.isfinite(r.lvef)]
    if len(train_rows) < cfg.batch or len(val_rows) < 10:
        raise ValueError(f"{table}: {len(train_rows)} training and {len(val_rows)} validation rows with labels; "
                         f"need at least {cfg.batch} and 10")
    log(f"loading {len(rows)} records ({len(train_rows)} train, {len(val_rows)} validation, patient-wise)")
    train_x = [load_signals(r.path, r.fs, cfg) for r in train_rows]
    val_x = [load_signals(r.path, r.fs, cfg) for r in val_rows]
    train_y = np.array([r.lvef for r in train_rows], dtype=np.float32)
    train_aux = np.array([r.aux for r in train_rows], dtype=np.float32).reshape(len(train_rows), -1)
    val_y = np.array([r.lvef for r in val_rows])
    centre = float(np.nanmedian(train_y))
    spread = float(np.nanstd(train_y)) or 1.0
    baseline = regression_figures(np.full_like(val_y, centre), val_y)

    torch.manual_seed(cfg.seed)  # the same initial weights every run: a seeded run is repeatable
    model = LvefNet(cfg)
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"stage": "lvef", **_plain(asdict(cfg))}, sort_keys=False))
    step, seconds = resume(run, model, optimiser, log)
    rng = np.random.default_rng([cfg.seed, step])
    started = time.monotonic()
    figures: dict = {}
    with (run / "log.jsonl").open("a") as log_file:
        while step < cfg.steps:
            pick = rng.integers(len(train_x), size=cfg.batch)
            t = time.monotonic()
            for group in optimiser.param_groups:
                group["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
            out = model(_batch([train_x[i] for i in pick], rng, cfg))
            loss = _loss(out, torch.from_numpy(train_y[pick]), torch.from_numpy(train_aux[pick]), centre, spread)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimiser.step()
            seconds += time.monotonic() - t
            step += 1
            out_of_time = max_minutes is not None and time.monotonic() - started > 60 * max_minutes
            if step % cfg.val_every == 0 or step == cfg.steps or out_of_time:
                mean, sd = _predict(model, val_x, cfg, centre, spread)
                sd_scale = float(np.sqrt(np.mean(((val_y - mean) / sd) ** 2)))  # makes z-scores unit-variance
                figures = {"step": step, "train_loss": loss.item(), **regression_figures(mean, val_y),
                           "baseline": baseline, "sd_scale": sd_scale, "val_records": len(val_rows)}
                log_file.write(json.dumps(figures) + "\n")
                log_file.flush()
                log(f"step {step}: val MAE {figures['mae']:.2f} RMSE {figures['rmse']:.2f} EF points "
                    f"(median baseline {baseline['mae']:.2f} / {baseline['rmse']:.2f}), "
                    f"AUROC<40 {figures['auroc_lt40']:.3f}")
                save_checkpoint(run, model, optimiser, step, seconds)
                meta = {"config": _plain(asdict(cfg)), "centre": centre, "spread": spread, "sd_scale": sd_scale,
                        "validation": figures, "table": str(table)}
                save_file(model.state_dict(), str(run / "lvef.safetensors"), metadata={"info": json.dumps(meta)})
                _model_card(run, meta, seconds)
            if out_of_time:
                log(f"time budget of {max_minutes} min reached at step {step}; resume by running the same command")
                break
    if figures and figures["mae"] >= baseline["mae"]:
        log("the model does not beat the always-the-median baseline on validation: do not use it")
    return figures


def _plain(d: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _model_card(run: Path, meta: dict, seconds: float) -> None:
    v = meta["validation"]
    b = v["baseline"]
    beats = v["mae"] < b["mae"]
    lines = ["# cardioscan LVEF model", "",
             f"- Trained on `{meta['table']}` for {v['step']} steps ({seconds / 60:.1f} min on this machine).",
             f"- Validation ({v['val_records']} records, patient-wise): MAE {v['mae']:.2f}, RMSE {v['rmse']:.2f} EF "
             f"points; AUROC LVEF<40 {v['auroc_lt40']:.3f}, ≤35 {v['auroc_le35']:.3f}.",
             f"- Always-the-training-median baseline: MAE {b['mae']:.2f}, RMSE {b['rmse']:.2f}.",
             f"- {'Beats' if beats else 'Does NOT beat'} the baseline. Uncertainty scale {meta['sd_scale']:.2f}.",
             "- Clinical use needs validation on the population it is used on; labels are only as good as the table.",
             "", "```yaml", yaml.safe_dump(meta["config"], sort_keys=False).rstrip(), "```"]
    (run / "MODEL_CARD.md").write_text("\n".join(lines) + "\n")


# ------------------------------------------------------------------------------------ prediction

@dataclass
class LvefPrediction:
    lvef: float  # %
    sd: float  # calibrated standard deviation, EF points
    lvef_class: str
    class_probabilities: dict[str, float]
    aux_probabilities: dict[str, float]

    def summary(self) -> dict:
        return {"lvef": round(self.lvef, 1), "sd": round(self.sd, 1), "class": self.lvef_class,
                "class_probabilities": {k: round(v, 3) for k, v in self.class_probabilities.items()},
                "aux_probabilities": {k: round(v, 3) for k, v in self.aux_probabilities.items()}}


class LvefModel:
    """Trained LVEF weights, loaded once."""

    def __init__(self, weights: Path | None) -> None:
        if weights is None or not Path(weights).is_file():
            raise LvefWeightsMissing(
                f"no LVEF weights{f' at {weights}' if weights else ''}: cardioscan ships none, because no clinical "
                "ECG-echo data could be used to train them; train your own with `cardioscan train lvef --table "
                "TABLE.csv` (see README, LVEF) and pass the runs/lvef/lvef.safetensors it writes "
                "(--weights; --lvef-weights with digitize)")
        from safetensors import safe_open

        with safe_open(str(weights), "pt") as f:
            meta = json.loads(f.metadata()["info"])
        self.cfg = LvefConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["config"].items()})
        self.centre, self.spread, self.sd_scale = meta["centre"], meta["spread"], meta["sd_scale"]
        self.model = LvefNet(self.cfg)
        self.model.load_state_dict(load_file(str(weights)))
        self.model.eval()

    def signals(self, record: EcgRecord) -> torch.Tensor:
        return torch.from_numpy(fit_length(resample(record.signals, record.fs, self.cfg.fs), self.cfg.samples))[None]

    @torch.inference_mode()
    def predict(self, record: EcgRecord) -> LvefPrediction:
        out = self.model(self.signals(record))
        classes = torch.softmax(out["class_logits"][0], 0).numpy()
        aux = torch.sigmoid(out["aux_logits"][0]).numpy()
        lvef = float(out["mean"][0]) * self.spread + self.centre
        sd = float(np.exp(0.5 * float(out["log_var"][0]))) * self.spread * self.sd_scale
        return LvefPrediction(lvef, sd, CLASSES[int(lvef_class(np.array(lvef)))],
                              dict(zip(CLASSES, map(float, classes), strict=True)),
                              dict(zip(self.cfg.aux_labels, map(float, aux), strict=False)))

    def saliency(self, record: EcgRecord) -> np.ndarray:
        """|gradient × input| of the LVEF estimate per lead and sample (12, samples), smoothed over 40 ms
        and scaled to [0, 1]: where in which lead the estimate came from."""
        x = self.signals(record).requires_grad_(True)
        self.model.train(False)
        with torch.backends.cudnn.flags(enabled=False):
            self.model(x)["mean"].sum().backward()
        grad = (x.grad * torch.nan_to_num(x.detach())).abs()[0].numpy()
        width = max(1, round(0.04 * self.cfg.fs))
        kernel = np.ones(width) / width
        smooth = np.stack([np.convolve(g, kernel, mode="same") for g in grad])
        return smooth / (smooth.max() or 1.0)


def draw_saliency(record: EcgRecord, saliency: np.ndarray, fs: float, path: Path, title: str) -> None:
    """The 12 leads with the saliency as a red wash behind them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    signals = fit_length(resample(record.signals, record.fs, fs), saliency.shape[1])
    t = np.arange(saliency.shape[1]) / fs
    fig, axes = plt.subplots(12, 1, figsize=(12, 14), sharex=True)
    for lead, ax in enumerate(axes):
        ax.imshow(saliency[lead][None], aspect="auto", cmap="Reds", vmin=0, vmax=1, alpha=0.8,
                  extent=(0, t[-1], np.nanmin(signals[lead], initial=-1), np.nanmax(signals[lead], initial=1)))
        ax.plot(t, signals[lead], color="black", linewidth=0.6)
        ax.set_ylabel(LEAD_NAMES[lead], rotation=0, labelpad=18)
        ax.set_yticks([])
    axes[0].set_title(title)
    axes[-1].set_xlabel("s")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ------------------------------------------------------------------------- a task with a known answer

def toy_lvef(params) -> float:
    """The synthetic task's "LVEF": lower with wider QRS (bundle-branch block most of all) and faster
    rate, higher with a larger heart vector. A defined function, not physiology."""
    wide = 25.0 if params.bundle_branch != "none" else 0.0
    return (62.0 - 60.0 * (params.qrs_width_factor - 1.05) - wide + 10.0 * (params.amplitude_scale - 1.0)
            - 0.15 * (params.heart_rate - 75.0))


def synthetic_table(out: Path, n: int, seed: int = 0, noise: float = 2.0) -> Path:
    """`n` simulated records (.npy) and `table.csv` whose `lvef` is toy_lvef + N(0, noise²) and
    `wide_qrs` an auxiliary label; returns the table's path."""
    from cardioscan.synth.simulate import sample_params, simulate_12lead

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with (out / "table.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "lvef", "patient_id", "fs", "wide_qrs"])
        for i in range(n):
            params = sample_params(rng)
            np.save(out / f"rec{i:05d}.npy", simulate_12lead(params, fs=500, rng=rng).astype(np.float32))
            lvef = float(np.clip(toy_lvef(params) + rng.normal(0, noise), 5, 85))
            writer.writerow([f"rec{i:05d}.npy", f"{lvef:.1f}", f"p{i}", 500, int(params.bundle_branch != "none")])
    return out / "table.csv"
