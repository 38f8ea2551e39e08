# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""Admission control: clients in all and per address group, and how often."""

from __future__ import annotations

import pytest
from twisted.logger import LogEvent, formatEvent

from twisted_chat.core.admission import (
    CONNECT_BURST,
    CONNECT_WINDOW,
    Admission,
    address_group,
    log_refusal,
)
from twisted_chat.core.errors import ServerFull, TooManyConnections
from twisted_chat.core.flood import BucketTable


@pytest.mark.parametrize(
    ("host", "group"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("2001:db8::1", "2001:db8::/64"),
        ("2001:db8::ffff:1:2", "2001:db8::/64"),
        ("2001:db8:0:1::1", "2001:db8:0:1::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("not-an-address", "not-an-address"),
    ],
)
def test_address_group(host: str, group: str) -> None:
    """IPv4 counts per address, IPv6 per /64, IPv4-mapped as its IPv4 address."""
    assert address_group(host) == group


def test_ipv6_addresses_in_one_64_share_a_group() -> None:
    """Two addresses of one /64 are one group; the next /64 is another."""
    assert address_group("2001:db8:1:2::a") == address_group("2001:db8:1:2:ff::b")
    assert address_group("2001:db8:1:2::a") != address_group("2001:db8:1:3::a")


def test_ipv4_mapped_address_counts_with_its_ipv4_address() -> None:
    """A dual-stack socket's ``::ffff:a.b.c.d`` peer is the same as ``a.b.c.d``."""
    admission = Admission(max_clients=0, max_per_ip=1)
    assert admission.admit(address_group("::ffff:198.51.100.7"), 0.0) is None
    refusal = admission.admit(address_group("198.51.100.7"), 0.0)
    assert isinstance(refusal, TooManyConnections)


def test_per_group_cap_refuses_the_next_connection() -> None:
    """Past ``max_per_ip`` one group is refused while another is still let in."""
    admission = Admission(max_clients=100, max_per_ip=2)
    assert admission.admit("a", 0.0) is None
    assert admission.admit("a", 0.0) is None
    refusal = admission.admit("a", 0.0)
    assert isinstance(refusal, TooManyConnections)
    assert refusal.code == "too-many-connections"
    assert admission.admit("b", 0.0) is None


def test_max_clients_refuses_everyone_when_full() -> None:
    """Past ``max_clients`` any group is refused with ServerFull."""
    admission = Admission(max_clients=2, max_per_ip=10)
    assert admission.admit("a", 0.0) is None
    assert admission.admit("b", 0.0) is None
    refusal = admission.admit("c", 0.0)
    assert isinstance(refusal, ServerFull)
    assert refusal.code == "server-full"
    assert refusal.text == "The server is full (2 clients); try again later."


def test_a_server_full_at_one_client_says_one_client() -> None:
    admission = Admission(max_clients=1, max_per_ip=10)
    assert admission.admit("a", 0.0) is None
    refusal = admission.admit("b", 0.0)
    assert refusal is not None
    assert refusal.text == ("The server is full (1 client); try again later.")


def test_refusal_counts_nothing() -> None:
    """A refused client is not counted, so it needs no release."""
    admission = Admission(max_clients=1, max_per_ip=1)
    admission.admit("a", 0.0)
    admission.admit("a", 0.0)
    admission.admit("b", 0.0)
    assert (admission.total, admission.per_group) == (1, {"a": 1})


def test_release_makes_room_again() -> None:
    """After a release the same group, and the server, accept a client again."""
    admission = Admission(max_clients=1, max_per_ip=1)
    assert admission.admit("a", 0.0) is None
    admission.release("a")
    assert admission.admit("a", 0.0) is None


def test_release_forgets_empty_groups() -> None:
    """A group whose last client left is dropped, so the table stays small."""
    admission = Admission(max_clients=10, max_per_ip=10)
    admission.admit("a", 0.0)
    admission.admit("a", 0.0)
    admission.release("a")
    assert admission.per_group == {"a": 1}
    admission.release("a")
    assert (admission.total, admission.per_group) == (0, {})


def test_zero_caps_mean_no_limit() -> None:
    """0 for either cap turns that cap off."""
    admission = Admission(max_clients=0, max_per_ip=0)
    assert all(admission.admit("a", 0.0) is None for _ in range(1000))
    assert admission.total == 1000


def test_refusals_are_logged_in_one_greppable_format(
    log_events: list[LogEvent],
) -> None:
    """TCP and UDP refusals share one fixed log line an operator can grep."""
    log_refusal("udp 192.0.2.7:4000", ServerFull("full"))
    assert [formatEvent(event) for event in log_events] == [
        "refused connection peer=udp 192.0.2.7:4000 reason=server-full"
    ]


def test_unix_socket_clients_are_capped_only_in_all() -> None:
    """Clients without an address (UNIX sockets) meet --max-clients only."""
    admission = Admission(max_clients=3, max_per_ip=1)
    assert address_group("") == ""
    assert admission.admit("", 0.0) is None
    assert admission.admit("", 0.0) is None
    assert admission.admit("", 0.0) is None
    refusal = admission.admit("", 0.0)
    assert refusal is not None
    assert refusal.code == "server-full"


# -- connection rate -----------------------------------------------------------


def test_new_connections_past_the_burst_wait_for_the_rate() -> None:
    """A group opens max(max_per_ip, CONNECT_BURST) at once, then one per slice."""
    admission = Admission(max_clients=0, max_per_ip=32)
    for _ in range(32):
        assert admission.admit("a", 100.0) is None
        admission.release("a")
    refusal = admission.admit("a", 100.0)
    assert isinstance(refusal, TooManyConnections)
    assert refusal.text == (
        "Too many new connections from your address (32 in 10 seconds at most); "
        "wait a second and try again."
    )
    assert admission.total == 0
    assert admission.admit("b", 100.0) is None  # another group is not slowed
    assert admission.admit("a", 100.0 + CONNECT_WINDOW / 32) is None
    assert admission.admit("a", 100.0 + CONNECT_WINDOW / 32) is not None


def test_a_reloaded_per_ip_cap_sets_the_rate_of_a_group_already_counted() -> None:
    """SIGHUP raises --max-per-ip: a group mid-window refills at the new rate."""
    admission = Admission(max_clients=0, max_per_ip=10)
    for _ in range(10):
        assert admission.admit("a", 0.0) is None
        admission.release("a")
    admission.max_per_ip = 40  # what ChatService does on reload
    # 40 per window is 4 a second: four new connections one second later.
    for _ in range(4):
        assert admission.admit("a", 1.0) is None
        admission.release("a")
    assert admission.admit("a", 1.0) is not None


def test_a_low_per_ip_cap_still_allows_a_quick_reconnect() -> None:
    """With --max-per-ip 1 a dropped user may still reconnect at once, a few times."""
    admission = Admission(max_clients=0, max_per_ip=1)
    for _ in range(CONNECT_BURST):
        assert admission.admit("a", 0.0) is None
        admission.release("a")
    assert admission.admit("a", 0.0) is not None


def test_no_per_ip_cap_means_no_connection_rate() -> None:
    """--max-per-ip 0 turns off both per-address limits (benchmarks use it)."""
    admission = Admission(max_clients=0, max_per_ip=0)
    for _ in range(1000):
        assert admission.admit("a", 0.0) is None
        admission.release("a")
    assert len(admission.connects) == 0


def test_connection_table_forgets_groups_that_could_burst_again() -> None:
    """An entry goes once its group is back to a whole burst."""
    admission = Admission(max_clients=0, max_per_ip=10)
    for group in ("a", "b", "c"):
        admission.admit(group, 0.0)
    assert len(admission.connects) == 3
    admission.admit("d", CONNECT_WINDOW / 10 + 0.01)
    assert len(admission.connects) == 1


def test_connection_table_is_bounded() -> None:
    """A flood of addresses cannot grow the table past its size."""
    admission = Admission(
        max_clients=0, max_per_ip=10, connects=BucketTable(capacity=100)
    )
    for n in range(1000):
        assert admission.admit(f"198.51.100.{n}", 0.0) is None
    assert len(admission.connects) == 100
