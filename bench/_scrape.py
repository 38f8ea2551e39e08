"""Scrape a ``/metrics`` page as Prometheus does, for the bench scripts.

A scrape sends Prometheus 2.x's ``Accept`` header and ``gzip``, parses the
body with prometheus_client's own parsers (OpenMetrics or text, by the
``Content-Type``), and keeps only what a report needs: when, how long, the
status, how many families, and the clients the daemon says it holds.
:class:`Scraper` does it on a schedule from a thread, as a scraper would.
"""

from __future__ import annotations

import gzip
import http.client
import threading
import time

from attrs import define, field
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["PROMETHEUS_ACCEPT", "SCRAPE_TIMEOUT", "Scrape", "Scraper", "scrape_once"]

#: What Prometheus 2.x sends (scrape/scrape.go: the OpenMetrics-first header).
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,"
    "application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
#: Prometheus's default scrape timeout.
SCRAPE_TIMEOUT = 10.0


@define
class Scrape:
    """One GET: when it started (``time.monotonic``), how long, and what came."""

    at: float
    seconds: float
    status: int
    families: int
    error: str = ""
    #: ``twisted_chat_clients`` summed over its transports (0 if absent).
    clients: float = 0.0


def scrape_once(port: int, path: str) -> Scrape:
    """GET ``path`` as Prometheus would; the body parsed, its families counted."""
    at = time.monotonic()
    status, families, error, clients = 0, 0, "", 0.0
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=SCRAPE_TIMEOUT)
    try:
        connection.request(
            "GET",
            path,
            headers={"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"},
        )
        response = connection.getresponse()
        status = response.status
        body = response.read()
        if response.getheader("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        kind = response.getheader("Content-Type") or ""
        text = body.decode()
        parse = {
            "application/openmetrics-text": openmetrics_families,
            "text/plain": text_string_to_metric_families,
        }.get(kind.split(";")[0].strip())
        if status != 200:
            error = f"HTTP {status}"
        elif parse is not None:  # else a stand-in's page: a 200 with no families
            for family in parse(text):
                families += 1
                if family.name == "twisted_chat_clients":
                    clients = sum(sample.value for sample in family.samples)
    except (OSError, http.client.HTTPException, ValueError) as e:
        error = f"{type(e).__name__}: {e}"
    finally:
        connection.close()
    return Scrape(at, time.monotonic() - at, status, families, error, clients)


@define
class Scraper:
    """A thread scraping ``port`` every ``interval`` seconds until stopped."""

    port: int
    path: str
    interval: float
    scrapes: list[Scrape] = field(factory=list)
    _stop: threading.Event = field(factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            self.scrapes.append(scrape_once(self.port, self.path))
            due += self.interval
            # The scrape schedule (Event.wait returns at once when stopped).
            self._stop.wait(max(0.0, due - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(SCRAPE_TIMEOUT + 5)
