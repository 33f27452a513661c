"""`cardioscan train STAGE`: train a stage's network on rendered pages, on crops, resumably.

A run lives in one directory: `config.yaml` (what it was asked to do), `last.pt` (model,
optimiser and step, to resume), `log.jsonl` (training loss and every validation), and
`model.safetensors` + `MODEL_CARD.md` (the weights and the figures measured on them),
refreshed at every validation. Shipping is copying those two into `weights/`.

Crops are drawn at a random scale around the trace (and anywhere, a quarter of the time),
recoloured by albumentations so that unseen grid colours and devices are not a surprise,
and carry their absolute page coordinates for the CoordConv decoder.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
import torch.nn.functional as F
import yaml

from cardioscan.models import CoordUnet, ModelConfig, load_weights, save_weights
from cardioscan.synth.groundtruth import PageTruth

STAGES = ("trace",)  # align, grid and source join as their tasks are written


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


# ---------------------------------------------------------------- the loop


def page_stems(directory: Path) -> list[Path]:
    stems = sorted(p.with_suffix("") for p in directory.glob("*.json"))
    if not stems:
        raise FileNotFoundError(f"no rendered pages in {directory}; make some with `cardioscan synth --out {directory}`")
    return stems


def validation_set(config: TrainConfig) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, str]]:
    """Fixed crops (two per page, at scale 1, no recolouring) from the first `val_pages` pages."""
    rng = np.random.default_rng(12345)
    out = []
    for stem in page_stems(Path(config.val_dir))[: config.val_pages]:
        page = load_training_page(stem)
        for centred in (True, False):
            out.append((*sample_crop(page, config.crop, 1.0, rng, centred), page.category))
    return out


@torch.no_grad()
def validate(model: CoordUnet, crops: list, batch: int) -> dict:
    model.eval()
    tp = fp = fn = 0.0
    per_category: dict[str, list[float]] = {}
    losses = []
    for i in range(0, len(crops), batch):
        chunk = crops[i : i + batch]
        image = to_tensor([c[0] for c in chunk]).contiguous(memory_format=torch.channels_last)
        target = torch.from_numpy(np.stack([c[1] for c in chunk]))[:, None]
        coords = torch.from_numpy(np.stack([c[2] for c in chunk]))
        logits = model(image, coords)["maps"]
        losses.append(float(trace_loss(logits, target)))
        pred = (logits > 0).float()
        truth = (target > 0.5).float()
        for j, c in enumerate(chunk):
            t, p = truth[j], pred[j]
            ctp, cfp, cfn = float((t * p).sum()), float(((1 - t) * p).sum()), float((t * (1 - p)).sum())
            tp, fp, fn = tp + ctp, fp + cfp, fn + cfn
            per_category.setdefault(c[3], []).append(2 * ctp / max(2 * ctp + cfp + cfn, 1.0))
    model.train()
    return {"val_loss": float(np.mean(losses)), "precision": tp / max(tp + fp, 1.0), "recall": tp / max(tp + fn, 1.0),
            "f1": 2 * tp / max(2 * tp + fp + fn, 1.0),
            "f1_per_category": {k: round(float(np.mean(v)), 4) for k, v in sorted(per_category.items())}}


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


def write_model_card(run: Path, config: TrainConfig, step: int, validation: dict, seconds: float) -> None:
    card = model_card(
        f"{config.stage} (`CoordUnet`)",
        f"`CoordUnet` (cardioscan/models.py), encoder `{config.model.encoder}` (random init, trained here), depth "
        f"{config.model.encoder_depth}, decoder {config.model.decoder_channels}, CoordConv {config.model.coord}.",
        f"Pages rendered by `cardioscan synth` in `{config.train_dir}` "
        f"({len(list(Path(config.train_dir).glob('*.json')))} pages); crops {config.crop[0]}×{config.crop[1]} at "
        f"scale {config.scale[0]}–{config.scale[1]}, recoloured.",
        f"Steps: {step} of a {config.steps}-step schedule, batch {config.batch}, AdamW lr {config.lr}, "
        f"{config.precision}, {seconds / 3600:.2f} h of training on this machine.",
        [f"{2 * config.val_pages} fixed crops of the first {config.val_pages} pages of `{config.val_dir}`, pixels of "
         f"the line at threshold 0.5: F1 {validation['f1']:.3f}, precision {validation['precision']:.3f}, "
         f"recall {validation['recall']:.3f}, loss {validation['val_loss']:.4f}.", "",
         "F1 per source category: " + ", ".join(f"{k} {v:.3f}" for k, v in validation["f1_per_category"].items()),
         "", "Whole-pipeline figures (SNR) are measured with `cardioscan eval` and reported in the README."],
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
    if config.stage not in STAGES:
        raise ValueError(f"no trainer for stage {config.stage!r} yet; available: {', '.join(STAGES)}")
    torch.set_num_threads(config.threads)
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    stems = page_stems(Path(config.train_dir))
    val_crops = validation_set(config)

    model = CoordUnet(config.model).to(memory_format=torch.channels_last)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    step, seconds = resume(run, model, optimiser, log)
    if step == 0 and config.init:
        model.load_state_dict(load_weights(Path(config.init))[0].state_dict())
        log(f"starting from {config.init}")
    rng = np.random.default_rng([config.seed, step])
    augment = recolour()
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.precision == "bf16")

    def make_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pages = [load_training_page(stems[i]) for i in rng.integers(len(stems), size=config.pages_per_batch)]
        images, targets, coords = [], [], []
        for k in range(config.batch):
            scale = math.exp(rng.uniform(*np.log(config.scale)))
            image, target, coord = sample_crop(pages[k % len(pages)], config.crop, scale, rng, rng.random() < 0.75)
            images.append(augment(image=image)["image"])
            targets.append(target)
            coords.append(coord)
        return (to_tensor(images).contiguous(memory_format=torch.channels_last),
                torch.from_numpy(np.stack(targets))[:, None], torch.from_numpy(np.stack(coords)))

    def batch_loss(image: torch.Tensor, coords: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with autocast:
            logits = model(image, coords)["maps"]
        return trace_loss(logits, target)

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
                validation = validate(model, val_crops, config.batch)
                entry = {"step": step, "train_loss": float(np.mean(running)), "lr": optimiser.param_groups[0]["lr"],
                         "train_seconds": round(seconds, 1), **validation}
                running.clear()
                log_file.write(json.dumps(entry) + "\n")
                log_file.flush()
                log(f"step {step}: train loss {entry['train_loss']:.4f}, val F1 {validation['f1']:.3f} "
                    f"(P {validation['precision']:.3f} R {validation['recall']:.3f})")
                save_checkpoint(run, model, optimiser, step, seconds)
                info = {"stage": config.stage, "steps": step, "validation": validation}
                save_weights(model, run / "model.safetensors", info)
                write_model_card(run, config, step, validation, seconds)
            if out_of_time:
                log(f"time budget of {max_minutes} min reached at step {step}; resume by running the same command")
                break
        pending.cancel()
    return validation
