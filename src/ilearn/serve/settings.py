"""The service's own settings (the assistant's come from `ilearn.config.Config`)."""

from __future__ import annotations

from dataclasses import dataclass

from ilearn.errors import InvalidInput


@dataclass(frozen=True)
class ServeSettings:
    host: str = "127.0.0.1"
    """Address to listen on (0.0.0.0: every interface)."""
    port: int = 8000
    """TCP port to listen on."""
    keys_path: str = ""
    """Where the API keys live: a SQLite file or a postgresql:// URL (empty: the store's PostgreSQL schema when
    the store is PostgreSQL, so every worker shares them, else keys.db in the home folder)."""
    model_name: str = "ilearn"
    """The model id the OpenAI-compatible endpoint lists and accepts."""
    threads: int = 64
    """Requests handled at the same time (each waits for its turn in a worker thread)."""
    max_body_bytes: int = 32_000_000
    """Largest request body any key may send (each key has its own, smaller or equal, limit)."""
    allow_remote_images: bool = False
    """Fetch `image_url` parts that are http(s) URLs (off: only data URLs, a remote URL gets a 400)."""
    remote_image_timeout_s: float = 10.0
    """Seconds to wait for a remote image when fetching is allowed."""
    conversations: int = 10_000
    """OpenAI conversations remembered for session continuation by history (least recently used dropped)."""
    shutdown_timeout_s: float = 60.0
    """On shutdown, seconds to wait for open turns and a running learning job."""
    reports_dir: str = ""
    """A folder of experiment report folders (`ilearn experiment --out`) the operator page shows (empty: none)."""

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise InvalidInput("port must be 1-65535")
        for name in ("threads", "max_body_bytes", "conversations"):
            if getattr(self, name) < 1:
                raise InvalidInput(f"{name} must be >= 1")
        if self.remote_image_timeout_s <= 0 or self.shutdown_timeout_s <= 0:
            raise InvalidInput("timeouts must be > 0")
        if not self.model_name.strip():
            raise InvalidInput("model_name must not be empty")


__all__ = ["ServeSettings"]
