# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""The parent of a run: plans it, starts the worker processes, keeps the
barriers between them, and samples the server.

The parent itself touches no chat socket (the workers do:
:mod:`twisted_chat.bench.worker`), and adds up nothing itself (that is
:mod:`twisted_chat.bench.tally`).  It waits on its workers' pipes,
prints the progress line, samples the server's ``/proc`` entry between phases,
and gives up when nothing has moved for ``timeout`` seconds (a stall, rather
than a fixed deadline: a slow server may take long, a hung one is caught).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import secrets
import socket
import time
from multiprocessing.connection import wait
from typing import TYPE_CHECKING, Any

from attrs import field, frozen

from twisted_chat.bench.churn import ChurnProcess, ChurnSpec
from twisted_chat.bench.report import add_samples, read_proc
from twisted_chat.bench.spec import Progress, WorkerSpec
from twisted_chat.bench.tally import build_report
from twisted_chat.bench.worker import worker_main
from twisted_chat.bench.workloads import Plan, make_plan

if TYPE_CHECKING:
    from collections.abc import Callable
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

    from twisted_chat.bench.churn import ChurnStats
    from twisted_chat.bench.report import ProcSample, Report
    from twisted_chat.bench.spec import WorkerResult
    from twisted_chat.bench.tally import Samples
    from twisted_chat.bench.workloads import Workload

#: How long workers get to hand in partial results after a ``stop``.
STOP_GRACE_S = 5.0
#: The pause after small reads when senders send flat out, in seconds.
DEFAULT_READ_DELAY = 0.002


@frozen
class RunConfig:
    """Everything a run needs; built by the command line or by a test.

    :param udp_clients: how many clients (the last ones) use UDP instead of TCP.
    :param source_addrs: bind clients round-robin to 127.0.1.1 .. 127.0.1.N.
    :param timeout: seconds without any progress before the run is abandoned.
    :param window: messages in flight per unpaced sender (0: no limit).
    :param read_delay: seconds a worker may pause after small reads while
        messages flow (``None``: 2 ms when sending flat out, 0 when paced, so
        that the latency workload measures latency to the microsecond).
    :param proto: what the TCP clients speak: ``"line"``, ``"irc"`` or ``"web"``.
    :param reader_ports: ports the readers are spread over (nodes of a cluster).
    :param more_pids: processes whose CPU and memory count with ``server_pid``'s.
    """

    workload: Workload
    host: str = "127.0.0.1"
    port: int = 9000
    udp_port: int | None = None
    udp_clients: int = 0
    procs: int = 1
    source_addrs: int = 0
    server_pid: int | None = None
    timeout: float = 10.0
    window: int = 200
    read_delay: float | None = None
    proto: str = "line"
    run_id: str = field(factory=lambda: secrets.token_hex(3))
    reader_ports: tuple[int, ...] = ()
    more_pids: tuple[int, ...] = ()


class RunFailedError(Exception):
    """The run cannot go on; the message says why."""


def resolve(host: str, port: int, kind: int) -> tuple[int, tuple[Any, ...]]:
    """The address family and socket address for ``host``, looked up once.

    :raises RunFailedError: when ``host`` does not resolve.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=kind)
    except OSError as e:
        raise RunFailedError(f"cannot resolve {host}: {e}") from e
    family, _, _, _, address = infos[0]
    return family, address


class _WorkerHandle:
    def __init__(self, index: int, process: BaseProcess, conn: Connection) -> None:
        self.index = index
        self.process = process
        self.conn = conn
        self.progress = Progress(0, 0, 0, 0)
        self.got: dict[str, tuple[Any, ...]] = {}
        self.alive = True


class Runner:
    """Runs one benchmark; :meth:`run` returns the :class:`Report`."""

    def __init__(
        self, config: RunConfig, progress: Callable[[str, bool], None] | None = None
    ) -> None:
        self.config = config
        self.plan: Plan = make_plan(
            config.workload,
            config.run_id,
            udp_clients=config.udp_clients,
            source_addrs=config.source_addrs,
            reader_ports=config.reader_ports,
        )
        self.show = progress
        self.workers: list[_WorkerHandle] = []
        self.churn: ChurnProcess | None = None
        self.errors: list[str] = []
        self.phase = "connecting"
        self.t0 = 0
        self.next_show = 0.0

    @property
    def read_delay(self) -> float:
        """The pause after small reads, in seconds (see :class:`RunConfig`)."""
        if self.config.read_delay is not None:
            return self.config.read_delay
        return 0.0 if self.config.workload.rate > 0 else DEFAULT_READ_DELAY

    # Server sampling.
    def sample_server(self) -> ProcSample | None:
        pid = self.config.server_pid
        if pid is None:
            return None
        try:
            return add_samples([read_proc(p) for p in (pid, *self.config.more_pids)])
        except (OSError, ValueError) as e:
            raise RunFailedError(f"cannot read /proc/{pid}: {e}") from e

    # Workers.
    def start_workers(self) -> None:
        cfg = self.config
        family, address = resolve(cfg.host, cfg.port, socket.SOCK_STREAM)
        udp_address = None
        if cfg.udp_port is not None:
            _, udp_address = resolve(cfg.host, cfg.udp_port, socket.SOCK_DGRAM)
        w = cfg.workload
        # spawn, not fork: a test's server thread must not be forked along.
        ctx = multiprocessing.get_context("spawn")
        for i in range(cfg.procs):
            spec = WorkerSpec(
                index=i,
                family=family,
                address=address,
                udp_address=udp_address,
                clients=self.plan.clients[i :: cfg.procs],
                messages=w.messages_per_sender,
                size=w.size,
                rate=w.rate,
                window=cfg.window,
                read_delay_ns=int(self.read_delay * 1e9),
                proto=cfg.proto,
                run_id=cfg.run_id,
            )
            parent_end, child_end = ctx.Pipe()
            process = ctx.Process(
                target=worker_main,
                args=(spec, child_end),
                name=f"bench-worker-{i}",
                daemon=True,
            )
            process.start()
            child_end.close()
            self.workers.append(_WorkerHandle(i, process, parent_end))
        if w.churn_rate > 0:
            churn = ChurnSpec(family, address, w.churn_rate, w.duration)
            self.churn = ChurnProcess(ctx, churn)

    def tell(self, *message: object) -> None:
        for h in self.workers:
            if h.alive:
                try:
                    h.conn.send(message)
                except OSError:
                    h.alive = False

    def _signature(self) -> tuple[int, ...]:
        totals = (
            sum(getattr(h.progress, f) for h in self.workers)
            for f in ("ready", "sent", "received", "pongs")
        )
        return (*totals, sum(len(h.got) for h in self.workers))

    def _receive(self, h: _WorkerHandle) -> None:
        try:
            message = h.conn.recv()
        except (EOFError, OSError):
            h.alive = False
            if "done" not in h.got:
                code = h.process.exitcode
                raise RunFailedError(
                    f"worker {h.index} died (exit code {code})"
                ) from None
            return
        kind = message[0]
        if kind == "progress":
            h.progress = message[1]
        else:
            h.got[kind] = message

    def await_all(self, kind: str, phase: str, *, patience: float = 0.0) -> None:
        """Wait until every worker said ``kind``, showing progress.

        :param patience: extra seconds allowed before the stall timer starts
            (a paced workload is expected to take its duration).
        :raises RunFailedError: on a stall of ``timeout`` seconds or a dead worker.
        """
        self.phase = phase
        timeout = self.config.timeout
        signature = self._signature()
        moved = time.monotonic() + patience
        while not all(kind in h.got for h in self.workers):
            conns = [h.conn for h in self.workers if h.alive]
            if not conns:
                raise RunFailedError("every worker is gone")
            for conn in wait(conns, timeout=0.2):
                h = next(h for h in self.workers if h.conn is conn)
                self._receive(h)
            now = time.monotonic()
            new = self._signature()
            if new != signature:
                signature, moved = new, max(moved, now)
            elif now - moved > timeout:
                raise RunFailedError(
                    f"timed out: no progress for {timeout:g} s while {phase}"
                )
            self.show_progress(now)

    def show_progress(self, now: float, final: bool = False) -> None:
        if self.show is None or (now < self.next_show and not final):
            return
        self.next_show = now + 0.5
        p = self.plan
        ready = sum(h.progress.ready for h in self.workers)
        sent = sum(h.progress.sent for h in self.workers)
        received = sum(h.progress.received for h in self.workers)
        text = f"{p.workload.name} {self.phase}: {ready}/{len(p.clients)} registered"
        if not p.workload.idle and self.t0:
            elapsed = (time.monotonic_ns() - self.t0) / 1e9
            rate = received / elapsed if elapsed > 0 else 0.0
            text += (
                f", sent {sent:,}/{p.messages_total:,}"
                f", received {received:,}/{p.expected_total:,} ({rate:,.0f}/s)"
            )
        self.show(text, final)

    def stop_workers(self) -> None:
        """Ask for (partial) results, then let every worker go."""
        self.tell("stop")
        deadline = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < deadline and any(
            h.alive and "done" not in h.got for h in self.workers
        ):
            conns = [h.conn for h in self.workers if h.alive and "done" not in h.got]
            for conn in wait(conns, timeout=0.2):
                h = next(h for h in self.workers if h.conn is conn)
                with contextlib.suppress(RunFailedError):
                    self._receive(h)
        for h in self.workers:
            h.process.join(timeout=STOP_GRACE_S)
            if h.process.is_alive():
                h.process.kill()
                h.process.join()
            h.conn.close()

    # The run.
    def run(self) -> Report:
        """Set up, measure, drain, and report; never raises for a failed run:
        what went wrong is in the report's ``errors``."""
        w = self.config.workload
        started = time.monotonic_ns()
        before = ready_sample = end_sample = None
        setup_s = elapsed_s = 0.0
        cpu_window = None
        parent_cpu = 0.0
        churned = None
        try:
            before = self.sample_server()
            self.start_workers()
            self.await_all("ready", "connecting")
            setup_s = (time.monotonic_ns() - started) / 1e9
            self.check_setup()
            ready_sample = self.sample_server()
            parent_cpu = -sum(os.times()[:2])
            self.t0 = time.monotonic_ns()
            if w.idle:
                self.phase = "holding"
                self.hold(w.duration)
            else:
                self.tell("go", self.t0)
                if self.churn is not None:
                    self.churn.go(self.t0)
                patience = w.duration if w.rate > 0 else 0.0
                self.await_all("sent", "sending", patience=patience)
                self.tell("drain")
            self.await_all("done", "draining")
            end_ns = time.monotonic_ns()
            parent_cpu += sum(os.times()[:2])
            end_sample = self.sample_server()
            cpu_window = (end_ns - self.t0) / 1e9
            elapsed_s = cpu_window
            if self.churn is not None:
                churned = self.churn.result()
        except RunFailedError as e:
            self.errors.insert(0, str(e))
        except KeyboardInterrupt:
            self.errors.insert(0, "interrupted")
        finally:
            self.stop_workers()
            if self.churn is not None:
                self.churn.stop()
            self.show_progress(time.monotonic(), final=True)
        return self.report(
            setup_s=setup_s,
            elapsed_s=elapsed_s,
            cpu_window=cpu_window,
            samples=(before, ready_sample, end_sample),
            parent_cpu=parent_cpu,
            churned=churned,
        )

    def check_setup(self) -> None:
        """Refuse to measure unless every client is in its room: the expected
        counts assume they all are."""
        for h in self.workers:
            self.errors.extend(h.got["ready"][1])
        if self.errors:
            raise RunFailedError(
                f"{len(self.errors)} of {len(self.plan.clients)} clients "
                "could not register and join their room"
            )

    def hold(self, seconds: float) -> None:
        """Keep the idle connections open for ``seconds``, then ping them all."""
        deadline = time.monotonic() + seconds
        while (now := time.monotonic()) < deadline:
            conns = [h.conn for h in self.workers if h.alive]
            for conn in wait(conns, timeout=min(0.2, deadline - now)):
                h = next(h for h in self.workers if h.conn is conn)
                self._receive(h)
            self.show_progress(time.monotonic())
        self.tell("drain")

    def report(
        self,
        *,
        setup_s: float,
        elapsed_s: float,
        cpu_window: float | None,
        samples: Samples,
        parent_cpu: float,
        churned: ChurnStats | str | None,
    ) -> Report:
        results: list[WorkerResult] = [
            h.got["done"][1] for h in self.workers if "done" in h.got
        ]
        return build_report(
            self.config,
            self.plan,
            results,
            complete=len(results) == len(self.workers),
            t0=self.t0,
            errors=self.errors,
            setup_s=setup_s,
            elapsed_s=elapsed_s,
            cpu_window=cpu_window,
            samples=samples,
            parent_cpu=parent_cpu,
            churned=churned,
        )


def run(
    config: RunConfig, progress: Callable[[str, bool], None] | None = None
) -> Report:
    """Run one benchmark and return its report (see :class:`Runner`).

    :param progress: called with a progress line a few times a second, and
        with ``final=True`` once at the end.
    """
    return Runner(config, progress).run()
