"""Processes the tests start as a user would: gunicorn serving the API, and the
stopping of any of them (workers, Flower, servers)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from .conftest import REPO_ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(process: subprocess.Popen, timeout: float = 30) -> None:
    """TERM, then KILL if it has not ended within ``timeout`` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until_answering(url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    """Until ``url`` answers at all (any HTTP status: a 503 is an answer too);
    fails at once if the process ended."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:  # not listening yet, or a worker still starting
            if process.poll() is not None:
                raise AssertionError(
                    f"{process.args[:3]} ended with {process.returncode}"
                ) from None
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} did not answer within {timeout:g} s") from None
            time.sleep(0.2)


@contextmanager
def gunicorn(env: dict[str, str], workers: int = 2, log=subprocess.DEVNULL) -> Iterator[str]:
    """The API under gunicorn (``metriflow/gunicorn.conf.py``) on a free port of
    127.0.0.1, with ``env`` over this process's environment; yields its base URL
    once it answers, and stops it afterwards."""
    port = free_port()
    full_env = {
        # Never handed to a server: check --deploy refuses it (tests/browser/conftest.py).
        **{k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"},
        "DJANGO_DEBUG": "false",
        "GUNICORN_ACCESS_LOG": "/dev/null",
        **env,
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": str(workers),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "metriflow.wsgi:application",
         "--config", "metriflow/gunicorn.conf.py"],
        cwd=REPO_ROOT, env=full_env, stdout=log, stderr=log,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(f"{base}/api/health", server)
        yield base
    finally:
        stop(server)
