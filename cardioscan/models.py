"""The networks of every image stage, built from a config, saved and loaded as safetensors.

One architecture serves align, grid and trace: a segmentation-models-pytorch encoder (any
timm encoder through the `tu-` prefix, random init: nothing is downloaded) and a small
UNet decoder of our own, because the trace stage needs CoordConv — the normalised page
x / y of every pixel concatenated at every decoder stage, so a crop still knows where on
the page it lies. An optional head on the deepest features classifies the whole input
(the align stage's rotation class).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, safe_open, save_file
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


@dataclass
class ModelConfig:
    encoder: str = "tu-resnet18d"
    encoder_depth: int = 4
    decoder_channels: list[int] = field(default_factory=lambda: [128, 64, 32, 16])
    classes: int = 1  # output maps at full resolution
    image_classes: int = 0  # whole-image classes from the deepest features (0: no such head)
    coord: bool = True


def _conv(cin: int, cout: int, conv: type[nn.Conv2d] = nn.Conv2d) -> nn.Sequential:
    return nn.Sequential(conv(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class PartsConv2d(nn.Conv2d):
    """A convolution of the channel-wise concatenation of `parts`, computed as the sum of each
    part's convolution with its slice of the weights: the same numbers without the
    concatenation, which on CPU costs as much as the convolution itself at full resolution
    (channels-last tensors interleave every pixel's channels)."""

    def forward(self, parts: list[torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        out, start = None, 0
        for part in parts:
            stop = start + part.shape[1]
            y = F.conv2d(part, self.weight[:, start:stop], None, self.stride, self.padding)
            out = y if out is None else out.add_(y)
            start = stop
        return out if self.bias is None else out.add_(self.bias.view(1, -1, 1, 1))


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX): there bf16 autocast reads
    a page about 1.5 times faster; elsewhere it is emulated and slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: stay in fp32
        return False
    return any(flag in flags for flag in ("avx512_bf16", "amx_bf16"))


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every inference-mode batch norm into the convolution just before it (timm's
    BatchNormAct2d keeps its activation): the same outputs, a fifth less time on CPU."""
    for parent in model.modules():
        children = list(parent.named_children())
        for (conv_name, conv), (bn_name, bn) in itertools.pairwise(children):
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and not bn.training:
                setattr(parent, conv_name, fuse_conv_bn_eval(conv, bn))
                after = [m for m in (getattr(bn, "drop", None), getattr(bn, "act", None)) if m is not None]
                setattr(parent, bn_name, nn.Sequential(*after) if after else nn.Identity())
    return model


class CoordUnet(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if len(config.decoder_channels) != config.encoder_depth:
            raise ValueError("decoder_channels needs one entry per encoder stage")
        self.config = config
        self.encoder = smp.encoders.get_encoder(config.encoder, in_channels=3, depth=config.encoder_depth,
                                                weights=None)
        skips = list(self.encoder.out_channels)  # [3 (input), stage 1, ..., deepest]
        extra = 2 if config.coord else 0
        blocks = []
        cin = skips[-1]
        for i, cout in enumerate(config.decoder_channels):
            skip = skips[-2 - i]  # the last block joins the input image itself, at full resolution
            # The first convolution joins [upsampled deeper features, skip, coordinates].
            blocks.append(nn.Sequential(_conv(cin + skip + extra, cout, PartsConv2d), _conv(cout, cout)))
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(cin, config.classes, 1)
        self.image_head = nn.Linear(skips[-1], config.image_classes) if config.image_classes else None

    def forward(self, image: torch.Tensor, coords: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """`image` (B, 3, H, W) in [0, 1]; `coords` (B, 2, H, W) the page x / y in [-1, 1]
        (the whole input spans [-1, 1] when not given). H and W must divide by 2**depth."""
        features = self.encoder(image)
        if self.config.coord and coords is None:
            coords = whole_page_coords(image.shape[0], image.shape[2], image.shape[3], image.device, image.dtype)
        x = features[-1]
        for i, block in enumerate(self.blocks):
            skip = features[-2 - i]
            x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
            parts = [x, skip]
            if self.config.coord:
                parts.append(F.interpolate(coords.to(x.dtype), size=skip.shape[-2:], mode="bilinear",
                                           align_corners=False))
            x = block(parts)
        out = {"maps": self.head(x)}
        if self.image_head is not None:
            out["image_logits"] = self.image_head(features[-1].mean(dim=(2, 3)))
        return out


def whole_page_coords(batch: int, h: int, w: int, device: torch.device | str = "cpu",
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
    ys = torch.linspace(-1, 1, h, device=device, dtype=dtype).view(1, 1, h, 1).expand(batch, 1, h, w)
    xs = torch.linspace(-1, 1, w, device=device, dtype=dtype).view(1, 1, 1, w).expand(batch, 1, h, w)
    return torch.cat([xs, ys], dim=1)


def save_weights(model: CoordUnet, path: Path, info: dict) -> None:
    """Weights plus the model config and `info` (stage, steps, validation) as safetensors metadata."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()
               if not k.endswith("num_batches_tracked")}
    save_file(tensors, str(path), metadata={"model": json.dumps(asdict(model.config)), "info": json.dumps(info)})


class LoadedUnet:
    """A `CoordUnet` loaded once for inference: batch norms folded, channels-last, read in bf16
    where the CPU computes it natively (`cpu_has_bf16`); inputs are padded to `multiple`."""

    def __init__(self, path: Path, device: str = "cpu") -> None:
        self.path = path
        self.device = torch.device(device)
        self.model, self.info = load_weights(path)
        self.model = fold_batchnorm(self.model).to(self.device, memory_format=torch.channels_last)
        self.multiple = 2 ** self.model.config.encoder_depth
        self.bf16 = self.device.type == "cpu" and cpu_has_bf16()

    @property
    def version(self) -> str:
        return f"{self.path.name} (step {self.info.get('steps', '?')})"


def load_weights(path: Path) -> tuple[CoordUnet, dict]:
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if "model" not in meta:
        raise ValueError(f"{path} is not a cardioscan weights file (no model config in its metadata)")
    model = CoordUnet(ModelConfig(**json.loads(meta["model"])))
    missing, unexpected = model.load_state_dict(load_file(str(path)), strict=False)
    wrong = [k for k in missing if not k.endswith("num_batches_tracked")] + list(unexpected)
    if wrong:
        raise ValueError(f"{path} does not match its own model config ({len(wrong)} tensors differ)")
    model.eval()
    return model, json.loads(meta.get("info", "{}"))
