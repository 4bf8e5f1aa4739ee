"""The PLC handshake against pymodbus' own Modbus TCP server on loopback, with a simulated PLC.

The server runs in a background event loop; a "PLC" thread watches Results-Ready in the server's memory,
snapshots the result registers and raises Ack, then drops Ack once Results-Ready is cleared, as a PLC
program would. No timing assertions: timeouts are exercised through what they make the sink do.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

pytest.importorskip("pymodbus")
from pymodbus.server import ModbusTcpServer  # noqa: E402
from pymodbus.simulator import DataType, SimData, SimDevice  # noqa: E402

from inspection.alarms import AlarmError, DefectSummary, ModbusSinkConfig, RejectEvent, RejectRule  # noqa: E402
from inspection.alarms.modbus_plc import RESULT_NG, RESULT_OK, ModbusPlcSink  # noqa: E402

DEVICE_ID = 1
N_COILS = 32  # a multiple of 16 (pymodbus packs coils into registers)
N_REGISTERS = 16
FC_COILS, FC_WRITE_COIL, FC_HOLDING = 1, 5, 3
T0 = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)

# the default register map (see inspection.alarms.modbus_plc)
TRIGGER, READY, NG, ACK, ERROR = 0, 1, 2, 3, 4
RESULT, COUNT, CLASS, SEQ = 0, 1, 2, 3


class PlcServer:
    """pymodbus' TCP server in its own event loop thread; its memory read and written like a PLC's."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="modbus-server", daemon=True)
        self.thread.start()
        self.server: Any = None
        self.port = 0

    def _call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def start(self, port: int = 0) -> None:
        """Listen on ``port`` (0: a free one) with fresh memory, as a rebooted PLC would have."""

        async def _start() -> Any:
            device = SimDevice(
                id=DEVICE_ID,
                simdata=(
                    [SimData(0, values=[False] * N_COILS, datatype=DataType.BITS)],
                    [SimData(0, values=[False] * 16, datatype=DataType.BITS)],
                    [SimData(0, count=N_REGISTERS, values=0, datatype=DataType.REGISTERS)],
                    [SimData(0, count=1, values=0, datatype=DataType.REGISTERS)],
                ),
            )
            server = ModbusTcpServer(device, address=("127.0.0.1", port))
            await server.serve_forever(background=True)
            return server

        self.server = self._call(_start())
        self.port = self.server.transport.sockets[0].getsockname()[1]

    def stop(self) -> None:
        if self.server is not None:
            self._call(self.server.shutdown())
            self.server = None

    def close(self) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def coil(self, address: int) -> bool:
        return bool(self._call(self.server.async_getValues(DEVICE_ID, FC_COILS, address, 1))[0])

    def set_coil(self, address: int, value: bool) -> None:
        self._call(self.server.async_setValues(DEVICE_ID, FC_WRITE_COIL, address, [value]))

    def registers(self, address: int, count: int) -> list[int]:
        return list(self._call(self.server.async_getValues(DEVICE_ID, FC_HOLDING, address, count)))


class SimulatedPlc(threading.Thread):
    """Acks every result: on Results-Ready it records what it read and sets Ack; it drops Ack once
    Results-Ready is cleared. ``answering`` off makes it ignore everything (a PLC in STOP)."""

    def __init__(self, plc: PlcServer) -> None:
        super().__init__(name="simulated-plc", daemon=True)
        self.plc = plc
        self.answering = threading.Event()
        self.answering.set()
        self.stop_event = threading.Event()
        self.seen: list[dict[str, Any]] = []
        self.ack_dropped = threading.Event()

    def run(self) -> None:
        while not self.stop_event.wait(0.005):
            if not self.answering.is_set() or self.plc.server is None:
                continue
            try:
                ready, ack = self.plc.coil(READY), self.plc.coil(ACK)
                if ready and not ack:
                    result, count, code, seq = self.plc.registers(RESULT, 4)
                    self.seen.append(
                        {"result": result, "count": count, "class": code, "seq": seq, "ng": self.plc.coil(NG)}
                    )
                    self.plc.set_coil(ACK, True)
                elif ack and not ready:
                    self.plc.set_coil(ACK, False)
                    self.ack_dropped.set()
            except Exception:  # the server is being restarted under us; look again next tick
                continue


@pytest.fixture
def plc() -> Iterator[PlcServer]:
    server = PlcServer()
    server.start()
    yield server
    server.close()


@pytest.fixture
def sim(plc: PlcServer) -> Iterator[SimulatedPlc]:
    thread = SimulatedPlc(plc)
    thread.start()
    yield thread
    thread.stop_event.set()
    thread.join(5)


def make_sink(port: int, **kwargs: Any) -> ModbusPlcSink:
    cfg = ModbusSinkConfig(
        kind="modbus",
        host="127.0.0.1",
        port=port,
        device_id=DEVICE_ID,
        timeout_s=2.0,
        ack_timeout_s=kwargs.pop("ack_timeout_s", 5.0),
        poll_interval_s=0.005,
        reconnect_backoff_s=kwargs.pop("reconnect_backoff_s", 0.0),
        **kwargs,
    )
    return ModbusPlcSink(cfg)


def event(seq: int, *defects: DefectSummary) -> RejectEvent:
    return RejectEvent.judge(
        source="strip-sim:a",
        seq=seq,
        line="line-1",
        coil="C-1",
        captured_at=T0,
        defects=defects,
        rule=RejectRule(min_score=0.5),
        model_version="v1",
    )


def wait_for(condition: Any, what: str) -> None:
    for _ in range(1000):
        if condition():
            return
        threading.Event().wait(0.005)
    raise AssertionError(f"timed out waiting for {what}")


def test_ok_and_ng_results_are_handed_over_with_the_ack_handshake(plc: PlcServer, sim: SimulatedPlc) -> None:
    sink = make_sink(plc.port)
    try:
        assert sink.notify(event(70_000)) == "acked"  # an OK frame: no defect
        ng = event(
            70_001,
            DefectSummary("scratches", 0.7),
            DefectSummary("inclusion", 0.95),
            DefectSummary("crazing", 0.2),  # under min_score: not a reason to reject
        )
        assert sink.notify(ng) == "acked"
        assert sink.notify(event(70_002, DefectSummary("rust", 0.9))) == "acked"  # a class without a code
    finally:
        sink.close()
    assert sim.seen == [
        {"result": RESULT_OK, "count": 0, "class": 0, "seq": 70_000 % 65536, "ng": False},
        {"result": RESULT_NG, "count": 2, "class": 2, "seq": 70_001 % 65536, "ng": True},  # inclusion = 2
        {"result": RESULT_NG, "count": 1, "class": 0xFFFF, "seq": 70_002 % 65536, "ng": True},
    ]
    assert sink.handshakes == 3
    assert plc.coil(READY) is False  # cleared after each Ack
    assert plc.coil(ERROR) is False
    wait_for(lambda: not plc.coil(ACK), "the PLC to drop Ack")


def test_no_ack_sets_error_and_raises_then_recovers(plc: PlcServer, sim: SimulatedPlc) -> None:
    sim.answering.clear()  # PLC in STOP
    sink = make_sink(plc.port, ack_timeout_s=0.3)
    try:
        with pytest.raises(AlarmError, match=r"PLC did not acknowledge within 0.3s") as err:
            sink.notify(event(1, DefectSummary("patches", 0.9)))
        assert err.value.sink == "plc"
        assert plc.coil(ERROR) is True
        assert plc.coil(READY) is False  # a stale result is withdrawn
        assert plc.registers(RESULT, 2) == [RESULT_NG, 1]  # it was written before Results-Ready
        sim.answering.set()  # PLC back in RUN
        assert sink.notify(event(2)) == "acked"
        assert plc.coil(ERROR) is False  # cleared by the next acknowledged result
    finally:
        sink.close()
    assert [s["seq"] for s in sim.seen] == [2]


def test_ack_left_set_by_the_plc_fails_the_next_result(plc: PlcServer) -> None:
    plc.set_coil(ACK, True)  # no PLC program drops it
    sink = make_sink(plc.port, ack_timeout_s=0.2)
    try:
        with pytest.raises(AlarmError, match="did not clear Ack"):
            sink.notify(event(1))
        assert plc.coil(ERROR) is True
        assert plc.coil(READY) is False
        assert plc.registers(SEQ, 1) == [0]  # nothing published
    finally:
        sink.close()


def test_server_down_gives_alarm_error_then_works_when_it_comes_back(
    plc: PlcServer, sim: SimulatedPlc
) -> None:
    port = plc.port
    plc.stop()
    sink = make_sink(port)
    try:
        with pytest.raises(AlarmError, match="cannot connect to PLC 127.0.0.1"):
            sink.notify(event(1))
        plc.start(port)
        assert sink.notify(event(2)) == "acked"
        # the connection drops (PLC reboot) between two results
        plc.stop()
        with pytest.raises(AlarmError, match="PLC 127.0.0.1"):
            sink.notify(event(3))
        plc.start(port)
        assert sink.notify(event(4)) == "acked"
    finally:
        sink.close()
    assert [s["seq"] for s in sim.seen] == [2, 4]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_reconnect_backoff_fails_fast_then_doubles(plc: PlcServer, sim: SimulatedPlc) -> None:
    port = plc.port
    plc.stop()
    clock = FakeClock()
    cfg = ModbusSinkConfig(
        kind="modbus",
        host="127.0.0.1",
        port=port,
        device_id=DEVICE_ID,
        ack_timeout_s=5.0,
        poll_interval_s=0.005,
        reconnect_backoff_s=10.0,
        reconnect_max_backoff_s=15.0,
    )
    sink = ModbusPlcSink(cfg, clock=clock)
    try:
        with pytest.raises(AlarmError, match="cannot connect"):
            sink.notify(event(1))
        plc.start(port)
        with pytest.raises(AlarmError, match=r"unreachable .*next reconnect in 10.0s"):
            sink.notify(event(2))  # within the backoff: no attempt, even though the PLC is back
        clock.now += 9.0
        with pytest.raises(AlarmError, match=r"next reconnect in 1.0s"):
            sink.notify(event(3))
        plc.stop()
        clock.now += 1.0
        with pytest.raises(AlarmError, match="cannot connect"):
            sink.notify(event(4))  # tried, failed again: the backoff doubled, capped at 15 s
        with pytest.raises(AlarmError, match=r"next reconnect in 15.0s"):
            sink.notify(event(5))
        plc.start(port)
        clock.now += 15.0
        assert sink.notify(event(6)) == "acked"
    finally:
        sink.close()
    assert [s["seq"] for s in sim.seen] == [6]


def test_require_trigger_skips_results_while_the_plc_holds_it_off(plc: PlcServer, sim: SimulatedPlc) -> None:
    sink = make_sink(plc.port, require_trigger=True)
    try:
        assert sink.notify(event(1, DefectSummary("crazing", 0.9))) == "skipped"
        assert plc.registers(RESULT, 4) == [0, 0, 0, 0]
        plc.set_coil(TRIGGER, True)
        assert sink.notify(event(2, DefectSummary("crazing", 0.9))) == "acked"
    finally:
        sink.close()
    assert sim.seen == [{"result": RESULT_NG, "count": 1, "class": 1, "seq": 2, "ng": True}]


def test_a_register_outside_the_plc_memory_is_a_refused_request(plc: PlcServer) -> None:
    sink = make_sink(plc.port, registers={"seq_register": N_REGISTERS + 100})
    try:
        with pytest.raises(AlarmError, match="PLC refused writing holding registers"):
            sink.notify(event(1))
    finally:
        sink.close()
    assert plc.coil(READY) is False  # never announced


def test_closed_sink_refuses_events(plc: PlcServer) -> None:
    sink = make_sink(plc.port)
    sink.close()
    sink.close()  # idempotent
    with pytest.raises(AlarmError, match="closed"):
        sink.notify(event(1))
