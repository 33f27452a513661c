"""Load one page of an input file as RGB uint8, with the checks that keep bad input cheap."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 120_000_000  # ~ an A4 page at 1200 dpi; larger is a decompression bomb, not an ECG
MAX_FILE_BYTES = 512 * 2**20  # a page file larger than this is not a page (and would stall a batch)
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


def _open_pdf(path: Path):
    import pypdfium2 as pdfium

    try:
        return pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as exc:
        if "password" in str(exc).lower():
            raise ImageLoadError(f"{path} is an encrypted PDF (password protected)") from exc
        raise ImageLoadError(f"{path} is not a readable PDF ({exc})") from exc


def _load_pdf(path: Path, page: int, dpi: float) -> LoadedPage:
    pdf = _open_pdf(path)
    try:
        n = len(pdf)
        if not 1 <= page <= n:
            raise ImageLoadError(f"{path} has {n} page(s); page {page} does not exist")
        width, height = pdf[page - 1].get_size()
        if width * height * (dpi / 72.0) ** 2 > MAX_PIXELS:
            raise ImageLoadError(f"{path} page {page} is too large to be an ECG page at {dpi:g} dpi")
        bitmap = pdf[page - 1].render(scale=dpi / 72.0)
        rgb = np.asarray(bitmap.to_pil().convert("RGB"))
        return LoadedPage(rgb, path, page, n)
    finally:
        pdf.close()


def _check_file(path: Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ImageLoadError(f"{path} does not exist or is not a file")
    size = path.stat().st_size
    if size == 0:
        raise ImageLoadError(f"{path} is empty")
    if size > MAX_FILE_BYTES:
        raise ImageLoadError(f"{path} is {size / 2**20:.0f} MB, too large to be a page file "
                             f"(limit {MAX_FILE_BYTES // 2**20} MB)")
    return path


def _open_image(path: Path) -> Image.Image:
    """Open lazily (header only), refusing decompression bombs before any pixel is decoded."""
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        im = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(f"{path} is too large to be a page ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ImageLoadError(f"{path} is not an image cardioscan can read (PNG, JPEG, TIFF, BMP, WebP, PDF)") from exc
    except OSError as exc:
        raise ImageLoadError(f"{path} could not be decoded: {exc}") from exc
    if im.width * im.height > MAX_PIXELS:
        im.close()
        raise ImageLoadError(f"{path} is {im.width}x{im.height} px, too large to be a page "
                             f"(limit {MAX_PIXELS // 10**6} megapixels)")
    return im


def page_count(path: Path) -> int:
    """How many pages (PDF) or frames (TIFF) the file holds, read from its header."""
    path = _check_file(path)
    if path.suffix.lower() == ".pdf":
        pdf = _open_pdf(path)
        try:
            return len(pdf)
        finally:
            pdf.close()
    with _open_image(path) as im:
        try:
            return getattr(im, "n_frames", 1)
        except OSError as exc:
            raise ImageLoadError(f"{path} could not be decoded: {exc}") from exc


def load_page(path: Path, page: int = 1, pdf_dpi: float = PDF_DPI) -> LoadedPage:
    """Page `page` (1-based: a PDF page or a TIFF frame) as RGB, upright per its EXIF tag."""
    path = _check_file(path)
    if path.suffix.lower() == ".pdf":
        return _load_pdf(path, page, pdf_dpi)
    try:
        with _open_image(path) as im:
            n = getattr(im, "n_frames", 1)
            if not 1 <= page <= n:
                raise ImageLoadError(f"{path} has {n} page(s); page {page} does not exist")
            im.seek(page - 1)
            im = ImageOps.exif_transpose(im)
            rgb = np.asarray(im.convert("RGB"))
    except Image.DecompressionBombError as exc:  # a frame larger than its header said
        raise ImageLoadError(f"{path} is too large to be a page ({exc})") from exc
    except OSError as exc:
        raise ImageLoadError(f"{path} could not be decoded: {exc}") from exc
    if min(rgb.shape[:2]) < 200:
        raise ImageLoadError(f"{path} is {rgb.shape[1]}x{rgb.shape[0]} px, too small to hold a readable ECG")
    return LoadedPage(rgb, path, page, n)
