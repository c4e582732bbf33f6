"""One encoder and one typed decoder per direction, so a foreign message is an error, not a crash."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import msgspec

from protocol import messages as m

T = TypeVar("T")


class DecodeError(ValueError):
    """Bytes that are not a valid message for this socket."""


class Codec(Generic[T]):
    def __init__(self, type_: Any) -> None:
        self._enc = msgspec.msgpack.Encoder()
        self._dec = msgspec.msgpack.Decoder(type_)

    def encode(self, msg: Any) -> bytes:
        return self._enc.encode(msg)

    def decode(self, data: bytes | memoryview) -> T:
        try:
            return self._dec.decode(data)
        except Exception as e:  # noqa: BLE001 - msgspec raises more than its own errors
            # (a type tag that is not UTF-8 raises UnicodeDecodeError): any bad frame is one error.
            raise DecodeError(f"{type(e).__name__}: {e}") from None


def to_worker() -> Codec[m.CoordinatorToWorker]:
    return Codec(m.CoordinatorToWorker)


def to_coordinator() -> Codec[m.WorkerToCoordinator]:
    return Codec(m.WorkerToCoordinator)


def to_collector() -> Codec[m.CoordinatorToCollector]:
    return Codec(m.CoordinatorToCollector)


def from_collector() -> Codec[m.CollectorToCoordinator]:
    return Codec(m.CollectorToCoordinator)


def events() -> Codec[m.WorkerToCollector]:
    return Codec(m.WorkerToCollector)
