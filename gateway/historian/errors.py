"""How a historian write can fail; the drain loop acts on the kind, not on HTTP details."""
from __future__ import annotations


class HistorianError(Exception):
    """Base class: ``str()`` is one line a field engineer can act on."""


class RetryableError(HistorianError):
    """Try the same batch again later: connection refused, timeout, 5xx, 429.

    ``retry_after`` is the server's Retry-After in seconds, when it sent one.
    """

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class DataError(HistorianError):
    """The server refused the data itself (4xx such as a field type conflict):
    retrying cannot help, so the batch goes to the dead-letter table with this message."""


class AuthError(HistorianError):
    """Credentials refused (401/403): retried with backoff, and reported loudly."""
