"""iLearn: vision-language robots and assistants that learn from the people they talk to."""

__version__ = "0.1.0"

__all__ = ["__version__"]
