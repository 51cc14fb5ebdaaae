"""The test harness picks listening ports outside the kernel's ephemeral range: a port from that
range can be taken by any outgoing connection between the pick and the server's bind (a Kafka
node failed to start on a port its neighbour's connection had taken)."""
from pathlib import Path

import pytest

from tests.harness import free_port, free_port_pair, free_port_run


def _ephemeral() -> range:
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    return range(low, high + 1)


@pytest.mark.parametrize("pick, count", [(free_port, 1), (free_port_pair, 2),
                                         (lambda: free_port_run(6), 6)])
def test_picked_ports_are_outside_the_ephemeral_range(pick, count):
    ephemeral = _ephemeral()
    for _ in range(20):
        first = pick()
        ports = range(first, first + count)
        assert not set(ports) & set(ephemeral), f"{list(ports)} overlaps {ephemeral}"


def test_picks_differ_so_parallel_fixtures_do_not_collide():
    assert len({free_port_run(6) for _ in range(20)}) > 15
