"""Hosts on one machine for tests: Linux network namespaces, each with a name of its
own and a link to the machine, and a TCP relay that lets them reach its services.

A :class:`Host` is a network namespace joined to the root namespace by a veth
pair, a /30 link of its own (the host side keeps ``gateway``, the namespace
side ``address``). A namespace's loopback is its own, so a process in it cannot
reach PostgreSQL, RabbitMQ or Redis on 127.0.0.1 of the machine: a
:class:`Relay` listens on each host's gateway address, one port per service,
and copies bytes both ways to the service on 127.0.0.1. It knows which host
every connection came from, and the local port of its connection to the
service, which is the client port PostgreSQL shows in ``pg_stat_activity``.

Processes started with :meth:`Host.popen` also get a UTS namespace, so that
``socket.gethostname()`` there is the host's name, as on a machine of its own.

:func:`hosts` makes them with random names and removes them afterwards, even
on failure: every process left in a namespace is killed, the namespace deleted
(its end of the veth pair with it, which takes the other end too).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import random
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field


class NotPermitted(Exception):
    """Network namespaces cannot be made here (no ``ip``, or not allowed)."""


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=True, timeout=30)


def check_permitted() -> None:
    """Raises :class:`NotPermitted`, with the reason, unless this process may make a
    network namespace with a veth link and run a process in it under its own
    hostname."""
    name = f"mfprobe{secrets.token_hex(4)}"
    try:
        _ip("netns", "add", name)
    except FileNotFoundError:
        raise NotPermitted("the ip command (iproute2) is not installed") from None
    except subprocess.CalledProcessError as exc:
        raise NotPermitted(f"ip netns add: {exc.stderr.strip()}") from None
    try:
        subprocess.run(
            ["ip", "netns", "exec", name, "unshare", "--uts", "hostname", "probe"],
            capture_output=True, text=True, check=True, timeout=30,
        )  # fmt: skip
    except (FileNotFoundError, subprocess.CalledProcessError) as exc:
        raise NotPermitted(f"a process in a namespace with its own hostname: {exc}") from None
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


@dataclass
class Host:
    """One network namespace and its link to the root namespace."""

    hostname: str  # what socket.gethostname() says inside
    namespace: str
    address: str  # the namespace's own address
    gateway: str  # the root namespace's end of the link
    veth: str  # the root namespace's end of the veth pair
    processes: list[subprocess.Popen] = field(default_factory=list)

    def popen(self, argv: Sequence[str], **kwargs) -> subprocess.Popen:
        """Starts ``argv`` inside the namespace, under the host's own hostname."""
        wrapped = ["ip", "netns", "exec", self.namespace, "unshare", "--uts", "--",
                   "sh", "-c", 'hostname "$0" && exec "$@"', self.hostname, *argv]  # fmt: skip
        process = subprocess.Popen(wrapped, **kwargs)
        self.processes.append(process)
        return process

    def pids(self) -> set[int]:
        """Every process now running in the namespace."""
        result = subprocess.run(
            ["ip", "netns", "pids", self.namespace], capture_output=True, text=True, check=False
        )
        return {int(pid) for pid in result.stdout.split()}

    def kill(self, timeout: float = 30) -> set[int]:
        """The host dies at once: SIGKILL to every process in its namespace, until none is
        left. Returns the pids killed."""
        killed: set[int] = set()
        deadline = time.monotonic() + timeout
        while pids := self.pids():
            for pid in pids:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            killed |= pids
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.hostname}: processes {pids} survive SIGKILL")
            time.sleep(0.05)
        for process in self.processes:  # reap the ones this process started
            process.wait()
        return killed


def _free_subnets(count: int) -> list[ipaddress.IPv4Network]:
    """``count`` /30 networks in 10.0.0.0/8 that no address of the machine is in."""
    used = [
        ipaddress.ip_interface(word).network
        for line in _ip("-4", "-o", "addr", "show").stdout.splitlines()
        for word in line.split()[3:4]
    ]
    chosen: list[ipaddress.IPv4Network] = []
    while len(chosen) < count:
        candidate = ipaddress.ip_network(
            f"10.{random.randint(64, 250)}.{random.randint(0, 255)}.{4 * random.randint(0, 63)}/30"
        )
        if not any(candidate.overlaps(net) for net in (*used, *chosen)):
            chosen.append(candidate)
    return chosen


def _make_host(hostname: str, namespace: str, veth: str, subnet: ipaddress.IPv4Network) -> Host:
    gateway, address = (str(ip) for ip in subnet.hosts())
    inner = veth[:-1] + "n"
    _ip("netns", "add", namespace)
    host = Host(hostname, namespace, address, gateway, veth)
    _ip("link", "add", veth, "type", "veth", "peer", "name", inner)
    _ip("link", "set", inner, "netns", namespace)
    _ip("addr", "add", f"{gateway}/30", "dev", veth)
    _ip("link", "set", veth, "up")
    _ip("-n", namespace, "addr", "add", f"{address}/30", "dev", inner)
    _ip("-n", namespace, "link", "set", inner, "up")
    _ip("-n", namespace, "link", "set", "lo", "up")
    return host


def _remove_host(host: Host) -> None:
    with suppress(Exception):
        host.kill()
    subprocess.run(["ip", "netns", "del", host.namespace], capture_output=True, check=False)
    subprocess.run(["ip", "link", "del", host.veth], capture_output=True, check=False)


@contextmanager
def hosts(*hostnames: str) -> Iterator[list[Host]]:
    """One :class:`Host` per name, each on a /30 link of its own; removed afterwards."""
    suffix = secrets.token_hex(3)
    made: list[Host] = []
    try:
        for index, (hostname, subnet) in enumerate(
            zip(hostnames, _free_subnets(len(hostnames)), strict=True)
        ):
            # Interface names are at most 15 characters: mf + 6 hex + index + h/n.
            namespace = f"mf-{suffix}-{hostname}"
            veth = f"mf{suffix}{index}h"
            try:
                made.append(_make_host(hostname, namespace, veth, subnet))
            except subprocess.CalledProcessError:
                made.append(Host(hostname, namespace, "", "", veth))  # removed below
                raise
        yield made
    finally:
        for host in made:
            _remove_host(host)


class Relay:
    """TCP relays from hosts' gateway addresses to services on 127.0.0.1.

    ``targets`` maps a service name to its port on 127.0.0.1. :meth:`serve` opens
    one listening port per service on a host's gateway address. Bytes are copied
    both ways; when either side closes, so does the other (a host killed
    closes its sockets, and the service sees its client gone at once).
    """

    def __init__(self, targets: dict[str, int]) -> None:
        self.targets = targets
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="relay")  # fmt: skip
        self._thread.start()
        self._servers: list[asyncio.Server] = []
        self._lock = threading.Lock()
        self._upstream: dict[str, dict[str, set[int]]] = {}  # host -> service -> local ports
        self._writers: set[asyncio.StreamWriter] = set()  # both ends of every connection
        self._handlers: set[asyncio.Task] = set()

    def serve(self, host: Host) -> dict[str, int]:
        """Listens on ``host.gateway`` for each service; returns service -> port."""
        ports = {}
        for service, target in self.targets.items():
            server = asyncio.run_coroutine_threadsafe(
                asyncio.start_server(
                    lambda r, w, s=service, t=target: self._pipe(host.hostname, s, t, r, w),
                    host.gateway,
                    0,
                ),
                self._loop,
            ).result(timeout=10)
            self._servers.append(server)
            ports[service] = server.sockets[0].getsockname()[1]
        return ports

    def upstream_ports(self, hostname: str, service: str) -> set[int]:
        """Local ports of the open connections to ``service`` made for ``hostname``."""
        with self._lock:
            return set(self._upstream.get(hostname, {}).get(service, ()))

    async def _pipe(self, hostname, service, target, reader, writer) -> None:
        self._handlers.add(asyncio.current_task())
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            writer.close()
            return
        port = up_writer.get_extra_info("sockname")[1]
        with self._lock:
            self._upstream.setdefault(hostname, {}).setdefault(service, set()).add(port)
        self._writers |= {writer, up_writer}

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass

        try:
            _done, pending = await asyncio.wait(
                [asyncio.create_task(copy(reader, up_writer)),
                 asyncio.create_task(copy(up_reader, writer))],
                return_when=asyncio.FIRST_COMPLETED,
            )  # fmt: skip
            for w in (writer, up_writer):
                w.close()  # what was written is still sent, then FIN
            await asyncio.wait(pending)  # the other copy ends once its socket is closed
        finally:
            with self._lock:
                self._upstream[hostname][service].discard(port)
            self._writers -= {writer, up_writer}
            self._handlers.discard(asyncio.current_task())

    def close(self) -> None:
        """Stops listening and closes every relayed connection."""

        async def shut() -> None:
            for server in self._servers:
                server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            if self._handlers:
                await asyncio.wait(list(self._handlers), timeout=10)

        asyncio.run_coroutine_threadsafe(shut(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


@contextmanager
def relay(targets: dict[str, int]) -> Iterator[Relay]:
    r = Relay(targets)
    try:
        yield r
    finally:
        r.close()
