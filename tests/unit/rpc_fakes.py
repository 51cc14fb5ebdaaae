"""What the management tests need beyond tests/fakes.py: a gateway that ends a subject's streams."""
from __future__ import annotations

from tests.fakes import FakeGateway


class SubjectGateway(FakeGateway):
    """FakeGateway plus disconnect_subject: `streams` maps subject -> open streams; ending them
    empties the entry and answers how many there were."""

    def __init__(self, *, streams=None, **kwargs):
        super().__init__(**kwargs)
        self.streams = dict(streams or {})

    def disconnect_subject(self, subject, reason, timeout=None) -> int:
        self._called("disconnect_subject", subject, reason, timeout=timeout)
        return self.streams.pop(subject, 0)
