"""The Starlette app of `nmt serve`: routes, the body's size limit, and the wiring of the request checks
(`protocol`) to the worker thread (`batcher`); the app's shutdown drains the worker.

Knows nothing about how requests are batched or what a valid request holds: it reads bodies, asks `protocol`
for a checked request, hands its lines to the `Batcher` and sends back what comes. Starlette is imported when
an app is made, so that importing this module needs none."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import TYPE_CHECKING, cast

from nmt.documents import FORMATS
from nmt.errors import NmtError
from nmt.line_translator import LineTranslator, Translation
from nmt.serve.batcher import Batcher, Limits, Options, ShuttingDown
from nmt.serve.protocol import (
    Asked,
    Error,
    Health,
    RequestError,
    answer,
    document_answer,
    finite,
    openapi,
    parse_request,
)

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response

    from nmt.api import Loaded

    Endpoint = Callable[[Request], Awaitable[Response]]

DRAIN_FACTOR = 16  # an over-large body declared up to this many times the limit is read and dropped before the 413
# the page's own inline script and style, and requests to this server: nothing else
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}


def _can_align(translator: LineTranslator) -> bool:
    """Whether the engine gives word alignments (the PyTorch engine does; CTranslate2 does not)."""
    return translator.can_align


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, or a RequestError 413 if it is over max_bytes (by Content-Length or by what came)."""
    declared = request.headers.get("content-length")
    too_large = RequestError(413, f"the body is over {max_bytes:,} bytes; send fewer or shorter lines")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError as e:
            raise RequestError(400, f"Content-Length {declared!r} is not a number") from e
        if size > max_bytes:
            if size <= DRAIN_FACTOR * max_bytes:  # read and drop it, so the client reads the 413 on a live socket
                async for _ in request.stream():
                    pass
            raise too_large
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > DRAIN_FACTOR * max_bytes:
            raise too_large
        if total <= max_bytes:
            chunks.append(chunk)
    if total > max_bytes:  # read to its end (within reason) and dropped, as above
        raise too_large
    return b"".join(chunks)


def _error(status: int, message: str) -> JSONResponse:
    from starlette.responses import JSONResponse

    return JSONResponse(Error(error=message), status_code=status)


def _document(batcher: Batcher, loaded: Loaded, limits: Limits) -> Callable[[Asked], Awaitable[Response]]:
    """The /translate answer to a document: read and written on a thread of asyncio's pool, its pieces translated
    by the batcher (with other requests, `max_lines` at a time), with word alignments where the format places
    pieces by them and the engine gives them."""
    from starlette.responses import JSONResponse

    from nmt.api import ALIGNED, MARKUP, no_alignment_note
    from nmt.documents import translate_document

    can_align = _can_align(loaded.translator)

    def translated(asked: Asked) -> tuple[str, list[str]]:
        options = Options(asked.options.beam, can_align and asked.format in ALIGNED, asked.options.split)
        warnings = [no_alignment_note(asked.format)] if asked.format in MARKUP and not can_align else []

        def pieces(texts: list[str]) -> list[Translation]:
            step = limits.max_lines
            futures = [batcher.submit(texts[i : i + step], options) for i in range(0, len(texts), step)]
            return [found for future in futures for found in future.result()]

        lang = loaded.translator.src_lang  # the model's, for sentence boundaries
        text = translate_document(asked.lines[0], asked.format, pieces, lang=lang, warn=warnings.append)
        return text, warnings

    async def document(asked: Asked) -> Response:
        try:
            text, warnings = await asyncio.to_thread(translated, asked)
        except ShuttingDown as e:
            return _error(503, str(e))
        except NmtError as e:  # what the document needs and this server has not (pip install 'nmt[subtitles]')
            return _error(400, str(e))
        except Exception as e:
            return _error(500, f"the translation failed: {type(e).__name__}: {e}")
        return JSONResponse(document_answer(text, warnings))

    return document


def _endpoints(batcher: Batcher, loaded: Loaded, limits: Limits) -> dict[tuple[str, str], Endpoint]:
    """The server's routes, (method, path) → endpoint; every one is described in `protocol.openapi`."""
    from starlette.responses import HTMLResponse, JSONResponse

    max_beam = loaded.translator.config.beam_size
    can_align = _can_align(loaded.translator)
    server = {
        "beam": max_beam,
        "align": can_align,
        "max_lines": limits.max_lines,
        "max_body_bytes": limits.max_body_bytes,
        "formats": list(FORMATS),
    }
    info = {**finite(loaded.info), "server": server}
    spec = openapi(limits, max_beam, can_align)
    page = (resources.files("nmt") / "serve_page.html").read_text(encoding="utf-8")
    document = _document(batcher, loaded, limits)

    async def translate(request: Request) -> Response:
        try:
            body = await read_body(request, limits.max_body_bytes)
            asked = parse_request(body, limits.max_lines, max_beam, can_align)
        except RequestError as e:
            return _error(e.status, e.message)
        if asked.format != "text":
            return await document(asked)
        try:
            future = batcher.submit(asked.lines, asked.options)
        except ShuttingDown as e:
            return _error(503, str(e))
        try:
            found = await asyncio.wrap_future(future)
        except Exception as e:
            return _error(500, f"the translation failed: {type(e).__name__}: {e}")
        return JSONResponse(answer(found, asked.nbest))

    async def home(request: Request) -> Response:
        return HTMLResponse(page, headers=PAGE_HEADERS)

    async def health(request: Request) -> Response:
        return JSONResponse(Health(status="ok"))

    async def describe(request: Request) -> Response:
        return JSONResponse(info)

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(spec)

    return {
        ("GET", "/"): home,
        ("POST", "/translate"): translate,
        ("GET", "/health"): health,
        ("GET", "/info"): describe,
        ("GET", "/openapi.json"): openapi_json,
    }


def create_app(loaded: Loaded | Callable[[], Loaded], limits: Limits) -> Starlette:
    """The server's ASGI app. Its worker thread starts now (and, given a function, loads the model itself: see
    `Batcher`); the app's shutdown (lifespan) drains it."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.routing import Route

    made: list[Loaded] = []

    def make() -> LineTranslator:
        made.append(loaded() if callable(loaded) else loaded)
        return made[0].translator

    batcher = Batcher(make, limits)
    endpoints = _endpoints(batcher, made[0], limits)

    async def http_error(request: Request, exc: Exception) -> Response:
        e = cast(HTTPException, exc)
        return _error(e.status_code, f"{request.method} {request.url.path}: {e.detail}")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await asyncio.to_thread(batcher.close)

    app = Starlette(
        routes=[Route(path, endpoint, methods=[method]) for (method, path), endpoint in endpoints.items()],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
    app.state.batcher = batcher
    return app
