"""Render many pages in parallel, deterministically, and draw contact sheets."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from cardioscan.synth.degrade import SOURCE_CATEGORIES
from cardioscan.synth.layout import LAYOUTS
from cardioscan.synth.render import RenderOptions, render_page, render_to_files


def page_seed(seed: int, index: int) -> int:
    """Independent, reproducible seed of page `index` in a set made with `seed`."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def page_options(base: RenderOptions, index: int, categories: Sequence[str] | None,
                 layouts: Sequence[str] | None) -> RenderOptions:
    """Cycle through the requested categories and layouts so every one is covered evenly."""
    return replace(
        base,
        category=categories[index % len(categories)] if categories else base.category,
        layout=layouts[(index // max(1, len(categories or [1]))) % len(layouts)] if layouts else base.layout,
    )


def _render_one(job: tuple[int, Path, RenderOptions, str]) -> str:
    seed, stem, options, image_format = job
    return str(render_to_files(seed, stem, options, image_format))


def generate(n: int, out: Path, seed: int, workers: int = 1, categories: Sequence[str] | None = None,
             layouts: Sequence[str] | None = None, options: RenderOptions | None = None,
             image_format: str = "auto", progress: Callable[[int], None] | None = None) -> list[Path]:
    """Render pages `synth_000000` ... into `out`; the same arguments give identical files."""
    for c in categories or []:
        if c not in SOURCE_CATEGORIES:
            raise ValueError(f"unknown source category {c!r}; valid: {', '.join(SOURCE_CATEGORIES)}")
    for lay in layouts or []:
        if lay not in LAYOUTS:
            raise ValueError(f"unknown layout {lay!r}; valid: {', '.join(LAYOUTS)}")
    out.mkdir(parents=True, exist_ok=True)
    base = options or RenderOptions()
    jobs = [(page_seed(seed, i), out / f"synth_{i:06d}", page_options(base, i, categories, layouts), image_format)
            for i in range(n)]
    paths: list[Path] = []
    if workers <= 1:
        for job in jobs:
            paths.append(Path(_render_one(job)))
            if progress:
                progress(1)
        return paths
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for path in pool.map(_render_one, jobs, chunksize=4):
            paths.append(Path(path))
            if progress:
                progress(1)
    return paths


def contact_sheet(seed: int, options: RenderOptions | None = None, tile_width: int = 560) -> np.ndarray:
    """One page per source category, then one per layout, as a single RGB image with captions."""
    base = options or RenderOptions()
    jobs = [replace(base, category=c) for c in SOURCE_CATEGORIES] + [replace(base, layout=lay) for lay in LAYOUTS]
    tiles = []
    for i, opts in enumerate(jobs):
        image, truth = render_page(page_seed(seed, i), opts)
        scale = tile_width / max(image.shape[:2])
        tile = cv2.resize(image, (int(image.shape[1] * scale), int(image.shape[0] * scale)), interpolation=cv2.INTER_AREA)
        canvas = np.full((tile_width + 28, tile_width, 3), 255, np.uint8)
        canvas[: tile.shape[0], : tile.shape[1]] = tile
        caption = f"{truth.meta['source_category']} | {truth.meta['layout_name']} | {truth.meta['dpi']:.0f} dpi"
        cv2.putText(canvas, caption, (4, tile_width + 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(canvas)
    cols = 4
    while len(tiles) % cols:
        tiles.append(np.full_like(tiles[0], 255))
    return np.vstack([np.hstack(tiles[r : r + cols]) for r in range(0, len(tiles), cols)])
