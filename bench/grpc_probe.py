"""Optional: the latency of the gateway's gRPC GetStats while streams are busy.

    python bench/grpc_probe.py --check              exit 0 if rpc.sse_pb2_grpc imports
    python bench/grpc_probe.py --port P --seconds S prints {"count", "errors", "p50_ms", ...}
        [--start-at EPOCH]   connect first, then wait until then before the first call
        SIGTERM or SIGINT    stop early and print what was measured
    The output also has "calls": [[epoch, ms], ...] and "error_times" (epochs), so the
    orchestrator can take the figures of a narrower window (`window_stats`).

The stub and request classes are found by name (a `*Stub` with a `GetStats` method; the
request type from the service descriptor), so the probe does not depend on the exact proto.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def load():
    from rpc import sse_pb2, sse_pb2_grpc  # noqa: F401 - ImportError means "not available"
    from google.protobuf import message_factory
    for service in sse_pb2.DESCRIPTOR.services_by_name.values():
        method = service.methods_by_name.get("GetStats")
        stub_class = getattr(sse_pb2_grpc, f"{service.name}Stub", None)
        if method is not None and stub_class is not None:
            return stub_class, message_factory.GetMessageClass(method.input_type)
    raise ImportError("no service with a GetStats method in rpc.sse_pb2")


STOP = []


def probe(port: int, seconds: float, interval: float = 0.02, start_at: float = 0.0) -> dict:
    import grpc
    stub_class, request_class = load()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = stub_class(channel)
    metadata = []
    if os.environ.get("GRPC_AUTH_TOKEN"):
        metadata.append(("authorization", f"Bearer {os.environ['GRPC_AUTH_TOKEN']}"))
    grpc.channel_ready_future(channel).result(timeout=5)
    while not STOP and time.time() < start_at:
        time.sleep(min(0.05, start_at - time.time()))
    calls, error_times = [], []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not STOP:
        at, start = time.time(), time.perf_counter()
        try:
            stub.GetStats(request_class(), timeout=5, metadata=metadata)
            calls.append((round(at, 4), round((time.perf_counter() - start) * 1000, 3)))
        except grpc.RpcError:
            error_times.append(round(at, 4))
        time.sleep(interval)
    channel.close()
    return {**window_stats(calls, error_times), "calls": calls, "error_times": error_times}


def window_stats(calls, error_times, t0: float = 0.0, t1: float = float("inf")) -> dict:
    """count, errors and percentiles of the calls started in [t0, t1]."""
    latencies = sorted(ms for at, ms in calls if t0 <= at <= t1)

    def pct(q):     # interpolated, as numpy's percentile (the clients' figures) is
        if not latencies:
            return None
        at = q * (len(latencies) - 1)
        low = int(at)
        high = min(low + 1, len(latencies) - 1)
        return round(latencies[low] + (latencies[high] - latencies[low]) * (at - low), 2)
    return {"count": len(latencies), "errors": sum(1 for at in error_times if t0 <= at <= t1),
            "p50_ms": pct(0.5), "p95_ms": pct(0.95), "p99_ms": pct(0.99),
            "max_ms": round(latencies[-1], 2) if latencies else None}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--port", type=int)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--start-at", type=float, default=0.0,
                        help="epoch seconds of the first call (connects before)")
    args = parser.parse_args()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: STOP.append(1))
    try:
        load()
    except Exception as exc:  # noqa: BLE001 - any failure means "n/a"
        print(json.dumps({"error": f"{exc.__class__.__name__}: {exc}"}))
        return 2
    if args.check:
        return 0
    try:
        print(json.dumps(probe(args.port, args.seconds, start_at=args.start_at)))
    except Exception as exc:  # noqa: BLE001
        print(json.dumps({"error": f"{exc.__class__.__name__}: {exc}"}))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
