"""Draw examples/timing_conventions.png: where the columns of a 3x4 sheet sit in time.

    python scripts/draw_timing_conventions.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from cardioscan.synth.layout import _COLUMNS  # noqa: E402


def main() -> None:
    fig, axes = plt.subplots(2, 1, figsize=(8, 4.2), sharex=True)
    for ax, convention in zip(axes, ("sequential", "simultaneous"), strict=True):
        for c, leads in enumerate(_COLUMNS["3x4"]):
            start = 2.5 * c if convention == "sequential" else 0.0
            for r, lead in enumerate(leads):
                y = 3 - r
                ax.barh(y, 2.5, left=start, height=0.6, color=f"C{c}", alpha=0.35 if convention == "simultaneous" else 0.8)
                ax.text(start + 0.1 + (0.55 * c if convention == "simultaneous" else 0), y, lead, va="center", fontsize=8)
        ax.barh(0, 10, left=0, height=0.6, color="grey", alpha=0.6)
        ax.text(0.1, 0, "II (rhythm strip)", va="center", fontsize=8)
        ax.set_yticks([])
        ax.set_title(f"{convention}: " + ("column k shows [2.5k, 2.5k + 2.5) s" if convention == "sequential"
                                           else "every column shows [0, 2.5) s"), fontsize=9, loc="left")
    axes[-1].set_xlabel("seconds of the recording")
    axes[-1].set_xlim(0, 10)
    fig.tight_layout()
    out = Path(__file__).resolve().parents[1] / "examples" / "timing_conventions.png"
    fig.savefig(out, dpi=90)
    print(out)


if __name__ == "__main__":
    main()
