"""The gRPC adapter: the management API, asking the core through actors/gateway.py.

server.py builds and starts it (servicer, auth, health, reflection); servicer.py handles the
calls; mapper.py turns the core's typed replies into protobuf; sse_pb2*.py are generated from
proto/sse.proto by `make proto` (committed; tests/unit/test_rpc_stubs.py keeps them current).
With several workers, peers.py serves each worker on its private Unix socket and asks the
others' (their replies as JSON, peer_codec.py) for actors/instance.py's InstanceGateway.
"""
