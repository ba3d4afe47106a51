"""The loopback router in front of the ``local`` target's blue/green slots.

Run it as ``python -m gendev_release.demo.router --port N --state FILE [--max-lifetime S]``.
Every request is forwarded to a slot that takes traffic in the target's ``state.json``
(``state["weights"]``, split by smooth weighted round robin; see :class:`SlotResolver`). The file
is re-read only when its identity (inode, mtime, size) changes; the target replaces it with
``os.replace``, so a switch is atomic for clients: each request goes wholly to the old slot or
wholly to the new one.

Responses carry ``X-Gendev-Slot: <slot>``; ``GET /__router/health`` answers 200 without
touching a slot; anything the router cannot forward answers 502 with a short text body.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

from gendev_release.demo.service import (
    SECURITY_HEADERS,
    QuietHandler,
    QuietServer,
    lifetime_argument,
    listen_and_serve,
    port_parser,
)

HEALTH_PATH = "/__router/health"
SLOT_HEADER = "X-Gendev-Slot"
UPSTREAM_TIMEOUT_SECONDS = 30.0
MAX_BODY_BYTES = 10 * 1024 * 1024
#: RFC 9110 7.6.1 hop-by-hop headers: they describe one connection, never the forwarded message.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
                        "te", "trailer", "trailers", "transfer-encoding", "upgrade"})
#: The router's own Server and Date headers replace the upstream's (never sent twice).
_REPLACED = frozenset({"content-length", "server", "date"})
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


class SlotResolver:
    """Which slot takes the next request, from the target's state file (re-read only when it is replaced).

    With one slot at 100 % (blue-green) every request goes there. With a split (``state["weights"]``,
    e.g. ``{"blue": 90, "green": 10}``: a canary or a rolling batch) requests are spread by smooth
    weighted round robin, so every 10 consecutive requests hold exactly 9 and 1: the split clients
    see is the one the target recorded, without randomness.
    """

    def __init__(self, state_file: Path) -> None:
        self.state_file = state_file
        self._key: tuple[int, int, int] | None = None
        self._choices: list[tuple[str, str, int]] = []
        self._reason = "no state read yet"
        self._current: dict[str, int] = {}
        self._lock = threading.Lock()

    def resolve(self) -> tuple[str | None, str | None, str]:
        """``(slot, url, reason)`` for the next request; slot and url are None when nothing can take traffic."""
        try:
            st = os.stat(self.state_file)
        except FileNotFoundError:
            return None, None, f"no active slot: {self.state_file} does not exist"
        # The inode changes with every os.replace, so a same-size rewrite within one mtime tick is seen too.
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        with self._lock:
            if key != self._key:
                self._choices, self._reason = self._read()
                self._current = {}
                self._key = key
            if not self._choices:
                return None, None, self._reason
            if len(self._choices) == 1:
                slot, url, _ = self._choices[0]
                return slot, url, "ok"
            total = sum(weight for _, _, weight in self._choices)
            for slot, _, weight in self._choices:
                self._current[slot] = self._current.get(slot, 0) + weight
            slot, url, _ = max(self._choices, key=lambda choice: self._current[choice[0]])
            self._current[slot] -= total
            return slot, url, "ok"

    def _read(self) -> tuple[list[tuple[str, str, int]], str]:
        try:
            state = json.loads(self.state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            return [], f"cannot read {self.state_file}: {exc}"
        if not isinstance(state, dict):
            return [], f"{self.state_file} does not hold a mapping"
        slots = state.get("slots") or {}
        weights = state.get("weights")
        if not isinstance(weights, dict):  # a state file from before weights: the active slot takes all
            active = state.get("active")
            weights = {active: 100} if active else {}
        choices = []
        for name, weight in sorted(weights.items()):
            slot = slots.get(name) if isinstance(slots, dict) else None
            url = slot.get("url") if isinstance(slot, dict) else None
            if not isinstance(weight, int) or weight <= 0:
                continue
            if not url:
                return [], f"slot {name} takes {weight} % but has no url"
            host = urlsplit(url).hostname
            if host not in _LOOPBACK:
                # The local target only ever runs slots on loopback; anything else is not ours to reach.
                return [], f"slot {name} url {url} is not on loopback"
            choices.append((str(name), str(url), weight))
        return choices, "ok" if choices else "no active slot"


class RouterHandler(QuietHandler):
    server: RouterServer

    def do_GET(self) -> None:
        self._forward("GET")

    def do_HEAD(self) -> None:
        self._forward("HEAD")

    def do_POST(self) -> None:
        self._forward("POST")

    def _own(self, status: int, text: str, slot: str | None = None) -> None:
        """A response the router writes itself (health, 502, 4xx)."""
        extra = SECURITY_HEADERS + (((SLOT_HEADER, slot),) if slot else ())
        self.send_body(status, (text + "\n").encode(), "text/plain; charset=utf-8", self.command == "HEAD", extra)

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers end with an empty line
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = self.headers.get("Content-Length")
        return self.rfile.read(int(length)) if length else None

    def _forward(self, method: str) -> None:
        slot, url, reason = self.server.resolver.resolve()
        if urlsplit(self.path).path == HEALTH_PATH:
            self._own(200, f"ok, active slot: {slot or 'none'}", slot)
            return
        declared = int(self.headers.get("Content-Length") or 0)
        if declared > MAX_BODY_BYTES:
            self.close_connection = True  # the body is not read, so the connection cannot be reused
            self._own(413, f"request body over {MAX_BODY_BYTES} bytes")
            return
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True
            self._own(400, "malformed request body")
            return
        if slot is None or url is None:
            self._own(502, reason)
            return
        upstream = urlsplit(url)
        headers = self._upstream_headers(upstream.netloc)
        if body is not None:
            headers["Content-Length"] = str(len(body))
        connection = http.client.HTTPConnection(upstream.hostname or "127.0.0.1", upstream.port or 80,
                                                timeout=UPSTREAM_TIMEOUT_SECONDS)
        try:
            connection.request(method, upstream.path.rstrip("/") + self.path, body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self._own(502, f"upstream slot {slot} at {url} failed: {type(exc).__name__}: {exc}", slot)
            return
        finally:
            connection.close()
        self._relay(response, payload, slot, method == "HEAD")

    def _upstream_headers(self, netloc: str) -> dict[str, str]:
        dropped = HOP_BY_HOP | _connection_tokens(self.headers.get_all("Connection") or [])
        headers = {name: value for name, value in self.headers.items()
                   if name.lower() not in dropped and name.lower() not in ("host", "content-length")}
        headers["Host"] = netloc
        headers["X-Forwarded-For"] = self.client_address[0]
        headers["X-Forwarded-Proto"] = "http"
        if self.headers.get("Host"):
            headers["X-Forwarded-Host"] = self.headers["Host"]
        return headers

    def _relay(self, response: http.client.HTTPResponse, payload: bytes, slot: str, head: bool) -> None:
        dropped = HOP_BY_HOP | _REPLACED | _connection_tokens(response.headers.get_all("Connection") or [])
        self.send_response(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in dropped:
                self.send_header(name, value)
        # A HEAD answer has no payload; its Content-Length describes what GET would return.
        length = response.getheader("Content-Length") if head else None
        self.send_header("Content-Length", length if length is not None else str(len(payload)))
        self.send_header(SLOT_HEADER, slot)
        self.end_headers()
        if not head:
            self.wfile.write(payload)


def _connection_tokens(values: list[str]) -> frozenset[str]:
    """Headers a ``Connection`` header names are hop-by-hop too (RFC 9110 7.6.1)."""
    return frozenset(token.strip().lower() for value in values for token in value.split(",") if token.strip())


class RouterServer(QuietServer):
    def __init__(self, port: int, state_file: Path) -> None:
        self.resolver = SlotResolver(state_file)
        super().__init__(("127.0.0.1", port), RouterHandler)


def main(argv: list[str] | None = None) -> int:
    parser = port_parser("python -m gendev_release.demo.router", __doc__.splitlines()[0])
    parser.add_argument("--state", type=Path, required=True, help="the local target's state.json")
    lifetime_argument(parser)
    args = parser.parse_args(argv)
    return listen_and_serve("router", args, lambda port: RouterServer(port, args.state.resolve()),
                            banner="router", where=f" for {args.state}")


if __name__ == "__main__":
    sys.exit(main())
