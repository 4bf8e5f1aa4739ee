"""The ``alarms:`` section of the daemon's config: the reject rule and the list of outputs.

Validation is pure (no connection is tried here): a wrong URL scheme, an overlapping PLC register map or
two sinks with one name fail before the daemon starts, naming the key path.

Example::

    alarms:
      reject: {classes: [inclusion, scratches], min_length_m: 0.002}   # min_score: the model's
                                                                          # operating point unless set
      sinks:
        - {kind: log}
        - {kind: webhook, url: "http://mes.local/steel/ng", timeout_s: 2, retries: 2}
        - {kind: modbus, host: 10.0.0.20, device_id: 1, ack_timeout_s: 2}
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from datasets.model import NEU_DET_CLASSES
from datasets.settings import StrictModel

UNKNOWN_CLASS_CODE = 0xFFFF
"""PLC class code for a class missing from ``class_codes`` (0 means "no defect")."""


class RejectRule(StrictModel):
    """Which defects make a frame NG.

    Attributes:
        classes: class names that reject; ``None`` (default) means every class.
        min_score: a defect rejects only from this confidence on, whatever its class. ``None`` (default):
            the running model's operating point, the score threshold per class calibrated into its
            bundle (``steel calibrate-thresholds``); an explicit value wins over it.
        min_length_m: a defect rejects only from this length along the strip on; ``None`` = any length.
            A defect of unknown length counts as long enough.
    """

    classes: list[str] | None = None
    min_score: float | None = Field(None, ge=0.0, le=1.0)
    min_length_m: float | None = Field(None, gt=0.0)

    @field_validator("classes")
    @classmethod
    def _classes_named(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and any(not name for name in value):
            raise ValueError("class names must not be empty")
        return value


class LogSinkConfig(StrictModel):
    """One structured JSON log line per event on the ``steel.alarms`` logger."""

    kind: Literal["log"] = "log"
    name: str = Field("log", min_length=1, max_length=50)
    notify_ok: bool = False
    ng_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"
    ok_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class WebhookSinkConfig(StrictModel):
    """HTTP POST of the event as JSON.

    Attributes:
        timeout_s: per attempt (connect + response).
        retries: further attempts after a failed one (timeouts, connection errors, 5xx and 429 only: a
            4xx other than 429 is the receiver refusing the request and is not retried).
        backoff_s: wait before the first retry, doubled before each next one.
        use_env_proxy: go through ``$HTTP_PROXY``/``$HTTPS_PROXY``; off by default because the receiver
            is usually on the plant network and a host-wide proxy would not reach it.
    """

    kind: Literal["webhook"]
    name: str = Field("webhook", min_length=1, max_length=50)
    url: str
    timeout_s: float = Field(2.0, gt=0.0, le=60.0)
    retries: int = Field(2, ge=0, le=10)
    backoff_s: float = Field(0.2, ge=0.0, le=10.0)
    headers: dict[str, str] = Field(default_factory=dict)
    use_env_proxy: bool = False
    notify_ok: bool = False

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        return value


class ModbusRegisterMap(StrictModel):
    """Where the handshake lives in the PLC (0-based protocol addresses; see ``modbus_plc``'s table).

    Coils and holding registers are separate address spaces; within each no two signals may share an
    address. ``None`` switches a signal off, except ``results_ready`` and ``ack`` (the handshake itself)
    and at least one of ``ng_coil`` / ``result_register``.
    """

    trigger_coil: int | None = Field(0, ge=0, le=65535)
    results_ready_coil: int = Field(1, ge=0, le=65535)
    ng_coil: int | None = Field(2, ge=0, le=65535)
    ack_coil: int = Field(3, ge=0, le=65535)
    error_coil: int | None = Field(4, ge=0, le=65535)
    result_register: int | None = Field(0, ge=0, le=65535)
    defect_count_register: int | None = Field(1, ge=0, le=65535)
    class_code_register: int | None = Field(2, ge=0, le=65535)
    seq_register: int | None = Field(3, ge=0, le=65535)

    @model_validator(mode="after")
    def _distinct(self) -> ModbusRegisterMap:
        for space, names in (
            ("coil", ("trigger_coil", "results_ready_coil", "ng_coil", "ack_coil", "error_coil")),
            (
                "holding register",
                ("result_register", "defect_count_register", "class_code_register", "seq_register"),
            ),
        ):
            seen: dict[int, str] = {}
            for name in names:
                address = getattr(self, name)
                if address is None:
                    continue
                if address in seen:
                    raise ValueError(f"{name} and {seen[address]} share {space} address {address}")
                seen[address] = name
        if self.ng_coil is None and self.result_register is None:
            raise ValueError("set ng_coil or result_register (or both): the PLC must see the verdict")
        return self


def _default_class_codes() -> dict[str, int]:
    return {name: i + 1 for i, name in enumerate(NEU_DET_CLASSES)}


class ModbusSinkConfig(StrictModel):
    """A PLC over Modbus TCP with the Trigger / Results-Ready / OK-NG / Ack / Error handshake.

    Attributes:
        device_id: the Modbus unit id (``slave`` in older pymodbus).
        timeout_s: per Modbus request.
        ack_timeout_s: how long the PLC has to raise Ack after Results-Ready (and, before the next
            result, to drop it again).
        poll_interval_s: how often Ack is read while waiting.
        reconnect_backoff_s / reconnect_max_backoff_s: after a connection failure, events within the
            backoff fail at once (no connect attempt); the backoff doubles up to the maximum.
        require_trigger: only publish a result while the PLC holds the trigger coil (e.g. "line in
            auto"); otherwise the result is skipped, not failed. Needs ``registers.trigger_coil``.
        class_codes: class name -> code in the class-code register (0 = no defect; a class not listed
            gets 0xFFFF). Default: NEU-DET class order, 1-based.
    """

    kind: Literal["modbus"]
    name: str = Field("plc", min_length=1, max_length=50)
    host: str = Field(min_length=1)
    port: int = Field(502, ge=1, le=65535)
    device_id: int = Field(1, ge=0, le=255)
    timeout_s: float = Field(1.0, gt=0.0, le=30.0)
    ack_timeout_s: float = Field(2.0, gt=0.0, le=60.0)
    poll_interval_s: float = Field(0.02, gt=0.0, le=1.0)
    reconnect_backoff_s: float = Field(0.5, ge=0.0, le=60.0)
    reconnect_max_backoff_s: float = Field(30.0, ge=0.0, le=600.0)
    require_trigger: bool = False
    registers: ModbusRegisterMap = Field(default_factory=ModbusRegisterMap)
    class_codes: dict[str, int] = Field(default_factory=_default_class_codes)
    notify_ok: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> ModbusSinkConfig:
        if self.require_trigger and self.registers.trigger_coil is None:
            raise ValueError("require_trigger needs registers.trigger_coil")
        if self.reconnect_max_backoff_s < self.reconnect_backoff_s:
            raise ValueError("reconnect_max_backoff_s must be >= reconnect_backoff_s")
        for name, code in self.class_codes.items():
            if not 1 <= code <= 0xFFFE:
                raise ValueError(f"class_codes.{name}: {code} is not in 1..65534")
        return self


SinkConfig = Annotated[LogSinkConfig | WebhookSinkConfig | ModbusSinkConfig, Field(discriminator="kind")]


def _log_sink_only() -> list[SinkConfig]:
    """The default outputs: one JSON log line per event (no receiver to configure)."""
    return [LogSinkConfig()]


class AlarmsConfig(StrictModel):
    """The reject rule shared by every output, and the outputs."""

    reject: RejectRule = Field(default_factory=RejectRule)
    sinks: list[SinkConfig] = Field(default_factory=_log_sink_only)

    @model_validator(mode="after")
    def _unique_names(self) -> AlarmsConfig:
        seen: set[str] = set()
        for sink in self.sinks:
            if sink.name in seen:
                raise ValueError(f"two sinks are named {sink.name!r}; give each a unique name")
            seen.add(sink.name)
        return self
