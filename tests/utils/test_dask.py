"""The shared Dask spec: parsing, a local cluster, and the clear error for an unreachable scheduler."""

from __future__ import annotations

import socket

import pytest

from geoemb.errors import InputError
from geoemb.utils.dask import DaskSpec, dask_client, parse_dask_spec


@pytest.mark.parametrize("spec", [None, "", "none", "None", "null"])
def test_none_runs_in_process(spec):
    assert parse_dask_spec(spec) == DaskSpec("none")
    with dask_client(spec) as client:
        assert client is None


def test_local_and_address_specs():
    assert parse_dask_spec("local:3") == DaskSpec("local", n_workers=3)
    assert parse_dask_spec("local").n_workers >= 1
    assert parse_dask_spec("tcp://10.0.0.1:8786").address == "tcp://10.0.0.1:8786"


@pytest.mark.parametrize("spec", ["local:0", "local:x", "lokal:2", "10.0.0.1:8786"])
def test_bad_specs_name_the_grammar(spec):
    with pytest.raises(InputError, match="local:N"):
        parse_dask_spec(spec)


@pytest.mark.loopback
def test_unreachable_scheduler_is_a_clear_error():
    with socket.socket() as s:  # a free port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    addr = f"tcp://127.0.0.1:{port}"
    with pytest.raises(InputError, match=f"cannot reach the Dask scheduler at {addr}"):
        with dask_client(addr, timeout=1.0):
            pass


@pytest.mark.loopback
@pytest.mark.slow
def test_local_cluster_runs_tasks_on_loopback_only(caplog):
    """A local cluster's scheduler, workers and dashboard listen on 127.0.0.1, never on all
    interfaces (Dask's own default dashboard is 0.0.0.0:8787); the dashboard link is logged."""
    from urllib.parse import urlparse

    with caplog.at_level("INFO", logger="geoemb.utils.dask"):
        with dask_client("local:1", memory_limit="1GiB") as client:
            assert client.submit(sum, [1, 2, 3]).result() == 6
            info = client.scheduler_info()
            addresses = [info["address"], *info["workers"]]
            assert all(a.startswith("tcp://127.0.0.1:") for a in addresses), addresses
            link = urlparse(client.dashboard_link)
            assert link.hostname == "127.0.0.1" and link.port != 8787
    assert f"Dask dashboard: {client.dashboard_link}" in caplog.text
