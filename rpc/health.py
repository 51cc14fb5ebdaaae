"""grpc.health.v1 with readiness: SERVING while Kafka is connected and the warm start is done.

The same judgement as GET /readyz (200 / 503), for the overall server ("")
and for sse.SSEManagementService. Check asks the gateway at once; a small loop, started and
stopped with the server (rpc/server.py), refreshes the status every second so that Watch
streams see changes too. At shutdown: NOT_SERVING for good.
"""
from __future__ import annotations

import logging
import threading

from grpc_health.v1 import health, health_pb2

from actors.gateway import Gateway, Unavailable

logger = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICES = ("", "sse.SSEManagementService")


class _Servicer(health.HealthServicer):
    def __init__(self, refresh):
        super().__init__()
        self._refresh = refresh

    def Check(self, request, context):
        self._refresh()
        return super().Check(request, context)


class KafkaHealth:
    def __init__(self, gateway: Gateway, *, interval: float = 1.0, ask_timeout: float = 1.0):
        self.gateway = gateway
        self.interval = interval
        self.ask_timeout = ask_timeout
        self.servicer = _Servicer(self.refresh)
        self.status: int | None = None
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._set(NOT_SERVING)              # until the broker first answers

    def refresh(self) -> int:
        """Ask the gateway and publish SERVING or NOT_SERVING; returns the status."""
        if self._stopped.is_set():
            return NOT_SERVING
        status = NOT_SERVING
        try:
            report = self.gateway.health(self.ask_timeout)
            status = NOT_SERVING if report.not_ready() else SERVING
        except Unavailable:
            pass
        if status != self.status:
            self._set(status)
        return status

    def _set(self, status: int) -> None:
        self.status = status
        for service in SERVICES:
            self.servicer.set(service, status)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="grpc-health", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stopped.wait(self.interval):
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 - the probe must outlive one odd answer
                logger.exception("refreshing the gRPC health status failed")

    def stop(self, timeout: float = 2.0) -> None:
        self._stopped.set()
        self.servicer.enter_graceful_shutdown()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()
