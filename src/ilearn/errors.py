"""The exceptions iLearn raises for bad input; each carries a message a user can act on."""


class ILearnError(Exception):
    """Base class of every error iLearn raises on purpose."""


class InvalidInput(ILearnError, ValueError):
    """A message, image or argument is malformed, empty or too large."""


class InvalidImage(InvalidInput):
    """The image cannot be decoded, is empty, too large or in an unsupported format."""


class NotFound(ILearnError, KeyError):
    """An unknown session, user, event or model version."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else "not found"


class SessionClosed(ILearnError):
    """A turn was sent to a session that is already closed."""


class MissingDependency(ILearnError, ImportError):
    """An optional dependency is not installed."""


def require_package(module: str, extra: str) -> None:
    """Raise a clear error naming the extra to install when `module` cannot be imported."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingDependency(f"{module!r} is not installed: pip install 'ilearn[{extra}]'")
