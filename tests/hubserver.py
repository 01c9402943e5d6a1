"""A local HTTP server that speaks the Hugging Face Hub's file-resolve protocol.

``HEAD`` and ``GET /{repo_id}/resolve/{revision}/{filename}`` answer with the
headers huggingface_hub reads (``X-Repo-Commit``, ``ETag``, ``Content-Length``)
and the file's bytes. Behaviour per file can be switched to reproduce the
failures a real download meets: a corrupted body, a truncated body, a server
error, or an unknown repository. Plain ``GET /raw/{filename}`` serves the same
files, standing in for the authors' fallback address.

It binds to 127.0.0.1 only, on a free port, and serves until stopped.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class HubState:
    """What the server holds and how it misbehaves, per file name."""

    repo_id: str = "hdrmerge/safnet"
    files: dict[str, bytes] = field(default_factory=dict)
    #: "ok", "corrupt" (one byte flipped), "truncate" (half the body, full
    #: Content-Length), "error" (HTTP 500 always; huggingface_hub retries a
    #: failing HEAD with backoff for ~25 s), "error-get" (HEAD fine, HTTP 500
    #: on the download itself), "missing" (HTTP 404), "stall" (half the body,
    #: then nothing until ``release`` is set: a download in progress).
    mode: dict[str, str] = field(default_factory=dict)
    release: threading.Event = field(default_factory=threading.Event)
    #: How many "stall" downloads have received their half body and wait.
    stalled: int = 0
    #: Paths requested, in order, for assertions.
    requests: list[str] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    state: HubState

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def _lookup(self) -> tuple[str, bytes] | None:
        path = unquote(self.path.split("?", 1)[0])
        self.state.requests.append(f"{self.command} {path}")
        prefix = f"/{self.state.repo_id}/resolve/"
        if path.startswith(prefix):
            _revision, _, name = path[len(prefix) :].partition("/")
        elif path.startswith("/raw/"):
            name = path[len("/raw/") :]
        else:
            return None
        return (name, self.state.files[name]) if name in self.state.files else None

    def _respond(self, with_body: bool) -> None:
        found = self._lookup()
        if found is None:
            self.send_response(404)
            self.send_header("X-Error-Code", "RepoNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        name, body = found
        mode = self.state.mode.get(name, "ok")
        if mode == "missing":
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if mode == "error" or (mode == "error-get" and with_body):
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        etag = hashlib.sha256(body).hexdigest()
        sent = body
        if mode == "corrupt":
            sent = body[:100] + bytes([body[100] ^ 0xFF]) + body[101:]
        self.send_response(200)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", f'"{etag}"')
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/octet-stream")
        if mode in ("truncate", "stall"):
            # Announce the full length, send half, then drop the connection.
            self.send_header("Connection", "close")
        self.end_headers()
        if not with_body:
            return
        if mode in ("truncate", "stall"):
            self.wfile.write(sent[: len(sent) // 2])
            self.wfile.flush()
            if mode == "stall":
                self.state.stalled += 1
                self.state.release.wait(120)
            self.close_connection = True
            return
        self.wfile.write(sent)

    def do_HEAD(self) -> None:  # noqa: N802 (http.server naming)
        self._respond(with_body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._respond(with_body=True)


class HubServer:
    """Context manager: ``with HubServer(state) as url: ...``."""

    def __init__(self, state: HubState) -> None:
        handler = type("Handler", (_Handler,), {"state": state})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> str:
        self.thread.start()
        return self.url

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
