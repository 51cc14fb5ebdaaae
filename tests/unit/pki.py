"""Throwaway TLS files made with the openssl command: a CA, a client certificate and keys, and
a server certificate for localhost."""
import os
import shutil
import subprocess

import pytest

KEY_PASSWORD = "s3cret-key-pw"
EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"]


def make_pki(directory) -> dict:
    """Paths: ca, cert, key, key_encrypted, other_key, combined (cert and key in one file),
    server_cert and server_key (self-signed, for localhost and 127.0.0.1)."""
    if shutil.which("openssl") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the openssl command is needed to make test certificates")
        pytest.skip("no openssl command")
    paths = {name: str(directory / f"{name}.pem")
             for name in ("ca", "ca_key", "cert", "key", "key_encrypted", "other_key", "combined",
                          "server_cert", "server_key")}

    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    run("req", "-x509", *EC, "-keyout", paths["ca_key"], "-out", paths["ca"], "-subj", "/CN=test-ca")
    run("req", "-x509", *EC, "-keyout", paths["key"], "-out", paths["cert"], "-subj", "/CN=client")
    run("req", "-x509", *EC, "-keyout", paths["server_key"], "-out", paths["server_cert"],
        "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1")
    run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-out", paths["other_key"])
    run("pkey", "-in", paths["key"], "-aes256", "-passout", f"pass:{KEY_PASSWORD}",
        "-out", paths["key_encrypted"])
    with open(paths["combined"], "w") as out:
        for name in ("cert", "key"):
            with open(paths[name]) as part:
                out.write(part.read())
    return paths
