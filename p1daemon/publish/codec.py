"""How a reading's JSON is stored in the outbox: zlib with a fixed preset dictionary.

A reading is about 1 KB of JSON whose keys are the same every time. Against a preset
dictionary of those keys zlib brings it to about 220 bytes, so the default 64 MB outbox
holds days of readings instead of hours, and an outage writes a quarter of the bytes to
the SD card. Rows are compressed one by one (never against each other), so a damaged or
dropped row cannot take its neighbours with it.

The first byte names the format. Stored rows outlive the program that wrote them, so a
format, once released, is never changed: a better dictionary gets a new tag.
"""

from __future__ import annotations

import zlib

_RAW = b"\x00"
_ZLIB_DICT_V1 = b"\x01"

_DICT_V1 = (
    b'"kind":"gas","equipment_id":"","value":,"unit":"m3","timestamp":"20","valve":null}],'
    b'"mbus":[{"channel":1,"device_type":3,'
    b'"capacity":{"average_demand_kw":,"month_max_kw":,"month_max_at":"20","history":'
    b'[{"month":"20","at":"20","max_kw":'
    b'"meter_replaced":true,"role":"secondary","ean":"8716'
    b'{"equipment_id":null,"header":"","manufacturer":null,"dsmr_version":"5.0",'
    b'"version_code":"50","timestamp":"2026-01-01T00:00:00+01:00","tariff":1,'
    b'"import":{"t1_kwh":null,"t2_kwh":null,"t3_kwh":null,"t4_kwh":null,"total_kwh":null,'
    b'"power_kw":0.0,"l1_kw":0.0,"l2_kw":0.0,"l3_kw":0.0},'
    b'"export":{"t1_kwh":0.0,"t2_kwh":0.0,"t3_kwh":null,"t4_kwh":null,"total_kwh":0.0,'
    b'"power_kw":0.0,"l1_kw":0.0,"l2_kw":0.0,"l3_kw":0.0},'
    b'"voltage":{"l1_v":230.0,"l2_v":230.0,"l3_v":230.0},'
    b'"current":{"l1_a":0.0,"l2_a":0.0,"l3_a":0.0},'
    b'"voltage_sags":{"l1":0,"l2":0,"l3":0},"voltage_swells":{"l1":0,"l2":0,"l3":0},'
    b'"power_failures":{"short":0,"long":0,"log":[{"end":"20","duration_s":}]},'
    b'"message":null,"message_code":null,"breaker_state":null,"limiter":null,'
    b'"fuse_threshold_a":null,"mbus":[],"capacity":null,"other":{},"unparsed":[],'
    b'"meter":"","role":"primary","ean":null,"meter_replaced":false,'
    b'"received_at":"2026-01-01T00:00:00.000000Z"}'
)


class PayloadFormatError(ValueError):
    """A stored row this version cannot read (damaged, or written by a newer version)."""


def encode(payload: bytes) -> bytes:
    compressor = zlib.compressobj(6, zdict=_DICT_V1)
    packed = compressor.compress(payload) + compressor.flush()
    if len(packed) >= len(payload):  # incompressible: keep it as it is
        return _RAW + payload
    return _ZLIB_DICT_V1 + packed


def decode(stored: bytes) -> bytes:
    tag, body = stored[:1], stored[1:]
    if tag == _RAW:
        return body
    if tag == _ZLIB_DICT_V1:
        try:
            decompressor = zlib.decompressobj(zdict=_DICT_V1)
            return decompressor.decompress(body) + decompressor.flush()
        except zlib.error as exc:
            raise PayloadFormatError(f"damaged row: {exc}") from exc
    raise PayloadFormatError(f"unknown row format {tag!r}")
