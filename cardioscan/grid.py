"""Stage 1 (grid): measure the printed grid, then rectify the page plane from it.

Classical stand-in for the grid UNet of DESIGN.md. `measure_grid` reads the 5 mm period
from the page-wide brightness profile (square-on scans). `rectify_grid` reads the lattice
in tiles (the 2-D autocorrelation of each patch peaks at its two 5 mm vectors) and fits the
homography whose local scale and shear match them all: a photographed page's perspective
is undone, so time is evenly spaced along every row. The tiles' 5 mm period is read twice:
by one scan of candidate periods over all tiles, and by a vote of the tiles that see a
square lattice, in both colour and brightness; the vote overrules the scan where the scan
finds nothing (the page a small part of the photo, a stain that fools the colour test) or
a multiple of it (blurred lines); the fit's residual says how well a plane explains the grid.
`fit_warp` then straightens what bends (curl, creases) from the lattice's local phase.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np
import scipy.fft
import scipy.sparse
import scipy.sparse.linalg
from numpy.lib.stride_tricks import sliding_window_view
from scipy.ndimage import gaussian_filter1d, map_coordinates
from scipy.optimize import least_squares
from scipy.signal import find_peaks

MIN_PX_PER_MM, MAX_PX_PER_MM = 2.5, 16.0
CLIP_PERCENTILE = 97.0  # grid signal detail is clipped at this percentile of its size
VOTE = 0.1  # autocorrelation prominence for a tile to vote on the period
PERIOD_TILE = 192  # tile side (px, on the page shrunk to 1600 px) of the period scan and vote
OTHER_SIGNAL_TILES = 4  # the unguessed grid signal is read when it shows the lattice on this many times the tiles
LAG_MARGIN = 8  # tile autocorrelations reach this far beyond half the tile (peak refinement's room)
MIN_WARP_MM = 0.25  # a non-linear warp is applied only when it moves the lines this far (RMS)...
MAX_MISFIT_RATIO = 0.85  # ...and leaves them at most this fraction of the plane's misfit
# The warp reads lines up to this wide (mm): printed grid lines are 0.1-0.3 mm. Real photos of
# folded sheets: 4.51 -> 5.47 dB at 1.25 mm, 5.21 at 0.75 mm (the line's blur is wider than the ink).
LINE_MM = 1.25
GRID_SIGNALS = ("saturation", "darkness")  # the two ways `grid_signal` reads grid ink
STEADIER_SIGNAL = 0.75  # the warp reads the unguessed signal when its lattice strays this fraction of the guess's


@dataclass
class GridMeasurement:
    px_per_mm: float
    confidence: float  # in [0, 1]: autocorrelation strength of the 5 mm period
    found: bool


def grid_signal(rgb: np.ndarray, kind: str | None = None) -> np.ndarray:
    """Where grid ink is, as a float image: coloured grids by their saturation, grey ones by
    darkness; `kind` ("saturation" or "darkness") forces one, None guesses from the colours."""
    if (kind or grid_kind(rgb)) == "saturation":
        return _saturation(rgb).astype(np.float32)
    return (255 - cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)).astype(np.float32)


def grid_kind(rgb: np.ndarray) -> str:
    """The signal `grid_signal` guesses holds the grid: "saturation" on a colourful page."""
    return "saturation" if np.percentile(_saturation(rgb[::4, ::4]), 90) > 25 else "darkness"


def _saturation(rgb: np.ndarray) -> np.ndarray:
    r, g, b = cv2.split(rgb)
    return cv2.subtract(cv2.max(cv2.max(r, g), b), cv2.min(cv2.min(r, g), b))


def _clip_strongest(detail: np.ndarray) -> np.ndarray:
    """Detail clipped where it is strongest: thin grid lines cover far more of a page than
    traces and text do, so clipping takes the dark ink's weight off without touching the lattice."""
    limit = float(np.percentile(np.abs(detail[::2, ::2]), CLIP_PERCENTILE))
    return np.clip(detail, -limit, limit) if limit > 0 else detail


def _fine_detail(signal: np.ndarray, sigma: float) -> np.ndarray:
    """Detail finer than `sigma` px, clipped where it is strongest (`_clip_strongest`)."""
    return _clip_strongest(signal - cv2.GaussianBlur(signal, (0, 0), sigma))


def _thin_lines(signal: np.ndarray, width: float, period: float) -> np.ndarray:
    """The lines narrower than `width` px (a white top-hat), clipped like `_fine_detail` and
    centred: a shadow's edge, as where a folded sheet turns from the light, is a step, not a
    line, and is dropped, where a high-pass keeps it as a stroke that pulls the lines' phase."""
    side = max(3, int(round(width)) | 1)
    lines = _clip_strongest(cv2.morphologyEx(signal, cv2.MORPH_TOPHAT,
                                             cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))))
    return lines - cv2.GaussianBlur(lines, (0, 0), period)


def _peak_offset(before: float, peak: float, after: float) -> float:
    """Sub-sample position of a peak from three samples: the vertex of their parabola."""
    curvature = before - 2 * peak + after
    return float(np.clip(0.5 * (before - after) / curvature, -0.5, 0.5)) if curvature < 0 else 0.0


def _strip_autocorrelation(signal: np.ndarray, axis: int, strip: int = 128) -> np.ndarray:
    """Mean normalised autocorrelation of the profiles of short strips across `axis`.

    Autocorrelation ignores where the lines are, so strips of a skewed or curved page
    still agree on the period where one long profile would smear it out."""
    sig = signal if axis == 0 else signal.T
    h, w = sig.shape
    acs = []
    for top in range(int(h * 0.15), int(h * 0.85) - strip + 1, strip):
        # Thin lines at a non-integer period make needle-sharp peaks that integer lags miss:
        # a little blur keeps every period's peak visible.
        p = gaussian_filter1d(sig[top : top + strip, int(w * 0.1) : int(w * 0.9)].mean(axis=0), 1.2)
        p = p - p.mean()
        spectrum = np.fft.rfft(p, 2 * len(p))
        ac = np.fft.irfft(spectrum * np.conj(spectrum))[: len(p)]
        if ac[0] > 0:
            acs.append(ac / ac[0])
    return np.mean(acs, axis=0) if acs else np.zeros(1)


def _period(ac: np.ndarray, lo: float, hi: float, divisors: tuple[int, ...] = (2, 3),
            reliable: int | None = None) -> tuple[float, float]:
    """Best period (px) in [lo, hi] of an autocorrelation, and its strength; multiples of the
    period refine it up to lag `reliable` (default: half the autocorrelation's length)."""
    n = len(ac)
    reliable = n // 2 if reliable is None else reliable
    lo_i, hi_i = int(np.floor(lo)), min(int(np.ceil(hi)) + 1, n - 1)
    if hi_i - lo_i < 3:
        return float("nan"), 0.0
    peaks, props = find_peaks(ac[lo_i:hi_i], prominence=0.0)
    peaks = peaks + lo_i
    prominence = props["prominences"]
    if len(peaks) == 0:
        return float("nan"), 0.0
    # Major lines coincide with minor ones at 5 mm, so that lag stands out most (by
    # prominence: ECG rows and text add slow structure that inflates plain height); its
    # multiples stand out as much, so prefer an equally clear peak at a half or a third.
    best = int(np.argmax(prominence))
    for divisor in divisors:
        near = np.flatnonzero(np.abs(peaks - peaks[best] / divisor) <= 2)
        if len(near) and prominence[near].max() >= 0.8 * prominence[best]:
            best = int(near[np.argmax(prominence[near])])
            break
    k = int(peaks[best])
    # Refine on the farthest clear multiple of the period: m periods make the sub-pixel
    # peak position m times more precise (0.1 % of px/mm is 7 samples over 10 s).
    strength = float(prominence[best])
    period = float(k)
    for m in range(2, 13):
        lag = int(round(m * period))
        if lag + 2 >= reliable:
            break
        window = ac[lag - 2 : lag + 3]
        j = lag - 2 + int(np.argmax(window))
        if ac[j] < 0.5 * strength or not 0 < j < n - 1:
            break
        period = (j + _peak_offset(ac[j - 1], ac[j], ac[j + 1])) / m
    return period, strength


def measure_grid(rgb: np.ndarray) -> GridMeasurement:
    """Pixels per mm from the 5 mm major-line period along both axes."""
    signal = grid_signal(rgb)
    estimates = []
    for axis in (0, 1):
        period, strength = _period(_strip_autocorrelation(signal, axis), 5 * MIN_PX_PER_MM, 5 * MAX_PX_PER_MM)
        if np.isfinite(period):
            estimates.append((period / 5.0, strength))
    if not estimates:
        return GridMeasurement(float("nan"), 0.0, False)
    values = np.array([e[0] for e in estimates])
    strengths = np.array([e[1] for e in estimates])
    px_per_mm = float(np.average(values, weights=np.maximum(strengths, 1e-3)))
    agree = len(values) == 2 and abs(values[0] - values[1]) / px_per_mm < 0.03
    confidence = float(np.clip(strengths.mean() * 2, 0, 1)) * (1.0 if agree else 0.5)
    return GridMeasurement(px_per_mm, confidence, confidence > 0.15)


@dataclass
class PerspectiveFit:
    """The page plane as the grid shows it: `homography` maps rectified pixels (a square
    grid of `px_per_mm`, canvas `shape`) to the pixels it was fitted on."""

    homography: np.ndarray
    shape: tuple[int, int]
    px_per_mm: float
    residual: float  # RMS misfit of the local grid vectors, as a fraction of their length
    tiles: int  # tiles that showed the lattice...
    windows: int  # ...of the tiles looked at (either grid signal has as many)


def _refine(ac: np.ndarray, col: int, row: int) -> tuple[float, float]:
    """The autocorrelation peak nearest (col, row), to a fraction of a pixel."""
    patch = ac[row - 2 : row + 3, col - 2 : col + 3]
    r, c = np.unravel_index(np.argmax(patch), patch.shape)
    row, col = row - 2 + int(r), col - 2 + int(c)
    return (col + _peak_offset(ac[row, col - 1], ac[row, col], ac[row, col + 1]),
            row + _peak_offset(ac[row - 1, col], ac[row, col], ac[row + 1, col]))


def tile_autocorrelations(signal: np.ndarray, tile: int, step: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per tile (every `step` px): its centre (x, y) and its normalised 2-D autocorrelation at
    lags up to `max_lag(tile)`, zero lag in the middle. The grid makes peaks at its lattice
    vectors, wherever it is."""
    h, w = signal.shape
    if h < tile or w < tile:
        return []
    lag = max_lag(tile)
    window = np.outer(np.hanning(tile), np.hanning(tile)).astype(np.float32)
    patches = sliding_window_view(signal, (tile, tile))[::step, ::step]
    rows, cols = patches.shape[:2]
    patches = patches.reshape(-1, tile, tile).astype(np.float32)
    # All tiles in one batched single-precision FFT, padded only as far as the lags read:
    # circular correlation equals the linear one up to lag n - tile.
    n = scipy.fft.next_fast_len(tile + lag, real=True)
    spectra = scipy.fft.rfft2((patches - patches.mean(axis=(1, 2), keepdims=True)) * window, s=(n, n), workers=-1)
    full = scipy.fft.irfft2(spectra * np.conj(spectra), s=(n, n), workers=-1)
    lags = np.arange(-lag, lag + 1) % n
    acs = full[:, lags][:, :, lags]
    found = []
    for i, ac in enumerate(acs):
        if ac[lag, lag] > 0:
            centre = np.array([(i % cols) * step + tile / 2, (i // cols) * step + tile / 2])
            found.append((centre, ac / ac[lag, lag]))
    return found


def max_lag(tile: int) -> int:
    """The longest lag read from a tile's autocorrelation: lattice vectors are refined on their
    multiple nearest 0.4 tile, and a tile shows no period longer than half its side."""
    return tile // 2 + LAG_MARGIN


def lattice_vector(ac: np.ndarray, expected: np.ndarray, tolerance: float = 0.12) -> tuple[np.ndarray, float]:
    """The autocorrelation peak within `tolerance` of the `expected` lattice vector (x, y px),
    refined on its farthest multiple inside the tile, and the peak's height above its flanks."""
    c = ac.shape[0] // 2
    reach = max(2, int(np.ceil(tolerance * np.linalg.norm(expected))))
    ex, ey = int(round(expected[0])), int(round(expected[1]))
    if max(abs(ex), abs(ey)) + reach + 3 >= c:
        return expected, 0.0  # a vector this long does not fit in the tile
    region = ac[c + ey - reach : c + ey + reach + 1, c + ex - reach : c + ex + reach + 1]
    r, k = np.unravel_index(np.argmax(region), region.shape)
    if r in (0, region.shape[0] - 1) or k in (0, region.shape[1] - 1):
        return expected, 0.0  # no peak here, only a slope (a blank tile's autocorrelation falls smoothly)
    x, y = _refine(ac, c + ex - reach + int(k), c + ey - reach + int(r))
    # Height above its flanks half a millimetre either side: a lattice peak is sharp; the slow
    # fall of traces' and text's autocorrelation is not.
    flanks = [ac[c + round(f * (y - c)), c + round(f * (x - c))] for f in (0.9, 1.1)]
    strength = float(region[r, k] - np.mean(flanks))
    tile = 2 * (c - LAG_MARGIN)
    multiple = max(1, int(0.4 * tile / np.linalg.norm(expected)))
    while multiple > 1 and multiple * max(abs(x - c), abs(y - c)) + 3 >= c:  # a short vector found long
        multiple -= 1
    if multiple > 1:
        x, y = _refine(ac, c + round(multiple * (x - c)), c + round(multiple * (y - c)))
    return np.array([x - c, y - c]) / multiple, strength


def _peak_strengths(stack: np.ndarray, expected: np.ndarray, tolerance: float) -> np.ndarray:
    """`lattice_vector`'s peak strength for a stack of tile autocorrelations at once, at whole-pixel
    peak positions: a fast scan over candidate periods."""
    n, size, _ = stack.shape
    c = size // 2
    reach = max(2, int(np.ceil(tolerance * np.linalg.norm(expected))))
    ex, ey = int(round(expected[0])), int(round(expected[1]))
    if max(abs(ex), abs(ey)) + reach + 3 >= c:
        return np.zeros(n)
    side = 2 * reach + 1
    region = stack[:, c + ey - reach : c + ey + reach + 1, c + ex - reach : c + ex + reach + 1].reshape(n, -1)
    r, k = np.divmod(region.argmax(axis=1), side)
    interior = (r > 0) & (r < side - 1) & (k > 0) & (k < side - 1)
    dy, dx = ey - reach + r, ex - reach + k
    tiles = np.arange(n)
    flanks = np.mean([stack[tiles, c + np.round(f * dy).astype(int), c + np.round(f * dx).astype(int)]
                      for f in (0.9, 1.1)], axis=0)
    return np.where(interior, region.max(axis=1) - flanks, 0.0)


def _homography(params: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Paper mm (origin at the page point seen at `centre`) to image px."""
    a, b, d, e, g, h = params
    return np.array([[a, b, centre[0]], [d, e, centre[1]], [g * 1e-3, h * 1e-3, 1.0]])


def _jacobian(homography: np.ndarray, paper: np.ndarray) -> np.ndarray:
    """d(image px)/d(paper mm) at each paper point: (n, 2, 2)."""
    x, y = paper[:, 0], paper[:, 1]
    num = homography[:2, :2] @ paper.T + homography[:2, 2:3]  # (2, n)
    den = homography[2, 0] * x + homography[2, 1] * y + 1.0
    jac = (homography[:2, :2][None] * den[:, None, None] - num.T[:, :, None] * homography[2, :2][None, None, :])
    return jac / np.square(den)[:, None, None]


def fit_perspective(rgb: np.ndarray, px_per_mm: float, min_strength: float = 0.05,
                    kind: str | None = None) -> PerspectiveFit | None:
    """The homography whose local scale and shear best match the grid's lattice across the
    page: it undoes the perspective of a photographed page (a tilted phone makes the grid
    finer on the far side, which stretches time there). None when too few tiles show grid."""
    # Read the lattice at about 4 px per mm: 5 mm periods of 20 px in tiles of 128 px.
    shrink = max(1.0, px_per_mm / 4.0)
    small = cv2.resize(rgb, None, fx=1 / shrink, fy=1 / shrink, interpolation=cv2.INTER_AREA) if shrink > 1 else rgb
    # Shading (a phone's light, a curled page) dwarfs the thin lines: keep only detail finer than 5 mm.
    if kind is None:
        signal = grid_signal(small)
        signal -= cv2.GaussianBlur(signal, (0, 0), 5.0 * px_per_mm / shrink)
    else:
        signal = _fine_detail(grid_signal(small, kind), 5.0 * px_per_mm / shrink)
    tiles = tile_autocorrelations(signal, 128, 64)
    windows = ((signal.shape[0] - 128) // 64 + 1) * ((signal.shape[1] - 128) // 64 + 1)
    if len(tiles) < 8:
        return None
    centre = np.array([rgb.shape[1] / 2, rgb.shape[0] / 2])
    # Search each tile where the current fit expects its 5 mm vectors: the page-wide period
    # first, then the fitted map. A narrow search never takes 4 or 6 mm for 5 mm, and the
    # refits follow perspective beyond it.
    params = np.array([px_per_mm, 0.0, 0.0, px_per_mm, 0.0, 0.0])
    fit = None
    for final in (False, False, True):
        homography = _homography(params, centre)
        paper = cv2.perspectiveTransform(np.array([t[0] * shrink for t in tiles])[:, None, :], np.linalg.inv(homography))
        expected = _jacobian(homography, paper[:, 0, :]) * 5.0 / shrink
        readings = []
        for (tile_centre, ac), lattice in zip(tiles, expected, strict=True):
            (vx, sx), (vy, sy) = (lattice_vector(ac, lattice[:, k]) for k in (0, 1))
            if min(sx, sy) >= min_strength:
                readings.append((tile_centre * shrink, np.stack([vx, vy], axis=1) * shrink / 5.0, min(sx, sy)))
        if len(readings) < 8:
            break  # keep the last fit that had enough grid
        params, residual = _fit_map(readings, centre, px_per_mm, choose_model=final)
        fit = params, residual, len(readings)
    if fit is None:
        return None
    params, residual, used = fit
    homography = _homography(params, centre)
    # The rectified canvas: the input's corners in paper mm, at the scale seen at the centre.
    scale = float(np.sqrt(abs(np.linalg.det(_jacobian(homography, np.zeros((1, 2)))[0]))))
    h, w = rgb.shape[:2]
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64)[:, None, :]
    paper = cv2.perspectiveTransform(corners, np.linalg.inv(homography))[:, 0, :] * scale
    lo, hi = paper.min(axis=0), paper.max(axis=0)
    size = hi - lo
    if not np.all(np.isfinite(size)) or np.any(size > 2.0 * np.array([w, h])):
        return None  # a horizon inside the picture: not a page seen from the front
    to_paper = np.array([[1 / scale, 0, lo[0] / scale], [0, 1 / scale, lo[1] / scale], [0, 0, 1]])
    return PerspectiveFit(homography @ to_paper, (int(np.ceil(size[1])), int(np.ceil(size[0]))), scale,
                          residual, used, windows)


def _fit_map(readings: list[tuple[np.ndarray, np.ndarray, float]], centre: np.ndarray,
             px_per_mm: float, choose_model: bool) -> tuple[np.ndarray, float]:
    """Homography parameters whose Jacobian matches the tiles' lattices (px per mm along
    paper x and y), and the median relative misfit. With `choose_model`, an affine map (a
    scanner's or fax's scale and shear) is kept unless perspective fits clearly better: a
    faint grid's misread tiles can feign a little of it."""
    centres = np.array([r[0] for r in readings])[:, None, :]
    measured = np.array([r[1] for r in readings])
    weights = np.sqrt(np.array([r[2] for r in readings]))[:, None, None]

    def residuals(params: np.ndarray) -> np.ndarray:
        homography = _homography(params, centre)
        paper = cv2.perspectiveTransform(centres, np.linalg.inv(homography))[:, 0, :]
        return ((_jacobian(homography, paper) - measured) / px_per_mm * weights).ravel()

    affine = least_squares(lambda p: residuals(np.r_[p, 0.0, 0.0]), [px_per_mm, 0.0, 0.0, px_per_mm],
                           loss="soft_l1", f_scale=0.02)
    full = least_squares(residuals, np.r_[affine.x, 0.0, 0.0], loss="soft_l1", f_scale=0.02)
    params = full.x if not choose_model or full.cost < 0.5 * affine.cost else np.r_[affine.x, 0.0, 0.0]
    misfit = residuals(params).reshape(-1, 4) / weights[:, :, 0]
    return params, float(np.sqrt(np.median(np.square(misfit))))


def lattice_period(rgb: np.ndarray) -> float | None:
    """Pixels per mm of the 5 mm lattice (None without a grid)."""
    scanned = _scanned_period(rgb)
    shrink = max(1.0, max(rgb.shape[:2]) / 1600.0)
    small = cv2.resize(rgb, None, fx=1 / shrink, fy=1 / shrink, interpolation=cv2.INTER_AREA) if shrink > 1 else rgb
    best: tuple[float, float | None] = (0.0, None)
    # A colour test cannot tell which signal holds the grid: a coloured background or stain
    # passes it while a JPEG's coarse chroma blurs the lines away. Read both; keep the clearer.
    for kind in GRID_SIGNALS:
        period, support = _voted_period(_fine_detail(grid_signal(small, kind), 15.0), shrink)
        if period is not None and support > best[0]:
            best = (support, period)
    voted = best[1]
    # The scan's failures: no grid where the page fills a small part of a photo, or 10 or 15 mm
    # taken for 5 mm when blurred lines flatten the short lags. Otherwise it is the finer reading.
    if voted is not None and (scanned is None or any(abs(scanned / voted / k - 1) < 0.1 for k in (2, 3))):
        return voted
    return scanned


def _scanned_period(rgb: np.ndarray) -> float | None:
    """Pixels per mm from the 5 mm lattice the tiles agree on, for photos whose perspective
    smears the page-wide profile `measure_grid` reads. Each axis is scored on its own (a
    tilted page is finer one way than the other), and a period whose half or third scores
    nearly as well is taken for two or three periods. None without a grid."""
    shrink = max(1.0, max(rgb.shape[:2]) / 1600.0)
    small = cv2.resize(rgb, None, fx=1 / shrink, fy=1 / shrink, interpolation=cv2.INTER_AREA) if shrink > 1 else rgb
    signal = grid_signal(small)
    signal -= cv2.GaussianBlur(signal, (0, 0), 15.0)
    tiles = [ac for _, ac in tile_autocorrelations(signal, PERIOD_TILE, PERIOD_TILE // 2)]
    if not tiles:
        return None
    stack = np.stack(tiles)
    periods = 8.0 * 1.05 ** np.arange(46)  # 8 to 75 px
    periods = periods[periods * shrink <= 5 * MAX_PX_PER_MM]
    found = []
    for axis in (0, 1):
        def vector(period: float, axis: int = axis) -> np.ndarray:
            return np.array([period, 0.0] if axis == 0 else [0.0, period])

        def score(period: float) -> tuple[float, list[float]]:
            readings = [lattice_vector(ac, vector(period), tolerance=0.06) for ac in tiles]
            strengths = [s for _, s in readings]
            return float(np.percentile(strengths, 75)), [float(np.linalg.norm(v)) for v, s in readings if s >= 0.05]

        # Scan the periods coarsely (whole-pixel peaks, all tiles at once), then read the best exactly.
        coarse = [float(np.percentile(_peak_strengths(stack, vector(p), 0.06), 75)) for p in periods]
        best = int(np.argmax(coarse))
        if coarse[best] < 0.02:
            continue
        strength, lengths = score(periods[best])
        for divisor in (3, 2):  # 10 or 15 mm are lattice vectors too; the smallest clear one is 5 mm
            part = score(periods[best] / divisor)
            if part[0] >= 0.7 * strength and part[1]:
                lengths = part[1]
                break
        if lengths:
            found.append(float(np.median(lengths)))
    return float(np.mean(found)) * shrink / 5.0 if found else None


def _voted_period(signal: np.ndarray, shrink: float) -> tuple[float | None, float]:
    """Each tile reads its own 5 mm period along each axis from its autocorrelation's profile,
    peaks scored by prominence as `measure_grid` does (blurred lines make broad peaks that a
    flank test underrates at short lags). A tile votes when both axes agree within 15 % (a
    square lattice seen in perspective; a row of heartbeats repeats along one axis only); the
    period is the one most tiles vote for (the background's tiles vote anywhere). Also returns
    the voters' summed strength."""
    lo, hi = 8.0, 5 * MAX_PX_PER_MM / shrink
    votes, weights = [], []
    for _, ac in tile_autocorrelations(signal, PERIOD_TILE, PERIOD_TILE // 2):
        c = ac.shape[0] // 2
        readings = [_period(ac[c - 1 : c + 2, c:].max(axis=0), lo, hi, divisors=(), reliable=PERIOD_TILE // 2),
                    _period(ac[c:, c - 1 : c + 2].max(axis=1), lo, hi, divisors=(), reliable=PERIOD_TILE // 2)]
        (px, sx), (py, sy) = readings
        if min(sx, sy) >= VOTE and abs(np.log(px / py)) < 0.15:
            votes.append(np.sqrt(px * py))
            weights.append(min(sx, sy))
    if len(votes) < 3:
        return None, 0.0
    votes, weights = np.array(votes), np.array(weights)
    near = np.abs(np.log(votes[:, None] / votes[None, :])) < 0.1
    support = near.astype(float) @ weights
    centre = int(np.argmax(support))
    # Blurred lines make the 10 and 15 mm peaks as prominent as the 5 mm one, so tiles split
    # their votes among them: the smallest period with a fair share of the votes is 5 mm.
    for divisor in (3, 2):
        part = np.flatnonzero(np.abs(np.log(votes * divisor / votes[centre])) < 0.1)
        if len(part) and support[part].max() >= 0.5 * support[centre]:
            centre = int(part[np.argmax(support[part])])
            break
    agree = near[centre]
    return float(np.median(votes[agree])) * shrink / 5.0, float(weights[agree].sum())


def rectify_grid(rgb: np.ndarray) -> tuple[PerspectiveFit | None, GridMeasurement | None]:
    """The grid's rectification, starting from the tiles' period; failing that, from the
    page-wide one, which is returned too when it was measured."""
    px_per_mm = lattice_period(rgb)
    fit = None
    if px_per_mm is not None:
        fit = fit_perspective(rgb, px_per_mm)
        # The guessed signal can hold too little grid: a shadow's grey fools the colour test, and
        # grey lines on a tinted sheet or before a coloured background fail it (a phone photo's
        # lattice read on 13 tiles by its colour, 133 by its darkness). The other signal's fit
        # is taken when it reads the lattice on many times more tiles at the same scale (or the
        # guess read none): a fit at another scale has read something else (a photo's texture).
        # Only a guess that read the lattice on few of the tiles can be outdone so: the others
        # are not fitted again.
        if fit is not None and OTHER_SIGNAL_TILES * fit.tiles > fit.windows:
            return fit, None
        kinds = [kind for kind in GRID_SIGNALS if fit is None or kind != grid_kind(rgb)]
        other = max((f for kind in kinds if (f := fit_perspective(rgb, px_per_mm, kind=kind))),
                    key=lambda f: f.tiles, default=None)
        if other is not None and (fit is None or (other.tiles >= OTHER_SIGNAL_TILES * fit.tiles
                                                  and abs(other.px_per_mm / fit.px_per_mm - 1) < 0.1)):
            fit = other
    if fit is not None:
        return fit, None
    grid = measure_grid(rgb)
    return (fit_perspective(rgb, grid.px_per_mm) if grid.found else None), grid


@dataclass
class GridWarp:
    """The grid's remaining non-linear distortion (paper curl, creases, lens) on a canvas where
    the homography has already been undone: the lines that belong at (x, y) are seen at
    (x + dx, y + dy). The fields are sampled every `step` canvas px."""

    dx: np.ndarray
    dy: np.ndarray
    step: float
    shape: tuple[int, int]  # the canvas (h, w)
    rms_mm: float  # RMS displacement corrected, mm: how far the paper was from a plane
    misfit_mm: float  # RMS distance of the lines from where the field puts them
    flat_misfit_mm: float  # the same for no warp: the plane's misfit

    def explains_bending(self) -> bool:
        """The lines really bend: the field moves them by well over its own noise (about 0.1 mm
        RMS on flat synthetic pages, so a flat page is left alone rather than bent by that much)
        and explains a clear part of the plane's misfit (a lattice too faint to read its phase
        gives a field of noise that explains little)."""
        return self.rms_mm >= MIN_WARP_MM and self.misfit_mm < MAX_MISFIT_RATIO * self.flat_misfit_mm

    @cached_property
    def source_maps(self) -> tuple[np.ndarray, np.ndarray]:
        """Per canvas pixel, where to read it: x + dx and y + dy (float32, for cv2.remap); built
        once, as the page and its trace mask are both read through it."""
        h, w = self.shape
        xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        # Field sample i sits at canvas pixel i * step: each pixel's sample coordinates.
        at_x, at_y = xs / self.step, ys / self.step
        dx, dy = (cv2.remap(f.astype(np.float32), at_x, at_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                  for f in (self.dx, self.dy))
        return xs + dx, ys + dy

    def displace(self, points: np.ndarray) -> np.ndarray:
        """(n, 2) canvas points to where their paper is seen before the warp."""
        points = np.asarray(points, np.float64).reshape(-1, 2)
        where = (points / self.step)[:, ::-1].T  # (row, col) sample coordinates
        at = [map_coordinates(f, where, order=1, mode="nearest") for f in (self.dx, self.dy)]
        return points + np.stack(at, axis=1)


def fit_warp(rgb: np.ndarray, px_per_mm: float, ink: np.ndarray | None = None, smoothing_mm: float = 3.0,
             node_mm: float = 10.0, stiffness: float = 1.0) -> GridWarp | None:
    """Where each 5 mm line of an already plane-rectified page actually lies, from the local
    phase of the lattice: demodulating the grid signal at the 5 mm frequency along x (and y)
    and averaging over `smoothing_mm` gives, per point, the lines' offset from an even lattice
    modulo 5 mm. A smooth field (bilinear between nodes every `node_mm`, its bending penalised
    by `stiffness`) is fitted to those phases, robustly and without unwrapping them, so a
    crease or a stain that garbles the phase locally cannot tear the page. The `ink` mask
    (trace pixels, optional) is left out of the averages: a trace covering the lines would
    pull their phase. None when too little of the page shows the lattice's period.

    Limit: a line is known only modulo 5 mm, so paper bent more than about 2 mm off the plane
    fit can be matched to the wrong line; such a field fits badly, and its `misfit_mm` (in the
    digitize summary) says so."""
    shrink = max(1.0, px_per_mm / 4.0)
    size = (round(rgb.shape[1] / shrink), round(rgb.shape[0] / shrink))
    small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA) if shrink > 1 else rgb
    period = 5.0 * px_per_mm / shrink
    seen = np.ones(small.shape[:2], np.float32)
    if ink is not None:
        covered = cv2.resize(ink.astype(np.float32), size, interpolation=cv2.INTER_AREA) if shrink > 1 else ink
        seen = (cv2.dilate((covered > 0).astype(np.uint8), np.ones((3, 3), np.uint8)) == 0).astype(np.float32)
    sigma = smoothing_mm * px_per_mm / shrink
    cover = np.maximum(cv2.GaussianBlur(seen, (0, 0), sigma), 1e-3)
    # Sample the phases about twice per smoothing length.
    sample = max(1, int(round(sigma / 2)))
    # The lattice's phase is read in the guessed grid signal, or in the other where that one's
    # phase strays clearly less from an even lattice. Both see the same bends, so the steadier is
    # the less noisy: a pale red grid is noise in a JPEG's half-resolution colour yet shows every
    # line in its darkness, and a coloured table round the sheet makes the page look colourful
    # (val96 #42: lines 1.36 mm off the fitted field by colour, 0.21 mm by darkness). Near a tie
    # the guess stays: there either signal may be the better.
    readings = {kind: reading for kind in GRID_SIGNALS
                if (reading := _lattice_phases(_thin_lines(grid_signal(small, kind), LINE_MM * px_per_mm / shrink, period),
                                               seen, cover, sigma, period, sample)) is not None}
    if not readings:
        return None
    # Per signal and axis: the phases' misfit to the plane's even lattice (radians).
    flat = {kind: [_phase_misfit(phases - _mean_phase(phases, weight), weight) for phases in measured]
            for kind, (measured, weight) in readings.items()}
    stray = {kind: float(np.hypot(*misfit)) for kind, misfit in flat.items()}
    steadiest = min(stray, key=stray.get)
    guess = grid_kind(small)
    kind = guess if guess in stray and stray[steadiest] >= STEADIER_SIGNAL * stray[guess] else steadiest
    measured, weight = readings[kind]
    to_mm = period / (2 * np.pi) * shrink / px_per_mm
    h, w = weight.shape
    weight = weight.ravel()
    step = node_mm * px_per_mm / shrink / sample  # node spacing in samples
    basis, shape = _bilinear_basis(h, w, step)
    bending = _bending(shape)
    shifts, misfits = [], []
    for phases, flat_misfit in zip(measured, flat[kind], strict=True):
        phases = phases.ravel()
        phase = _fit_phase(phases, weight, basis, bending, stiffness)
        misfits.append([_phase_misfit(phases - basis @ phase, weight) * to_mm, flat_misfit * to_mm])
        offset = -phase * period / (2 * np.pi)
        offset -= np.average(basis @ offset, weights=weight)
        shifts.append(offset.reshape(shape).astype(np.float32) * shrink)
    dx, dy = shifts
    on = weight > 0.5
    rms_mm = float(np.sqrt(np.mean((basis @ dx.ravel())[on] ** 2 + (basis @ dy.ravel())[on] ** 2))) / px_per_mm
    misfit = np.sqrt(np.square(misfits).sum(axis=0))
    return GridWarp(dx, dy, step * sample * shrink, rgb.shape[:2], rms_mm, float(misfit[0]), float(misfit[1]))


def _lattice_phases(signal: np.ndarray, seen: np.ndarray, cover: np.ndarray, sigma: float, period: float,
                    sample: int) -> tuple[list[np.ndarray], np.ndarray] | None:
    """The 5 mm lattice's local phase along x and along y (radians, every `sample` px), from
    the grid `signal` demodulated at the lattice's frequency and averaged over `sigma` where
    `seen` (not under ink; `cover` is its average); and a weight per sample for how clearly it
    shows the lattice. None when too little of the page shows it."""
    signal = signal * seen
    energy = np.sqrt(cv2.GaussianBlur(signal * signal, (0, 0), sigma) / cover)
    phases, strengths = [], []
    for axis in (1, 0):  # lines' offsets along x, then along y
        coord = np.arange(signal.shape[axis], dtype=np.float32)
        carrier = np.exp(-2j * np.pi * coord / period)
        demod = signal * (carrier[None, :] if axis == 1 else carrier[:, None])
        z = (cv2.GaussianBlur(demod.real.astype(np.float32), (0, 0), sigma)
             + 1j * cv2.GaussianBlur(demod.imag.astype(np.float32), (0, 0), sigma)) / cover
        phases.append(np.angle(z[::sample, ::sample]))
        strengths.append(np.abs(z[::sample, ::sample]) / np.maximum(energy[::sample, ::sample], 1e-6))  # near 0 off the grid
    strength = np.minimum(*strengths)
    floor = 0.3 * np.percentile(strength, 95)
    if not floor > 0:
        return None  # no grid ink at all in this signal (a grey page's colour)
    weight = np.clip(strength / floor - 1.0, 0.0, 1.0)
    return None if (weight > 0.5).mean() < 0.2 else (phases, weight)


def _mean_phase(phases: np.ndarray, weight: np.ndarray) -> float:
    """The weighted circular mean of `phases` (radians): the phase of the plane's even lattice."""
    return float(np.angle(np.sum(weight * np.exp(1j * phases))))


def _wrap(phase: np.ndarray) -> np.ndarray:
    """Phases (radians) brought into [-pi, pi]."""
    return np.angle(np.exp(1j * phase))


def _phase_misfit(residual: np.ndarray, weight: np.ndarray) -> float:
    """Weighted RMS of wrapped phase residuals (radians)."""
    return float(np.sqrt(np.average(np.square(_wrap(residual)), weights=weight)))


def _bilinear_basis(h: int, w: int, step: float) -> tuple[scipy.sparse.csr_matrix, tuple[int, int]]:
    """The (h*w, nodes) matrix interpolating node values (nodes every `step` samples, node 0 at
    sample 0) bilinearly at every sample, and the node grid's shape."""
    gh, gw = int(np.ceil((h - 1) / step)) + 2, int(np.ceil((w - 1) / step)) + 2
    ys, xs = np.meshgrid(np.arange(h) / step, np.arange(w) / step, indexing="ij")
    y0, x0 = np.floor(ys).astype(int).ravel(), np.floor(xs).astype(int).ravel()
    fy, fx = ys.ravel() - y0, xs.ravel() - x0
    rows = np.tile(np.arange(h * w), 4)
    cols = np.concatenate([y0 * gw + x0, y0 * gw + x0 + 1, (y0 + 1) * gw + x0, (y0 + 1) * gw + x0 + 1])
    vals = np.concatenate([(1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx])
    return scipy.sparse.csr_matrix((vals, (rows, cols)), shape=(h * w, gh * gw)), (gh, gw)


def _bending(shape: tuple[int, int]) -> scipy.sparse.csr_matrix:
    """Second differences of a node grid along both axes and across: zero for any affine field."""
    gh, gw = shape

    def second(n: int) -> scipy.sparse.spmatrix:
        return scipy.sparse.diags([1.0, -2.0, 1.0], [0, 1, 2], shape=(max(n - 2, 0), n))

    def first(n: int) -> scipy.sparse.spmatrix:
        return scipy.sparse.diags([-1.0, 1.0], [0, 1], shape=(n - 1, n))

    # Node (row, col) is entry row * gw + col: operators along columns act through kron(I, D).
    return scipy.sparse.vstack([scipy.sparse.kron(scipy.sparse.identity(gh), second(gw)),
                                scipy.sparse.kron(second(gh), scipy.sparse.identity(gw)),
                                np.sqrt(2.0) * scipy.sparse.kron(first(gh), first(gw))]).tocsr()


def _fit_phase(measured: np.ndarray, weight: np.ndarray, basis: scipy.sparse.csr_matrix,
               bending: scipy.sparse.csr_matrix, stiffness: float, iterations: int = 12) -> np.ndarray:
    """Node phases whose smooth field matches the measured (wrapped) phases: Gauss-Newton on
    the wrapped residuals, re-weighted (Cauchy) so misread patches lose their pull. The
    re-weighting starts lenient and tightens, and the field starts stiff and softens (coarse to
    fine), so lines bent far (a curl of 2 mm is 2.5 rad) are pulled in by the page's broad bend
    before local detail, which could take them for their neighbours, is fitted."""
    # Start from the page's mean phase: the plane fit leaves the lines within a fraction of 5 mm.
    mean = np.angle(np.sum(weight * np.exp(1j * measured)))
    nodes = np.full(basis.shape[1], mean)
    smoothness = weight.sum() / basis.shape[1] * (bending.T @ bending)
    for scale, stiff in zip(np.geomspace(3.0, 0.5, iterations), np.geomspace(1000 * stiffness, stiffness, iterations),
                            strict=True):
        penalty = stiff * smoothness
        residual = _wrap(measured - basis @ nodes)
        w = weight / (1.0 + np.square(residual / scale))
        normal = basis.T @ scipy.sparse.diags(w) @ basis + penalty
        rhs = basis.T @ (w * residual) - penalty @ nodes
        nodes = nodes + scipy.sparse.linalg.spsolve(normal.tocsc(), rhs)
    return nodes
