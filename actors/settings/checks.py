"""Settings valid one by one that do not fit together (a SASL mechanism without SASL, a key
without its certificate, an algorithm without its secret, two listeners on one port), and
files that must load as their clients will load them: `problems(values, from_files)`.
"""
from __future__ import annotations

from pathlib import Path

from actors.settings.variables import (
    ASYMMETRIC_ALGORITHMS, AUTH_ONLY, HASH_BYTES, MECHANISMS, MIN_AUTH_SECRET_BYTES, SECRETS,
    SYMMETRIC_ALGORITHMS, VARIABLES, one_of)


def problems(v: dict, from_files: frozenset | set = frozenset()) -> list[str]:
    """Every problem among parsed values (`v`: lower-case names; a value that failed to parse
    is absent and not checked); `from_files`: the secrets given as <NAME>_FILE."""
    return (_kafka_problems(v) + _grpc_tls_problems(v) + _auth_problems(v, from_files)
            + _port_problems(v))


# -- Kafka connection settings that must fit together ----------------------------------------

SASL_USERS = {"kafka_sasl_username": ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"),
              "kafka_sasl_password": ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"),
              "kafka_sasl_oauth_token_file": ("OAUTHBEARER",)}
TLS_FILES = ("kafka_ssl_ca_file", "kafka_ssl_cert_file", "kafka_ssl_key_file",
             "kafka_ssl_key_password")


def _kafka_problems(v: dict) -> list[str]:
    """Problems among parsed values; a value that failed to parse is absent and not checked."""
    return _sasl_problems(v) + _tls_problems(v)


def _sasl_problems(v: dict) -> list[str]:
    protocol, mechanism = v.get("kafka_security_protocol"), v.get("kafka_sasl_mechanism")
    if protocol is None or mechanism is None:
        return []
    if mechanism and not protocol.startswith("SASL_"):
        return [f"KAFKA_SASL_MECHANISM={mechanism} needs KAFKA_SECURITY_PROTOCOL SASL_SSL or "
                f"SASL_PLAINTEXT (it is {protocol})"]
    if not mechanism and protocol.startswith("SASL_"):
        return [f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_MECHANISM "
                f"({one_of(MECHANISMS)})"]
    found = []
    for key, mechanisms in SASL_USERS.items():
        name, value = key.upper(), v.get(key)
        if value and mechanism not in mechanisms:
            found.append(
                f"{name} is set but not used by KAFKA_SASL_MECHANISM={mechanism}: remove it or "
                f"change the mechanism" if mechanism else
                f"{name} is set but KAFKA_SECURITY_PROTOCOL={protocol} uses no SASL: remove it, "
                f"or set KAFKA_SECURITY_PROTOCOL=SASL_SSL and KAFKA_SASL_MECHANISM")
        elif value == "" and mechanism in mechanisms:
            also = f" (or {name}_FILE)" if name in SECRETS else ""
            found.append(f"KAFKA_SASL_MECHANISM={mechanism} needs {name}{also}")
    return found


def _tls_problems(v: dict) -> list[str]:
    protocol = v.get("kafka_security_protocol")
    ca, cert, key, password = (v.get(key) for key in TLS_FILES)
    if protocol in ("PLAINTEXT", "SASL_PLAINTEXT"):
        return [f"{key.upper()} is set but KAFKA_SECURITY_PROTOCOL={protocol} does not use TLS "
                f"(SSL or SASL_SSL do)" for key in TLS_FILES if v.get(key)]
    if key and cert == "":
        return ["KAFKA_SSL_KEY_FILE needs KAFKA_SSL_CERT_FILE (the client certificate)"]
    if password and cert == "":
        return ["KAFKA_SSL_KEY_PASSWORD needs KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE"]
    if cert and key == "" and b"PRIVATE KEY" not in Path(cert).read_bytes():
        return [f"KAFKA_SSL_CERT_FILE={cert!r} holds no private key: set KAFKA_SSL_KEY_FILE"]
    if protocol is None or None in (ca, cert, key, password):
        return []
    return _tls_load_problems(ca, cert, key, password)


def _tls_load_problems(ca, cert, key, password) -> list[str]:
    """Load the files as the Kafka client will, so a bad one stops the start, not every connect."""
    import ssl   # here, not at the top: gunicorn's master imports this module
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    found = []
    if ca:
        try:
            context.load_verify_locations(cafile=ca)
        except ssl.SSLError as exc:
            found.append(f"KAFKA_SSL_CA_FILE={ca!r}: not a PEM certificate file "
                         f"({exc.reason or 'a certificate in it cannot be read'})")
    if cert:
        try:   # a callable password: an encrypted key never prompts on the terminal
            context.load_cert_chain(cert, key or None, password=lambda: password.encode())
        except ssl.SSLError as exc:
            found.append(f"KAFKA_SSL_CERT_FILE={cert!r}, KAFKA_SSL_KEY_FILE={key!r}: "
                         f"{_key_trouble(exc, Path(key or cert).read_bytes())}")
    return found


def _grpc_tls_problems(v: dict) -> list[str]:
    """The management API's certificate and key, loaded as gRPC will load them at its start."""
    cert, key = v.get("grpc_tls_cert_file"), v.get("grpc_tls_key_file")
    client_ca = v.get("grpc_tls_client_ca_file")
    if client_ca and not (cert and key):
        return ["GRPC_TLS_CLIENT_CA_FILE needs GRPC_TLS_CERT_FILE and GRPC_TLS_KEY_FILE (client "
                "certificates are asked for in TLS only)"]
    if None in (cert, key) or cert == key == "":
        return []
    if not key:
        return ["GRPC_TLS_CERT_FILE needs GRPC_TLS_KEY_FILE (the certificate's private key)"]
    if not cert:
        return ["GRPC_TLS_KEY_FILE needs GRPC_TLS_CERT_FILE (the certificate it belongs to)"]
    named = f"GRPC_TLS_CERT_FILE={cert!r}, GRPC_TLS_KEY_FILE={key!r}"
    if b"ENCRYPTED" in Path(key).read_bytes():
        return [f"{named}: gRPC takes no key password: give it the key unencrypted (readable "
                f"by the service's user only)"]
    import ssl   # here, not at the top: gunicorn's master imports this module
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        return [f"{named}: {_key_trouble(exc, b'')}"]
    return _client_ca_problems(client_ca) if client_ca else []


def _client_ca_problems(path: str) -> list[str]:
    import ssl
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_verify_locations(cafile=path)
    except ssl.SSLError:
        pass
    if context.cert_store_stats()["x509"]:
        return []
    return [f"GRPC_TLS_CLIENT_CA_FILE={path!r}: not a PEM CA certificate (the certificate of the "
            f"CA that issues the clients' certificates)"]


def _key_trouble(exc, key_pem: bytes) -> str:
    if "KEY_VALUES_MISMATCH" in f"{exc.reason} {exc}".upper():
        return "the key does not belong to the certificate"
    if b"ENCRYPTED" in key_pem:   # OpenSSL 3 reports a bad password only as "PEM lib"
        return "cannot decrypt the key: wrong or missing KAFKA_SSL_KEY_PASSWORD"
    return "not a PEM certificate and key"


# -- listeners' ports ----------------------------------------------------------------------

# A listener's port and the ports bound before it: gunicorn binds HTTP_PORT and ADMIN_PORT, and
# a worker that finds GRPC_PORT taken retries it for ever (it takes it for another worker's).
PORTS = (("ADMIN_PORT", "the admin listener", ("HTTP_PORT",)),
         ("GRPC_PORT", "the management API", ("HTTP_PORT", "ADMIN_PORT")))


def _port_problems(v: dict) -> list[str]:
    found = []
    for name, listener, before in PORTS:
        port = v.get(name.lower())
        for other in before:
            if port and port == v.get(other.lower()):
                found.append(f"{name}={port} is {other} too: choose another port for "
                             f"{listener} (or 0 to turn it off)")
                break
    return found


# -- subscriber auth settings that must fit together -------------------------------------------

def _auth_problems(v: dict, from_files: frozenset | set = frozenset()) -> list[str]:
    """The variables the mode needs, and none it would ignore (`from_files`: the secrets
    given as <NAME>_FILE)."""
    mode, algorithms = v.get("auth_mode"), v.get("auth_jwt_algorithms")
    ignored = _ignored_by_mode(v, mode, from_files)
    if mode in (None, "off") or algorithms is None:
        return ignored
    if not algorithms:
        return ignored + [
            f"AUTH_MODE={mode} needs AUTH_JWT_ALGORITHMS: the algorithms your token issuer "
            f"signs with (HS256 with AUTH_JWT_SECRET, or RS256/ES256/EdDSA with "
            f"AUTH_JWT_PUBLIC_KEY_FILE or AUTH_JWKS_URL)"]
    return (ignored + _secret_problems(v, algorithms) + _key_problems(v, algorithms)
            + _ticket_problems(v))


def _ignored_by_mode(v: dict, mode: str | None, from_files=frozenset()) -> list[str]:
    """Auth variables set (not to their defaults) that the mode never reads: with AUTH_MODE
    forgotten, the gateway would serve every event to everyone."""
    if mode == "off":
        names = [f"{name}_FILE" if name in from_files else name
                 for name in AUTH_ONLY if _given(v, name)]
        if names:
            return [f"{', '.join(names)} set, but AUTH_MODE=off (the default) reads none of "
                    f"them and serves every event to every client: set AUTH_MODE=required "
                    f"(or optional), or remove them"]
    if mode == "required" and _given(v, "AUTH_ANONYMOUS_SCOPE"):
        return ["AUTH_ANONYMOUS_SCOPE is set, but AUTH_MODE=required answers every request "
                "without a credential 401: set AUTH_MODE=optional, or remove it"]
    return []


def _given(v: dict, name: str) -> bool:
    default, parse, _meaning = VARIABLES[name]
    key = name.lower()
    return key in v and v[key] != parse(default)


def _ticket_problems(v: dict) -> list[str]:
    if v.get("auth_ticket_other_secret") and v.get("auth_ticket_secret", b"") is None:
        return ["AUTH_TICKET_OTHER_SECRET needs AUTH_TICKET_SECRET (or AUTH_TICKET_SECRET_FILE), "
                "the secret this instance signs tickets with"]
    return []


def _secret_problems(v: dict, algorithms: tuple) -> list[str]:
    symmetric = [a for a in algorithms if a in SYMMETRIC_ALGORITHMS]
    secret = v.get("auth_jwt_secret", b"")    # absent: it failed to parse (already reported)
    if symmetric and secret is None:
        return [f"AUTH_JWT_ALGORITHMS={','.join(symmetric)} needs AUTH_JWT_SECRET (or "
                f"AUTH_JWT_SECRET_FILE) of at least {MIN_AUTH_SECRET_BYTES} bytes"]
    if not symmetric and secret:
        return ["AUTH_JWT_SECRET is set but AUTH_JWT_ALGORITHMS has no HS256/HS384/HS512: "
                "remove the secret or add the HS algorithm your issuer uses"]
    return [f"AUTH_JWT_ALGORITHMS={alg} needs AUTH_JWT_SECRET of at least {HASH_BYTES[alg]} "
            f"bytes (RFC 7518 3.2: as long as its hash); it has {len(secret)}"
            for alg in symmetric if secret and len(secret) < HASH_BYTES[alg]]


def _key_problems(v: dict, algorithms: tuple) -> list[str]:
    asymmetric = [a for a in algorithms if a in ASYMMETRIC_ALGORITHMS]
    key_file, jwks_url = v.get("auth_jwt_public_key_file"), v.get("auth_jwks_url")
    if key_file is None or jwks_url is None:
        return []
    if not asymmetric:
        return [f"{name} is set but AUTH_JWT_ALGORITHMS has no RS/PS/ES/EdDSA algorithm: "
                f"remove it or add the algorithm of its keys"
                for name, value in (("AUTH_JWT_PUBLIC_KEY_FILE", key_file),
                                    ("AUTH_JWKS_URL", jwks_url)) if value]
    if bool(key_file) == bool(jwks_url):
        return [f"AUTH_JWT_ALGORITHMS={','.join(asymmetric)} needs exactly one of "
                f"AUTH_JWT_PUBLIC_KEY_FILE or AUTH_JWKS_URL "
                f"({'both are set' if key_file else 'neither is set'})"]
    if key_file:
        return _pem_problems(key_file, asymmetric)
    return []


def _pem_problems(path: str, asymmetric: list) -> list[str]:
    """The key must load for every asymmetric algorithm accepted (an RSA key cannot check
    ES256), so a wrong key stops the start, not every request."""
    from jwt.algorithms import get_default_algorithms   # not at the top: gunicorn's master
    pem = Path(path).read_bytes()
    if b"PRIVATE KEY" in pem:       # whoever reads the gateway's files could make tokens
        return [f"AUTH_JWT_PUBLIC_KEY_FILE={path!r} holds a private key: give the gateway the "
                f"public key only (openssl pkey -in private.pem -pubout -out public.pem)"]
    for alg in asymmetric:
        algorithm = get_default_algorithms()[alg]
        try:
            key = algorithm.prepare_key(pem)
        except Exception as exc:   # noqa: BLE001 - PyJWT and cryptography raise many kinds
            return [f"AUTH_JWT_PUBLIC_KEY_FILE={path!r} is not a public key for {alg} "
                    f"({type(exc).__name__}); configure only the algorithms of that key"]
        short = algorithm.check_key_length(key)
        if short:               # PyJWT would refuse every token checked with it
            return [f"AUTH_JWT_PUBLIC_KEY_FILE={path!r} is too short for {alg}: {short}"]
    return []


