"""A loopback HTTP server for tests: a stand-in for the dataset hosts (no network needed)."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import threading


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; `cut` names files whose body stops halfway (Content-Length is full)."""

    cut: frozenset = frozenset()

    def log_message(self, *args):
        pass

    def copyfile(self, source, outputfile):
        if os.path.basename(self.path) in self.cut:
            outputfile.write(source.read()[: os.fstat(source.fileno()).st_size // 2])
            self.close_connection = True
            return
        super().copyfile(source, outputfile)


@contextlib.contextmanager
def serve(directory: str, cut: tuple[str, ...] = ()):
    """An HTTP server on 127.0.0.1 serving `directory`; yields its base URL."""
    handler = type("Handler", (_QuietHandler,), {"cut": frozenset(cut)})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=directory))
    server.handle_error = lambda *args: None  # a client closing early is not a test failure
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
