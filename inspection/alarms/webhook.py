"""HTTP webhook output: POST the event as JSON, with a timeout and a bounded number of retries.

Standard library only (``urllib.request``). A retry is worth it only when the receiver may answer
differently next time: timeouts, refused connections, 5xx and 429. Any other 4xx is the receiver refusing
the request (bad URL, auth) and fails at once. The timeout applies to each socket operation of an attempt,
so ``timeout_s`` of the sink (attempts x timeout + backoffs) is the worst case of one ``notify``.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import urllib.error
import urllib.request

from inspection.alarms.base import AlarmError, Delivery, RejectEvent
from inspection.alarms.config import WebhookSinkConfig

log = logging.getLogger("steel.alarms")

USER_AGENT = "steel-inspection-daemon"


def _retryable_status(status: int) -> bool:
    return status >= 500 or status == 429


class WebhookSink:
    """POSTs each event to ``cfg.url``; raises :class:`AlarmError` after the last failed attempt."""

    def __init__(self, cfg: WebhookSinkConfig) -> None:
        self.name = cfg.name
        self.notify_ok = cfg.notify_ok
        self._cfg = cfg
        self._closed = threading.Event()
        handlers: list[urllib.request.BaseHandler] = []
        if not cfg.use_env_proxy:
            handlers.append(urllib.request.ProxyHandler({}))
        self._opener = urllib.request.build_opener(*handlers)
        self.attempts = 0  # total HTTP attempts made (for logs and tests)

    @property
    def timeout_s(self) -> float:
        cfg = self._cfg
        backoffs = sum(cfg.backoff_s * 2**i for i in range(cfg.retries))
        return (cfg.retries + 1) * cfg.timeout_s + backoffs

    def _post_once(self, body: bytes) -> tuple[bool, str]:
        """One attempt: ``(done, reason)``; ``done`` False with a reason worth retrying, raises otherwise."""
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **self._cfg.headers}
        request = urllib.request.Request(self._cfg.url, data=body, headers=headers, method="POST")
        self.attempts += 1
        try:
            with self._opener.open(request, timeout=self._cfg.timeout_s) as response:
                response.read()
                return True, ""
        except urllib.error.HTTPError as exc:
            exc.close()
            reason = f"HTTP {exc.code} {exc.reason}"
            if _retryable_status(exc.code):
                return False, reason
            raise AlarmError(f"{reason} from {self._cfg.url} (not retried)", sink=self.name) from exc
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError | socket.timeout):
                return False, f"timed out after {self._cfg.timeout_s:g}s"
            return False, f"cannot reach {self._cfg.url}: {exc.reason}"
        except TimeoutError:
            return False, f"timed out after {self._cfg.timeout_s:g}s"
        except (OSError, http.client.HTTPException) as exc:  # reset, refused, garbled reply
            return False, f"connection to {self._cfg.url} failed: {type(exc).__name__}: {exc}"

    def notify(self, event: RejectEvent) -> Delivery:
        if self._closed.is_set():
            raise AlarmError("sink is closed", sink=self.name)
        try:
            body = json.dumps(event.to_dict(), allow_nan=False).encode("utf-8")
        except ValueError as exc:
            raise AlarmError(f"event is not JSON-serialisable: {exc}", sink=self.name) from exc
        reason, attempts, made = "", self._cfg.retries + 1, 0
        while made < attempts:
            done, reason = self._post_once(body)
            made += 1
            if done:
                return "sent"
            log.warning("webhook %s attempt %d/%d failed: %s", self.name, made, attempts, reason)
            # wait before retrying; close() cuts the wait short so shutdown is not held up
            if made < attempts and self._closed.wait(self._cfg.backoff_s * 2 ** (made - 1)):
                break
        raise AlarmError(f"{reason} ({made} attempt{'s' if made > 1 else ''})", sink=self.name)

    def close(self) -> None:
        self._closed.set()
