"""A second worker of a stage on one host starts on a free port instead of dying."""

from __future__ import annotations

import socket

from streamscribe.cli.supervisor import Worker, plan_ports
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


def test_a_port_plan_that_clashes_moves_the_replica_and_says_so() -> None:
    """The services 10 apart: ingest's second replica would take transcribe's port, and
    transcribe's second embed's; the services' own ports stay, the replicas move."""
    sections = {"ingest": 19301, "transcribe": 19311, "embed": 19321}
    workers = [
        Worker(name, ServiceSection(http_port=port), replica)
        for name, port in sections.items()
        for replica in range(2)
    ]
    said: list[str] = []
    plan_ports(workers, {19331}, said.append)  # the broker listens where embed-1 would
    ports = {worker.label: worker.port for worker in workers}
    assert {name: ports[name] for name in sections} == sections
    assert len(set(ports.values())) == len(ports)
    assert {19301, 19311, 19321, 19331}.isdisjoint(
        {ports["ingest-1"], ports["transcribe-1"], ports["embed-1"]}
    )
    assert len(said) == 3
    assert "ingest-1: port 19311" in said[0]
    assert "STREAMSCRIBE_INGEST__HTTP_PORT" in said[0]
