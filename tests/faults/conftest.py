"""Shared fault fixtures: a network blocker, a frozen-clock launcher for entry-point processes."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

_LOOPBACK_NAMES = {None, "", "localhost", "localhost.localdomain", "ip6-localhost"}


def _is_loopback_host(host) -> bool:
    if isinstance(host, bytes):
        host = host.decode()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


@dataclass
class NetworkLog:
    """What the code under test tried: ``blocked`` (refused, non-loopback) and ``loopback``."""

    blocked: list[str] = field(default_factory=list)
    loopback: list[str] = field(default_factory=list)


@pytest.fixture
def no_network(monkeypatch) -> NetworkLog:
    """Block every non-loopback connection and name lookup in this process; record attempts.

    ``socket.getaddrinfo``/``gethostbyname`` of a non-loopback name raise ``socket.gaierror``;
    ``connect``/``connect_ex``/``sendto`` to a non-loopback address raise ``OSError``. Unix sockets
    and loopback are allowed but recorded (a test that needs them is marked ``loopback``). Assert
    ``log.blocked == []`` at the end: libraries that swallow connection errors are still caught.
    """
    net = NetworkLog()
    real_getaddrinfo, real_gethostbyname = socket.getaddrinfo, socket.gethostbyname
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_sendto = socket.socket.sendto

    def _check(what: str, host) -> None:
        if _is_loopback_host(host):
            net.loopback.append(f"{what} {host}")
            return
        net.blocked.append(f"{what} {host}")
        raise OSError(f"network access blocked by the no_network fixture: {what} {host}")

    def getaddrinfo(host, *a, **k):
        try:
            _check("getaddrinfo", host)
        except OSError as e:
            raise socket.gaierror(socket.EAI_NONAME, str(e)) from None
        return real_getaddrinfo(host, *a, **k)

    def gethostbyname(host):
        try:
            _check("gethostbyname", host)
        except OSError as e:
            raise socket.gaierror(socket.EAI_NONAME, str(e)) from None
        return real_gethostbyname(host)

    def _addr_check(sock, what, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            _check(what, address[0])

    def connect(self, address):
        _addr_check(self, "connect", address)
        return real_connect(self, address)

    def connect_ex(self, address):
        _addr_check(self, "connect_ex", address)
        return real_connect_ex(self, address)

    def sendto(self, data, *args):
        _addr_check(self, "sendto", args[-1])
        return real_sendto(self, data, *args)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket, "gethostbyname", gethostbyname)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket.socket, "sendto", sendto)
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(var, "1")
    return net


# Runs an entry point with ``datetime.now()`` frozen (Hydra's ``${now:}`` and geoemb's run id), so
# that two processes are certain to start "in the same second" — the case that used to share a dir.
FROZEN_CLOCK = r"""
import datetime as _dt, runpy, sys
_T = _dt.datetime(2031, 1, 2, 3, 4, 5, 678000)
class _Frozen(_dt.datetime):
    @classmethod
    def now(cls, tz=None):
        return _T
import hydra.core.utils as _hcu
_hcu.datetime = _Frozen
try:
    import geoemb.run.resolvers as _r
    _r.datetime = _Frozen
except ImportError:
    pass
sys.argv = sys.argv[1:]
sys.path.insert(0, '.')
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def entry_env(log_dir: str | os.PathLike, **extra: str) -> dict[str, str]:
    """Environment for an entry-point subprocess: this worktree's ``src``, quiet, offline."""
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(REPO / "src"),
        OMP_NUM_THREADS="1",
        WANDB_MODE="disabled",
        GEOEMB_LOG_DIR=str(log_dir),
        HYDRA_FULL_ERROR="0",
        **extra,
    )
    return env


def start_entry(
    script: str, args: list[str], env: dict[str, str], frozen: bool = True
) -> subprocess.Popen:
    """Start ``python <script> <args>`` in the repository root (frozen clock by default)."""
    cmd = [sys.executable, "-c", FROZEN_CLOCK, script, *args] if frozen else [
        sys.executable, script, *args
    ]  # fmt: skip
    return subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


@pytest.fixture(scope="module")
def client():
    """A local:2 Dask cluster of the requesting module's own (pooling and compression kill tests):
    their retried tasks once saw 'already forgotten' cancellations on the session's shared cluster
    after other modules' tests (not reproduced alone)."""
    from geoemb.utils.dask import dask_client

    with dask_client("local:2") as c:
        yield c
