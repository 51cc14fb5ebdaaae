"""GET /openapi.json and GET /asyncapi.json: the HTTP API and the event stream as documents.

Both are files shipped in the package (web/api/), kept by hand next to the code they describe;
tests/e2e/test_contracts.py validates them against the official schemas and checks real
frames and routes against them.
"""
from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response

bp = Blueprint("contracts", __name__)

DOCUMENTS = Path(__file__).with_name("api")


def _document(name: str) -> Response:
    body = (DOCUMENTS / name).read_bytes()
    return Response(body, mimetype="application/json",
                    headers={"Cache-Control": "public, max-age=300"})


@bp.get("/openapi.json")
def openapi():
    return _document("openapi.json")


@bp.get("/asyncapi.json")
def asyncapi():
    return _document("asyncapi.json")
