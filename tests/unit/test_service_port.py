"""A second worker of a stage on one host starts on a free port instead of dying."""

from __future__ import annotations

import socket

from streamscribe.cli.supervisor import Worker
from streamscribe.common.service import free_port_or
from streamscribe.common.settings import ServiceSection


def test_a_taken_port_gives_way_to_a_free_one() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        other = free_port_or("127.0.0.1", taken)
        assert other != taken
        assert other > 0
    assert free_port_or("127.0.0.1", taken) == taken  # free again: kept


def test_replica_ports_of_adjacent_services_never_collide() -> None:
    ports = [
        Worker(name, ServiceSection(http_port=port), replica).port
        for name, port in (("ingest", 9101), ("transcribe", 9102), ("embed", 9103))
        for replica in range(3)
    ]
    assert len(set(ports)) == len(ports)
