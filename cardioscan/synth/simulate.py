"""Built-in 12-lead ECG simulator: unlimited, labelled training signals for the renderer.

A cardiac dipole (vectorcardiogram) model. The heart vector D(t) in 3-D is a sum of
split-Gaussian waves (P, septal Q, R, S, T, ...), each with its own direction, timing
relative to the R peak and widths. Every lead is a projection of D(t) onto a lead vector:
I and II onto the hexaxial frontal plane (the other four limb leads are derived from them,
so Einthoven and Goldberger hold exactly), V1-V6 onto the Dower (1980) precordial vectors.
Rhythm (sinus with respiratory sinus arrhythmia, atrial fibrillation, PVCs) places beat
templates in time; noise is generated per electrode and then combined into leads.

Axes: x = patient's left, y = inferior (feet), z = anterior. A frontal angle is measured
from x towards y, like the hexaxial reference (lead I = 0 deg, aVF = +90 deg).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from cardioscan.record import limb_leads_from_i_ii

Rhythm = Literal["sinus", "af", "sinus_pvc"]
BundleBranch = Literal["none", "rbbb", "lbbb"]
StTerritory = Literal["none", "anterior", "inferior", "lateral"]

# Lead vectors. Limb leads: ideal Einthoven triangle (I at 0 deg, II at +60 deg).
_LEAD_I = np.array([1.0, 0.0, 0.0])
_LEAD_II = np.array([0.5, np.sqrt(3.0) / 2.0, 0.0])
# Precordial rows of the Dower matrix (Dower et al., Clin Cardiol 1980;3:87), Frank X, Y, Z
# with Z flipped because Frank +Z points to the back. They sweep from right-anterior (V1,
# about 120 deg in the horizontal plane) to left-lateral (V6, about -15 deg). Scaled by 1.35 so
# V2-V4 reach the 1.5-3 mV seen in adult records (the chest electrodes sit close to the heart).
_PRECORDIAL = 1.35 * np.array(
    [
        [-0.515, 0.157, 0.917],
        [0.044, 0.164, 1.387],
        [0.882, 0.098, 1.277],
        [1.213, 0.127, 0.601],
        [1.125, 0.127, 0.086],
        [0.831, 0.076, -0.230],
    ]
)
# Injury-current directions (frontal deg, anterior deg): ST shifts towards the injured wall,
# with reciprocal change in leads facing away (anterior: V1-V4; inferior: II, III, aVF with
# reciprocal I/aVL; lateral: I, aVL, V5-V6 with reciprocal III).
_ST_DIRECTION = {"anterior": (60.0, 60.0), "inferior": (100.0, -10.0), "lateral": (-20.0, -10.0)}
_LEAD_IN_S = 1.0  # beats start this early so the first visible samples carry T waves and P waves


@dataclass(frozen=True)
class SimulationParams:
    """Everything that shapes one record; the defaults are a clean normal sinus ECG.

    Amplitudes are dipole magnitudes in mV (a lead parallel to a wave sees about this much).
    """

    heart_rate: float = 70.0  # mean rate, beats/min
    rhythm: Rhythm = "sinus"
    rr_variability: float = 0.03  # sinus: RSA amplitude (fraction of RR); AF: coefficient of variation
    pr_ms: float = 160.0  # P onset to QRS onset; normal 120-200 ms
    qrs_width_factor: float = 1.0  # stretches QRS timing; 1.0 gives about 85-90 ms (BBB: 130-140 ms)
    bundle_branch: BundleBranch = "none"
    qtc_ms: float = 420.0  # Bazett QTc = QT / sqrt(RR); normal 380-460 ms
    axis_deg: float = 50.0  # mean frontal QRS axis; normal -30..+90 (+100)
    horizontal_rotation_deg: float = 0.0  # > 0 rotates QRS anteriorly: earlier R-wave transition
    t_axis_offset_deg: float = -10.0  # frontal T axis minus QRS axis; normally within +-45 deg
    p_axis_deg: float = 55.0  # sinus P axis, normally 0..+75
    p_amplitude_mv: float = 0.15
    r_amplitude_mv: float = 1.3
    t_amplitude_mv: float = 0.3
    amplitude_scale: float = 1.0  # body habitus: scales the whole dipole
    precordial_gain: float = 1.0  # chest-wall thickness: scales V1-V6 only
    st_territory: StTerritory = "none"
    st_mv: float = 0.0  # signed injury-current magnitude: > 0 elevates ST in the territory
    resp_rate_hz: float = 0.25  # breathing modulates RR (RSA) and beat amplitude
    resp_amplitude_mod: float = 0.05  # fractional beat-amplitude modulation by breathing
    pvc_prob: float = 0.0  # chance that a sinus beat is followed by a PVC (rhythm "sinus_pvc")
    pvc_coupling: float = 0.6  # PVC coupling interval as a fraction of the sinus RR
    pvc_axis_deg: float = -60.0  # PVC main frontal direction (ectopic focus decides it)
    pvc_anterior_deg: float = -30.0  # PVC main elevation out of the frontal plane
    f_wave_mv: float = 0.05  # AF fibrillatory wave amplitude in the lead that shows it best (0.02-0.1 mV)
    f_wave_hz: float = 6.0  # AF f-wave rate (4-9 Hz, i.e. 240-540/min)
    baseline_wander_mv: float = 0.0  # peak wander per lead, 0.05-0.5 Hz
    mains_hz: float = 50.0
    mains_mv: float = 0.0  # typical hum amplitude per lead (set by electrode-impedance imbalance)
    muscle_noise_mv: float = 0.0  # EMG RMS during bursts


def _angle(value: float) -> float:
    return float(np.deg2rad(value))


def _direction(frontal_deg: float, anterior_deg: float) -> np.ndarray:
    f, a = _angle(frontal_deg), _angle(anterior_deg)
    return np.array([np.cos(a) * np.cos(f), np.cos(a) * np.sin(f), np.sin(a)])


def _wave(
    t: float, sigma_left: float, sigma_right: float, amp: float, frontal: float, anterior: float
) -> list[float]:
    """One wave as a row [t, sigma_left, sigma_right, Dx, Dy, Dz] (seconds, mV)."""
    return [t, sigma_left, sigma_right, *(amp * _direction(frontal, anterior))]


def _rotate(waves: np.ndarray, frontal_deg: float = 0.0, horizontal_deg: float = 0.0) -> np.ndarray:
    """Rotate wave directions about z (frontal plane) after rotating about y (horizontal plane)."""
    h, f = _angle(horizontal_deg), _angle(frontal_deg)
    rot_y = np.array([[np.cos(h), 0.0, -np.sin(h)], [0.0, 1.0, 0.0], [np.sin(h), 0.0, np.cos(h)]])
    rot_z = np.array([[np.cos(f), -np.sin(f), 0.0], [np.sin(f), np.cos(f), 0.0], [0.0, 0.0, 1.0]])
    out = waves.copy()
    out[:, 3:] = waves[:, 3:] @ (rot_z @ rot_y).T
    return out


def _frontal_axis(waves: np.ndarray) -> float:
    """Frontal angle of the QRS area vector, which is how the clinical axis is defined."""
    area = waves[:, 3:5] * (waves[:, 1:2] + waves[:, 2:3])
    total = area.sum(axis=0)
    return float(np.rad2deg(np.arctan2(total[1], total[0])))


def _extent(waves: np.ndarray) -> tuple[float, float]:
    """Onset and end of a group of waves, taken 2 sigma out as a reader would see them."""
    return float((waves[:, 0] - 2.0 * waves[:, 1]).min()), float((waves[:, 0] + 2.0 * waves[:, 2]).max())


def _qrs_waves(p: SimulationParams) -> np.ndarray:
    """Depolarization: septum left-to-right and anterior (septal q in I/V6, r in V1), then the
    left-ventricular free wall, sweeping counter-clockwise in the horizontal plane from
    left-anterior (apex: tall R in V4-V6) to left-posterior (deep S in V1-V2), then the basal
    posterior-superior terminal forces (small s)."""
    w = p.qrs_width_factor
    r = p.r_amplitude_mv
    if p.bundle_branch == "lbbb":
        # LBBB: septum activated right-to-left (no septal q in I/V6, QS or tiny r in V1), then
        # slow cell-to-cell LV activation: broad notched R in I/V6, deep broad S in V1-V3.
        return np.array(
            [
                _wave(-0.035 * w, 0.010 * w, 0.010 * w, 0.20 * r, 10.0, -5.0),
                _wave(-0.008 * w, 0.019 * w, 0.019 * w, 0.85 * r, 40.0, -40.0),
                _wave(0.038 * w, 0.020 * w, 0.021 * w, 0.90 * r, 15.0, -45.0),
            ]
        )
    waves = [
        _wave(-0.022 * w, 0.008 * w, 0.008 * w, 0.15 * r, -155.0, 45.0),
        _wave(-0.006 * w, 0.011 * w, 0.010 * w, 0.7 * r, 55.0, 5.0),
        _wave(0.008 * w, 0.010 * w, 0.010 * w, 0.75 * r, 60.0, -45.0),
        _wave(0.024 * w, 0.010 * w, 0.010 * w, 0.25 * r, -120.0, -40.0),
    ]
    if p.bundle_branch == "rbbb":
        # RBBB: the right ventricle depolarizes late and slowly, a rightward-anterior terminal
        # force: R' in V1 (rsR'), broad slurred S in I and V6, QRS >= 120 ms.
        waves.append(_wave(0.060 * w, 0.016 * w, 0.020 * w, 0.55 * r, 170.0, 50.0))
    return np.array(waves)


def _repolarization_waves(p: SimulationParams, qrs: np.ndarray, rr_s: float) -> np.ndarray:
    """T wave (slow upstroke, faster downstroke) ending at QRS onset + QT, with QT from Bazett
    plus any QRS widening. Bundle-branch block gives secondary T waves opposite the terminal
    QRS forces (discordant)."""
    onset, end = _extent(qrs)
    qt = p.qtc_ms / 1000.0 * np.sqrt(rr_s) + max(0.0, end - onset - 0.095)
    sigma_right = 0.09 * qt
    sigma_left = 0.16 * qt
    t_peak = max(onset + qt - 2.2 * sigma_right, end + 1.5 * sigma_left)
    t_frontal = _frontal_axis(qrs) + p.t_axis_offset_deg
    if p.bundle_branch == "lbbb":
        waves = [
            _wave(
                t_peak - 0.3 * sigma_left,
                1.3 * sigma_left,
                sigma_right,
                p.t_amplitude_mv,
                t_frontal + 180.0,
                45.0,
            )
        ]
    elif p.bundle_branch == "rbbb":
        waves = [_wave(t_peak, sigma_left, sigma_right, p.t_amplitude_mv, t_frontal, -20.0)]
    else:
        waves = [_wave(t_peak, sigma_left, sigma_right, p.t_amplitude_mv, t_frontal, 10.0)]
    return np.array(waves)


def _st_waves(p: SimulationParams, qrs: np.ndarray, t_peak: float) -> np.ndarray:
    """Injury current: a shift starting at the J point and merging into the T wave."""
    if p.st_territory == "none" or p.st_mv == 0.0:
        return np.zeros((0, 6))
    _, j_point = _extent(qrs)
    frontal, anterior = _ST_DIRECTION[p.st_territory]
    width = max(t_peak - j_point, 0.04)
    return np.array([_wave(j_point + 0.01, 0.012, 0.7 * width, p.st_mv, frontal, anterior)])


def _sinus_p_waves(p: SimulationParams, qrs_onset: float) -> np.ndarray:
    """Right then left atrial activation (P about 100 ms): the right-atrial part is anterior,
    the left-atrial part posterior, hence the biphasic P in V1 and upright P in II."""
    p_onset = qrs_onset - p.pr_ms / 1000.0
    a = p.p_amplitude_mv
    return np.array(
        [
            _wave(p_onset + 0.036, 0.016, 0.018, 0.75 * a, p.p_axis_deg + 15.0, 35.0),
            _wave(p_onset + 0.062, 0.018, 0.018, 0.75 * a, p.p_axis_deg - 15.0, -35.0),
        ]
    )


def _pvc_waves(p: SimulationParams, rr_s: float) -> np.ndarray:
    """Ectopic ventricular beat: slow myocardial conduction (QRS about 150 ms), an axis set by
    the focus, and a large T wave opposite to the QRS (secondary repolarization change)."""
    r = 1.1 * p.r_amplitude_mv
    qt = p.qtc_ms / 1000.0 * np.sqrt(rr_s) + 0.06
    return np.array(
        [
            _wave(-0.010, 0.020, 0.022, r, p.pvc_axis_deg, p.pvc_anterior_deg),
            _wave(0.040, 0.022, 0.024, 0.5 * r, p.pvc_axis_deg + 40.0, p.pvc_anterior_deg),
            _wave(qt - 0.13, 0.075, 0.045, 0.45 * r, p.pvc_axis_deg + 180.0, -p.pvc_anterior_deg),
        ]
    )


def _template(waves: np.ndarray, fs: float) -> tuple[np.ndarray, int]:
    """Sample a wave group on a local grid; returns D (3, L) and the index of t = 0 (R peak)."""
    start = int(np.floor((waves[:, 0] - 4.0 * waves[:, 1]).min() * fs))
    stop = int(np.ceil((waves[:, 0] + 4.0 * waves[:, 2]).max() * fs)) + 1
    t = np.arange(start, stop) / fs
    dt = t[None, :] - waves[:, :1]
    sigma = np.where(dt < 0.0, waves[:, 1:2], waves[:, 2:3])
    return waves[:, 3:].T @ np.exp(-0.5 * (dt / sigma) ** 2), -start


def _place(
    template: tuple[np.ndarray, int], times_s: np.ndarray, gains: np.ndarray, fs: float, n: int
) -> np.ndarray:
    """Sum one template at every beat time (each scaled by its gain) into a (3, n) signal."""
    shape, zero = template
    idx = np.rint(times_s * fs).astype(np.int64)[:, None] + np.arange(shape.shape[1]) - zero
    keep = (idx >= 0) & (idx < n)
    weights = gains[None, :, None] * shape[:, None, :]  # (3, beats, L)
    flat = (np.arange(3)[:, None, None] * n + idx[None]).astype(np.int64)
    mask = np.broadcast_to(keep, flat.shape)
    return np.bincount(flat[mask], weights=weights[mask], minlength=3 * n).reshape(3, n)


@dataclass(frozen=True)
class _Schedule:
    conducted: np.ndarray  # R-peak times of supraventricular beats (s)
    p_only: np.ndarray  # sinus P waves whose QRS was pre-empted by a PVC
    pvc: np.ndarray  # R-peak times of PVCs


def _schedule(
    p: SimulationParams, duration_s: float, resp_phase: float, rng: np.random.Generator
) -> _Schedule:
    """Beat times. Sinus: RR modulated by breathing (RSA) and the ~0.1 Hz Mayer wave. AF:
    irregularly irregular RR (independent log-normal intervals). PVCs: premature by the
    coupling interval; the sinus node is not reset, so the pause is fully compensatory."""
    rr0 = 60.0 / p.heart_rate
    rr_min = min(max(0.24, 0.4 * rr0), 0.9 * rr0)
    total = duration_s + 2.0 * _LEAD_IN_S
    n = int(np.ceil(total / rr_min)) + 2
    if p.rhythm == "af":
        cv = p.rr_variability
        rr = rr0 * np.exp(cv * rng.standard_normal(n) - 0.5 * cv**2)
    else:
        approx_t = np.arange(n) * rr0
        rr = rr0 * (
            1.0
            + p.rr_variability * np.sin(2 * np.pi * p.resp_rate_hz * approx_t + resp_phase)
            + 0.3 * p.rr_variability * np.sin(2 * np.pi * 0.1 * approx_t + rng.uniform(0, 2 * np.pi))
            + 0.005 * rng.standard_normal(n)
        )
    rr = np.maximum(rr, rr_min)
    times = -_LEAD_IN_S - rng.uniform(0.0, rr0) + np.cumsum(rr)
    times = times[times < duration_s + _LEAD_IN_S]
    empty = np.zeros(0)
    if p.rhythm != "sinus_pvc" or times.size < 3:
        return _Schedule(times, empty, empty)
    draw = rng.random(times.size - 1) < p.pvc_prob
    trigger = draw & ~np.concatenate([[False], draw[:-1]])  # no PVC right after a dropped beat
    visible = np.flatnonzero((times[:-1] > 0.2) & (times[:-1] < duration_s - 1.5 * rr0))
    if not trigger[visible].any() and visible.size:
        trigger[rng.choice(visible)] = True
    before = np.flatnonzero(trigger)
    pvc = times[before] + p.pvc_coupling * (times[before + 1] - times[before])
    dropped = np.zeros(times.size, dtype=bool)
    dropped[before + 1] = True
    return _Schedule(times[~dropped], times[dropped], pvc)


def _f_waves(p: SimulationParams, t: np.ndarray, fs: float, rng: np.random.Generator) -> np.ndarray:
    """AF fibrillatory waves: 4-9 Hz, drifting rate and amplitude, largest in V1 and the
    inferior leads (the atria sit right, posterior and superior to the ventricles)."""
    phases = rng.uniform(0.0, 2 * np.pi, 4)
    rate = p.f_wave_hz * (1.0 + 0.08 * np.sin(2 * np.pi * 0.15 * t + phases[0]))
    phase = 2 * np.pi * np.cumsum(rate) / fs + phases[1]
    envelope = 1.0 + 0.4 * np.sin(2 * np.pi * 0.3 * t + phases[2])
    main = (np.sin(phase) + 0.35 * np.sin(2.0 * phase + phases[3])) * envelope
    side = np.sin(phase + 1.3) * envelope
    atrial, other = _direction(110.0, 45.0), _direction(20.0, -30.0)
    largest = np.abs(np.vstack([_LEAD_I, _LEAD_II, _PRECORDIAL]) @ atrial).max()
    return p.f_wave_mv / (1.2 * largest) * (atrial[:, None] * main + 0.4 * other[:, None] * side)


def _band_noise(
    shape: tuple[int, int], fs: float, low: float, high: float, rng: np.random.Generator
) -> np.ndarray:
    """Unit-RMS Gaussian noise limited to [low, high] Hz (via the FFT, no filter transients)."""
    spectrum = np.fft.rfft(rng.standard_normal(shape), axis=1)
    freqs = np.fft.rfftfreq(shape[1], 1.0 / fs)
    spectrum[:, (freqs < low) | (freqs > high)] = 0.0
    noise = np.fft.irfft(spectrum, n=shape[1], axis=1)
    return noise / np.maximum(noise.std(axis=1, keepdims=True), 1e-12)


def _electrode_noise(
    p: SimulationParams, t: np.ndarray, fs: float, resp_phase: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noise on each electrode (RA, LA, LL, V1-V6), returned as lead noise for I, II and V1-V6.

    Baseline wander (breathing, electrode motion) is 0.05-0.5 Hz; mains hum shares one phase
    on all electrodes and reaches the leads through electrode-impedance imbalance; EMG is
    20-150 Hz in bursts, stronger on the limbs.
    """
    n_el = 9
    freqs = rng.uniform(0.05, 0.5, (n_el, 3))
    freqs[:, 0] = p.resp_rate_hz  # one component follows breathing
    weights = rng.dirichlet(np.ones(3), n_el) * rng.uniform(0.4, 1.0, (n_el, 1)) * p.baseline_wander_mv
    phases = rng.uniform(0.0, 2 * np.pi, (n_el, 3))
    phases[:, 0] = resp_phase + rng.normal(0.0, 0.5, n_el)
    step = 0.04  # wander is below 0.5 Hz: evaluate every 40 ms, interpolate linearly (error < 0.3 %)
    knots = np.arange(int(t[-1] / step) + 2) * step
    coarse = np.einsum(
        "ek,ekm->em", weights, np.sin(2 * np.pi * freqs[:, :, None] * knots + phases[:, :, None])
    )
    left = (t / step).astype(np.int64)
    frac = t / step - left
    noise = coarse[:, left] * (1.0 - frac) + coarse[:, left + 1] * frac
    if p.mains_mv > 0.0 and p.mains_hz < fs / 2.0:  # the recorder's anti-alias filter removes it otherwise
        imbalance = rng.normal(0.0, p.mains_mv / np.sqrt(2.0), (n_el, 1))
        noise += imbalance * np.sin(
            2 * np.pi * p.mains_hz * t + rng.uniform(0, 2 * np.pi) + rng.normal(0.0, 0.2, (n_el, 1))
        )
    if p.muscle_noise_mv > 0.0:
        n_bursts = 1 + rng.poisson(2.0)
        centers = rng.uniform(t[0], t[-1], (n_bursts, 1))
        widths = rng.uniform(0.2, 0.8, (n_bursts, 1))
        envelope = np.minimum(0.2 + np.exp(-0.5 * ((t - centers) / widths) ** 2).sum(axis=0), 1.5)
        site = np.r_[1.0, 1.0, 0.8, np.full(6, 0.5)][:, None]  # arm/leg muscle > pectoral
        emg = _band_noise((n_el, t.size), fs, 20.0, min(150.0, 0.45 * fs), rng)
        noise += p.muscle_noise_mv / np.sqrt(2.0) * site * envelope * emg
    ra, la, ll = noise[:3]
    return la - ra, ll - ra, noise[3:] - (ra + la + ll) / 3.0  # V leads use Wilson's terminal


def simulate_12lead(
    params: SimulationParams,
    fs: float = 500,
    duration_s: float = 10.0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """A (12, N) record in mV, leads in LEAD_NAMES order; N = round(duration_s * fs).

    All randomness (beat timing, PVC placement, noise) comes from `rng`, so a seeded
    generator reproduces the record exactly; None draws a fresh unseeded one.
    """
    rng = np.random.default_rng() if rng is None else rng
    p = params
    n = int(round(duration_s * fs))
    t = np.arange(n) / fs
    resp_phase = float(rng.uniform(0.0, 2 * np.pi))
    rr0 = 60.0 / p.heart_rate

    qrs = _qrs_waves(p)
    repol = _repolarization_waves(p, qrs, rr0)
    rotation = p.axis_deg - _frontal_axis(_rotate(qrs, horizontal_deg=p.horizontal_rotation_deg))
    ventricular = _rotate(np.vstack([qrs, repol]), rotation, p.horizontal_rotation_deg)
    ventricular = np.vstack([ventricular, _st_waves(p, qrs, float(repol[0, 0]))])

    beats = _schedule(p, duration_s, resp_phase, rng)

    def gains(times: np.ndarray) -> np.ndarray:
        resp = np.sin(2 * np.pi * p.resp_rate_hz * times + resp_phase)
        return p.amplitude_scale * (
            1.0 + p.resp_amplitude_mod * resp + 0.01 * rng.standard_normal(times.size)
        )

    conducted_gain = gains(beats.conducted)
    dipole = _place(_template(ventricular, fs), beats.conducted, conducted_gain, fs, n)
    if p.rhythm == "af":
        dipole += p.amplitude_scale * _f_waves(p, t, fs, rng)
    else:
        p_waves = _template(_sinus_p_waves(p, _extent(qrs)[0]), fs)
        dipole += _place(p_waves, beats.conducted, conducted_gain, fs, n)
        dipole += _place(p_waves, beats.p_only, gains(beats.p_only), fs, n)
    if beats.pvc.size:
        dipole += _place(_template(_pvc_waves(p, rr0), fs), beats.pvc, gains(beats.pvc), fs, n)

    noise_i, noise_ii, noise_v = _electrode_noise(p, t, fs, resp_phase, rng)
    lead_i = _LEAD_I @ dipole + noise_i
    lead_ii = _LEAD_II @ dipole + noise_ii
    precordial = p.precordial_gain * (_PRECORDIAL @ dipole) + noise_v
    return np.vstack([limb_leads_from_i_ii(lead_i, lead_ii), precordial])


def sample_params(rng: np.random.Generator) -> SimulationParams:
    """A plausible patient: ~70 % sinus, ~15 % AF, ~15 % sinus with PVCs; ~15 % bundle-branch
    block; ~15 % ST change; mostly normal axis and rate; noise usually present but small."""
    u_rhythm = rng.random()
    rhythm: Rhythm = "sinus" if u_rhythm < 0.70 else ("af" if u_rhythm < 0.85 else "sinus_pvc")
    if rhythm == "af":
        heart_rate = rng.uniform(55.0, 150.0)
        rr_variability = rng.uniform(0.12, 0.28)
    else:
        heart_rate = rng.normal(75.0, 11.0) if rng.random() < 0.8 else rng.uniform(40.0, 180.0)
        rr_variability = rng.uniform(0.0, 0.05) * min(1.0, 70.0 / heart_rate)  # RSA fades with rate
    heart_rate = float(np.clip(heart_rate, 40.0, 180.0))

    u_bbb = rng.random()
    bundle_branch: BundleBranch = "none" if u_bbb < 0.85 else ("rbbb" if u_bbb < 0.925 else "lbbb")
    qrs_width_factor = rng.uniform(0.95, 1.2) if bundle_branch == "none" else rng.uniform(0.95, 1.1)

    u_axis = rng.random()
    if u_axis < 0.92:
        axis = float(np.clip(rng.normal(45.0, 30.0), -30.0, 100.0))
    elif u_axis < 0.96:
        axis = rng.uniform(-90.0, -30.0)
    else:
        axis = rng.uniform(100.0, 180.0)

    st_territory: StTerritory = "none"
    st_mv = 0.0
    if rng.random() < 0.15:
        st_territory = ("anterior", "inferior", "lateral")[int(rng.integers(3))]
        st_mv = rng.uniform(0.1, 0.35) if rng.random() < 0.6 else -rng.uniform(0.05, 0.2)

    return SimulationParams(
        heart_rate=heart_rate,
        rhythm=rhythm,
        rr_variability=float(rr_variability),
        pr_ms=rng.uniform(120.0, 200.0),
        qrs_width_factor=float(qrs_width_factor),
        bundle_branch=bundle_branch,
        qtc_ms=rng.uniform(380.0, 460.0),
        axis_deg=float(axis),
        horizontal_rotation_deg=rng.uniform(-20.0, 20.0),
        t_axis_offset_deg=rng.normal(-10.0, 15.0),
        p_axis_deg=rng.uniform(20.0, 75.0),
        p_amplitude_mv=rng.uniform(0.1, 0.2),
        r_amplitude_mv=rng.uniform(0.9, 1.5),
        t_amplitude_mv=rng.uniform(0.15, 0.45),
        amplitude_scale=float(np.clip(rng.lognormal(0.0, 0.15), 0.7, 1.4)),
        precordial_gain=rng.uniform(0.8, 1.25),
        st_territory=st_territory,
        st_mv=float(st_mv),
        resp_rate_hz=rng.uniform(0.15, 0.33),
        resp_amplitude_mod=rng.uniform(0.0, 0.1),
        pvc_prob=rng.uniform(0.05, 0.25) if rhythm == "sinus_pvc" else 0.0,
        pvc_coupling=rng.uniform(0.5, 0.75),
        pvc_axis_deg=rng.uniform(-120.0, 120.0),
        pvc_anterior_deg=rng.uniform(-60.0, 60.0),
        f_wave_mv=rng.uniform(0.02, 0.1),
        f_wave_hz=rng.uniform(4.0, 9.0),
        baseline_wander_mv=float(min(rng.exponential(0.08), 0.3)),
        mains_hz=50.0 if rng.random() < 0.5 else 60.0,
        mains_mv=float(min(rng.exponential(0.01), 0.05)),
        muscle_noise_mv=float(min(rng.exponential(0.01), 0.06)),
    )
