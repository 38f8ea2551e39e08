# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""``python -m twisted_chat.bench``: a load generator for a twisted-chat server.

Like ``redis-benchmark``, it answers "how much can this server take on this
machine?".  It connects C clients over TCP (some over UDP, if asked), spreads
them over R rooms, makes S of them send M messages each (or send at a rate
for a duration), and has every client count what it receives.  It reports
deliveries expected against received (a missing delivery is an error and
makes the exit status 1), deliveries a second, latency percentiles, the
server's CPU and memory (with ``--server-pid``), and its own CPU share::

    python -m twisted_chat.bench --workload fanout --server-pid "$(pidof twistd)"
    python -m twisted_chat.bench --workload rooms --source-addrs 64 --json

Workloads (each number can be overridden with ``--clients --rooms --senders
--messages --size --rate --duration``):

``fanout``  1 room, 100 clients, 10 senders x 2,000 messages of ~100 bytes.
``rooms``   1,000 clients in 100 rooms of 10, each sends 20 messages.
``latency`` 50 clients in 1 room, 10 senders at 200 msg/s each for 10 s.
``idle``    N registered idle connections; server RSS per connection is the
            RSS growth over N (needs ``--server-pid``, and a freshly started
            server: memory an earlier run grew is reused and hides the cost).

The scale workloads (issue 18; docs/bench_scale.md, bench/scale.py):

``idle-max``  19,000 idle clients over 2 worker processes: RSS per client,
              and the connect + register rate (first connect to last in
              its room) with the server's CPU per connect.
``room-10k``  one room of 10,000 members, 10 senders x 100 messages.
``churn``     18,000 clients held while a churn process
              (:mod:`twisted_chat.bench.churn`) opens, registers and closes
              1,000 connections a second for 15 s; a bystander pair in a
              room of its own measures 100 msg/s.  ``--churn-rate``.

They need the server's client cap raised (``--max-clients 0``; the default
is 10,000).  Past 1,000 clients the bench binds one loopback source address
per 32 clients (127.0.1.1 .. 127.0.1.254, 127.0.2.1, ...) and lets the
kernel pick each port at connect (``IP_BIND_ADDRESS_NO_PORT``), so 19,000
clients neither run out of ports nor pass the default per-address cap; and
it starts one worker per 10,000 clients, so that none passes a descriptor
limit of 20,000.

Starting the server for a benchmark
-----------------------------------

The server's defaults protect it from abuse, and a benchmark looks like
abuse.  Turn flood control off, or every sender is held to 5 lines a
second, and raise the connection caps::

    twistd -n chat --tcp 9000 --udp 9001 \\
        --flood-burst 0 --flood-rate 0 --max-per-ip 2000 --max-clients 20000

Instead of raising ``--max-per-ip`` (default 32 connections per address) you
can keep it and spread the bench's clients over loopback source addresses
with ``--source-addrs N`` (127.0.1.1 onwards; Linux routes all of
127.0.0.0/8 to the loopback device).  With ``--source-addrs 32`` and the
default cap, 1,024 clients fit.  A thousand connections also need open
files on both sides: the bench raises its own soft limit to the hard one;
give the server ``ulimit -n 4096`` or ``LimitNOFILE=`` under systemd.

Flat-out senders keep at most ``--window`` messages (default 200) that the
server has not answered yet: each batch ends with ``/ping``, and the next
batch waits for room in the window.  This bounds what the server queues per
reader to about window x senders x line length, which must stay under the
server's ``--max-sendq`` (1 MiB by default) or it drops the readers as slow;
``--window 0`` pipelines everything at once.

On a machine with few cores the server and the bench compete for CPU: the
report shows both, and a bench process near 100% of a core means the bench,
not the server, was the limit (add ``--procs``).  The report also gives the
machine's load average: above the number of CPUs, something else competed
and the numbers are low and noisy.

How it stays cheap
------------------

Workers are processes with raw non-blocking sockets on an epoll loop.  They
read 256 KiB at a time and count room messages with ``bytes.count`` of
``\n[#room] <`` (a message line of the client's room starts so), never
splitting lines; each message's tail carries its sender and its
``time.monotonic_ns()`` send time, and latency is sampled (every 10 ms per
connection) from the oldest and newest complete line of a read.  A server
that writes every delivery on its own would cost the bench one ``recv`` per
line, so while senders send flat out a worker pauses ``--read-delay`` (2 ms)
after small reads and lets lines pile up; this adds at most that much to
the latencies, and paced workloads (``latency``) do not pause.  One worker
reads only so many deliveries a second, even from a server that batches its
writes (BENCHMARKS.md, "The load generator's own ceiling"); past that the
bench is the limit, and a server with a send-queue limit may drop its
connections as slow readers.
Barriers use ``/ping`` and its ``* pong`` answer, so the bench assumes
nothing about how many notice lines the server sends.  The run ends when
every client's final pong is in, which proves every delivery the server
queued for it has arrived; a missing one is reported at once, without
waiting for a timeout.  ``--timeout`` only ends a run that makes no progress.
"""

from twisted_chat.bench.report import Report
from twisted_chat.bench.runner import RunConfig, run
from twisted_chat.bench.workloads import WORKLOADS, Workload, get_workload

__all__ = ["WORKLOADS", "Report", "RunConfig", "Workload", "get_workload", "run"]
