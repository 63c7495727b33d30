"""Sparkplug B payload schema, built into a protobuf descriptor pool at import time.

Declares the messages of the Sparkplug B specification's protobuf schema (Eclipse Tahu
`sparkplug_b/sparkplug_b.proto`, package `org.eclipse.tahu.protobuf`) with the same package,
message names, field numbers and types, so payloads are byte-compatible with any Sparkplug B
implementation. DataSet, Template and MetaData are not declared: a payload carrying them still
parses (proto2 keeps unknown fields) but their content is not exposed here.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PACKAGE = "org.eclipse.tahu.protobuf"

# Sparkplug B data type codes (Payload comment block in the specification).
INT32 = 3
INT64 = 4
UINT32 = 7
UINT64 = 8
DOUBLE = 10
BOOLEAN = 11
STRING = 12

_F = descriptor_pb2.FieldDescriptorProto
_OPTIONAL, _REPEATED = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
_TYPES = {
    "string": _F.TYPE_STRING,
    "bytes": _F.TYPE_BYTES,
    "bool": _F.TYPE_BOOL,
    "uint32": _F.TYPE_UINT32,
    "uint64": _F.TYPE_UINT64,
    "float": _F.TYPE_FLOAT,
    "double": _F.TYPE_DOUBLE,
}

# (name, number, type or message, label, oneof index or None)
_PROPERTY_VALUE = [
    ("type", 1, "uint32", _OPTIONAL, None),
    ("is_null", 2, "bool", _OPTIONAL, None),
    ("int_value", 3, "uint32", _OPTIONAL, 0),
    ("long_value", 4, "uint64", _OPTIONAL, 0),
    ("float_value", 5, "float", _OPTIONAL, 0),
    ("double_value", 6, "double", _OPTIONAL, 0),
    ("boolean_value", 7, "bool", _OPTIONAL, 0),
    ("string_value", 8, "string", _OPTIONAL, 0),
    ("propertyset_value", 9, ".Payload.PropertySet", _OPTIONAL, 0),
    ("propertysets_value", 10, ".Payload.PropertySetList", _OPTIONAL, 0),
]
_PROPERTY_SET = [
    ("keys", 1, "string", _REPEATED, None),
    ("values", 2, ".Payload.PropertyValue", _REPEATED, None),
]
_PROPERTY_SET_LIST = [("propertyset", 1, ".Payload.PropertySet", _REPEATED, None)]
_METRIC = [
    ("name", 1, "string", _OPTIONAL, None),
    ("alias", 2, "uint64", _OPTIONAL, None),
    ("timestamp", 3, "uint64", _OPTIONAL, None),
    ("datatype", 4, "uint32", _OPTIONAL, None),
    ("is_historical", 5, "bool", _OPTIONAL, None),
    ("is_transient", 6, "bool", _OPTIONAL, None),
    ("is_null", 7, "bool", _OPTIONAL, None),
    ("properties", 9, ".Payload.PropertySet", _OPTIONAL, None),
    ("int_value", 10, "uint32", _OPTIONAL, 0),
    ("long_value", 11, "uint64", _OPTIONAL, 0),
    ("float_value", 12, "float", _OPTIONAL, 0),
    ("double_value", 13, "double", _OPTIONAL, 0),
    ("boolean_value", 14, "bool", _OPTIONAL, 0),
    ("string_value", 15, "string", _OPTIONAL, 0),
    ("bytes_value", 16, "bytes", _OPTIONAL, 0),
]
_PAYLOAD = [
    ("timestamp", 1, "uint64", _OPTIONAL, None),
    ("metrics", 2, ".Payload.Metric", _REPEATED, None),
    ("seq", 3, "uint64", _OPTIONAL, None),
    ("uuid", 4, "string", _OPTIONAL, None),
    ("body", 5, "bytes", _OPTIONAL, None),
]


def _message(name: str, fields, nested=()) -> descriptor_pb2.DescriptorProto:
    msg = descriptor_pb2.DescriptorProto(name=name)
    if any(oneof is not None for *_, oneof in fields):
        msg.oneof_decl.add(name="value")
    for field_name, number, kind, label, oneof in fields:
        field = msg.field.add(name=field_name, number=number, label=label)
        if kind.startswith("."):
            field.type = _F.TYPE_MESSAGE
            field.type_name = f".{PACKAGE}{kind}"
        else:
            field.type = _TYPES[kind]
        if oneof is not None:
            field.oneof_index = oneof
    msg.nested_type.extend(nested)
    return msg


def _build_payload_class():
    file = descriptor_pb2.FileDescriptorProto(
        name="sparkplug_b.proto", package=PACKAGE, syntax="proto2"
    )
    file.message_type.append(
        _message(
            "Payload",
            _PAYLOAD,
            nested=[
                _message("PropertyValue", _PROPERTY_VALUE),
                _message("PropertySet", _PROPERTY_SET),
                _message("PropertySetList", _PROPERTY_SET_LIST),
                _message("Metric", _METRIC),
            ],
        )
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.Payload"))


Payload = _build_payload_class()
"""The Sparkplug B `Payload` message class: `Payload.FromString(data)`, `Payload()`."""
