"""Random and mutated files through the readers (and a sample through the real database):
nothing crashes, memory stays bounded, and every valid record before and after a bad one
is accounted for (read at its position, or rejected), never silently gone. Fixed seeds,
so a failure replays exactly."""

from __future__ import annotations

import io
import json
import random
import resource

import msgspec
import pytest
from django.db import connection

from pipeline.ingest import ingest_files
from pipeline.ingest.readers import FileBreak, Limits, detect_layout, read_chunks
from pipeline.ingest.schemas import GaRecord, Loose, Unreadable, typed_decoder

LIMITS = Limits(record_bytes=4096, depth=8)  # small, so that fuzzed records reach them
# Tokens JSON does not allow, put in place of one value: the record is bad, the array is not.
BAD_TOKENS = [b"NaN", b"-Infinity", b"\xff", b"\xc3(", b"01", b"tru", b"'x'", b"0x1f", b"+1"]
# Bytes that can change the structure itself.
STRUCTURAL = [*b'{}[],:"\\\n ', 0xFF, 0x00]
SEEDS = range(400)


def record(n: int, rng: random.Random) -> dict:
    return {
        "page": f"https://shop{rng.randrange(3)}.example/{rng.choice(['a', 'b,c', 'd]e', 'f{'])}",
        "hour": f"2024-05-{1 + n % 28:02d}T{n % 24:02d}:00:00Z",
        "users": n,
        "sessions": n + rng.randrange(5),
        "views": rng.randrange(10**6),
        "bounces": 0,
        "engagement_seconds": rng.choice([0, 1.5, 1e3]),
    }


def encode(records: list[dict], layout: str, rng: random.Random) -> list[bytes]:
    """The file as its lines; each record on one line of its own."""
    texts = [json.dumps(r, separators=rng.choice([(",", ":"), (", ", ": ")])) for r in records]
    if layout == "ndjson":
        return [t.encode() for t in texts]
    lines = [t.encode() + b"," for t in texts]
    lines[-1] = lines[-1][:-1]
    return [b"[", *lines, b"]"]


def read(data: bytes, block_size: int):
    """(records by position, the break's position or None); raises on anything else."""
    stream = io.BufferedReader(io.BytesIO(data))
    layout = detect_layout(stream)
    got: dict[int, object] = {}
    try:
        for chunk in read_chunks(stream, layout, block_size, typed_decoder(GaRecord), LIMITS):
            for offset, item in enumerate(chunk.records):
                position = chunk.first_position + offset
                assert position == len(got) + 1, "positions are contiguous"
                got[position] = item
    except FileBreak as exc:
        assert exc.position == len(got) + 1
        return got, exc.position
    return got, None


def plain(item: object) -> object:
    if isinstance(item, GaRecord):
        return msgspec.to_builtins(item)
    if isinstance(item, Loose):
        return json.loads(item.raw)
    return item


def mutate_value(line: bytes, rng: random.Random) -> bytes:
    """One value of the record replaced by a token JSON does not allow."""
    key = rng.choice([b'"users":', b'"views":', b'"bounces":', b'"users": ', b'"views": '])
    at = line.find(key)
    if at < 0:
        key = b'"users":'
        at = line.find(key)
    start = at + len(key)
    end = start
    while line[end : end + 1] not in (b",", b"}"):
        end += 1
    return line[:start] + rng.choice(BAD_TOKENS) + line[end:]


@pytest.mark.parametrize("layout", ["array", "ndjson"])
def test_a_bad_token_in_one_record_loses_nothing_else(layout):
    for seed in SEEDS:
        rng = random.Random(seed)
        records = [record(n, rng) for n in range(1, rng.randrange(2, 40))]
        lines = encode(records, layout, rng)
        bad = rng.randrange(len(records))
        index = bad + (1 if layout == "array" else 0)
        lines[index] = mutate_value(lines[index], rng)
        data = b"\n".join(lines) + b"\n"
        got, broken = read(data, rng.choice([1, 7, 64, 1 << 20]))
        assert broken is None, (seed, data)
        assert len(got) == len(records), seed
        for position, original in enumerate(records, start=1):
            item = got[position]
            if position == bad + 1:
                assert isinstance(item, Unreadable | Loose), (seed, item)
            else:
                assert plain(item) == original, (seed, position)


@pytest.mark.parametrize("layout", ["array", "ndjson"])
def test_structural_damage_keeps_every_record_before_it_and_accounts_for_the_rest(layout):
    for seed in SEEDS:
        rng = random.Random(seed)
        records = [record(n, rng) for n in range(1, rng.randrange(2, 40))]
        lines = encode(records, layout, rng)
        bad = rng.randrange(len(records))
        index = bad + (1 if layout == "array" else 0)
        text = bytearray(lines[index])
        for _ in range(rng.randrange(1, 4)):
            text[rng.randrange(len(text))] = rng.choice(STRUCTURAL)
        lines[index] = bytes(text)
        data = b"\n".join(lines) + b"\n"
        got, broken = read(data, rng.choice([1, 5, 300, 1 << 20]))
        for position in range(1, bad + 1):  # every record before the damage, exactly
            assert plain(got[position]) == records[position - 1], (seed, position)
        if broken is None:
            # The rest is read: every later record is there, in order, after the damage.
            later = [plain(got[p]) for p in sorted(got) if p > bad]
            it = iter(later)
            assert all(any(r == x for x in it) for r in records[bad + 1 :]), seed
        else:
            assert broken >= bad + 1, seed  # the break is reported where it happened


def test_random_bytes_and_oversized_records_never_crash_and_stay_in_memory_bounds():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    pieces = [b"[", b"]", b"{", b"}", b",", b'"', b"\\", b":", b"\n", b" ", b"1", b"NaN", b"\xff"]
    for seed in SEEDS:
        rng = random.Random(seed)
        kind = seed % 3
        if kind == 0:
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 600)))
        elif kind == 1:
            data = b"".join(rng.choice(pieces) for _ in range(rng.randrange(0, 2000)))
        else:
            data = (
                rng.choice([b"[", b""])
                + rng.choice([b"[", b"{", b'"', b"0"]) * rng.randrange(1, 1 << 17)
                + rng.choice([b"]", b"}", b'"', b""]) * rng.randrange(0, 1 << 17)
            )
        got, _ = read(data, rng.choice([1, 13, 4096, 1 << 20]))
        for item in got.values():
            if isinstance(item, Unreadable):
                assert item.reason and len(item.raw) <= 1024
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kb < 200 * 1024, f"peak RSS grew by {grown_kb / 1024:.0f} MB"


@pytest.mark.usefixtures("pipeline_db")
def test_mutated_files_through_the_database_account_for_every_record(tmp_path):
    for seed in range(12):
        rng = random.Random(seed)
        layout = ["array", "ndjson"][seed % 2]
        records = [record(n, rng) for n in range(1, rng.randrange(3, 30))]
        lines = encode(records, layout, rng)
        bad = sorted(rng.sample(range(len(records)), rng.randrange(1, 3)))
        for k in bad:
            lines[k + (1 if layout == "array" else 0)] = mutate_value(
                lines[k + (1 if layout == "array" else 0)], rng
            )
        path = tmp_path / f"ga-{seed}.json"
        path.write_bytes(b"\n".join(lines) + b"\n")
        [result] = ingest_files([str(path)], parallel=1, show_progress=False)
        with connection.cursor() as cursor:
            cursor.execute("SELECT position FROM raw_ga WHERE batch_id = %s", [result.batch_id])
            accepted = {p for (p,) in cursor.fetchall()}
            cursor.execute(
                "SELECT position FROM ingest_reject WHERE batch_id = %s", [result.batch_id]
            )
            rejected = {p for (p,) in cursor.fetchall()}
            cursor.execute("SELECT status FROM ingest_batch WHERE id = %s", [result.batch_id])
            [(status,)] = cursor.fetchall()
        assert rejected == {k + 1 for k in bad}, seed
        assert accepted == set(range(1, len(records) + 1)) - rejected, seed
        assert status == "loaded", seed
