"""QuietRef: a core actor's ref as the other core actors hold it.

A core actor that dies is a bug: pykka logs its traceback and the watchdog (actors/system.py)
retires the worker. An actor that then tells it something must not die of that too (pykka
stops an actor that raises on a told message: the history's death took the broker with it,
then the consumer, each with a traceback of its own, and the broker is what closes the
streams). So a message told to a core actor that has died is dropped. The gateway keeps the
plain refs: a stream opened on a dead broker must be refused, not forgotten.
"""
from __future__ import annotations

import pykka


class QuietRef:
    __slots__ = ("ref",)

    def __init__(self, ref):
        self.ref = ref

    def tell(self, message) -> None:
        try:
            self.ref.tell(message)
        except pykka.ActorDeadError:
            pass        # the watchdog reports it and retires the worker

    def is_alive(self) -> bool:
        return self.ref.is_alive()

    def __repr__(self) -> str:
        return f"QuietRef({self.ref!r})"
