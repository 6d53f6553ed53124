"""iLearn: vision-language robots and assistants that learn from the people they talk to.

    from ilearn import Assistant, Config

    assistant = Assistant.from_config(Config(home="robot-data"))

The names are imported on first use, so `import ilearn` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {"Assistant": "ilearn.assistant", "Reply": "ilearn.assistant", "Config": "ilearn.config",
         "build_runtime": "ilearn.runtime", "Runtime": "ilearn.runtime"}

if TYPE_CHECKING:
    from ilearn.assistant import Assistant, Reply
    from ilearn.config import Config
    from ilearn.runtime import Runtime, build_runtime


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ilearn' has no attribute {name!r}")


__all__ = ["Assistant", "Config", "Reply", "Runtime", "__version__", "build_runtime"]
