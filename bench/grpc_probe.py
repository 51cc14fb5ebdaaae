"""Optional: the latency of the gateway's gRPC GetStats while streams are busy.

    python bench/grpc_probe.py --check              exit 0 if rpc.sse_pb2_grpc imports
    python bench/grpc_probe.py --port P --seconds S prints {"count", "errors", "p50_ms", ...}

The stub and request classes are found by name (a `*Stub` with a `GetStats` method; the
request type from the service descriptor), so the probe does not depend on the exact proto.
"""
from __future__ import annotations

import argparse
import json
import os
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


def probe(port: int, seconds: float, interval: float = 0.02) -> dict:
    import grpc
    stub_class, request_class = load()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = stub_class(channel)
    metadata = []
    if os.environ.get("GRPC_AUTH_TOKEN"):
        metadata.append(("authorization", f"Bearer {os.environ['GRPC_AUTH_TOKEN']}"))
    grpc.channel_ready_future(channel).result(timeout=5)
    latencies, errors = [], 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        start = time.perf_counter()
        try:
            stub.GetStats(request_class(), timeout=5, metadata=metadata)
            latencies.append((time.perf_counter() - start) * 1000)
        except grpc.RpcError:
            errors += 1
        time.sleep(interval)
    channel.close()
    latencies.sort()

    def pct(q):
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))], 2) if latencies else None
    return {"count": len(latencies), "errors": errors, "p50_ms": pct(0.5), "p95_ms": pct(0.95),
            "p99_ms": pct(0.99), "max_ms": round(latencies[-1], 2) if latencies else None}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--port", type=int)
    parser.add_argument("--seconds", type=float, default=5)
    args = parser.parse_args()
    try:
        load()
    except Exception as exc:  # noqa: BLE001 - any failure means "n/a"
        print(json.dumps({"error": f"{exc.__class__.__name__}: {exc}"}))
        return 2
    if args.check:
        return 0
    try:
        print(json.dumps(probe(args.port, args.seconds)))
    except Exception as exc:  # noqa: BLE001
        print(json.dumps({"error": f"{exc.__class__.__name__}: {exc}"}))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
