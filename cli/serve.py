"""`nmt serve -m MODEL`: translate over HTTP (a JSON API, see nmt/serve/), with concurrent requests
batched together. Needs Starlette and uvicorn: pip install 'nmt[serve]'."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path
from typing import Annotated

import typer
from nmt_cli.common import err, fail, handle_errors
from nmt_cli.settings import FROM_FLAGS, Settings, settings

from nmt.config import DecodeConfig, Limits

ModelOpt = Annotated[
    Path, typer.Option("--model", "-m", help="Model directory, or a run directory (meaning its best checkpoint).")
]


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, with TCP_NODELAY (which the connections it accepts inherit). asyncio sets it on
    the sockets it makes, but not on those from a socket made with proto 0, as socket.create_server makes
    them: without it, Nagle's algorithm and the client's delayed ACK added ~45 ms to every response here
    (one sentence alone: 118 ms through the server against 71 ms of translating)."""
    from nmt.errors import ConfigError

    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family)
    except OSError as e:
        reason = os.strerror(e.errno) if e.errno else str(e)
        raise ConfigError(f"cannot listen on {host}:{port} ({reason}); choose another --port or --host") from e
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


@handle_errors
@settings(Limits, (DecodeConfig, ("beam_size", "split")))
def serve(
    model: ModelOpt,
    host: Annotated[
        str, typer.Option(help="Address to listen on; 0.0.0.0 exposes the server to the network (put a proxy first).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
    settings: Settings = FROM_FLAGS,  # the request limits, --beam and --split (nmt_cli.settings)
    threads: Annotated[
        int | None, typer.Option(help="CPU threads for the model. [default: all cores]", show_default=False)
    ] = None,
) -> None:
    """Serve a model over HTTP: POST /translate {"text": ["line", ...]}, GET /health, /info, /openapi.json.

    Concurrent requests are translated together in batches; answers are those of `nmt translate` with the
    same --beam (a request's beam and nbest are at most --beam). SIGTERM or Ctrl-C stops taking requests,
    answers those in flight and exits 0. Listens on
    127.0.0.1: for the open internet, put a reverse proxy with TLS, authentication and rate limits in front.
    """
    try:
        import pydantic  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn
    except ImportError as e:
        raise fail("nmt serve needs Starlette and uvicorn: pip install 'nmt[serve]'") from e
    from nmt.api import load
    from nmt.errors import ConfigError
    from nmt.runtime import all_cores, keep_freed_memory
    from nmt.serve import create_app

    limits = settings.make(Limits)
    decode = settings.make(DecodeConfig)
    beam = decode.beam_size
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port {port}: must be from 0 to 65535")
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads {threads}: must be at least 1")
    sock = listen(host, port)  # before loading the model: a port in use is said at once, in one line
    # loaded on the batcher's own thread, which then runs it (see nmt.serve.batcher.Batcher)
    keep_freed_memory()  # process-wide settings are the command's to make, not the library's
    cores = threads or all_cores()
    app = create_app(
        lambda: load(
            model, beam_size=beam, nbest=beam, threads=cores, batch_tokens=limits.batch_tokens, split=decode.split
        ),
        limits,
    )
    # uvicorn handles SIGINT/SIGTERM (stop listening, answer the requests in flight, drain the batcher) and then
    # raises the signal again under the handlers found before it: these make that a clean exit 0.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    signal.signal(signal.SIGINT, lambda signum, frame: None)
    port = sock.getsockname()[1]  # the one given, or the one chosen for --port 0
    err.print(f"serving {model} on http://{host}:{port} (POST /translate, GET /health; Ctrl-C to stop)", markup=False)
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=None)
    uvicorn.Server(config).run(sockets=[sock])
    err.print("stopped", markup=False)
