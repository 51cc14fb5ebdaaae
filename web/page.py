"""GET /: the live page (plain HTML, CSS and JS shipped in the package under web/static/; no CDN).

The page and its files may load nothing from elsewhere (a strict Content-Security-Policy), so a
mistake in the page cannot turn event text into script. Every answer of this blueprint carries
those headers: the page is also /static/index.html, which must be no weaker than /.
"""
from __future__ import annotations

from flask import Blueprint, request, send_from_directory
from werkzeug.http import parse_range_header

bp = Blueprint("page", __name__, static_folder="static", static_url_path="/static")

PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; object-src 'none'; base-uri 'none'; "
                               "form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@bp.get("/")
def index():
    return send_from_directory(bp.static_folder, "index.html", max_age=0)


@bp.before_request
def one_range_or_none():
    """werkzeug answers several ranges, even satisfiable ones, with 416, and so a Range it
    cannot read or of another unit than bytes; a server should ignore those and send the whole
    file (RFC 9110 14.2: it sends no multipart/byteranges)."""
    header = request.environ.get("HTTP_RANGE")
    if header is None:
        return
    wanted = parse_range_header(header)
    if wanted is None or wanted.units != "bytes" or len(wanted.ranges) != 1:
        del request.environ["HTTP_RANGE"]


@bp.after_request
def page_headers(response):
    response.headers.update(PAGE_HEADERS)
    return response

