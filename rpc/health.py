"""grpc.health.v1 with readiness: SERVING exactly when GET /readyz is 200 (Health.not_ready).

The same judgement as GET /readyz (200 / 503, with the same 2 s for every worker to answer),
for the overall server ("") and for sse.SSEManagementService; List answers both. Check asks
the gateway at once, within the caller's deadline (less a margin, so the answer arrives before
it); a small loop, started and stopped with the server (rpc/server.py), refreshes the status
every second so that Watch streams see changes too. A Check whose deadline is shorter than
the loop's ask cannot hear every worker out: it publishes only SERVING or a stopping core, and
otherwise answers the loop's last status (a second or two old), so a hurried probe never turns
the instance NOT_SERVING for everyone.
At shutdown: NOT_SERVING for good.
"""
from __future__ import annotations

import logging
import threading

from grpc_health.v1 import health, health_pb2

from actors.gateway import ASK_TIMEOUT, STOPPING, Gateway, Unavailable

logger = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICES = ("", "sse.SSEManagementService")
MARGIN = 0.1            # of a Check's deadline (a fifth of a short one), to send the answer


class _Servicer(health.HealthServicer):
    def __init__(self, refresh):
        super().__init__()
        self._refresh = refresh

    def Check(self, request, context):
        self._refresh(context.time_remaining())
        return super().Check(request, context)

    def List(self, request, context):
        """Every service's status (the proto grpcio ships, and reflection, name List; grpcio's
        own servicer leaves it unimplemented)."""
        self._refresh(context.time_remaining())
        with self._lock:
            return health_pb2.HealthListResponse(statuses={
                name: health_pb2.HealthCheckResponse(status=status)
                for name, status in self._server_status.items()})

    def _on_close_callback(self, send_response_callback, service):
        """grpcio's servicer keeps a set of watchers per service named in a Watch, and keeps
        it, empty, once they are gone: the name is the caller's text (anyone may watch), so
        every name ever watched stayed for the worker's life. The empty set goes with the
        last watcher."""
        close = super()._on_close_callback(send_response_callback, service)

        def callback():
            close()
            with self._lock:
                if not self._send_response_callbacks.get(service, True):
                    del self._send_response_callbacks[service]
        return callback


class KafkaHealth:
    def __init__(self, gateway: Gateway, *, interval: float = 1.0,
                 ask_timeout: float = ASK_TIMEOUT):        # /readyz's: the same judgement
        self.gateway = gateway
        self.interval = interval
        self.ask_timeout = ask_timeout
        self.servicer = _Servicer(self.refresh)
        self.status: int = NOT_SERVING
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._set(NOT_SERVING)              # until the broker first answers

    def refresh(self, deadline: float | None = None) -> int:
        """Ask the gateway and publish SERVING or NOT_SERVING; returns the status. With a
        `deadline` (seconds left) shorter than ask_timeout, only a sure answer is published."""
        if self._stopped.is_set():
            return NOT_SERVING
        wait = self.ask_timeout if deadline is None else deadline - min(MARGIN, deadline / 5)
        hurried = wait < self.ask_timeout
        if hurried and wait <= 0:
            return self.status
        status = NOT_SERVING
        try:
            report = self.gateway.health(min(wait, self.ask_timeout))
            status = NOT_SERVING if report.not_ready() else SERVING
        except Unavailable as exc:
            hurried = hurried and str(exc) != STOPPING
        if hurried and status != SERVING:
            return self.status          # maybe only too little time: the loop decides
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
