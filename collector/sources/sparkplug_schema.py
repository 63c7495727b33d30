"""Sparkplug B payloads: the part of the schema a host application reads.

Names, numbers and types follow Eclipse Tahu's `sparkplug_b.proto` (package
`org.eclipse.tahu.protobuf`), so the bytes are those of any Sparkplug B node. Only
`Payload` and the scalar values of `Payload.Metric` are declared: linemon maps metrics
to scalar signals, so property sets, data sets and templates are left to protobuf's
unknown-field handling (parsed past, never exposed).
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PACKAGE = "org.eclipse.tahu.protobuf"
REBIRTH = "Node Control/Rebirth"
BD_SEQ = "bdSeq"

# Sparkplug B data type codes (specification, section "Data Types").
INT8, INT16, INT32, INT64 = 1, 2, 3, 4
UINT8, UINT16, UINT32, UINT64 = 5, 6, 7, 8
FLOAT, DOUBLE, BOOLEAN, STRING, DATETIME, TEXT, UUID = 9, 10, 11, 12, 13, 14, 15
_SIGNED = {INT8: 32, INT16: 32, INT32: 32, INT64: 64}  # two's complement in uint fields

_F = descriptor_pb2.FieldDescriptorProto
# (name, number, type); value fields (number >= 10) form the oneof `value`
_METRIC = [
    ("name", 1, _F.TYPE_STRING), ("alias", 2, _F.TYPE_UINT64),
    ("timestamp", 3, _F.TYPE_UINT64), ("datatype", 4, _F.TYPE_UINT32),
    ("is_historical", 5, _F.TYPE_BOOL), ("is_transient", 6, _F.TYPE_BOOL),
    ("is_null", 7, _F.TYPE_BOOL),
    ("int_value", 10, _F.TYPE_UINT32), ("long_value", 11, _F.TYPE_UINT64),
    ("float_value", 12, _F.TYPE_FLOAT), ("double_value", 13, _F.TYPE_DOUBLE),
    ("boolean_value", 14, _F.TYPE_BOOL), ("string_value", 15, _F.TYPE_STRING),
    ("bytes_value", 16, _F.TYPE_BYTES),
]
_PAYLOAD = [
    ("timestamp", 1, _F.TYPE_UINT64), ("seq", 3, _F.TYPE_UINT64),
    ("uuid", 4, _F.TYPE_STRING), ("body", 5, _F.TYPE_BYTES),
]


def _build() -> Any:
    file = descriptor_pb2.FileDescriptorProto(
        name="linemon/sparkplug_b_host.proto", package=PACKAGE, syntax="proto2")
    payload = file.message_type.add(name="Payload")
    for name, number, kind in _PAYLOAD:
        payload.field.add(name=name, number=number, type=kind, label=_F.LABEL_OPTIONAL)
    payload.field.add(name="metrics", number=2, type=_F.TYPE_MESSAGE, label=_F.LABEL_REPEATED,
                      type_name=f".{PACKAGE}.Payload.Metric")
    metric = payload.nested_type.add(name="Metric")
    metric.oneof_decl.add(name="value")
    for name, number, kind in _METRIC:
        field = metric.field.add(name=name, number=number, type=kind, label=_F.LABEL_OPTIONAL)
        if number >= 10:
            field.oneof_index = 0
    pool = descriptor_pool.DescriptorPool()  # our own: never clashes with another copy
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.Payload"))


Payload = _build()
"""`Payload.FromString(data)` (raises `google.protobuf.message.DecodeError`), `Payload()`."""


def metric_value(metric: Any, datatype: int) -> bool | int | float | str | bytes | None:
    """The metric's value as Python, or None when it is null or not a scalar we read."""
    if metric.is_null:
        return None
    kind = metric.WhichOneof("value")
    if kind is None:
        return None
    value = getattr(metric, kind)
    bits = _SIGNED.get(datatype)
    if bits is not None and kind in ("int_value", "long_value") and value >= 1 << (bits - 1):
        value -= 1 << bits
    return value


def rebirth_request(now_ms: int) -> bytes:
    """An NCMD payload asking an edge node to publish its NBIRTH and DBIRTHs again."""
    payload = Payload(timestamp=now_ms)
    payload.metrics.add(name=REBIRTH, timestamp=now_ms, datatype=BOOLEAN, boolean_value=True)
    return payload.SerializeToString()
