"""Errors the operator caused or can act on: each carries one clear sentence (and maybe a hint)."""

from __future__ import annotations


class HyperconsoleError(Exception):
    """An error with a one-line message meant for the operator, never a traceback."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:  # one line, always
        text = self.message.replace("\n", " ").strip()
        return f"{text} ({self.hint})" if self.hint else text


class ConfigError(HyperconsoleError):
    """A config file is broken or holds a bad value."""


class ValidationError(HyperconsoleError):
    """Input was refused before anything was changed."""
