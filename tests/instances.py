"""Private instances of PostgreSQL, RabbitMQ and Redis for tests that stop, restart or
break a service: each is started from the installed binaries with a data directory
and a port of its own, never the machine's shared server, and is removed afterwards.

Each is a context manager with ``start``, ``stop``, ``restart`` and a ``url``; the
address it listens on is a parameter (``listen``), so that tests reaching it from
other network namespaces can bind it to a bridge address (PostgreSQL also trusts
``trust_subnet``, RabbitMQ lets ``guest`` in from anywhere when it does not listen on
loopback only). ``start_seconds`` holds how long each start took.

The directories go under ``tempfile.gettempdir()`` (``TMPDIR``). Run as root, the
PostgreSQL server runs as the ``postgres`` OS user (it refuses root), in a directory
that user owns.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

REPO_ROOT = Path(__file__).resolve().parent.parent
PG_BIN = Path(os.environ.get("METRIFLOW_PG_BIN", "/usr/lib/postgresql/15/bin"))
RABBITMQ_BIN = Path(os.environ.get("METRIFLOW_RABBITMQ_BIN", "/usr/lib/rabbitmq/bin"))


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _wait(condition, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} within {timeout:g} s")
        time.sleep(0.1)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _is_loopback(address: str) -> bool:
    return address.startswith("127.") or address in ("localhost", "::1")


def _connect_host(listen: str) -> str:
    """The address a client on this host uses for a server listening on ``listen``."""
    return "127.0.0.1" if listen in ("0.0.0.0", "*", "") else listen


class _Instance:
    """Start/stop bookkeeping shared by the three servers."""

    kind = "instance"

    def __init__(self, listen: str, port: int | None, base_dir: str | None) -> None:
        self.listen = listen
        self.host = _connect_host(listen)
        self.port = port or free_port(self.host)
        self.dir = Path(tempfile.mkdtemp(prefix=f"mf-{self.kind}-", dir=base_dir))
        os.chmod(self.dir, 0o755)
        self.start_seconds: list[float] = []  # one figure per start, restarts included

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def _timed_start(self, start) -> None:
        began = time.perf_counter()
        start()
        self.start_seconds.append(time.perf_counter() - began)

    def restart(self, **kwargs) -> None:
        self.stop(**kwargs)
        self.start()

    def log_tail(self, lines: int = 40) -> str:
        raise NotImplementedError


# ------------------------------------------------------------------ PostgreSQL


class PrivatePostgres(_Instance):
    """A PostgreSQL cluster of its own (``initdb`` on first start), trust authentication
    for the user ``postgres`` from loopback and from ``trust_subnet`` (CIDR) if given.

    ``stop(mode=...)``: ``fast`` (a clean shutdown) or ``immediate`` (a crash: the next
    start runs crash recovery, which empties unlogged tables).
    """

    kind = "pg"

    def __init__(self, listen: str = "127.0.0.1", port: int | None = None,
                 trust_subnet: str | None = None, base_dir: str | None = None,
                 settings: dict[str, str] | None = None) -> None:  # fmt: skip
        super().__init__(listen, port, base_dir)
        self.trust_subnet = trust_subnet
        self.data = self.dir / "data"
        self.logfile = self.dir / "postgres.log"
        self.extra_settings = settings or {}
        self._as_root = os.geteuid() == 0
        if self._as_root:
            entry = pwd.getpwnam("postgres")
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)

    def _run(self, *args: str, check: bool = True, timeout: float = 120):
        command = [str(PG_BIN / args[0]), *args[1:]]
        if self._as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, check=check, capture_output=True, text=True,
                              timeout=timeout, cwd=self.dir)  # fmt: skip

    def _initdb(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--locale", "C.UTF-8", "--no-sync")  # fmt: skip
        settings = {
            "listen_addresses": f"'{self.listen}'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.dir}'",
            # A test server: an OS crash is not among the faults tried, a PostgreSQL
            # crash (``stop(mode="immediate")``) still runs crash recovery.
            "fsync": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "shared_buffers": "64MB",
            **self.extra_settings,
        }
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("\n# private test instance\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        if self.trust_subnet:
            with open(self.data / "pg_hba.conf", "a", encoding="utf-8") as hba:
                hba.write(f"host all all {self.trust_subnet} trust\n")

    def start(self) -> None:
        def start():
            if not (self.data / "PG_VERSION").exists():
                self._initdb()
            self._run("pg_ctl", "-D", str(self.data), "-l", str(self.logfile), "-w",
                      "-t", "60", "start")  # fmt: skip

        self._timed_start(start)

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop",
                      check=False)  # fmt: skip

    def restart(self, mode: str = "fast") -> None:
        super().restart(mode=mode)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgres://postgres@{self.host}:{self.port}/{dbname}"

    def conninfo(self, dbname: str = "postgres") -> str:
        return f"host={self.host} port={self.port} user=postgres dbname={dbname}"

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def migrate(self, dbname: str) -> float:
        """Loads Metriflow's schema into ``dbname`` the way a deployment does
        (``manage.py migrate``); returns the seconds it took."""
        began = time.perf_counter()
        env = {**os.environ, "DATABASE_URL": self.url(dbname),
               "DJANGO_SETTINGS_MODULE": "metriflow.settings.test"}  # fmt: skip
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
            cwd=REPO_ROOT, env=env, check=True, capture_output=True, timeout=300,
        )  # fmt: skip
        return time.perf_counter() - began

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


# -------------------------------------------------------------------- RabbitMQ


class PrivateRabbitMQ(_Instance):
    """A RabbitMQ node of its own (``mf-<random>@localhost``): its own AMQP and
    distribution ports, database, logs, configuration and Erlang cookie (in its own
    ``HOME``), no plugins. ``rabbitmqctl(...)`` runs the CLI against this node only.

    ``config``: extra ``rabbitmq.conf`` lines (e.g. ``consumer_timeout = 5000``);
    ``advanced``: an Erlang term list for ``advanced.config``. Listening on anything
    but loopback, ``guest`` may log in from any address (``loopback_users = none``).
    """

    kind = "rabbitmq"

    def __init__(self, listen: str = "127.0.0.1", port: int | None = None,
                 base_dir: str | None = None, config: tuple[str, ...] = (),
                 advanced: str | None = None) -> None:  # fmt: skip
        super().__init__(listen, port, base_dir)
        self.node = f"mf-{uuid.uuid4().hex[:10]}@localhost"
        self.dist_port = free_port()
        self.home = self.dir / "home"
        self.home.mkdir()
        cookie = self.home / ".erlang.cookie"
        cookie.write_text(uuid.uuid4().hex.upper())
        cookie.chmod(0o400)
        (self.dir / "enabled_plugins").write_text("[].\n")
        lines = [f"listeners.tcp.default = {self.listen}:{self.port}"]
        if not _is_loopback(self.listen):
            lines.append("loopback_users = none")
        (self.dir / "rabbitmq.conf").write_text("\n".join([*lines, *config]) + "\n")
        if advanced:
            (self.dir / "advanced.config").write_text(advanced.strip().rstrip(".") + ".\n")
        self.process: subprocess.Popen | None = None

    def _env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "HOME": str(self.home),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_NODE_IP_ADDRESS": self.listen,
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(self.dir / "plugins-expand"),
            "RABBITMQ_PID_FILE": str(self.dir / "rabbitmq.pid"),
        }
        if (self.dir / "advanced.config").exists():
            env["RABBITMQ_ADVANCED_CONFIG_FILE"] = str(self.dir / "advanced.config")
        return env

    def rabbitmqctl(self, *args: str, timeout: float = 60) -> str:
        result = subprocess.run(
            [str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.node, *args],
            env=self._env(), capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {result.stderr or result.stdout}")
        return result.stdout

    def start(self) -> None:
        def start():
            log = open(self.dir / "server.out", "ab")  # noqa: SIM115 (kept by the process)
            self.process = subprocess.Popen(
                [str(RABBITMQ_BIN / "rabbitmq-server")], env=self._env(), cwd=self.dir,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
            log.close()
            # `rabbitmqctl await_startup` would wait for the node to answer at all;
            # the AMQP port open is what a client needs.
            _wait(lambda: self._answers_amqp(), f"RabbitMQ {self.node} did not listen", 120)

        self._timed_start(start)

    def _answers_amqp(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"rabbitmq-server ended: {self.log_tail()}")
        return _port_open(self.host, self.port)

    def stop(self) -> None:
        """A clean shutdown (``rabbitmqctl stop``): durable queues and persistent
        messages are on disk for the next start."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            self.rabbitmqctl("stop", timeout=120)
            self.process.wait(timeout=60)
        except (RuntimeError, subprocess.TimeoutExpired):
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    def kill(self) -> None:
        """The node killed (SIGKILL to its process group), as a crash."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    def url(self, vhost: str = "/", user: str = "guest", password: str = "guest") -> str:
        from urllib.parse import quote

        return f"amqp://{user}:{password}@{self.host}:{self.port}/{quote(vhost, safe='')}"

    def connections(self, *fields: str) -> list[list[str]]:
        """``rabbitmqctl list_connections`` rows (default: pid, name, vhost)."""
        fields = fields or ("pid", "name", "vhost")
        out = self.rabbitmqctl("list_connections", "-q", "--no-table-headers", *fields)
        return [line.split("\t") for line in out.splitlines() if line.strip()]

    def close_connections(self, reason: str = "closed by a test") -> int:
        """Closes every client connection (``rabbitmqctl close_connection``)."""
        pids = [row[0] for row in self.connections("pid")]
        for pid in pids:
            self.rabbitmqctl("close_connection", pid, reason)
        return len(pids)

    def log_tail(self, lines: int = 40) -> str:
        texts = []
        for path in [*sorted((self.dir / "log").glob("*.log")), self.dir / "server.out"]:
            with contextlib.suppress(OSError):
                texts.append(path.read_text(errors="replace"))
        return "\n".join("\n".join(texts).splitlines()[-lines:])


# ----------------------------------------------------------------------- Redis


class PrivateRedis(_Instance):
    """A Redis server of its own: no persistence (``--save ""``), its own directory."""

    kind = "redis"

    def __init__(self, listen: str = "127.0.0.1", port: int | None = None,
                 base_dir: str | None = None) -> None:  # fmt: skip
        super().__init__(listen, port, base_dir)
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        def start():
            log = open(self.dir / "redis.log", "ab")  # noqa: SIM115 (kept by the process)
            self.process = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", self.listen,
                 "--save", "", "--appendonly", "no", "--dir", str(self.dir),
                 "--protected-mode", "no"],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.dir,
            )  # fmt: skip
            log.close()
            _wait(lambda: self._answers(), "Redis did not answer PING", 30)

        self._timed_start(start)

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"redis-server ended: {self.log_tail()}")
        return self.command("PING") == "PONG"

    def command(self, *args: str) -> str | None:
        """One command in RESP over a socket; the reply's first line, or None when the
        server does not answer."""
        payload = f"*{len(args)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in args)
        try:
            with socket.create_connection((self.host, self.port), timeout=2) as sock:
                sock.sendall(payload.encode())
                reply = sock.recv(65536).decode(errors="replace")
        except OSError:
            return None
        return reply.split("\r\n", 1)[0].lstrip("+:$-")

    def flushall(self) -> None:
        assert self.command("FLUSHALL") == "OK"

    def dbsize(self) -> int:
        return int(self.command("DBSIZE"))

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def url(self, db: int = 0) -> str:
        return f"redis://{self.host}:{self.port}/{db}"

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = (self.dir / "redis.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
