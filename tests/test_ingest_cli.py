"""``manage.py ingest`` as a user runs it: one line per file that says what happened,
the exit code, and the database behind them, against files from the load generator."""

from __future__ import annotations

import ctypes
import fcntl
import gzip
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from collections import Counter

import pytest
from django.db import connection
from tqdm import tqdm

from pipeline.ingest import ingest_file, ingest_files
from pipeline.ingest.readers import BLOCK_SIZE
from pipeline.ingest.service import Progress

from .conftest import REPO_ROOT, run_manage
from .contract import generate, raw_bytes, read_records, violations

pytestmark = pytest.mark.usefixtures("pipeline_db")

SECONDS = r"\d+\.\d s"
RATE = r" \([\d,]+ records/s\)"


def query(sql: str, params=()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def ingest(env, *args: str):
    return run_manage("ingest", *args, env=env, check=False)


def counts(path, source: str) -> tuple[int, int]:
    """(accepted, rejected) by the independent reading of the contract."""
    rejected = sum(bool(violations(source, "contract", r)) for _t, r in read_records(path))
    return len(read_records(path)) - rejected, rejected


def batch_of(path) -> tuple[int, str, int, int, str | None]:
    [row] = query(
        "SELECT id, status, records_accepted, records_rejected, error FROM ingest_batch "
        "WHERE file_name = %s AND status <> 'skipped'",
        [os.path.abspath(path)],
    )
    return row


def loaded_line(path, source: str, batch_id: int, accepted: int, rejected: int) -> str:
    """The pattern of the line of a file that loaded (seconds and rate vary)."""
    return (
        rf"{re.escape(str(path))}: {source} batch {batch_id} loaded, {accepted:,} accepted, "
        rf"{rejected:,} rejected, {SECONDS}{RATE}"
    )


def assert_lines(output: str, patterns: list[str]) -> None:
    lines = output.splitlines()
    assert len(lines) == len(patterns), output
    for line, pattern in zip(lines, patterns, strict=True):
        assert re.fullmatch(pattern, line), (line, pattern)


def _without_file_permission_override() -> None:
    """In the child: drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding set,
    so that after exec even root is held to a file's mode bits (as any other user is)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def run_as_user(args: list[str], env: dict) -> subprocess.CompletedProcess:
    """Runs a command held to file permissions even when the tests run as root."""
    preexec = _without_file_permission_override if os.geteuid() == 0 else None
    return subprocess.run(
        args,
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=preexec,
    )


# -- 1. paths that are not readable files ---------------------------------------------


def test_unusable_paths_are_each_named_and_the_other_files_still_ingest(
    tmp_path, test_database_env
):
    generate(tmp_path, "--records", "500", "--pages", "10")
    ga, psi = tmp_path / "ga.json", tmp_path / "psi.json"
    directory = tmp_path / "adir"
    directory.mkdir()
    missing = tmp_path / "nope.json"
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    under_a_file = ga / "x.json"

    result = ingest(test_database_env, "--no-progress", str(ga), str(directory), str(missing),
                    str(fifo), str(under_a_file), str(psi))  # fmt: skip

    assert result.returncode == 1
    ga_batch, psi_batch = batch_of(ga), batch_of(psi)
    assert ga_batch[1:] == ("loaded", *counts(ga, "ga"), None)
    assert psi_batch[1:] == ("loaded", *counts(psi, "psi"), None)
    assert_lines(
        result.stdout,
        [
            loaded_line(ga, "ga", ga_batch[0], *counts(ga, "ga")),
            re.escape(f"{directory}: is a directory"),
            re.escape(f"{missing}: no such file"),
            re.escape(f"{fifo}: not a regular file (a named pipe)"),
            re.escape(f"{under_a_file}: no such file (a part of the path is not a directory)"),
            loaded_line(psi, "psi", psi_batch[0], *counts(psi, "psi")),
        ],
    )
    assert result.stderr.splitlines() == [
        "CommandError: 4 files failed:",
        f"  {directory}: is a directory",
        f"  {missing}: no such file",
        f"  {fifo}: not a regular file (a named pipe)",
        f"  {under_a_file}: no such file (a part of the path is not a directory)",
    ]
    assert query("SELECT count(*) FROM ingest_batch") == [(2,)]
    assert query("SELECT count(*) FROM raw_ga") == [(500,)]
    assert query("SELECT count(*) FROM raw_psi") == [(500,)]


@pytest.mark.parametrize("kind", ["directory", "missing"])
def test_a_single_unusable_path_is_one_line_and_the_error(tmp_path, test_database_env, kind):
    path = tmp_path / ("data" if kind == "directory" else "y.json")
    if kind == "directory":
        path.mkdir()
    reason = "is a directory" if kind == "directory" else "no such file"

    result = ingest(test_database_env, "--no-progress", str(path))

    assert result.returncode == 1
    assert result.stdout == f"{path}: {reason}\n"
    assert result.stderr == f"CommandError: {path}: {reason}\n"
    assert query("SELECT count(*) FROM ingest_batch") == [(0,)]


def test_a_file_that_cannot_be_read_is_permission_denied(tmp_path, test_database_env):
    generate(tmp_path, "--records", "300", "--pages", "10")
    ga, locked = tmp_path / "ga.json", tmp_path / "psi.json"
    locked.chmod(0)
    probe = run_as_user([sys.executable, "-c", f"open({str(locked)!r}, 'rb').read(1)"], {})
    if "PermissionError" not in probe.stderr:
        pytest.skip(f"a mode-000 file stays readable here, even without CAP_DAC_OVERRIDE: "
                    f"{probe.returncode} {probe.stderr[-200:]}")  # fmt: skip

    result = run_as_user(
        [sys.executable, "manage.py", "ingest", "--no-progress", str(ga), str(locked)],
        test_database_env,
    )

    assert result.returncode == 1, result.stderr
    [(batch_id, status)] = query("SELECT id, status FROM ingest_batch")
    assert_lines(
        result.stdout,
        [loaded_line(ga, "ga", batch_id, 300, 0), re.escape(f"{locked}: permission denied")],
    )
    assert result.stderr == f"CommandError: {locked}: permission denied\n"
    assert status == "loaded" and query("SELECT count(*) FROM raw_ga") == [(300,)]


# -- 2. files with nothing accepted, or too many rejects --------------------------------


def test_a_file_with_nothing_accepted_fails_naming_the_reason(tmp_path, test_database_env):
    generate(tmp_path, "--records", "400", "--pages", "10")
    psi = tmp_path / "psi.json"
    assert counts(psi, "ga") == (0, 400)  # a PSI record is no GA record

    result = ingest(test_database_env, "--no-progress", "--source", "ga", str(psi))

    assert result.returncode == 1
    [(batch_id, status, accepted, rejected, error)] = query(
        "SELECT id, status, records_accepted, records_rejected, error FROM ingest_batch"
    )
    reasons = Counter(r for (r,) in query("SELECT reason FROM ingest_reject"))
    assert reasons == {"missing field 'hour'": 400}
    # Failed, with its rejects kept (the admin lists them); nothing waits for the chain.
    assert (status, accepted, rejected) == ("failed", 0, 400)
    assert query("SELECT count(*) FROM pipeline_ledger") == [(0,)]
    why = (
        "nothing accepted, all 400 records rejected; most often \"missing field 'hour'\" "
        "(400 times, first at record 1); the file looks like psi but was read as ga (--source)"
    )
    assert error == why
    assert_lines(
        result.stdout,
        [re.escape(f"{psi}: ga batch {batch_id} failed, 0 accepted, 400 rejected, ")
         + SECONDS + re.escape(f"; {why}")],
    )  # fmt: skip
    assert result.stderr == f"CommandError: {psi}: {why}\n"

    # A failed batch is no ingest of this content: the same mistake again reads the
    # file again and fails again (never "skipped" with exit 0).
    rerun = ingest(test_database_env, "--no-progress", "--source", "ga", str(psi))
    assert rerun.returncode == 1
    assert "skipped" not in rerun.stdout and f"ga batch {batch_id + 1} failed" in rerun.stdout
    # With the right source the same file loads (it is other content for psi).
    again = ingest(test_database_env, "--no-progress", "--source", "psi", str(psi))
    assert again.returncode == 0, again.stderr
    assert query("SELECT count(*) FROM raw_psi") == [(400,)]


def test_max_reject_rate_fails_a_file_above_it_and_keeps_what_was_accepted(
    tmp_path, test_database_env
):
    generate(tmp_path, "--records", "2000", "--pages", "20", "--malformed", "0.05")
    ga = tmp_path / "ga.json"
    accepted, rejected = counts(ga, "ga")
    rate = rejected / (accepted + rejected)
    assert 0 < rate < 0.5

    default = ingest(test_database_env, "--no-progress", str(ga))  # default 1: passes
    assert default.returncode == 0, default.stderr
    [first] = query("SELECT id FROM ingest_batch")
    assert_lines(default.stdout, [loaded_line(ga, "ga", first[0], accepted, rejected)])

    exactly = ingest(test_database_env, "--no-progress", "--force", "--max-reject-rate",
                     repr(rate), str(ga))  # fmt: skip
    assert exactly.returncode == 0, exactly.stderr  # "more than", not "as many as"

    limit = round(rate - 0.001, 3)
    above = ingest(test_database_env, "--no-progress", "--force", "--max-reject-rate",
                   str(limit), str(ga))  # fmt: skip
    assert above.returncode == 1
    [(batch_id, status, kept, refused, error)] = query(
        "SELECT id, status, records_accepted, records_rejected, error FROM ingest_batch "
        "ORDER BY id DESC LIMIT 1"
    )
    [(reason, times, first_at)] = query(
        "SELECT reason, count(*), min(position) FROM ingest_reject WHERE batch_id = %s "
        "GROUP BY reason ORDER BY count(*) DESC, min(position) LIMIT 1",
        [batch_id],
    )
    why = (
        f"{rate:.1%} of the records rejected, more than --max-reject-rate {limit:g}; most often "
        f'"{reason}" ({times:,} times, first at record {first_at:,}); the {accepted:,} '
        "accepted records stay loaded"
    )
    assert (status, kept, refused, error) == ("loaded", accepted, rejected, why)
    assert_lines(
        above.stdout,
        [re.escape(f"{ga}: ga batch {batch_id} failed, {accepted:,} accepted, {rejected:,} "
                   "rejected, ") + SECONDS + RATE + re.escape(f"; {why}")],
    )  # fmt: skip
    assert above.stderr == f"CommandError: {ga}: {why}\n"
    # Nothing is deleted: three batches of the same file, each with its accepted records.
    assert query("SELECT count(*) FROM raw_ga WHERE batch_id = %s", [batch_id]) == [(accepted,)]
    assert query("SELECT count(*) FROM raw_ga") == [(3 * accepted,)]
    assert query("SELECT count(*) FROM ingest_reject") == [(3 * rejected,)]


@pytest.mark.parametrize("value", ["1.5", "-0.1", "abc", "nan"])
def test_max_reject_rate_must_be_a_fraction(tmp_path, test_database_env, value):
    generate(tmp_path, "--records", "100", "--pages", "5")
    result = ingest(test_database_env, "--max-reject-rate", value, str(tmp_path / "ga.json"))
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "manage.py ingest: error: argument --max-reject-rate: must be a fraction from 0 to 1, "
        f"got {value!r}"
    )
    assert query("SELECT count(*) FROM ingest_batch") == [(0,)]


def test_max_reject_rate_is_refused_with_async(tmp_path, test_database_env):
    generate(tmp_path, "--records", "100", "--pages", "5")
    result = ingest(test_database_env, "--async", "--max-reject-rate", "0.1",
                    str(tmp_path / "ga.json"))  # fmt: skip
    assert result.returncode == 1
    assert result.stderr == (
        "CommandError: --max-reject-rate applies to ingesting here, not to --async\n"
    )


# -- 3. progress: bytes of the file on disk ---------------------------------------------


@pytest.mark.parametrize("compressed", [False, True])
def test_progress_counts_the_bytes_of_the_file_on_disk(tmp_path, compressed):
    generate(tmp_path, "--records", "40000", "--pages", "50", *(["--gzip"] if compressed else []))
    path = tmp_path / ("ga.json.gz" if compressed else "ga.json")
    size = os.path.getsize(path)
    text = raw_bytes(path)
    assert (len(text) > 3 * size) if compressed else (len(text) == size > 4 * BLOCK_SIZE)
    calls = []

    result = ingest_file(str(path), progress=Progress(callback=lambda *c: calls.append(c)))

    assert result.status == "loaded" and result.accepted == 40000
    records = [sum(c[0] for c in calls[: i + 1]) for i in range(len(calls))]
    offsets = [c[2] for c in calls]
    assert offsets == sorted(offsets) and offsets[-1] == size
    assert len({o for o in offsets if 0 < o < size}) >= 3  # it moves along the file
    assert records[-1] == 40000 and sum(c[1] for c in calls) == 0
    if not compressed:
        # The records written were read: the bytes read reach at least the end of the
        # last of them, and the reader is at most a few blocks ahead.
        ends = [m.end() for m in re.finditer(rb"\n", text)]  # record k ends line k
        for done, offset in zip(records, offsets, strict=True):
            if 0 < done < 40000:
                assert ends[done - 1] <= offset <= ends[done - 1] + 3 * BLOCK_SIZE


def test_progress_of_files_in_parallel_ends_at_their_total_size(tmp_path):
    generate(tmp_path, "--records", "20000", "--pages", "40", "--gzip")
    (tmp_path / "ga.json").write_bytes(gzip.decompress((tmp_path / "ga.json.gz").read_bytes()))
    paths = [str(tmp_path / "ga.json"), str(tmp_path / "psi.json.gz"), str(tmp_path / "none")]
    snapshots = []

    results = ingest_files(paths, parallel=2, show_progress=False, on_progress=snapshots.append)

    assert [r.status for r in results] == ["loaded", "loaded", "failed"]
    sizes = [os.path.getsize(paths[0]), os.path.getsize(paths[1]), 0]
    for snapshot in snapshots:
        assert [f.bytes_total for f in snapshot] == sizes
        assert all(0 <= f.bytes_read <= f.bytes_total for f in snapshot)
    for index in range(3):
        seen = [s[index].bytes_read for s in snapshots]
        assert seen == sorted(seen)
    last = snapshots[-1]
    assert [f.bytes_read for f in last] == sizes
    assert [(f.records, f.rejected) for f in last] == [(r.accepted, r.rejected) for r in results]


def test_the_bar_shows_bytes_of_the_total_with_rate_and_time_left(tmp_path, test_database_env):
    generate(tmp_path, "--records", "3000", "--pages", "20", "--gzip")
    paths = [str(tmp_path / "ga.json.gz"), str(tmp_path / "psi.json.gz")]
    total = sum(os.path.getsize(p) for p in paths)

    result = ingest(test_database_env, "--progress", *paths)

    assert result.returncode == 0, result.stderr
    final = result.stderr.splitlines()[-1].strip()  # the bar's last state
    size = tqdm.format_sizeof(total, divisor=1024)
    assert re.fullmatch(
        rf"ingest 2 files: 100%\|█+\| {re.escape(size)}/{re.escape(size)} "
        rf"\[\d\d:\d\d<00:00, [\d.]+[kMG]?B/s, 6,000 accepted, 0 rejected\]",
        final,
    ), final
    assert len(result.stdout.splitlines()) == 2


def _run_on_terminal(args: list[str], env: dict, stdout_terminal: bool) -> tuple[int, str, str]:
    """Runs a command with stderr (and stdout too, if asked) on a pseudo-terminal."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen(
        args,
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        stdout=terminal if stdout_terminal else subprocess.PIPE,
        stderr=terminal,
    )
    os.close(terminal)
    seen = b""
    while True:
        try:
            data = os.read(controller, 65536)
        except OSError:  # the terminal's other end closed
            break
        if not data:
            break
        seen += data
    piped = process.stdout.read().decode() if process.stdout else ""
    os.close(controller)
    return process.wait(timeout=60), seen.decode(errors="replace"), piped


@pytest.mark.parametrize("stdout_terminal", [True, False])
def test_the_bar_is_drawn_only_when_stdout_is_a_terminal(
    tmp_path, test_database_env, stdout_terminal
):
    generate(tmp_path, "--records", "2000", "--pages", "20")
    command = [sys.executable, "manage.py", "ingest", str(tmp_path / "ga.json")]

    code, on_terminal, piped = _run_on_terminal(command, test_database_env, stdout_terminal)

    assert code == 0, on_terminal
    assert ("ingest 1 file: 100%" in on_terminal) is stdout_terminal
    summary = on_terminal if stdout_terminal else piped
    assert "ga.json: ga batch 1 loaded, 2,000 accepted, 0 rejected" in summary
    if not stdout_terminal:
        assert on_terminal == ""


# -- 4. every file's line ---------------------------------------------------------------


def test_each_file_says_accepted_rejected_batch_status_and_seconds(tmp_path, test_database_env):
    generate(tmp_path, "--records", "1500", "--pages", "15", "--malformed", "0.02",
             "--truncate", "0.5")  # fmt: skip
    generate(tmp_path / "ok", "--records", "800", "--pages", "8", "--malformed", "0.02")
    broken, ga = tmp_path / "ga.json", tmp_path / "ok" / "ga.json"

    first = ingest(test_database_env, "--no-progress", str(ga), str(broken))
    again = ingest(test_database_env, "--no-progress", str(ga))

    [(broken_id, broken_kept, broken_refused, broken_error)] = query(
        "SELECT id, records_accepted, records_rejected, error FROM ingest_batch "
        "WHERE file_name = %s",
        [str(broken)],
    )
    ga_id = batch_of(ga)[0]
    accepted, rejected = counts(ga, "ga")
    assert first.returncode == 1
    assert_lines(
        first.stdout,
        [
            loaded_line(ga, "ga", ga_id, accepted, rejected),
            re.escape(f"{broken}: ga batch {broken_id} broken, {broken_kept:,} accepted, "
                      f"{broken_refused:,} rejected, ") + SECONDS + RATE
            + re.escape(f"; {broken_error}"),
        ],
    )  # fmt: skip
    assert broken_error.startswith("invalid JSON at record ")
    assert again.returncode == 0
    assert again.stdout == (
        f"{ga}: skipped: same content as batch {ga_id} (loaded) (use --force to ingest it again)\n"
    )


# -- 5. what counts as an earlier ingest of the same content ----------------------------


def test_a_wrong_format_that_accepted_nothing_does_not_block_the_right_one(
    tmp_path, test_database_env
):
    generate(tmp_path, "--records", "600", "--pages", "10", "--malformed", "0.02")
    ga = tmp_path / "ga.json"
    accepted, rejected = counts(ga, "ga")

    wrong = ingest(test_database_env, "--no-progress", "--format", "ga4", str(ga))
    assert wrong.returncode == 1
    [(wrong_id, wrong_status, wrong_accepted)] = query(
        "SELECT id, status, records_accepted FROM ingest_batch WHERE file_name = %s",
        [str(ga)],
    )
    assert wrong_status in ("broken", "failed") and wrong_accepted == 0

    # The same content read the right way is read again, not skipped.
    right = ingest(test_database_env, "--no-progress", str(ga))
    assert right.returncode == 0, right.stdout + right.stderr
    [(right_id,)] = query(
        "SELECT id FROM ingest_batch WHERE file_name = %s AND id <> %s", [str(ga), wrong_id]
    )
    assert_lines(right.stdout, [loaded_line(ga, "ga", right_id, accepted, rejected)])
    assert query("SELECT count(*) FROM raw_ga") == [(accepted,)]


def test_a_skip_because_of_a_broken_batch_says_so_and_fails(tmp_path, test_database_env):
    generate(tmp_path, "--records", "900", "--pages", "9", "--truncate", "0.5")
    ga = tmp_path / "ga.json"
    first = ingest(test_database_env, "--no-progress", str(ga))
    assert first.returncode == 1
    [(batch_id, status, kept)] = query(
        "SELECT id, status, records_accepted FROM ingest_batch WHERE file_name = %s", [str(ga)]
    )
    assert status == "broken" and kept > 0

    again = ingest(test_database_env, "--no-progress", str(ga))
    assert again.returncode == 1
    assert again.stdout.startswith(f"{ga}: skipped: same content as batch {batch_id} (broken)")
    assert f"CommandError: {ga}: skipped: same content as batch {batch_id} (broken)" in (
        again.stderr
    )
    assert query("SELECT count(*) FROM raw_ga") == [(kept,)]
