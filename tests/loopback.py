"""A loopback HTTP server for tests: a stand-in for the dataset hosts (no network needed)."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import threading
import time

# How long a stalling handler holds its connection at most (the server's shutdown ends it
# sooner): a client without a working timeout then sees the transfer cut short, not a hang.
STALL_S = 20.0


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; GETs of some files misbehave (HEAD and the headers are always right).

    cut: the body stops halfway and the connection closes (Content-Length is full).
    stall: half the body, then nothing until the server stops (at most STALL_S seconds).
    stall_headers: nothing at all, not even the status line, until the server stops.
    trickle: one byte every 0.05 s (a host too slow to finish in time).
    """

    cut: frozenset = frozenset()
    stall: frozenset = frozenset()
    stall_headers: frozenset = frozenset()
    trickle: frozenset = frozenset()
    stopped: threading.Event

    def log_message(self, *args):
        pass

    def do_GET(self):
        if os.path.basename(self.path) in self.stall_headers:
            self.stopped.wait(STALL_S)
            self.close_connection = True
            return
        super().do_GET()

    def copyfile(self, source, outputfile):
        name = os.path.basename(self.path)
        if name in self.cut | self.stall:
            outputfile.write(source.read()[: os.fstat(source.fileno()).st_size // 2])
            outputfile.flush()
            if name in self.stall:
                self.stopped.wait(STALL_S)
            self.close_connection = True
            return
        if name in self.trickle:
            for byte in source.read():
                if self.stopped.is_set():
                    break
                outputfile.write(bytes([byte]))
                outputfile.flush()
                time.sleep(0.05)
            self.close_connection = True
            return
        super().copyfile(source, outputfile)


@contextlib.contextmanager
def running(handler):
    """An HTTP server on 127.0.0.1 answering with `handler` (a request handler class, or a
    partial of one); yields its base URL, and stops it on exit."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.handle_error = lambda *args: None  # a client closing early is not a test failure
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextlib.contextmanager
def serve(directory: str, cut: tuple[str, ...] = (), stall: tuple[str, ...] = (),
          stall_headers: tuple[str, ...] = (), trickle: tuple[str, ...] = ()):
    """An HTTP server on 127.0.0.1 serving `directory`; yields its base URL."""
    stopped = threading.Event()
    handler = type("Handler", (_QuietHandler,), {
        "cut": frozenset(cut), "stall": frozenset(stall),
        "stall_headers": frozenset(stall_headers), "trickle": frozenset(trickle),
        "stopped": stopped})
    with running(functools.partial(handler, directory=directory)) as url:
        try:
            yield url
        finally:
            stopped.set()  # (before the shutdown: a stalling handler lets go)
