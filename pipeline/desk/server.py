"""Serving the desk with waitress (a threaded WSGI server), in the foreground or in a thread."""
from __future__ import annotations

import logging
import threading
from typing import Any

log = logging.getLogger(__name__)


class DeskServer:
    """A waitress server bound to ``host:port`` (port 0: a free one). ``run()`` serves in the calling
    thread until ``stop()`` (or KeyboardInterrupt / SystemExit in that thread); ``start()`` serves in
    a daemon thread."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 8765, *, threads: int = 4) -> None:
        from waitress.server import create_server

        self.app = app
        self.server = create_server(app, host=host, port=port, threads=threads, ident="intake-desk",
                                    clear_untrusted_proxy_headers=True, channel_timeout=60)
        self.host = host
        self.port = int(self.server.effective_port)  # type: ignore[union-attr]
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def run(self) -> None:
        try:
            self.server.run()
        finally:
            self._stopped.set()

    def serve_until_stopped(self, banner: str, farewell: str) -> None:
        """Serve in the foreground until Ctrl+C or SIGTERM (waitress's loop closes its sockets on
        SystemExit), saying so on the console before and after."""
        import signal

        def stop(signum: int, _frame: Any) -> None:
            raise SystemExit(0)

        signal.signal(signal.SIGTERM, stop)
        print(banner, flush=True)
        try:
            self.run()
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            self.server.task_dispatcher.shutdown(timeout=5)  # type: ignore[union-attr]
        print(farewell, flush=True)

    def start(self) -> DeskServer:
        self._thread = threading.Thread(target=self.run, name="intake-desk", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Close the listening socket and open connections (from the server's own loop), then stop
        the request threads."""
        from waitress import wasyncore

        server = self.server

        def close_all() -> None:
            wasyncore.close_all(server._map, ignore_all=True)  # type: ignore[union-attr]

        if not self._stopped.is_set():
            try:
                server.trigger.pull_trigger(close_all)  # type: ignore[union-attr]
            except OSError:  # the loop already ended
                pass
            if self._thread is not None:
                self._thread.join(timeout)
            else:
                self._stopped.wait(timeout)
        server.task_dispatcher.shutdown(timeout=timeout)  # type: ignore[union-attr]
        log.info("desk stopped")
