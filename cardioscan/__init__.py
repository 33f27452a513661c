"""cardioscan: pictures of paper 12-lead ECGs to calibrated digital signals."""

__version__ = "0.1.0"
