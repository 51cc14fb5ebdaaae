"""The direction of the imports, read from the source (ast), lazy imports included.

    service  ->  web, rpc, actors          (the composition root)
    web, rpc ->  actors.gateway, actors.replies and the core's pure modules (EDGE_MAY_USE),
                 actors.auth among them
    actors.auth -> no actor: nothing of pykka or the actor modules
    actors   ->  nothing of web, rpc, service, flask or grpc
web and rpc never import each other. The one arrow back: web/serve.py's gunicorn hooks call
the composition root (service.main), inside the hook functions.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
GENERATED = {"rpc/sse_pb2.py", "rpc/sse_pb2_grpc.py"}
# What an adapter may use of the core: the door, its value types, and pure modules.
EDGE_MAY_USE = {
    "actors.gateway",     # the facade: Gateway, Stream, Lease, Unavailable, Refused
    "actors.replies",     # Stats, Health, ClientPage ... (frozen dataclasses)
    "actors.settings",    # configuration (its package: variables, checks, .env, warnings)
    "actors.filters",     # Filter.parse: request parameters
    "actors.framing",     # SSE frames (pure)
    "actors.resume",      # Last-Event-ID decoding (pure)
    "actors.logs",        # logging configuration (gunicorn's log config)
    "actors.shared_limits",   # the instance-wide limits file, made by gunicorn's master (pure)
    "actors.files",       # room for the files shared through maps (pure)
    "actors.auth",        # tokens, tickets, scopes, redaction, the Authenticator (no actors)
    "actors.prompt",      # waits woken ahead of the hub's callbacks (grpcio's, in rpc/)
}
HOOKS = {("web/serve.py", "service.main")}


def modules(package: str):
    for path in sorted((ROOT / package).rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative not in GENERATED:
            yield relative, path


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def top(name: str) -> str:
    return name.split(".")[0]


def core_module(name: str) -> str:
    return ".".join(name.split(".")[:2])


EDGE = [item for package in ("web", "rpc") for item in modules(package)]


@pytest.mark.parametrize("relative, path", EDGE, ids=[r for r, _ in EDGE])
def test_the_adapters_use_the_core_only_through_its_door(relative, path):
    own = relative.split("/")[0]
    other = {"web": "rpc", "rpc": "web"}[own]
    wrong = set()
    for name in imports(path):
        if top(name) in ("pykka", other):
            wrong.add(name)
        elif top(name) == "actors" and name != "actors" and core_module(name) not in EDGE_MAY_USE:
            wrong.add(name)
        elif top(name) == "service" and (relative, core_module(name)) not in HOOKS:
            wrong.add(name)
    assert not wrong, f"{relative} imports {sorted(wrong)}: go through actors.gateway"


CORE = list(modules("actors"))


@pytest.mark.parametrize("relative, path", CORE, ids=[r for r, _ in CORE])
def test_the_core_imports_no_adapter(relative, path):
    wrong = {name for name in imports(path)
             if top(name) in ("web", "rpc", "service", "flask", "grpc", "werkzeug", "gunicorn")}
    assert not wrong, f"{relative} imports {sorted(wrong)}"


AUTH = list(modules("actors/auth"))
ACTOR_MODULES = {"actors.broker", "actors.client", "actors.consumer", "actors.history",
                 "actors.limiter", "actors.replay", "actors.replay_queue", "actors.system",
                 "actors.warm_start", "actors.messages", "actors.gateway", "actors.outbox"}


@pytest.mark.parametrize("relative, path", AUTH, ids=[r for r, _ in AUTH])
def test_auth_holds_no_actor_so_the_edge_may_use_it(relative, path):
    wrong = {name for name in imports(path)
             if top(name) == "pykka" or core_module(name) in ACTOR_MODULES}
    assert not wrong, f"{relative} imports {sorted(wrong)}"


def test_the_rule_sees_a_forbidden_import(tmp_path):
    """The checks above would pass on nothing: prove they read what they claim to."""
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    import pykka\n    from actors.messages import Close\n"
                      "from actors import broker\n")
    assert {"pykka", "actors.messages", "actors.messages.Close", "actors.broker"} <= imports(sample)
    assert any(name == "actors.client" for name in imports(ROOT / "actors" / "gateway.py"))
