"""Typed decoding of whole blocks of records with msgspec (the fast path).

msgspec decodes a block of JSON records straight into typed structs, checking
every per-field rule of CONTRACT section 1 as it goes (types, bool is not an
int, ranges, timestamps with a zone, the strategy), without building a dict
per record; it is several times faster than parsing to dicts and validating
in Python. When a block holds a record that breaks a rule, the block is
decoded again record by record, and only the records that fail are handed,
as their raw text (:class:`Loose`), to the Python validators of ``records.py``,
which decide and word the reason. The Python rules are the reference: a
record the typed decoder refuses is accepted if the Python validator accepts
it (for example a timestamp with a space instead of ``T``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Annotated, Literal

import msgspec
import orjson

INT_MAX = 2_147_483_647  # counts are 32-bit per page-hour (docs/architecture.md)
Count = Annotated[int, msgspec.Meta(ge=0, le=INT_MAX)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]
Instant = Annotated[dt.datetime, msgspec.Meta(tz=True)]


class GaRecord(msgspec.Struct, gc=False):
    page: str
    hour: str  # parsed through the per-hour cache, which also truncates it
    users: Count
    sessions: Count
    views: Count
    bounces: Count
    engagement_seconds: NonNegative


class PsiRecord(msgspec.Struct, gc=False):
    page: str
    measured_at: Instant
    strategy: Literal["mobile", "desktop"]
    performance_score: Annotated[float, msgspec.Meta(ge=0, le=100)]
    lcp_ms: NonNegative | None = None
    fcp_ms: NonNegative | None = None
    inp_ms: NonNegative | None = None
    ttfb_ms: NonNegative | None = None
    cls: NonNegative | None = None


class Loose(msgspec.Struct, gc=False):
    """A syntactically valid record the typed decoder refused: its exact text."""

    raw: bytes

    def parsed(self) -> object:
        return orjson.loads(self.raw)


class Unreadable(msgspec.Struct, frozen=True, gc=False):
    """A record that is not valid JSON or breaks a bound (rejected as a record)."""

    reason: str
    raw: bytes = b""


class BlockSyntaxError(ValueError):
    """The block is not valid JSON (the reader then locates the break precisely)."""


def generic_decoder() -> Callable[[bytes], list]:
    """Any records, as dicts (for the seed format and unknown sources)."""

    def decode(array: bytes) -> list:
        try:
            return orjson.loads(array)
        except (orjson.JSONDecodeError, RecursionError, UnicodeDecodeError) as exc:
            raise BlockSyntaxError(str(exc)) from None

    return decode


def typed_decoder(record_type: type) -> Callable[[bytes], list]:
    """Decodes ``[record, ...]`` into structs, with :class:`Loose` for refused records."""
    whole = msgspec.json.Decoder(list[record_type])
    raws = msgspec.json.Decoder(list[msgspec.Raw])
    single = msgspec.json.Decoder(record_type)
    validation_error = msgspec.ValidationError
    decode_error = msgspec.DecodeError

    def decode(array: bytes) -> list:
        try:
            return whole.decode(array)
        except validation_error:
            pass
        except (decode_error, RecursionError, UnicodeDecodeError) as exc:
            raise BlockSyntaxError(str(exc)) from None
        try:
            items = raws.decode(array)
        except (decode_error, RecursionError, UnicodeDecodeError) as exc:
            raise BlockSyntaxError(str(exc)) from None
        records = []
        for raw in items:
            try:
                records.append(single.decode(raw))
            except (validation_error, decode_error, RecursionError, UnicodeDecodeError):
                text = bytes(raw)
                try:  # msgspec.Raw does not check the text's UTF-8, orjson does
                    orjson.loads(text)
                except (orjson.JSONDecodeError, RecursionError, UnicodeDecodeError) as exc:
                    records.append(Unreadable(f"invalid JSON: {exc}", text[:1024]))
                    continue
                records.append(Loose(text))
        return records

    return decode


def decoder_for(source: str | None, seed: bool) -> Callable[[bytes], list]:
    if seed or source is None:
        return generic_decoder()
    return typed_decoder(GaRecord if source == "ga" else PsiRecord)
