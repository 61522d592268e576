"""`nmt serve`: a loaded model behind a small HTTP JSON API (Starlette), with micro-batching.

    POST /translate     {"text": "one line"} or {"text": ["line", ...], "beam": 5, "nbest": 2, "align": true,
                         "split": "none"}
                        → {"translations": [{"text", "score", "nbest": [{"text", "score", "log_prob"}],
                                             "alignment": "0-0 1-2 ..." (when asked)}, ...]}
    POST /translate     {"text": "a whole document", "format": "markdown" | "html" | "srt" | "vtt", "beam": 5}
                        → {"document": "the same document, translated", "warnings": [...] (when any)}
    GET  /              → a small web page: type, see the translation (nmt/serve_page.html, no external assets)
    GET  /health        → {"status": "ok"}
    GET  /info          → the model's description (nmt.info.describe), and "server": its beam and limits
    GET  /openapi.json  → an OpenAPI 3.1 description of the above

Three rooms: `batcher` (one thread owns the model and translates queued requests in batches), `protocol`
(the request and response types, declared once with pydantic: they check requests and make the OpenAPI
document; the one-line errors) and `app` (the Starlette app that wires them: a malformed request is refused
before it reaches the queue). Errors are JSON: {"error": "..."}.

Nothing here prints; `create_app` needs Starlette and pydantic (pip install 'nmt[serve]')."""

from nmt.serve.app import create_app
from nmt.serve.batcher import Limits

__all__ = ["Limits", "create_app"]
