"""Errors the CLI shows as one line instead of a traceback."""


class UserError(Exception):
    """An expected failure (unreachable host, refused auth, bad file): one clear line, exit 1."""
