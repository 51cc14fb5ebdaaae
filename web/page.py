"""GET /: the live demo page (plain HTML, CSS and JS shipped in the package; no CDN)."""
from __future__ import annotations

from flask import Blueprint, send_from_directory

bp = Blueprint("page", __name__, static_folder="static", static_url_path="/static")


@bp.get("/")
def index():
    return send_from_directory(bp.static_folder, "index.html", max_age=0)
