"""Load one page of an input file as RGB uint8, with the checks that keep bad input cheap."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 120_000_000  # ~ an A4 page at 1200 dpi; larger is a decompression bomb, not an ECG
PDF_DPI = 200
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".pdf")


class ImageLoadError(ValueError):
    """The input cannot be read as an image page; the message says why in one sentence."""


@dataclass
class LoadedPage:
    rgb: np.ndarray
    path: Path
    page: int  # 1-based
    n_pages: int


def _load_pdf(path: Path, page: int) -> LoadedPage:
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as exc:
        raise ImageLoadError(f"{path} is not a readable PDF ({exc})") from exc
    try:
        n = len(pdf)
        if not 1 <= page <= n:
            raise ImageLoadError(f"{path} has {n} page(s); page {page} does not exist")
        bitmap = pdf[page - 1].render(scale=PDF_DPI / 72.0)
        rgb = np.asarray(bitmap.to_pil().convert("RGB"))
        return LoadedPage(rgb, path, page, n)
    finally:
        pdf.close()


def load_page(path: Path, page: int = 1) -> LoadedPage:
    """Page `page` (1-based: a PDF page or a TIFF frame) as RGB, upright per its EXIF tag."""
    path = Path(path)
    if not path.is_file():
        raise ImageLoadError(f"{path} does not exist or is not a file")
    if path.stat().st_size == 0:
        raise ImageLoadError(f"{path} is empty")
    if path.suffix.lower() == ".pdf":
        return _load_pdf(path, page)
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with Image.open(path) as im:
            n = getattr(im, "n_frames", 1)
            if not 1 <= page <= n:
                raise ImageLoadError(f"{path} has {n} page(s); page {page} does not exist")
            im.seek(page - 1)
            im = ImageOps.exif_transpose(im)
            rgb = np.asarray(im.convert("RGB"))
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(f"{path} is too large to be a page ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ImageLoadError(f"{path} is not an image cardioscan can read (PNG, JPEG, TIFF, BMP, WebP, PDF)") from exc
    except OSError as exc:
        raise ImageLoadError(f"{path} could not be decoded: {exc}") from exc
    if min(rgb.shape[:2]) < 200:
        raise ImageLoadError(f"{path} is {rgb.shape[1]}x{rgb.shape[0]} px, too small to hold a readable ECG")
    return LoadedPage(rgb, path, page, n)
