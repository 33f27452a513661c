"""`cardioscan train STAGE`: train a stage's network on rendered pages, on crops, resumably.

A run lives in one directory: `config.yaml` (what it was asked to do), `last.pt` (model,
optimiser and step, to resume), `log.jsonl` (training loss and every validation), and
`model.safetensors` + `MODEL_CARD.md` (the weights and the figures measured on them),
refreshed at every validation. Shipping is copying those two into `weights/`.

Each stage is a `Task`: how a rendered page is loaded, how a crop and its target are drawn
from it, the loss, and the validation figures. Trace crops are drawn at a random scale around
the trace (and anywhere, a quarter of the time) and carry their absolute page coordinates for
the CoordConv decoder; align crops are cut from the page straightened by its true homography
at the scale labels are read (`LABEL_PX_PER_MM`), mostly around a label. All are recoloured
by albumentations so that unseen grid colours and devices are not a surprise.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
import torch.nn.functional as F
import yaml

from cardioscan.align import (
    LABEL_CHANNELS,
    LABEL_MATCH_MM,
    LABEL_PX_PER_MM,
    LABEL_SIGMA_MM,
    LabelNet,
    finite_median,
    heatmap_labels,
    match_labels,
)
from cardioscan.models import CoordUnet, ModelConfig, load_weights, save_weights
from cardioscan.record import LEAD_INDEX
from cardioscan.synth.groundtruth import PageTruth


@dataclass
class TrainConfig:
    stage: str
    model: ModelConfig
    train_dir: str
    val_dir: str
    val_pages: int = 48
    crop: tuple[int, int] = (256, 512)  # (height, width) in network pixels
    scale: tuple[float, float] = (0.6, 1.3)  # crop magnification range (log-uniform)
    batch: int = 8
    pages_per_batch: int = 4
    steps: int = 6000  # the learning-rate schedule's length; a run may stop earlier on time
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: int = 150
    val_every: int = 250
    precision: str = "fp32"  # bf16 pays only on CPUs with AMX / AVX512-BF16 (not on AVX2-only ones)
    threads: int = 2
    seed: int = 0
    init: str | None = None  # weights (safetensors) a new run starts from, to fine-tune instead of training afresh

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        raw = yaml.safe_load(path.read_text())
        raw["model"] = ModelConfig(**raw.get("model", {}))
        for key in ("crop", "scale"):
            if key in raw:
                raw[key] = tuple(raw[key])
        return cls(**raw)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["crop"], out["scale"] = list(self.crop), list(self.scale)
        return out


# ---------------------------------------------------------------- the trace task


def trace_target(truth: PageTruth, shape: tuple[int, int]) -> np.ndarray:
    """Every trace and calibration pulse of the page drawn at (at least 2 px of) its ink
    width, anti-aliased: uint8 (h, w), 255 on the line."""
    width = max(2, int(round(truth.meta["style"]["trace_width_px"])))
    target = np.zeros(shape, np.uint8)
    lines = [np.round(p * 16).astype(np.int32).reshape(-1, 1, 2) for p in [*truth.traces, *truth.pulses]]
    cv2.polylines(target, lines, False, 255, width, cv2.LINE_AA, 4)
    return target


@dataclass
class TrainingPage:
    rgb: np.ndarray
    target: np.ndarray
    anchors: np.ndarray  # (n, 2) image points on the traces and pulses, where most crops are centred
    category: str


def load_training_page(stem: Path) -> TrainingPage:
    truth = PageTruth.load(stem)
    image_path = next(p for p in (stem.with_suffix(".png"), stem.with_suffix(".jpg")) if p.exists())
    bgr = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    anchors = np.concatenate([t[::25] for t in truth.traces]) if truth.traces else np.zeros((0, 2))
    if truth.pulses:  # few pixels, but they decide the gain: about one centred crop in seven shows one
        pulses = np.concatenate(truth.pulses)
        anchors = np.concatenate([anchors, np.tile(pulses, (max(1, round(0.15 * len(anchors) / len(pulses))), 1))])
    return TrainingPage(rgb, trace_target(truth, rgb.shape[:2]), anchors, truth.meta["source_category"])


def sample_crop(page: TrainingPage, crop: tuple[int, int], scale: float, rng: np.random.Generator,
                centred: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A crop of `crop` network pixels at magnification `scale`: image, target (float 0..1)
    and the page coordinates (2, h, w) in [-1, 1] of every crop pixel."""
    h, w = page.rgb.shape[:2]
    ch, cw = crop
    if centred and len(page.anchors):
        cx, cy = page.anchors[rng.integers(len(page.anchors))] + rng.normal(0, 40, 2)
    else:
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    x0, y0 = cx - cw / (2 * scale), cy - ch / (2 * scale)
    affine = np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]], np.float32)
    image = cv2.warpAffine(page.rgb, affine, (cw, ch), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT)
    target = cv2.warpAffine(page.target, affine, (cw, ch), flags=cv2.INTER_LINEAR, borderValue=0)
    xs = (x0 + (np.arange(cw) + 0.5) / scale) / w * 2 - 1
    ys = (y0 + (np.arange(ch) + 0.5) / scale) / h * 2 - 1
    coords = np.stack(np.meshgrid(xs, ys), axis=0).astype(np.float32)
    return image, target.astype(np.float32) / 255.0, coords


def recolour() -> A.Compose:
    """Colour and device changes the renderer does not make itself (grid hues, grey, blur, JPEG)."""
    return A.Compose([
        A.ChannelShuffle(p=0.3),
        A.HueSaturationValue(hue_shift_limit=30, sat_shift_limit=30, val_shift_limit=20, p=0.4),
        A.RandomBrightnessContrast(brightness_limit=0.25, contrast_limit=0.3, p=0.5),
        A.RandomGamma(p=0.2),
        A.ToGray(p=0.15),
        A.OneOf([A.PlasmaShadow(), A.Illumination(), A.RandomShadow()], p=0.3),  # phone lighting, crumples
        A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.MotionBlur(blur_limit=(3, 7)), A.Defocus(radius=(1, 3))], p=0.15),
        A.GaussNoise(std_range=(0.02, 0.08), p=0.15),
        A.ImageCompression(quality_range=(35, 90), p=0.2),
    ])



def to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)


def trace_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy plus soft Dice: the line is a few % of the crop, Dice keeps it from vanishing."""
    logits = logits.float()
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    dice = 1 - (2 * (p * target).sum() + 1) / (p.sum() + target.sum() + 1)
    return bce + dice


def trace_figures(crops: list, logits: list[torch.Tensor]) -> dict:
    """Pixels of the line at threshold 0.5: precision, recall, F1, and F1 per source category."""
    tp = fp = fn = 0.0
    per_category: dict[str, list[float]] = {}
    for crop, out in zip(crops, logits, strict=True):
        t, p = torch.from_numpy(crop[1]) > 0.5, out > 0
        ctp, cfp, cfn = float((t & p).sum()), float((~t & p).sum()), float((t & ~p).sum())
        tp, fp, fn = tp + ctp, fp + cfp, fn + cfn
        per_category.setdefault(crop[3], []).append(2 * ctp / max(2 * ctp + cfp + cfn, 1.0))
    return {"precision": tp / max(tp + fp, 1.0), "recall": tp / max(tp + fn, 1.0),
            "f1": 2 * tp / max(2 * tp + fp + fn, 1.0),
            "f1_per_category": {k: round(float(np.mean(v)), 4) for k, v in sorted(per_category.items())}}


def trace_report(v: dict) -> list[str]:
    return [f"pixels of the line at threshold 0.5: F1 {v['f1']:.3f}, precision {v['precision']:.3f}, "
            f"recall {v['recall']:.3f}, loss {v['val_loss']:.4f}.", "",
            "F1 per source category: " + ", ".join(f"{k} {x:.3f}" for k, x in v["f1_per_category"].items())]


# ---------------------------------------------------------------- the align task: lead-label heatmaps


@dataclass
class LabelPage:
    rgb: np.ndarray  # the rendered image, shrunk to at most LABEL_PAGE_PX_PER_MM (crops then only shrink a little)
    image_to_mm: np.ndarray  # homography from `rgb` px to page mm
    size_mm: tuple[float, float]  # page (width, height)
    labels: np.ndarray  # (n, 3): lead index, x, y in `rgb` px
    category: str


LABEL_PAGE_PX_PER_MM = 5.0


def load_label_page(stem: Path) -> LabelPage:
    truth = PageTruth.load(stem)
    image_path = next(p for p in (stem.with_suffix(".png"), stem.with_suffix(".jpg")) if p.exists())
    rgb = cv2.cvtColor(cv2.imread(str(image_path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    shrink = min(1.0, LABEL_PAGE_PX_PER_MM / truth.meta["px_per_mm"])
    if shrink < 1:
        h, w = rgb.shape[:2]
        rgb = cv2.resize(rgb, (round(w * shrink), round(h * shrink)), interpolation=cv2.INTER_AREA)
    to_small = np.diag([rgb.shape[1] / truth.meta["image_size"][0], rgb.shape[0] / truth.meta["image_size"][1], 1.0])
    labels = np.array([[LEAD_INDEX[key.split(":")[1]], *(to_small[:2, :2] @ xy)]
                       for key, xy in truth.keypoints.items()], np.float64).reshape(-1, 3)
    return LabelPage(rgb, truth.image_to_page_mm @ np.linalg.inv(to_small), tuple(truth.meta["page_size_mm"]),
                     labels, truth.meta["source_category"])


def label_target(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(LABEL_CHANNELS, h, w): Gaussians of LABEL_SIGMA_MM around each (lead index, x, y) in its
    lead's channel, 1 at the pixel nearest the centre; the last channel is every lead's together."""
    target = np.zeros((LABEL_CHANNELS, *shape), np.float32)
    sigma = LABEL_SIGMA_MM * LABEL_PX_PER_MM
    ys, xs = np.arange(shape[0], dtype=np.float32)[:, None], np.arange(shape[1], dtype=np.float32)[None]
    for lead, x, y in points:
        blob = np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2))
        np.maximum(target[int(lead)], blob, out=target[int(lead)])
        cx, cy = round(x), round(y)
        if 0 <= cx < shape[1] and 0 <= cy < shape[0]:
            target[int(lead), cy, cx] = 1.0
    target[-1] = target[:-1].max(axis=0)
    return target


def sample_label_crop(page: LabelPage, crop: tuple[int, int], scale: float, rng: np.random.Generator,
                      centred: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A crop of the page straightened by its true homography (what the pipeline's rectified page
    approximates) at `scale` times LABEL_PX_PER_MM, tilted by up to 2 degrees: image, target and
    page coordinates in [-1, 1]."""
    ch, cw = crop
    width, height = page.size_mm
    if centred and len(page.labels):
        _, x, y = page.labels[rng.integers(len(page.labels))]
        centre = cv2.perspectiveTransform(np.array([[[x, y]]]), page.image_to_mm)[0, 0] + rng.normal(0, 20, 2)
    else:
        centre = rng.uniform([0, 0], [width, height])
    ppm = LABEL_PX_PER_MM * scale
    turn = np.deg2rad(rng.uniform(-2, 2))
    c, s = np.cos(turn) * ppm, np.sin(turn) * ppm
    mm_to_crop = np.array([[c, -s, cw / 2 - c * centre[0] + s * centre[1]],
                           [s, c, ch / 2 - s * centre[0] - c * centre[1]], [0, 0, 1]])
    image_to_crop = mm_to_crop @ page.image_to_mm
    image = cv2.warpPerspective(page.rgb, image_to_crop, (cw, ch), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE)
    points = page.labels.copy()
    if len(points):
        points[:, 1:] = cv2.perspectiveTransform(points[None, :, 1:], image_to_crop)[0]
    grid = np.stack(np.meshgrid(np.arange(cw) + 0.5, np.arange(ch) + 0.5), axis=-1).reshape(-1, 1, 2)
    mm = cv2.perspectiveTransform(grid.astype(np.float64), np.linalg.inv(mm_to_crop)).reshape(ch, cw, 2)
    coords = (mm / np.array([width, height]) * 2 - 1).transpose(2, 0, 1).astype(np.float32)
    return image, label_target(points, (ch, cw)), coords


def label_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's focal loss: a few peak pixels among thousands, the ones near a peak penalised less."""
    p = torch.sigmoid(logits.float()).clamp(1e-4, 1 - 1e-4)
    peak = target.eq(1).float()
    positive = torch.log(p) * (1 - p) ** 2 * peak
    negative = torch.log(1 - p) * p**2 * (1 - target) ** 4 * (1 - peak)
    return -(positive.sum() + negative.sum()) / peak.sum().clamp(min=1)


def label_figures(crops: list, logits: list[torch.Tensor]) -> dict:
    """Labels found at the pipeline's threshold against the crops' true ones: median error (mm),
    recall and precision (within LABEL_MATCH_MM, named by the network), per source category too;
    and recall and precision of finding them whatever their name (the pipeline names most by the layout)."""
    errors: dict[str, list[float]] = {}
    extra, spotted, unmatched = 0, [], 0
    for crop, out in zip(crops, logits, strict=True):
        truth = heatmap_labels(crop[1], 0.99)
        found = heatmap_labels(torch.sigmoid(out.float()).numpy(), LabelNet.THRESHOLD)
        e, n = match_labels(found, truth, LABEL_PX_PER_MM)
        errors.setdefault(crop[3], []).extend(e)
        extra += n
        e, n = match_labels([replace(f, lead="") for f in found], [replace(t, lead="") for t in truth], LABEL_PX_PER_MM)
        spotted += e
        unmatched += n
    every, spotted = np.array([e for v in errors.values() for e in v]), np.isfinite(spotted)
    matched = every[np.isfinite(every)]
    return {"median_mm": finite_median(every), "recall": len(matched) / max(len(every), 1),
            "precision": len(matched) / max(len(matched) + extra, 1),
            "found_recall": float(spotted.mean()) if len(spotted) else 0.0,
            "found_precision": float(spotted.sum() / max(spotted.sum() + unmatched, 1)),
            "median_mm_per_category": {k: finite_median(np.array(v)) for k, v in sorted(errors.items())}}


def _mm(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def label_report(v: dict) -> list[str]:
    return [f"lead labels found at threshold {LabelNet.THRESHOLD}: median error {_mm(v['median_mm'])} mm "
            "(a miss counts as infinite; - when most are missed), "
            f"recall {v['recall']:.3f} and precision {v['precision']:.3f} (right lead within {LABEL_MATCH_MM:g} mm), "
            f"loss {v['val_loss']:.4f}. Whatever the name: recall {v['found_recall']:.3f}, precision "
            f"{v['found_precision']:.3f}.", "",
            "Median error (mm) per source category: "
            + ", ".join(f"{k} {_mm(x)}" for k, x in v["median_mm_per_category"].items())]


# ---------------------------------------------------------------- the tasks and the loop


@dataclass(frozen=True)
class Task:
    """What a stage trains on: how a page is loaded, how a crop and its (C, h, w) target are drawn
    from it, the loss, the validation figures measured on fixed crops and how the card states them."""

    load_page: Callable[[Path], Any]
    sample: Callable[[Any, tuple[int, int], float, np.random.Generator, bool], tuple[np.ndarray, np.ndarray, np.ndarray]]
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    figures: Callable[[list, list[torch.Tensor]], dict]
    report: Callable[[dict], list[str]]
    headline: str  # the validation figure the log line shows
    prior: float | None = None  # a fresh head's output chance (CenterNet's bias init) for rare positives


def _trace_sample(page: TrainingPage, crop: tuple[int, int], scale: float, rng: np.random.Generator,
                  centred: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    image, target, coords = sample_crop(page, crop, scale, rng, centred)
    return image, target[None], coords


TASKS = {
    "trace": Task(load_training_page, _trace_sample, trace_loss, trace_figures, trace_report, "f1"),
    "align": Task(load_label_page, sample_label_crop, label_loss, label_figures, label_report, "median_mm", prior=0.01),
}


def page_stems(directory: Path) -> list[Path]:
    stems = sorted(p.with_suffix("") for p in directory.glob("*.json"))
    if not stems:
        raise FileNotFoundError(f"no rendered pages in {directory}; make some with `cardioscan synth --out {directory}`")
    return stems


def validation_set(config: TrainConfig, task: Task) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, str]]:
    """Fixed crops (two per page, at scale 1, no recolouring) from the first `val_pages` pages."""
    rng = np.random.default_rng(12345)
    out = []
    for stem in page_stems(Path(config.val_dir))[: config.val_pages]:
        page = task.load_page(stem)
        for centred in (True, False):
            out.append((*task.sample(page, config.crop, 1.0, rng, centred), page.category))
    return out


@torch.no_grad()
def validate(model: CoordUnet, task: Task, crops: list, batch: int) -> dict:
    model.eval()
    losses, logits = [], []
    for i in range(0, len(crops), batch):
        chunk = crops[i : i + batch]
        image = to_tensor([c[0] for c in chunk]).contiguous(memory_format=torch.channels_last)
        target = torch.from_numpy(np.stack([c[1] for c in chunk]))
        coords = torch.from_numpy(np.stack([c[2] for c in chunk]))
        out = model(image, coords)["maps"]
        losses.append(float(task.loss(out, target)))
        logits.extend(out)
    model.train()
    return {"val_loss": float(np.mean(losses)), **task.figures(crops, logits)}



def lr_factor(step: int, warmup: int, steps: int) -> float:
    """Linear warm-up, then a cosine down to 2 % of the peak over the schedule's `steps`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress))


def model_card(title: str, model: str, data: str, steps: str, validation: list[str], config: dict) -> str:
    """The card every trainer writes beside its weights: model, data, steps, validation figures, config."""
    return "\n".join([
        f"# Model card: {title}", "", "This card gives the model, its training data, steps, config and validation figures.",
        "", "## Model", "", model, "", "## Data", "", data, "", "## Steps", "", steps,
        "", "## Validation figures", "", *validation,
        "", "## Config", "", "```yaml", yaml.safe_dump(config, sort_keys=False).rstrip(), "```", ""])


def write_model_card(run: Path, config: TrainConfig, task: Task, step: int, validation: dict, seconds: float) -> None:
    card = model_card(
        f"{config.stage} (`CoordUnet`)",
        f"`CoordUnet` (cardioscan/models.py), encoder `{config.model.encoder}` (random init, trained here), depth "
        f"{config.model.encoder_depth}, decoder {config.model.decoder_channels}, CoordConv {config.model.coord}.",
        f"Pages rendered by `cardioscan synth` in `{config.train_dir}` "
        f"({len(list(Path(config.train_dir).glob('*.json')))} pages); crops {config.crop[0]}×{config.crop[1]} at "
        f"scale {config.scale[0]}–{config.scale[1]}, recoloured.",
        f"Steps: {step} of a {config.steps}-step schedule, batch {config.batch}, AdamW lr {config.lr}, "
        f"{config.precision}, {seconds / 3600:.2f} h of training on this machine.",
        [f"{2 * config.val_pages} fixed crops of the first {config.val_pages} pages of `{config.val_dir}`, "
         + task.report(validation)[0], *task.report(validation)[1:],
         "", "Whole-pipeline figures are measured with `cardioscan eval` and reported in the README."],
        config.to_dict())
    (run / "MODEL_CARD.md").write_text(card)


def take_step(optimiser: torch.optim.Optimizer, lr: float, batch_loss: Callable[..., torch.Tensor],
              *batch: object) -> tuple[float, float]:
    """One optimiser step at learning rate `lr` on `batch_loss(*batch)`: the loss and the seconds it took."""
    for group in optimiser.param_groups:
        group["lr"] = lr
    started = time.monotonic()
    loss = batch_loss(*batch)
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    return loss.item(), time.monotonic() - started


def resume(run: Path, model: torch.nn.Module, optimiser: torch.optim.Optimizer,
           log: Callable[[str], None]) -> tuple[int, float]:
    """Load `run/last.pt` into the model and optimiser when it exists: (steps done, training seconds)."""
    checkpoint = run / "last.pt"
    if not checkpoint.exists():
        return 0, 0.0
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    optimiser.load_state_dict(state["optimiser"])
    log(f"resumed {run} at step {state['step']}")
    return state["step"], state["seconds"]


def save_checkpoint(run: Path, model: torch.nn.Module, optimiser: torch.optim.Optimizer, step: int,
                    seconds: float) -> None:
    torch.save({"model": model.state_dict(), "optimiser": optimiser.state_dict(), "step": step,
                "seconds": seconds}, run / "last.pt")


def train(config: TrainConfig, run: Path, max_minutes: float | None = None,
          log: Callable[[str], None] = print) -> dict:
    """Train (or resume) the run in `run`; returns the last validation figures."""
    if config.stage not in TASKS:
        raise ValueError(f"no trainer for stage {config.stage!r} yet; available: {', '.join(TASKS)}")
    task = TASKS[config.stage]
    torch.set_num_threads(config.threads)
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    stems = page_stems(Path(config.train_dir))
    val_crops = validation_set(config, task)

    model = CoordUnet(config.model).to(memory_format=torch.channels_last)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    step, seconds = resume(run, model, optimiser, log)
    if step == 0 and config.init:
        model.load_state_dict(load_weights(Path(config.init))[0].state_dict())
        log(f"starting from {config.init}")
    elif step == 0 and task.prior is not None:
        torch.nn.init.constant_(model.head.bias, math.log(task.prior / (1 - task.prior)))
    rng = np.random.default_rng([config.seed, step])
    augment = recolour()
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.precision == "bf16")

    def make_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pages = [task.load_page(stems[i]) for i in rng.integers(len(stems), size=config.pages_per_batch)]
        images, targets, coords = [], [], []
        for k in range(config.batch):
            scale = math.exp(rng.uniform(*np.log(config.scale)))
            image, target, coord = task.sample(pages[k % len(pages)], config.crop, scale, rng, rng.random() < 0.75)
            images.append(augment(image=image)["image"])
            targets.append(target)
            coords.append(coord)
        return (to_tensor(images).contiguous(memory_format=torch.channels_last),
                torch.from_numpy(np.stack(targets)), torch.from_numpy(np.stack(coords)))

    def batch_loss(image: torch.Tensor, coords: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with autocast:
            logits = model(image, coords)["maps"]
        return task.loss(logits, target)

    started = time.monotonic()
    validation: dict = {}
    running: list[float] = []
    model.train()
    with ThreadPoolExecutor(1) as loader, (run / "log.jsonl").open("a") as log_file:
        pending = loader.submit(make_batch)
        while step < config.steps:
            image, target, coords = pending.result()
            pending = loader.submit(make_batch)
            loss, took = take_step(optimiser, config.lr * lr_factor(step, config.warmup, config.steps), batch_loss,
                                   image, coords, target)
            seconds += took
            step += 1
            running.append(loss)
            out_of_time = max_minutes is not None and time.monotonic() - started > 60 * max_minutes
            if step % config.val_every == 0 or step == config.steps or out_of_time:
                validation = validate(model, task, val_crops, config.batch)
                entry = {"step": step, "train_loss": float(np.mean(running)), "lr": optimiser.param_groups[0]["lr"],
                         "train_seconds": round(seconds, 1), **validation}
                running.clear()
                log_file.write(json.dumps(entry) + "\n")
                log_file.flush()
                log(f"step {step}: train loss {entry['train_loss']:.4f}, val {task.headline} "
                    f"{_mm(validation[task.headline])} (P {validation['precision']:.3f} R {validation['recall']:.3f})")
                save_checkpoint(run, model, optimiser, step, seconds)
                info = {"stage": config.stage, "steps": step, "validation": validation}
                save_weights(model, run / "model.safetensors", info)
                write_model_card(run, config, task, step, validation, seconds)
            if out_of_time:
                log(f"time budget of {max_minutes} min reached at step {step}; resume by running the same command")
                break
        pending.cancel()
    return validation
