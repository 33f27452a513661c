"""Source classifier: how a page was captured and what happened to its paper, to route its
preprocessing (`cardioscan.preprocess`) and to tell the user what kind of image was read.

An EfficientNet (timm, random init, trained here on `cardioscan synth` pages) looks at the whole
page shrunk to `input_size`. Its 12 outputs are the renderer's 8 capture kinds (one softmax: a
page is captured once) and its 4 paper conditions (independent sigmoids: a photographed page can
also be stained). The named category follows the renderer's labels: the most probable present
condition, else the capture.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import timm
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file, safe_open, save_file

from cardioscan.synth.degrade import CAPTURES, PAPER_CONDITIONS
from cardioscan.trace import WEIGHTS_DIR

SOURCE_WEIGHTS = WEIGHTS_DIR / "source.safetensors"
PRESENT = 0.5  # a paper condition counts as present above this probability


@dataclass
class SourceConfig:
    stage: str
    model: str = "efficientnet_b0"
    input_size: tuple[int, int] = (320, 448)  # (height, width) the whole page is shrunk to
    train_dirs: list[str] = field(default_factory=lambda: ["data/train"])
    val_dir: str = "data/val"
    batch: int = 16
    steps: int = 1500
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: int = 100
    val_every: int = 250
    drop_rate: float = 0.2
    threads: int = 2
    seed: int = 0

    @classmethod
    def load(cls, path: Path) -> SourceConfig:
        raw = yaml.safe_load(path.read_text())
        raw.pop("routing", None)  # the preprocessing table beside it is read at inference (cardioscan.preprocess)
        if "input_size" in raw:
            raw["input_size"] = tuple(raw["input_size"])
        return cls(**raw)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["input_size"] = list(self.input_size)
        return out


def build_model(config: SourceConfig) -> torch.nn.Module:
    return timm.create_model(config.model, pretrained=False, num_classes=len(CAPTURES) + len(PAPER_CONDITIONS),
                             drop_rate=config.drop_rate)


def shrink(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The whole page at the classifier's input size (area averaging, aspect not kept: the
    page's shape is evidence too)."""
    return cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_AREA)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0).contiguous(
        memory_format=torch.channels_last)


def category_of(capture_probs: np.ndarray, condition_probs: np.ndarray) -> tuple[str, float]:
    """The renderer's label for these probabilities: the likeliest present condition, else the capture."""
    k = int(np.argmax(condition_probs))
    if condition_probs[k] > PRESENT:
        return PAPER_CONDITIONS[k], float(condition_probs[k])
    c = int(np.argmax(capture_probs))
    return CAPTURES[c], float(capture_probs[c])


# ---------------------------------------------------------------- data


@dataclass
class LabelledPages:
    images: np.ndarray  # (n, h, w, 3) uint8, shrunk
    capture: np.ndarray  # (n,) index into CAPTURES
    conditions: np.ndarray  # (n, 4) 0/1 per PAPER_CONDITIONS
    category: list[str]  # the renderer's label


def load_pages(directory: Path, size: tuple[int, int], cache: Path | None = None) -> LabelledPages:
    """Every page of a `cardioscan synth` directory, shrunk once (and cached: decoding pages dominates)."""
    if cache is not None and cache.exists():
        data = np.load(cache)
        return LabelledPages(data["images"], data["capture"], data["conditions"], list(data["category"]))
    metas = sorted(directory.glob("*.json"))
    if not metas:
        raise FileNotFoundError(f"no rendered pages in {directory}; make some with `cardioscan synth --out {directory}`")

    def one(meta_path: Path) -> tuple[np.ndarray, dict]:
        meta = json.loads(meta_path.read_text())
        image = next(p for p in (meta_path.with_suffix(".png"), meta_path.with_suffix(".jpg")) if p.exists())
        return shrink(cv2.cvtColor(cv2.imread(str(image), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB), size), meta

    with ThreadPoolExecutor(2) as pool:
        loaded = list(pool.map(one, metas))
    pages = LabelledPages(
        np.stack([image for image, _ in loaded]),
        np.array([CAPTURES.index(m["capture"]) for _, m in loaded]),
        np.array([[c in m["paper_conditions"] for c in PAPER_CONDITIONS] for _, m in loaded], np.float32),
        [m["source_category"] for _, m in loaded])
    if cache is not None:
        np.savez(cache, images=pages.images, capture=pages.capture, conditions=pages.conditions,
                 category=np.array(pages.category))
    return pages


def augmentation() -> A.Compose:
    """Framing and exposure only: colour, grain and sharpness are what tells the sources apart."""
    return A.Compose([
        A.Affine(scale=(0.9, 1.08), translate_percent=(-0.04, 0.04), rotate=(-3, 3), border_mode=cv2.BORDER_REFLECT_101,
                 p=0.7),
        A.RandomBrightnessContrast(brightness_limit=0.08, contrast_limit=0.08, p=0.3),
    ])


# ---------------------------------------------------------------- training


def source_loss(logits: torch.Tensor, capture: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
    logits = logits.float()
    n = len(CAPTURES)
    return F.cross_entropy(logits[:, :n], capture) + F.binary_cross_entropy_with_logits(logits[:, n:], conditions)


@torch.no_grad()
def predict(model: torch.nn.Module, images: np.ndarray, batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Capture probabilities (n, 8) and condition probabilities (n, 4)."""
    model.eval()
    device = next(model.parameters()).device
    captures, conditions = [], []
    for i in range(0, len(images), batch):
        logits = model(to_tensor(images[i : i + batch]).to(device)).float()
        captures.append(torch.softmax(logits[:, : len(CAPTURES)], 1).cpu().numpy())
        conditions.append(torch.sigmoid(logits[:, len(CAPTURES) :]).cpu().numpy())
    return np.concatenate(captures), np.concatenate(conditions)


def accuracy_report(pages: LabelledPages, captures: np.ndarray, conditions: np.ndarray) -> dict:
    """Category accuracy (strict: the renderer's label; apt: a label that truly applies to the page,
    since a stained phone photo is both), capture accuracy and per-condition F1, per category."""
    named = [category_of(c, k)[0] for c, k in zip(captures, conditions, strict=True)]
    truths = [{CAPTURES[c], *(p for p, on in zip(PAPER_CONDITIONS, k, strict=True) if on)}
              for c, k in zip(pages.capture, pages.conditions, strict=True)]
    strict = np.array([n == t for n, t in zip(named, pages.category, strict=True)])
    apt = np.array([n in t for n, t in zip(named, truths, strict=True)])
    capture_ok = captures.argmax(1) == pages.capture
    present = conditions > PRESENT
    tp = (present & (pages.conditions > 0)).sum(0)
    f1 = 2 * tp / np.maximum(present.sum(0) + (pages.conditions > 0).sum(0), 1)
    per_category = {}
    for category in sorted(set(pages.category)):
        idx = [i for i, c in enumerate(pages.category) if c == category]
        per_category[category] = {"pages": len(idx), "accuracy": round(float(strict[idx].mean()), 4),
                                  "apt": round(float(apt[idx].mean()), 4)}
    return {"accuracy": round(float(strict.mean()), 4), "apt_accuracy": round(float(apt.mean()), 4),
            "capture_accuracy": round(float(capture_ok.mean()), 4),
            "condition_f1": {c: round(float(v), 4) for c, v in zip(PAPER_CONDITIONS, f1, strict=True)},
            "per_category": per_category}


def save_source_weights(model: torch.nn.Module, config: SourceConfig, info: dict, path: Path) -> None:
    tensors = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()
               if not k.endswith("num_batches_tracked")}
    save_file(tensors, str(path), metadata={"source_config": json.dumps(config.to_dict()), "info": json.dumps(info)})


def write_model_card(run: Path, config: SourceConfig, step: int, validation: dict, seconds: float,
                     train_pages: int) -> None:
    from cardioscan.train import model_card

    rows = [f"| {c} | {v['pages']} | {v['accuracy']:.3f} | {v['apt']:.3f} |"
            for c, v in validation["per_category"].items()]
    card = model_card(
        "source classifier",
        f"timm `{config.model}` (random init, trained here), 12 outputs: the 8 capture kinds (softmax) and the 4 "
        f"paper conditions (sigmoids); whole page shrunk to {config.input_size[0]}×{config.input_size[1]}.",
        f"{train_pages} pages rendered by `cardioscan synth` in {', '.join(config.train_dirs)}; light framing and "
        "exposure augmentation.",
        f"Steps: {step} of a {config.steps}-step schedule, batch {config.batch}, AdamW lr {config.lr}, "
        f"{seconds / 3600:.2f} h of training on this machine.",
        [f"On `{config.val_dir}` ({sum(v['pages'] for v in validation['per_category'].values())} pages): category "
         f"accuracy {validation['accuracy']:.3f} (a label that applies: {validation['apt_accuracy']:.3f}), capture "
         f"accuracy {validation['capture_accuracy']:.3f}, condition F1 "
         + ", ".join(f"{k} {v:.3f}" for k, v in validation["condition_f1"].items()) + ".",
         "", "| category | pages | accuracy | a label that applies |", "|---|---|---|---|", *rows],
        config.to_dict())
    (run / "MODEL_CARD.md").write_text(card)


def train_source(config: SourceConfig, run: Path, max_minutes: float | None = None,
                 log: Callable[[str], None] = print) -> dict:
    """Train (or resume) the classifier in `run`; returns the last validation figures."""
    from cardioscan.train import lr_factor, resume, save_checkpoint, take_step

    torch.set_num_threads(config.threads)
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    size = config.input_size
    cache_name = f"{size[0]}x{size[1]}.npz"
    parts = [load_pages(Path(d), size, run / f"cache_{Path(d).name}_{cache_name}") for d in config.train_dirs]
    train_pages = LabelledPages(np.concatenate([p.images for p in parts]), np.concatenate([p.capture for p in parts]),
                                np.concatenate([p.conditions for p in parts]), sum((p.category for p in parts), []))
    val_pages = load_pages(Path(config.val_dir), size, run / f"cache_val_{Path(config.val_dir).name}_{cache_name}")
    log(f"{len(train_pages.capture)} training pages, {len(val_pages.capture)} validation pages")

    model = build_model(config).to(memory_format=torch.channels_last)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    step, seconds = resume(run, model, optimiser, log)
    rng = np.random.default_rng([config.seed, step])
    augment = augmentation()
    started = time.monotonic()
    validation: dict = {}
    running: list[float] = []
    model.train()
    with (run / "log.jsonl").open("a") as log_file:
        while step < config.steps:
            idx = rng.integers(len(train_pages.capture), size=config.batch)
            images = np.stack([augment(image=train_pages.images[i])["image"] for i in idx])
            loss, took = take_step(optimiser, config.lr * lr_factor(step, config.warmup, config.steps),
                                   lambda x, capture, conditions: source_loss(model(x), capture, conditions),
                                   to_tensor(images), torch.from_numpy(train_pages.capture[idx]),
                                   torch.from_numpy(train_pages.conditions[idx]))
            seconds += took
            step += 1
            running.append(loss)
            out_of_time = max_minutes is not None and time.monotonic() - started > 60 * max_minutes
            if step % config.val_every == 0 or step == config.steps or out_of_time:
                validation = accuracy_report(val_pages, *predict(model, val_pages.images))
                entry = {"step": step, "train_loss": float(np.mean(running)), "train_seconds": round(seconds, 1),
                         **validation}
                running.clear()
                log_file.write(json.dumps(entry) + "\n")
                log_file.flush()
                log(f"step {step}: train loss {entry['train_loss']:.4f}, val accuracy {validation['accuracy']:.3f} "
                    f"(apt {validation['apt_accuracy']:.3f}, capture {validation['capture_accuracy']:.3f})")
                save_checkpoint(run, model, optimiser, step, seconds)
                save_source_weights(model, config, {"stage": "source", "steps": step, "validation": validation},
                                    run / "model.safetensors")
                write_model_card(run, config, step, validation, seconds, len(train_pages.capture))
                model.train()
            if out_of_time:
                log(f"time budget of {max_minutes} min reached at step {step}; resume by running the same command")
                break
    return validation


# ---------------------------------------------------------------- inference


@dataclass
class SourceEstimate:
    category: str
    probability: float
    captures: dict[str, float]
    conditions: dict[str, float]

    def summary(self) -> dict:
        return {"category": self.category, "probability": round(self.probability, 3),
                "captures": {k: round(v, 3) for k, v in self.captures.items()},
                "conditions": {k: round(v, 3) for k, v in self.conditions.items()}}


class SourceClassifier:
    """The trained classifier, loaded once."""

    def __init__(self, path: Path = SOURCE_WEIGHTS, device: str = "cpu") -> None:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if "source_config" not in meta:
            raise ValueError(f"{path} is not a cardioscan source weights file")
        self.config = SourceConfig(**json.loads(meta["source_config"]))
        self.config.input_size = tuple(self.config.input_size)
        self.info = json.loads(meta.get("info", "{}"))
        self.model = build_model(self.config)
        missing, unexpected = self.model.load_state_dict(load_file(str(path)), strict=False)
        if [k for k in missing if not k.endswith("num_batches_tracked")] or unexpected:
            raise ValueError(f"{path} does not match its own model config")
        self.model = self.model.to(torch.device(device), memory_format=torch.channels_last).eval()

    @property
    def version(self) -> str:
        return f"source.safetensors (step {self.info.get('steps', '?')})"

    def classify(self, rgb: np.ndarray) -> SourceEstimate:
        captures, conditions = predict(self.model, shrink(rgb, self.config.input_size)[None])
        category, probability = category_of(captures[0], conditions[0])
        return SourceEstimate(category, probability, dict(zip(CAPTURES, captures[0].tolist(), strict=True)),
                              dict(zip(PAPER_CONDITIONS, conditions[0].tolist(), strict=True)))
