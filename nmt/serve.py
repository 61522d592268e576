"""`nmt serve`: a loaded model behind a small HTTP JSON API (Starlette), with micro-batching.

    POST /translate     {"text": "one line"} or {"text": ["line", ...], "beam": 5, "nbest": 2, "align": true}
                        → {"translations": [{"text", "score", "nbest": [{"text", "score", "log_prob"}],
                                             "alignment": "0-0 1-2 ..." (when asked)}, ...]}
    GET  /              → a small web page: type, see the translation (nmt/serve_page.html, no external assets)
    GET  /health        → {"status": "ok"}
    GET  /info          → the model's description (nmt.info.describe), and "server": its beam and limits
    GET  /openapi.json  → an OpenAPI 3 description of the above

One background thread owns the model (`Batcher`): requests are checked first (a malformed one never reaches
the queue), then put on a queue as (lines, options, future); the thread takes the first, waits up to
`max_wait_ms` for more with the same options (beam, alignment) within a line and token budget, translates all
their lines in one `translate_batch` call and gives each request its own slice. If that call fails, each
request of the batch is translated alone, so only the one whose lines fail gets the error (a 500); the others
get their answers. Errors are JSON: {"error": "..."}.

Nothing here prints; `create_app` needs Starlette (pip install 'nmt[serve]')."""

from __future__ import annotations

import asyncio
import json
import math
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, InvalidStateError
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, cast

from nmt.lines import LineTranslator, Translation

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from nmt.api import Loaded

FIELDS = ("text", "beam", "nbest", "align")  # the fields of a /translate request
DRAIN_FACTOR = 16  # an over-large body declared up to this many times the limit is read and dropped before the 413


@dataclass(frozen=True)
class Limits:
    """What one request may hold and how requests are batched."""

    max_lines: int = 256  # lines per request (more: 413); also the most lines of one batch, unless one request
    max_body_bytes: int = 1_000_000  # request body size (more: 413)
    max_wait_ms: float = 10.0  # how long the worker waits for more requests after the first of a batch
    batch_tokens: int = 4096  # source tokens of one batch (estimated: 1 + characters / 4 per line)


class RequestError(Exception):
    """A request the server refuses: an HTTP status and a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class ShuttingDown(RuntimeError):
    """The batcher is closed: no more requests are taken."""


@dataclass(frozen=True)
class Options:
    """How a request's lines are searched: the beam size (the n-best list holds up to that many) and whether
    each translation carries its word alignment. Requests batch together only with the same options."""

    beam: int
    align: bool = False


@dataclass
class _Job:
    lines: list[str]
    tokens: int
    future: Future[list[Translation]]
    options: Options | None  # None: the translator's own settings


@dataclass(frozen=True)
class Asked:
    """A checked /translate request."""

    lines: list[str]
    nbest: int
    options: Options


def _resolve(future: Future[list[Translation]], result: list[Translation] | BaseException) -> None:
    """Set a future's result or exception, unless its client went away (the future was cancelled)."""
    if future.done():
        return
    try:
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)
    except InvalidStateError:  # cancelled between the check and the set
        pass


class Batcher:
    """One worker thread that owns the translator and translates queued requests in batches.

    Given a function instead of a translator, the worker calls it first, so that the model is loaded and run
    on the same thread: torch's intra-op threads ran a translation 3.5x slower on a thread other than the one
    that first used torch (measured on 2 cores: 204 vs 59 ms a sentence; loaded and run on the worker: 61)."""

    def __init__(self, translator: LineTranslator | Callable[[], LineTranslator], limits: Limits) -> None:
        self.limits = limits
        self._factory = translator if callable(translator) else None
        self.translator: LineTranslator = cast(LineTranslator, None if callable(translator) else translator)
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._closed = False
        self._ready = threading.Event()
        self._load_error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="nmt-serve-batcher", daemon=True)
        self.batches = 0  # translate_batch calls made (for tests and monitoring)
        self._variants: dict[Options, LineTranslator] = {}  # the translator for other options (worker only)
        self._thread.start()
        self._ready.wait()
        if self._load_error is not None:
            raise self._load_error
        self.max_src_tokens = int(getattr(self.translator, "max_src_tokens", 1 << 30))

    def tokens(self, line: str) -> int:
        """A cheap estimate of a line's source tokens (BPE pieces run about four characters)."""
        return min(1 + len(line) // 4, self.max_src_tokens)

    def submit(self, lines: list[str], options: Options | None = None) -> Future[list[Translation]]:
        """Queue lines for translation (with `options`, else the translator's own settings); the future gives
        one Translation per line, in order."""
        future: Future[list[Translation]] = Future()
        with self._lock:
            if self._closed:
                raise ShuttingDown("the server is shutting down")
            self._queue.put(_Job(lines, sum(self.tokens(line) for line in lines), future, options))
        return future

    def _translator(self, options: Options | None) -> LineTranslator:
        """The translator for `options`: the loaded one with another beam, or with alignments (made once)."""
        base = self.translator
        if options is None or (options.beam == base.config.beam_size and options.align == base.align):
            return base
        if options not in self._variants:
            variant = base.with_config(beam_size=options.beam, nbest=options.beam)
            variant.align = options.align
            self._variants[options] = variant
        return self._variants[options]

    def close(self, timeout: float | None = None) -> None:
        """Take no more requests, translate those queued, and stop the worker."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(None)  # after every job: the worker drains the queue first
        self._thread.join(timeout)

    def _run(self) -> None:
        if self._factory is not None:
            try:
                self.translator = self._factory()
            except BaseException as e:  # said by __init__, on the caller's thread
                self._load_error = e
        self._ready.set()
        if self._load_error is not None:
            return
        limits = self.limits
        carried: _Job | None = None
        stopping = False
        while not stopping or carried is not None:
            job = carried if carried is not None else self._queue.get()
            carried = None
            if job is None:
                break
            batch, lines, tokens = [job], len(job.lines), job.tokens
            deadline = time.monotonic() + limits.max_wait_ms / 1000
            while not stopping and lines < limits.max_lines and tokens < limits.batch_tokens:
                remaining = deadline - time.monotonic()
                try:
                    following = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if following is None:
                    stopping = True
                elif (
                    following.options != job.options
                    or lines + len(following.lines) > limits.max_lines
                    or tokens + following.tokens > limits.batch_tokens
                ):
                    carried = following  # the first of the next batch
                    break
                else:
                    batch.append(following)
                    lines += len(following.lines)
                    tokens += following.tokens
            self._translate(batch)

    def _translate(self, batch: list[_Job]) -> None:
        lines = [line for job in batch for line in job.lines]
        try:
            translator = self._translator(batch[0].options)
        except Exception as e:
            for job in batch:
                _resolve(job.future, e)
            return
        try:
            self.batches += 1
            found = translator.translate_batch(lines)
        except Exception as e:
            if len(batch) == 1:
                _resolve(batch[0].future, e)
                return
            for job in batch:  # find the request at fault: each alone
                try:
                    self.batches += 1
                    _resolve(job.future, translator.translate_batch(job.lines))
                except Exception as alone:
                    _resolve(job.future, alone)
            return
        start = 0
        for job in batch:
            _resolve(job.future, found[start : start + len(job.lines)])
            start += len(job.lines)


def parse_request(body: bytes, max_lines: int, max_beam: int, can_align: bool = True) -> Asked:
    """The lines and options of a /translate body, or a RequestError (400, or 413 for too many lines).
    The beam is the server's (`max_beam`) unless the request asks for a smaller one."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RequestError(400, f"the body is not valid UTF-8 (byte {e.start}); send UTF-8 JSON") from None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise RequestError(400, f"the body is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise RequestError(400, 'the body must be a JSON object: {"text": "a line"} or {"text": ["line", ...]}')
    fields = cast(dict[str, Any], data)
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise RequestError(
            400, f"unknown field {', '.join(map(repr, unknown))}; the fields are {', '.join(map(repr, FIELDS))}"
        )
    if "text" not in fields:
        raise RequestError(400, "'text' is missing: give a string (one line) or a list of strings")
    value = fields["text"]
    if isinstance(value, str):
        lines = [value]
    elif isinstance(value, list):
        items = cast(list[Any], value)
        if not items:
            raise RequestError(400, "'text' is an empty list: give at least one line")
        if len(items) > max_lines:
            raise RequestError(413, f"{len(items):,} lines: at most {max_lines:,} per request; split them")
        bad = next((i for i, item in enumerate(items) if not isinstance(item, str)), None)
        if bad is not None:
            raise RequestError(400, f"'text'[{bad}] is {type(items[bad]).__name__}: every line must be a string")
        lines = cast(list[str], items)
    else:
        raise RequestError(400, f"'text' is {type(value).__name__}: give a string or a list of strings")
    for i, line in enumerate(lines):
        if "\n" in line or "\r" in line:
            where = "'text'" if isinstance(value, str) else f"'text'[{i}]"
            raise RequestError(400, f"{where} holds a line break: send one line per list item")
    beam = _integer(fields, "beam", max_beam)
    if not 1 <= beam <= max_beam:
        raise RequestError(400, f"'beam' {beam}: must be from 1 to the server's --beam, {max_beam}")
    nbest = _integer(fields, "nbest", 1)
    if not 1 <= nbest <= beam:
        raise RequestError(400, f"'nbest' {nbest}: must be from 1 to the beam size, {beam}")
    align = fields.get("align", False)
    if not isinstance(align, bool):
        raise RequestError(400, f"'align' is {type(align).__name__}: give true or false")
    if align and not can_align:
        raise RequestError(400, "'align': this server's engine (CTranslate2) gives no attention to align with")
    return Asked(lines, nbest, Options(beam, align))


def _integer(fields: dict[str, Any], name: str, default: int) -> int:
    value = fields.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise RequestError(400, f"'{name}' is {type(value).__name__}: give an integer")
    return value


def _finite(value: Any) -> Any:
    """JSON-safe: non-finite floats become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in cast(dict[Any, Any], value).items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in cast(list[Any], value)]
    return value


def answer(translations: list[Translation], nbest: int) -> dict[str, Any]:
    """The /translate response body."""

    def one(t: Translation) -> dict[str, Any]:
        found: dict[str, Any] = {
            "text": t.text,
            "score": _finite(t.score),
            "nbest": [
                {"text": text, "score": _finite(score), "log_prob": _finite(log_prob)}
                for text, score, log_prob in t.nbest[:nbest]
            ],
        }
        if t.alignment is not None:
            found["alignment"] = t.alignment
        return found

    return {"translations": [one(t) for t in translations]}


def openapi(limits: Limits, beam: int) -> dict[str, Any]:
    """A hand-written OpenAPI 3 description of the server."""
    error = {"$ref": "#/components/schemas/Error"}

    def reply(description: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": schema}}}

    errors = {
        "400": reply("Invalid JSON or UTF-8, wrong types, unknown fields, an empty list", error),
        "413": reply(f"More than {limits.max_lines} lines, or a body over {limits.max_body_bytes} bytes", error),
        "500": reply("The translation failed", error),
        "503": reply("The server is shutting down", error),
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "nmt serve", "version": "1", "description": "Translate lines with an nmt model."},
        "paths": {
            "/translate": {
                "post": {
                    "summary": "Translate one line or a list of lines; one translation per line, in order.",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Request"}}},
                    },
                    "responses": {
                        "200": reply("The translations", {"$ref": "#/components/schemas/Translations"}),
                        **errors,
                    },
                }
            },
            "/": {
                "get": {
                    "summary": "A web page to translate with (HTML)",
                    "responses": {"200": {"description": "The page", "content": {"text/html": {}}}},
                }
            },
            "/health": {
                "get": {
                    "summary": "Liveness",
                    "responses": {
                        "200": reply("Serving", {"type": "object", "properties": {"status": {"type": "string"}}})
                    },
                }
            },
            "/info": {
                "get": {
                    "summary": "The model's description (as `nmt info --json`)",
                    "responses": {"200": reply("The description", {"type": "object"})},
                }
            },
            "/openapi.json": {
                "get": {"summary": "This document", "responses": {"200": reply("OpenAPI 3", {"type": "object"})}}
            },
        },
        "components": {
            "schemas": {
                "Request": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["text"],
                    "properties": {
                        "text": {
                            "oneOf": [
                                {"type": "string"},
                                {
                                    "type": "array",
                                    "items": {"type": "string"},
                                    "minItems": 1,
                                    "maxItems": limits.max_lines,
                                },
                            ],
                            "description": "One line, or a list of lines (no line breaks inside a line).",
                        },
                        "beam": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": beam,
                            "default": beam,
                            "description": "Beam size (1: greedy search); at most the server's --beam.",
                        },
                        "nbest": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": beam,
                            "default": 1,
                            "description": "How many of the best translations to list; at most the beam.",
                        },
                        "align": {
                            "type": "boolean",
                            "default": False,
                            "description": "Add the source-target word alignment (Pharaoh 'i-j', 0-based words) "
                            "of the best translation; PyTorch engine only.",
                        },
                    },
                },
                "Hypothesis": {
                    "type": "object",
                    "properties": {
                        "text": {"type": "string"},
                        "score": {"type": "number", "description": "The search score (length-normalised)"},
                        "log_prob": {"type": "number"},
                    },
                },
                "Translations": {
                    "type": "object",
                    "properties": {
                        "translations": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "text": {"type": "string"},
                                    "score": {"type": "number"},
                                    "nbest": {"type": "array", "items": {"$ref": "#/components/schemas/Hypothesis"}},
                                    "alignment": {"type": "string", "description": "When asked: 'i-j' pairs"},
                                },
                            },
                        }
                    },
                },
                "Error": {"type": "object", "properties": {"error": {"type": "string"}}},
            }
        },
    }


def _can_align(translator: LineTranslator) -> bool:
    """Whether the engine gives word alignments (the PyTorch engine does; CTranslate2 does not)."""
    return type(translator).alignment is not LineTranslator.alignment


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, or a RequestError 413 if it is over max_bytes (by Content-Length or by what came)."""
    declared = request.headers.get("content-length")
    too_large = RequestError(413, f"the body is over {max_bytes:,} bytes; send fewer or shorter lines")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise RequestError(400, f"Content-Length {declared!r} is not a number") from None
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


def create_app(loaded: Loaded | Callable[[], Loaded], limits: Limits) -> Starlette:
    """The server's ASGI app. Its worker thread starts now (and, given a function, loads the model itself: see
    `Batcher`); the app's shutdown (lifespan) drains it."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Route

    made: list[Loaded] = []

    def make() -> LineTranslator:
        made.append(loaded() if callable(loaded) else loaded)
        return made[0].translator

    batcher = Batcher(make, limits)
    translator = made[0].translator
    max_beam = translator.config.beam_size
    can_align = _can_align(translator)
    info = {
        **_finite(made[0].info),
        "server": {
            "beam": max_beam,
            "align": can_align,
            "max_lines": limits.max_lines,
            "max_body_bytes": limits.max_body_bytes,
        },
    }
    spec = openapi(limits, max_beam)
    page = (resources.files("nmt") / "serve_page.html").read_text(encoding="utf-8")
    # the page's own inline script and style, and requests to this server: nothing else
    page_headers = {
        "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    }

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    async def translate(request: Request) -> Response:
        try:
            body = await read_body(request, limits.max_body_bytes)
            asked = parse_request(body, limits.max_lines, max_beam, can_align)
        except RequestError as e:
            return error(e.status, e.message)
        try:
            future = batcher.submit(asked.lines, asked.options)
        except ShuttingDown as e:
            return error(503, str(e))
        try:
            found = await asyncio.wrap_future(future)
        except Exception as e:
            return error(500, f"the translation failed: {type(e).__name__}: {e}")
        return JSONResponse(answer(found, asked.nbest))

    async def home(request: Request) -> Response:
        return HTMLResponse(page, headers=page_headers)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def describe(request: Request) -> Response:
        return JSONResponse(info)

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(spec)

    async def http_error(request: Request, exc: Exception) -> Response:
        e = cast(HTTPException, exc)
        return error(e.status_code, f"{request.method} {request.url.path}: {e.detail}")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await asyncio.to_thread(batcher.close)

    app = Starlette(
        routes=[
            Route("/", home, methods=["GET"]),
            Route("/translate", translate, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/info", describe, methods=["GET"]),
            Route("/openapi.json", openapi_json, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
    app.state.batcher = batcher
    return app
