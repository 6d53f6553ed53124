"""Stable seeds from names: the same parts give the same seed in every process and on every machine."""

from __future__ import annotations

import hashlib
import logging

logger = logging.getLogger(__name__)


def derive_seed(*parts: object) -> int:
    """A stable 63-bit seed from any parts (not Python's salted ``hash``)."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1
