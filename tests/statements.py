"""The statements a stage's database session executes, as PostgreSQL's auto_explain logs them.

While ``recording_stage_sessions()`` lasts, every connection ``pipeline.stages.connect``
opens loads auto_explain (a contrib module of the server, ``LOAD`` as a superuser) and
sets it to log every statement, the nested ones too (what a function runs, static or
through ``EXECUTE``), as NOTICE messages to the client, in JSON. A
notice handler keeps each statement's "Query Text" (never its plan), together with the
client statement it ran under, so that a caller keeps what a stage procedure ran and
leaves out the ledger's bookkeeping around it. The code under test is unchanged: the
connection is the one it opens, with four session settings more and a cursor class
that notes each statement the code sends.

What auto_explain sees: statements that go through the executor (SELECT, INSERT,
UPDATE, DELETE, WITH, also a SQL function's statements and PL/pgSQL's ``PERFORM``),
each logged when it finishes, so a statement that runs others comes after them. It
does not see utility statements (LOCK, TRUNCATE, ANALYZE, CREATE / ALTER / DROP,
static or dynamic), nor PL/pgSQL's simple expressions (``v := f(x)``, ``IF f(x)``),
which bypass the executor, though the statements such a function runs are seen.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import psycopg
import pytest

from pipeline import stages

# Session settings of a recorded connection, after LOAD 'auto_explain'.
AUTO_EXPLAIN_SETTINGS = {
    "auto_explain.log_min_duration": "0",  # every statement, however quick
    "auto_explain.log_nested_statements": "on",  # and every statement functions run
    "auto_explain.log_level": "notice",  # sent to the client, not only to the server log
    "auto_explain.log_format": "json",  # "Query Text" read as a field
}
_PLAN_NOTICE = re.compile(r"duration: [0-9.]+ ms  plan:\n", re.ASCII)


@dataclass(frozen=True)
class Statement:
    client: str  # the client statement this one ran under (or itself), as the code wrote it
    text: str  # auto_explain's "Query Text", as the server executed it


_PLACEHOLDER = re.compile(r"%(?:\(([^)]+)\))?[sbt]|%%")


def as_sent(query: str) -> str:
    """A client statement's text as psycopg sends it, and so as the server reports it:
    ``%s`` (``%b``, ``%t``) numbered ``$1``, ``$2``, ..., ``%(name)s`` numbered by name
    in order of first use, ``%%`` one ``%``."""
    numbers: dict[str | int, int] = {}

    def number(match: re.Match) -> str:
        if match.group(0) == "%%":
            return "%"
        key = match.group(1) if match.group(1) is not None else len(numbers)
        return f"${numbers.setdefault(key, len(numbers) + 1)}"

    return _PLACEHOLDER.sub(number, query)


@dataclass
class _Client:
    text: str  # as the caller wrote it
    sent: str  # as the server reports it
    logged: bool = False  # its own entry has come


@dataclass
class StatementLog:
    """Every statement the recorded sessions executed, in the order they finished, each
    with the client statement it ran under.

    auto_explain logs a statement when its portal closes. A client statement's own
    portal (a plain SELECT) closes after it returned when it runs in a transaction
    block: when the client's next statement starts. So an entry whose text is the
    previous client statement's, before that one's own entry came, is that one's."""

    statements: list[Statement] = field(default_factory=list)
    _current: _Client | None = None
    _previous: _Client | None = None

    def clear(self) -> None:
        self.statements.clear()

    def run_by(self, pattern: str) -> list[str]:
        """What the client statements matching ``pattern`` (a regular expression searched
        in the client statement's text) executed, in the order it finished: the
        statements their functions ran, then their own."""
        regex = re.compile(pattern)
        return [s.text for s in self.statements if regex.search(s.client)]

    def clients(self) -> list[str]:
        """The client statements that executed something, each once, in order."""
        return list(dict.fromkeys(s.client for s in self.statements))

    def _begin(self, query: str) -> None:
        self._previous, self._current = self._current, _Client(query, as_sent(query))

    def _notice(self, diagnostic: psycopg.errors.Diagnostic) -> None:
        message = diagnostic.message_primary or ""
        plan = _PLAN_NOTICE.match(message)
        if plan is None:  # a RAISE NOTICE of the code itself, not a statement
            return
        text = json.loads(message[plan.end() :])["Query Text"]
        previous, client = self._previous, self._current
        if previous is not None and not previous.logged and text == previous.sent:
            client = previous
        if client is not None:
            client.logged = client.logged or text == client.sent
        self.statements.append(Statement(client.text if client else "", text))

    def _cursor_class(self) -> type[psycopg.Cursor]:
        log = self

        class RecordedCursor(psycopg.Cursor):
            def execute(self, query, params=None, **kwargs):
                log._begin(query if isinstance(query, str) else query.as_string(self))
                return super().execute(query, params, **kwargs)

        return RecordedCursor

    def attach(self, conn: psycopg.Connection) -> None:
        with conn.transaction():  # a connection without autocommit keeps them too
            conn.execute("LOAD 'auto_explain'")
            for name, value in AUTO_EXPLAIN_SETTINGS.items():
                conn.execute("SELECT set_config(%s, %s, false)", (name, value))
        conn.cursor_factory = self._cursor_class()
        conn.add_notice_handler(self._notice)


@contextlib.contextmanager
def recording_stage_sessions() -> Iterator[StatementLog]:
    """Records what every connection that ``pipeline.stages.connect`` opens meanwhile
    executes (the stages' runs, ``mark_window_dirty``, ...)."""
    log = StatementLog()
    connect = stages.connect

    def recorded_connect(**kwargs) -> psycopg.Connection:
        conn = connect(**kwargs)
        log.attach(conn)
        return conn

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stages, "connect", recorded_connect)
        yield log
