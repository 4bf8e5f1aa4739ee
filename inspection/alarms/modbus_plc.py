"""PLC output over Modbus TCP: each frame's OK/NG handed over with the Results-Ready / Ack handshake.

The daemon is the Modbus client; the PLC (server) owns the memory. Default map (0-based protocol
addresses, all configurable in ``alarms.sinks[].registers``; ``None`` turns an optional signal off):

=====================  ==========  =====  ===========  =================================================
signal                 table       addr   written by   meaning
=====================  ==========  =====  ===========  =================================================
Trigger                coil        0      PLC          PLC wants results (e.g. line in auto); only read,
                                                       and only with ``require_trigger``
Results-Ready          coil        1      daemon       the result registers hold a new frame result
OK/NG                  coil        2      daemon       True = NG (reject), False = OK
Ack                    coil        3      PLC          PLC has read the result
Error                  coil        4      daemon       last handshake failed (no Ack); cleared by the
                                                       next acknowledged result
Result                 holding     0      daemon       1 = OK, 2 = NG (0 = nothing published yet)
Defect count           holding     1      daemon       number of rejecting defects (0 for OK, max 65535)
Class code             holding     2      daemon       class of the highest-scoring rejecting defect:
                                                       ``class_codes`` (NEU-DET order 1..6 by default),
                                                       0 = none, 0xFFFF = a class without a code
Sequence               holding     3      daemon       the frame's ``seq`` modulo 65536 (to match
                                                       results to frames on the PLC side)
=====================  ==========  =====  ===========  =================================================

One handshake per frame result (``notify``):

1. wait (polling) until the PLC has dropped Ack from the previous result;
2. write Result, Defect count, Class code, Sequence and OK/NG;
3. set Results-Ready;
4. poll Ack every ``poll_interval_s``: once it is True, clear Results-Ready (and Error if it was set); the
   PLC then drops Ack. If Ack does not come within ``ack_timeout_s``, set Error, clear Results-Ready and
   raise :class:`AlarmError` (``PLC did not acknowledge within ...s``).

A lost or refused connection raises :class:`AlarmError` and closes the client; the next event reconnects,
but events within the reconnect backoff (doubling up to a maximum) fail at once without touching the
network, so a dead PLC costs the line no time. After every (re)connect Results-Ready is cleared so a
half-finished handshake from before the loss is not mistaken for a new result.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from inspection.alarms.base import AlarmError, Delivery, RejectEvent
from inspection.alarms.config import UNKNOWN_CLASS_CODE, ModbusSinkConfig

try:
    from pymodbus.client import ModbusTcpClient
    from pymodbus.exceptions import ModbusException
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError("the modbus alarm sink needs pymodbus: pip install '.[plc]'") from exc

log = logging.getLogger("steel.alarms")

RESULT_OK = 1
RESULT_NG = 2
REQUESTS_PER_HANDSHAKE = 8  # upper bound of non-polling requests in one notify, for timeout_s


def _device_kwarg(client: Any) -> str:
    """pymodbus renamed the unit id keyword (``slave=`` before 3.10, ``device_id=`` since)."""
    params = inspect.signature(client.read_coils).parameters
    return "device_id" if "device_id" in params else "slave"


def _runs(values: dict[int, int]) -> list[tuple[int, list[int]]]:
    """Contiguous runs of ``{address: value}`` as ``(first address, values)``, so each is one request."""
    runs: list[tuple[int, list[int]]] = []
    for address in sorted(values):
        if runs and runs[-1][0] + len(runs[-1][1]) == address:
            runs[-1][1].append(values[address])
        else:
            runs.append((address, [values[address]]))
    return runs


class ModbusPlcSink:
    """Publishes every frame's verdict to a PLC over Modbus TCP (sync client, short timeouts).

    Args:
        cfg: the sink's config.
        client_factory: builds the pymodbus client (default :class:`ModbusTcpClient` with ``cfg``'s host,
            port and request timeout, no internal retries).
        clock: monotonic seconds, for the reconnect backoff (tests pass a fake clock).
    """

    def __init__(
        self,
        cfg: ModbusSinkConfig,
        *,
        client_factory: Callable[[], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = cfg.name
        self.notify_ok = cfg.notify_ok
        self._cfg = cfg
        self._map = cfg.registers
        self._factory = client_factory or self._default_client
        self._clock = clock
        self._client: Any = None
        self._unit: dict[str, int] = {}
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._backoff_s = cfg.reconnect_backoff_s
        self._retry_at = float("-inf")  # clock time before which no reconnect is tried
        self._last_error = ""
        self._error_set = False  # whether we left the Error coil set
        self.handshakes = 0  # acknowledged results (for logs and tests)

    @property
    def timeout_s(self) -> float:
        """Worst case of one ``notify``: two Ack waits plus the non-polling requests."""
        cfg = self._cfg
        return 2 * (cfg.ack_timeout_s + cfg.timeout_s) + REQUESTS_PER_HANDSHAKE * cfg.timeout_s

    def _default_client(self) -> Any:
        return ModbusTcpClient(self._cfg.host, port=self._cfg.port, timeout=self._cfg.timeout_s, retries=0)

    # --- connection -----------------------------------------------------------------------------

    def _where(self) -> str:
        return f"{self._cfg.host}:{self._cfg.port}"

    def _lost(self, reason: str, client: Any = None) -> AlarmError:
        """Close the client, schedule the next reconnect and return the error to raise."""
        for c in (client, self._client):
            if c is not None:
                with contextlib.suppress(Exception):  # closing a broken socket may fail; nothing to do
                    c.close()
        self._client = None
        self._last_error = reason
        self._retry_at = self._clock() + self._backoff_s
        log.warning(
            "PLC %s at %s: %s; reconnecting in %.1fs", self.name, self._where(), reason, self._backoff_s
        )
        self._backoff_s = min(self._backoff_s * 2, self._cfg.reconnect_max_backoff_s)  # 0 stays 0
        return AlarmError(reason, sink=self.name)

    def _connected(self) -> Any:
        if self._client is not None:
            return self._client
        wait_s = self._retry_at - self._clock()
        if wait_s > 0:
            raise AlarmError(
                f"PLC {self._where()} unreachable ({self._last_error}); next reconnect in {wait_s:.1f}s",
                sink=self.name,
            )
        client = self._factory()
        try:
            ok = client.connect()
        except (ModbusException, OSError) as exc:
            raise self._lost(f"cannot connect to PLC {self._where()}: {exc}", client) from exc
        if not ok:
            raise self._lost(f"cannot connect to PLC {self._where()}", client)
        self._client = client
        self._unit = {_device_kwarg(client): self._cfg.device_id}
        # A handshake cut by the loss may have left Results-Ready set: start clean.
        self._write_coil(self._map.results_ready_coil, False, "Results-Ready")
        self._backoff_s = self._cfg.reconnect_backoff_s
        log.info("PLC %s connected at %s", self.name, self._where())
        return client

    # --- Modbus requests --------------------------------------------------------------------------

    def _check(self, response: Any, what: str) -> Any:
        if response.isError():
            code = getattr(response, "exception_code", "?")
            raise AlarmError(f"PLC refused {what} (Modbus exception code {code})", sink=self.name)
        return response

    def _write_coil(self, address: int, value: bool, what: str) -> None:
        self._check(self._client.write_coil(address, value, **self._unit), f"writing {what} coil {address}")

    def _read_coil(self, address: int, what: str) -> bool:
        response = self._client.read_coils(address, count=1, **self._unit)
        return bool(self._check(response, f"reading {what} coil {address}").bits[0])

    def _write_registers(self, values: dict[int, int]) -> None:
        for first, run in _runs(values):
            if len(run) == 1:
                response = self._client.write_register(first, run[0], **self._unit)
            else:
                response = self._client.write_registers(first, run, **self._unit)
            self._check(response, f"writing holding registers {first}..{first + len(run) - 1}")

    def _wait_ack(self, want: bool) -> bool:
        """Poll Ack until it equals ``want``; False after ``ack_timeout_s``.

        Raises:
            AlarmError: the sink was closed while waiting (shutdown does not wait for a slow PLC).
        """
        deadline = time.monotonic() + self._cfg.ack_timeout_s
        while True:
            if self._read_coil(self._map.ack_coil, "Ack") == want:
                return True
            if time.monotonic() >= deadline:
                return False
            if self._closed.wait(self._cfg.poll_interval_s):
                raise AlarmError("sink closed while waiting for the PLC's Ack", sink=self.name)

    # --- handshake --------------------------------------------------------------------------------

    def _registers_for(self, event: RejectEvent) -> dict[int, int]:
        m = self._map
        top = event.defects[0].class_name if event.defects else None
        code = 0 if top is None else self._cfg.class_codes.get(top, UNKNOWN_CLASS_CODE)
        values = {
            m.result_register: RESULT_NG if event.verdict == "NG" else RESULT_OK,
            m.defect_count_register: min(len(event.defects), 0xFFFF),
            m.class_code_register: code,
            m.seq_register: event.seq & 0xFFFF,
        }
        return {address: value for address, value in values.items() if address is not None}

    def _fail(self, reason: str) -> AlarmError:
        """Raise Error and withdraw Results-Ready so a stale result is never read as new."""
        if self._map.error_coil is not None:
            self._write_coil(self._map.error_coil, True, "Error")
            self._error_set = True
        self._write_coil(self._map.results_ready_coil, False, "Results-Ready")
        return AlarmError(reason, sink=self.name)

    def _handshake(self, event: RejectEvent) -> Delivery:
        m = self._map
        trigger = m.trigger_coil
        if self._cfg.require_trigger and trigger is not None and not self._read_coil(trigger, "Trigger"):
            return "skipped"
        if not self._wait_ack(False):
            raise self._fail(
                f"PLC did not clear Ack within {self._cfg.ack_timeout_s:g}s of the previous result"
            )
        self._write_registers(self._registers_for(event))
        if m.ng_coil is not None:
            self._write_coil(m.ng_coil, event.verdict == "NG", "OK/NG")
        self._write_coil(m.results_ready_coil, True, "Results-Ready")
        if not self._wait_ack(True):
            raise self._fail(f"PLC did not acknowledge within {self._cfg.ack_timeout_s:g}s")
        self._write_coil(m.results_ready_coil, False, "Results-Ready")
        if self._error_set and m.error_coil is not None:
            self._write_coil(m.error_coil, False, "Error")
            self._error_set = False
        self.handshakes += 1
        return "acked"

    def notify(self, event: RejectEvent) -> Delivery:
        """Hand ``event``'s verdict to the PLC; ``"acked"`` once the PLC confirmed it.

        Returns ``"skipped"`` when ``require_trigger`` is set and the PLC's Trigger coil is off.

        Raises:
            AlarmError: no Ack in time (Error coil set), the PLC refused a request, the connection is
                down or was lost (reconnect on a later event, after the backoff).
        """
        with self._lock:
            if self._closed.is_set():
                raise AlarmError("sink is closed", sink=self.name)
            try:
                self._connected()
                return self._handshake(event)
            except (ModbusException, OSError) as exc:
                raise self._lost(f"connection to PLC {self._where()} lost: {exc}") from exc

    def close(self) -> None:
        self._closed.set()  # cuts an Ack wait short
        with self._lock:
            if self._client is not None:
                try:
                    self._client.close()
                finally:
                    self._client = None
