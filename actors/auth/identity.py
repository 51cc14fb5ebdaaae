"""What a credential yields (an Identity) or why it is refused: shared by tokens, tickets
and the web edge."""
from __future__ import annotations

from typing import NamedTuple


class InvalidToken(Exception):
    """The token is refused; `reason` is short, safe to log and to show the client."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class InvalidTicket(InvalidToken):
    """The ticket is refused; `reason` is short and never holds the ticket."""


class Identity(NamedTuple):
    """Who a credential names and what it may read. A tuple: immutable (one is shared by
    every stream its cached token opens) and made in a third of a frozen dataclass's time, once
    per ticket or new token."""
    subject: str
    scope_types: tuple[str, ...]      # patterns in the filter syntax; ("*",) is everything
    scope_sources: tuple[str, ...]
    expires_at: float                 # unix seconds
