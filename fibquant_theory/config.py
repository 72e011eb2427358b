"""Tunables of the package in one place: limits, thresholds, kernel flags and presets.

Nothing here changes a result's *meaning*; the limits decide what is accepted,
the thresholds which (equivalent) code path runs, the presets how much work a
command does. Every module reads its tunables from here, so a reader can see
them all at once.
"""

from __future__ import annotations

__all__ = ["MAX_CODEWORDS"]

#: Largest codebook size that can be designed or packed (keeps every limb product inside int64).
MAX_CODEWORDS = 1 << 30
