"""Images as requests carry them: base64, data URLs, uploads and (when the operator allows) remote URLs."""

from __future__ import annotations

import base64
import binascii
import re
import urllib.request

from ilearn.errors import InvalidInput
from ilearn.serve.errors import ApiError

_DATA_URL = re.compile(r"data:(image/[A-Za-z0-9.+-]+)?(;[^,]*)?,", re.I)


def decode_base64(text: str, max_bytes: int) -> bytes:
    """The bytes of a base64 image or a `data:image/...;base64,` URL (400 when malformed, 413 when too big)."""
    text = text.strip()
    match = _DATA_URL.match(text)
    if match is not None:
        if not (match.group(2) or "").lower().endswith(";base64"):
            raise InvalidInput("a data URL image must be base64 (data:image/png;base64,...)")
        text = text[match.end():]
    elif text.lower().startswith("data:"):
        raise InvalidInput("a data URL image must look like data:image/png;base64,...")
    if len(text) > (max_bytes // 3 + 1) * 4 + 4:
        raise ApiError(413, f"the image is over this key's limit of {max_bytes} bytes")
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("the image is not valid base64") from None
    if not data:
        raise InvalidInput("the image is empty")
    return data


def fetch_image(url: str, max_bytes: int, timeout_s: float) -> bytes:
    """Download an http(s) image of at most `max_bytes` (400 when it cannot be fetched)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 (the operator allowed it)
            data = response.read(max_bytes + 1)
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"could not fetch the image at {url}: {exc}") from None
    if len(data) > max_bytes:
        raise ApiError(413, f"the image at {url} is over this key's limit of {max_bytes} bytes")
    return data


__all__ = ["decode_base64", "fetch_image"]
