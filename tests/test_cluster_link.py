"""RedisLink (issue 19) against a real redis-server on a loopback port.

What the mirror relies on: ``on_up`` once both connections are ready,
``on_down`` once per outage however it starts (refused at start, Redis
killed, Redis hanging, a wrong password), commands failing at once while
down, and everything working again after Redis comes back, without
restarting the node.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import pytest_twisted
from _redis import RedisServer, failures, redis_server, settle, until
from twisted.internet import reactor
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.logger import LogEvent

from twisted_chat.cluster import link as link_module
from twisted_chat.cluster.link import CommandError, LinkDown, RedisLink
from twisted_chat.cluster.url import ClusterUrl
from twisted_chat.testing_tls import self_signed_pem

PASSWORD = "s3cret"  # noqa: S105 - a test password


pytestmark = pytest.mark.usefixtures("no_tracebacks")


class Rig:
    """A RedisLink and what its callbacks saw."""

    def __init__(self, url: str, channels: tuple[str, ...] = ("tc:a",)) -> None:
        self.ups = 0
        self.downs: list[str] = []
        self.messages: list[tuple[str, bytes]] = []
        self.link = RedisLink(
            ClusterUrl.parse(url),
            reactor,
            channels,
            lambda channel, data: self.messages.append((channel, data)),
            self.on_up,
            self.downs.append,
        )

    def on_up(self) -> None:
        assert self.link.up
        self.ups += 1

    async def started(self) -> Rig:
        self.link.start()
        await until(lambda: self.link.up)
        return self

    async def stop(self) -> None:
        await self.link.stop()


@pytest_twisted.ensureDeferred
async def test_commands_publish_and_subscribe(redis: RedisServer) -> None:
    rig = await Rig(redis.url).started()
    try:
        assert rig.ups == 1
        assert rig.downs == []
        assert await rig.link.call("SET", "k", "héllo") == "OK"
        assert await rig.link.call("GET", "k") == "héllo".encode()
        assert await rig.link.call("SET", "n", 123) == "OK"
        # Raw replies: no number conversion, integers as int.
        assert await rig.link.call("GET", "n") == b"123"
        assert await rig.link.call("INCR", "n") == 124
        assert await rig.link.call("GET", "missing") is None
        with pytest.raises(CommandError, match="WRONGTYPE"):
            await rig.link.call("LPUSH", "k", "x")
        rig.link.publish("tc:a", b"\xff binary\r\n")
        await until(lambda: rig.messages == [("tc:a", b"\xff binary\r\n")])
        rig.link.subscribe("tc:b")
        await until(lambda: redis.cli("PUBSUB", "NUMSUB", "tc:b").endswith("1"))
        rig.link.publish("tc:b", b"two")
        await until(lambda: ("tc:b", b"two") in rig.messages)
    finally:
        await rig.stop()


@pytest_twisted.ensureDeferred
async def test_a_failing_message_handler_is_logged_not_fatal(
    redis: RedisServer, log_events: list[LogEvent]
) -> None:
    seen: list[bytes] = []

    def handler(channel: str, data: bytes) -> None:
        seen.append(data)
        if data == b"boom":
            raise RuntimeError("boom")

    link = RedisLink(
        ClusterUrl.parse(redis.url), reactor, ["tc:a"], handler, lambda: None, print
    )
    link.start()
    try:
        await until(lambda: link.up)
        link.publish("tc:a", b"boom")
        link.publish("tc:a", b"after")
        await until(lambda: seen == [b"boom", b"after"])
        assert link.up
        (traceback,) = failures(log_events)
        assert "RuntimeError: boom" in traceback
        log_events.clear()
    finally:
        await link.stop()


@pytest_twisted.ensureDeferred
async def test_down_at_start_fails_fast_then_comes_up() -> None:
    server = RedisServer()  # not started: the port refuses
    rig = Rig(server.url)
    rig.link.start()
    try:
        await until(lambda: len(rig.downs) == 1)
        assert "refused" in rig.downs[0].lower()
        failed = rig.link.call("PING")
        assert failed.called  # at once, not queued
        with pytest.raises(LinkDown):
            await failed
        rig.link.publish("tc:a", b"lost")
        assert rig.link.dropped == 1
        await settle(1.6)  # three attempts at least (0.5 + 1 s back-off)
        assert len(rig.downs) == 1
        server.start()
        await until(lambda: rig.ups == 1)
        assert await rig.link.call("PING") == "PONG"
    finally:
        await rig.stop()
        server.stop()


@pytest_twisted.ensureDeferred
async def test_outage_down_once_then_up_and_working(
    redis: RedisServer, log_events: list[LogEvent]
) -> None:
    rig = await Rig(redis.url).started()
    try:
        # A command in flight when Redis goes fails too (BLPOP: it waits).
        in_flight = rig.link.call("BLPOP", "nothing", 0)
        await until(lambda: "cmd=blpop" in redis.cli("CLIENT", "LIST"))
        redis.stop()
        with pytest.raises(LinkDown):
            await in_flight
        await until(lambda: len(rig.downs) == 1)
        assert not rig.link.up
        with pytest.raises(LinkDown):
            await rig.link.call("PING")
        await settle(1.6)
        assert len(rig.downs) == 1
        redis.start()
        await until(lambda: rig.ups == 2)
        assert len(rig.downs) == 1
        # The subscriber subscribed again; commands and PUBLISH work.
        assert await rig.link.call("SET", "k", "v") == "OK"
        rig.link.publish("tc:a", b"back")
        await until(lambda: rig.messages == [("tc:a", b"back")])
        # A second outage is reported again, once.
        redis.stop()
        await until(lambda: len(rig.downs) == 2)
        redis.start()
        await until(lambda: rig.ups == 3)
        said = [
            e["log_format"]
            for e in log_events
            if e.get("log_namespace") == link_module.__name__
        ]
        assert sum("unreachable" in text for text in said) == 2
        assert (
            sum(text.endswith("reachable") and "un" not in text for text in said) == 3
        )
    finally:
        await rig.stop()


@pytest_twisted.ensureDeferred
async def test_a_channel_added_while_down_is_subscribed_on_recovery(
    redis: RedisServer,
) -> None:
    rig = await Rig(redis.url).started()
    try:
        redis.stop()
        await until(lambda: len(rig.downs) == 1)
        rig.link.subscribe("tc:later")
        redis.start()
        await until(lambda: rig.ups == 2)
        rig.link.publish("tc:later", b"x")
        await until(lambda: rig.messages == [("tc:later", b"x")])
    finally:
        await rig.stop()


@pytest_twisted.ensureDeferred
async def test_a_hanging_redis_is_an_outage(
    redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(link_module, "REPLY_TIMEOUT", 0.5)
    monkeypatch.setattr(link_module, "PING_EVERY", 0.2)
    monkeypatch.setattr(link_module, "CONNECT_TIMEOUT", 0.5)
    rig = await Rig(redis.url).started()
    assert redis.proc is not None
    pid = redis.proc.pid
    try:
        os.kill(pid, signal.SIGSTOP)
        try:
            await until(lambda: len(rig.downs) == 1)
        finally:
            os.kill(pid, signal.SIGCONT)
        await until(lambda: rig.ups == 2)
        assert await rig.link.call("PING") == "PONG"
    finally:
        await rig.stop()


@pytest_twisted.ensureDeferred
async def test_scripts_run_by_sha_and_reload_after_a_flush(
    redis: RedisServer,
) -> None:
    rig = await Rig(redis.url).started()
    source = "return {KEYS[1], ARGV[1], tonumber(ARGV[2]) + 1}"
    try:
        assert await rig.link.script(source, ["k"], ["a", 41]) == [b"k", b"a", 42]
        assert await rig.link.script(source, ["k"], ["b", 1]) == [b"k", b"b", 2]
        assert await rig.link.call("SCRIPT", "FLUSH") == "OK"
        assert await rig.link.script(source, ["k"], ["c", 2]) == [b"k", b"c", 3]
        with pytest.raises(CommandError, match="boom"):
            await rig.link.script("return redis.error_reply('boom')", [], [])
    finally:
        await rig.stop()


@pytest_twisted.ensureDeferred
async def test_password_and_database() -> None:
    with redis_server(password=PASSWORD) as server:
        port = server.port
        rig = await Rig(f"redis://:{PASSWORD}@127.0.0.1:{port}/3").started()
        try:
            assert await rig.link.call("SET", "k", "in-3") == "OK"
            assert server.cli("-n", "3", "GET", "k") == "in-3"
            assert server.cli("-n", "0", "GET", "k") == ""
        finally:
            await rig.stop()
        wrong = Rig(f"redis://:nope@127.0.0.1:{port}/0")
        wrong.link.start()
        try:
            await until(lambda: len(wrong.downs) == 1)
            assert "auth" in wrong.downs[0].lower()
            await settle(1.0)
            assert len(wrong.downs) == 1
            assert not wrong.link.up
        finally:
            await wrong.stop()


def _clients(redis: RedisServer) -> int:
    """Connections to the server other than redis-cli's own."""
    return len(redis.cli("CLIENT", "LIST").splitlines()) - 1


@pytest_twisted.ensureDeferred
async def test_stop_closes_both_connections_and_stays_quiet(
    redis: RedisServer,
) -> None:
    rig = await Rig(redis.url).started()
    assert _clients(redis) == 2
    await rig.stop()
    assert not rig.link.up
    await until(lambda: _clients(redis) == 0)
    with pytest.raises(LinkDown):
        await rig.link.call("PING")
    redis.stop()
    await settle(0.7)
    assert rig.downs == []
    assert rig.ups == 1


@pytest_twisted.ensureDeferred
async def test_stop_while_retrying_leaves_no_timer() -> None:
    server = RedisServer()
    before = set(reactor.getDelayedCalls())
    rig = Rig(server.url)
    rig.link.start()
    await until(lambda: len(rig.downs) == 1)
    await rig.stop()
    after = set(reactor.getDelayedCalls())
    assert [call for call in after - before if call.active()] == []
    assert rig.ups == 0


@pytest_twisted.ensureDeferred
async def test_rediss_with_a_private_ca(tmp_path: Path) -> None:
    pem = self_signed_pem()
    (tmp_path / "redis.pem").write_bytes(pem)
    with redis_server(tls_pem=tmp_path / "redis.pem") as server:
        assert server.cli("PING") == "PONG"
        downs: list[str] = []
        trusted = optionsForClientTLS("localhost", Certificate.loadPEM(pem))
        link = RedisLink(
            ClusterUrl.parse(server.url),
            reactor,
            ["tc:a"],
            lambda _channel, _data: None,
            lambda: None,
            downs.append,
            tls=trusted,
        )
        link.start()
        try:
            await until(lambda: link.up)
            assert await link.call("SET", "k", "tls") == "OK"
            assert server.cli("GET", "k") == "tls"
        finally:
            await link.stop()
        # The system's trust roots do not know this certificate: down, once.
        untrusted = Rig(server.url)
        untrusted.link.start()
        try:
            await until(lambda: len(untrusted.downs) == 1)
            assert not untrusted.link.up
        finally:
            await untrusted.stop()


@pytest_twisted.ensureDeferred
async def test_a_burst_of_messages_arrives_whole_without_an_outage(
    redis: RedisServer,
) -> None:
    """20,000 messages at once: the subscriber keeps up, its PING is answered."""
    receiver = await Rig(redis.url, ("tc:events",)).started()
    sender = await Rig(redis.url, ()).started()
    try:
        payloads = [b"%d " % i + b"x" * 200 for i in range(20_000)]
        for payload in payloads:
            sender.link.publish("tc:events", payload)
        await until(lambda: len(receiver.messages) == len(payloads))
        assert [data for _, data in receiver.messages] == payloads
        assert receiver.downs == []
        assert sender.downs == []
    finally:
        await receiver.stop()
        await sender.stop()
