"""Writes of the reporting app: identity, and the budget every report runs under."""

from __future__ import annotations

import contextlib
import math
import time
import uuid

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import OperationalError, connection, transaction
from psycopg import errors as pg_errors
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import RefreshToken

from metriflow.cache import UNREACHABLE as REDIS_UNREACHABLE
from metriflow.cache import warn as warn_redis

REGISTRATION_CLOSED = (
    "registration is closed on this server: an account is created by staff, who (or a "
    "site admin) then give it access to sites"
)


def registration_open() -> bool:
    """Whether anyone may create an account (METRIFLOW_OPEN_REGISTRATION)."""
    return settings.METRIFLOW_OPEN_REGISTRATION


def register_user(*, username: str, password: str, email: str = ""):
    return get_user_model().objects.create_user(username=username, email=email, password=password)


class TokenUserRefused(TokenError):
    """A valid token whose user was deleted, deactivated or never existed."""


def token_user(token):
    """The active user a validated token names; TokenError for a deleted, inactive or
    unknown one (a token outliving its user is refused, never an error)."""
    user_id = token.get(jwt_settings.USER_ID_CLAIM)
    user = (
        get_user_model()
        .objects.filter(**{jwt_settings.USER_ID_FIELD: user_id})
        .only("pk", "is_active")
        .first()
        if user_id is not None
        else None
    )
    if user is None or not jwt_settings.USER_AUTHENTICATION_RULE(user):
        raise TokenUserRefused("the token's user does not exist or is inactive")
    return user


def logout(*, refresh: str) -> None:
    """Blacklists a refresh token (raises TokenError when it is invalid, already used, or
    its user deleted or inactive)."""
    token = RefreshToken(refresh)
    token_user(token)
    token.blacklist()


# ------------------------------------------------------------------ report budget


class ReportsBusy(Exception):
    """The caller already has METRIFLOW_REPORT_CONCURRENCY reports running."""

    def __init__(self, running: int, retry_after: int):
        super().__init__(
            f"{running} reports of yours are running, at most "
            f"{settings.METRIFLOW_REPORT_CONCURRENCY} at once; retry in {retry_after} s"
        )
        self.retry_after = retry_after


class ReportTimedOut(Exception):
    """A statement of the report ran past METRIFLOW_REPORT_STATEMENT_TIMEOUT_MS."""

    def __init__(self):
        super().__init__(
            "the report took longer than "
            f"{settings.METRIFLOW_REPORT_STATEMENT_TIMEOUT_MS / 1000:g} s to compute and was "
            "stopped: ask for a shorter range, a coarser granularity or fewer pages"
        )


# KEYS[1]: the caller's sorted set of slots (member: slot id, score: expiry time).
# ARGV: now, expiry, slot id, limit. Expired slots (of a process that died) are dropped;
# returns 0 when the slot was taken, else the seconds until the oldest one expires.
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local held = redis.call('ZCARD', KEYS[1])
if held < tonumber(ARGV[4]) then
    redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
    redis.call('EXPIREAT', KEYS[1], math.ceil(tonumber(ARGV[2])))
    return {0, held}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {tostring(tonumber(oldest[2]) - tonumber(ARGV[1])), held}
"""


def slots_key(owner: str) -> str:
    """The Redis key of ``owner``'s report slots (``user:<id>`` or an API key's)."""
    return cache.make_key(f"report-slots:{owner}")


def _redis():
    return cache._cache.get_client(write=True)


@contextlib.contextmanager
def report_slot(owner: str):
    """Holds one of ``owner``'s METRIFLOW_REPORT_CONCURRENCY report slots (a Redis
    sorted set; a slot expires after METRIFLOW_REPORT_SLOT_SECONDS) while the block
    runs; raises ReportsBusy when they are all held."""
    key, slot, now = slots_key(owner), uuid.uuid4().hex, time.time()
    expiry = settings.METRIFLOW_REPORT_SLOT_SECONDS
    try:
        wait, held = _redis().eval(
            _ACQUIRE, 1, key, now, now + expiry, slot, settings.METRIFLOW_REPORT_CONCURRENCY
        )
    except REDIS_UNREACHABLE as exc:
        # Fails open: the report runs, bounded by its statement timeout alone.
        warn_redis("report-slots", "report slots not enforced, Redis cannot be reached: %s", exc)
        wait = held = None
    if wait is None:
        yield
        return
    if float(wait) > 0:
        # A report runs a few statements, each at most the statement timeout.
        longest = settings.METRIFLOW_REPORT_STATEMENT_TIMEOUT_MS / 1000
        raise ReportsBusy(int(held), max(1, math.ceil(min(float(wait), longest))))
    try:
        yield
    finally:
        try:
            _redis().zrem(key, slot)
        except REDIS_UNREACHABLE as exc:  # the slot expires after its seconds
            warn_redis("report-slots", "report slot not released, Redis cannot be reached: %s", exc)


def _timed_out(exc: OperationalError) -> bool:
    return isinstance(exc.__cause__, pg_errors.QueryCanceled)


@contextlib.contextmanager
def report_budget(owner: str):
    """The budget of one report: a slot of ``owner``'s and, from its first SQL statement
    on, one transaction whose statements each run at most
    METRIFLOW_REPORT_STATEMENT_TIMEOUT_MS (SET LOCAL: the connection's other
    transactions, and the pipeline's own connections, keep theirs). A report answered
    from the cache sends nothing to PostgreSQL. A statement cancelled by the timeout
    raises ReportTimedOut. The report's code opens no transaction of its own."""
    with report_slot(owner):
        try:
            with (
                contextlib.ExitStack() as stack,
                connection.execute_wrapper(_TimeoutOnFirstQuery(stack)),
            ):
                yield
        except OperationalError as exc:
            if _timed_out(exc):
                raise ReportTimedOut() from exc
            raise


class _TimeoutOnFirstQuery:
    """An execute wrapper: before the first statement, opens the report's transaction
    (closed by ``stack``) and sets its statement timeout."""

    def __init__(self, stack: contextlib.ExitStack):
        self.stack, self.started = stack, False

    def __call__(self, execute, sql, params, many, context):
        if not self.started:
            self.started = True
            self.stack.enter_context(transaction.atomic())
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT set_config('statement_timeout', %s, true)",
                    [str(settings.METRIFLOW_REPORT_STATEMENT_TIMEOUT_MS)],
                )
        return execute(sql, params, many, context)


__all__ = [
    "REGISTRATION_CLOSED",
    "ReportTimedOut",
    "ReportsBusy",
    "TokenError",
    "TokenUserRefused",
    "logout",
    "register_user",
    "registration_open",
    "report_budget",
    "report_slot",
    "token_user",
]
