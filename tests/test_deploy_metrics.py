"""Tests for the metrics files in `deploy/` and the READMEs (issue 17).

The Grafana dashboard, the alert rules and the scrape example are only worth
shipping if every query in them names a metric the daemon exports: a typo
or a renamed metric would show an empty panel, or an alert that never
fires, and nothing else would notice.  So the PromQL expressions are read
out of the files, the metric names parsed out of them (:func:`metric_names`,
itself tested below), and each checked against :data:`EXPORTED`: the names
the daemon's own collector shows, run here against a chat core.

The YAML files are read by :func:`load_yaml`, a strict reader of the small
part of YAML they use (block mappings and sequences, quoted and plain
scalars, ``|`` blocks), so the tests need no PyYAML; it refuses anything
else rather than guess.  (``promtool check config`` and ``promtool test
rules`` accept the files too, when Prometheus is installed.)  The socket
unit goes through ``systemd-analyze verify`` with the service it names, as
in ``test_systemd.py``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, ProcessCollector
from test_systemd import unit_settings
from twisted.internet.task import Clock

from twisted_chat.core.chat import ChatServer
from twisted_chat.core.settings import Settings
from twisted_chat.daemon.health import LoopWatch
from twisted_chat.daemon.metrics import ChatCollector
from twisted_chat.history.health import WriterHealth
from twisted_chat.history.memory import MemoryStore
from twisted_chat.history.side import Backlog

DEPLOY = Path(__file__).parent.parent / "deploy"
ROOT = DEPLOY.parent
TWISTD = "/opt/twisted-chat/bin/twistd"

#: The sample names each kind of metric family shows, by its family name.
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "info": ("_info",),
}


class _WrittenStore(MemoryStore):
    """A memory store that looks like the SQLite one to the collector.

    Without a store the collector leaves the history metrics out, and the
    SQLite store's counters (writer up, queued, committed, dropped) only
    with that store's backlog and health; a real SQLite store would start
    a writer process, which this fast test does without.
    """

    def __init__(self) -> None:
        super().__init__()
        self.health = WriterHealth(self, object(), Backlog(1))  # type: ignore[arg-type]


def exported_names() -> frozenset[str]:
    """
    Every sample name the daemon's ``/metrics`` can show.

    Read from the daemon's own collector (and the process collector the
    endpoint registers beside it) run against a chat core, so that a metric
    renamed there fails these tests; a family's names are derived from its
    type, since a labelled family with no sample yet (refusals before the
    first refusal) shows none.
    """
    clock = Clock()
    server = ChatServer(Settings(), clock.seconds, store=_WrittenStore())
    registry = CollectorRegistry()
    registry.register(ChatCollector(server, LoopWatch(clock), {}))
    ProcessCollector(registry=registry)
    names: set[str] = set()
    for family in registry.collect():
        names.update(family.name + suffix for suffix in _SUFFIXES[family.type])
        names.update(sample.name for sample in family.samples)
    return frozenset(names)


EXPORTED = exported_names()
#: Series Prometheus makes itself for every target.
SYNTHETIC = frozenset({"up"})


# --- PromQL: the metric names in an expression ------------------------------

_TOKENS = re.compile(
    r"""
    (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    |(?P<range>\[[^\]]*\])
    |(?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?:ms|[smhdwy])?)
    |(?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
    |(?P<open>[({])
    |(?P<close>[)}])
    |(?P<other>[^\s])
    """,
    re.VERBOSE,
)
#: Words that take a parenthesised list of label names.
_GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
_KEYWORDS = _GROUPING | {"and", "or", "unless", "bool", "offset", "inf", "nan"}
#: The PromQL functions and aggregations the deploy files may use.
_FUNCTIONS = frozenset(
    {
        "abs",
        "absent",
        "avg",
        "clamp_min",
        "count",
        "delta",
        "deriv",
        "histogram_quantile",
        "increase",
        "irate",
        "max",
        "min",
        "quantile",
        "rate",
        "sum",
        "topk",
        "vector",
    }
)


def _tokens(expr: str) -> list[tuple[str, str]]:
    found = []
    for match in _TOKENS.finditer(expr):
        kind = match.lastgroup
        assert kind is not None
        found.append((kind, match.group()))
    return found


def metric_names(expr: str) -> set[str]:
    """
    The metric names an expression selects.

    Label matchers (``{...}``), ranges (``[5m]``), strings and the label
    lists of ``by (...)`` and friends are skipped; a word followed by ``(``
    must be a known function; every other word that is not a keyword is a
    metric name.
    """
    tokens = _tokens(expr)
    names: set[str] = set()
    depth_of_braces = 0
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        following = tokens[i + 1] if i + 1 < len(tokens) else ("", "")
        if kind == "open" and text == "{":
            depth_of_braces += 1
        elif kind == "close" and text == "}":
            depth_of_braces -= 1
        elif kind == "ident" and depth_of_braces == 0:
            if text in _GROUPING and following[1] == "(":
                # Skip the label list up to its ")".
                i += 2
                while tokens[i][1] != ")":
                    assert tokens[i][0] in {"ident", "other"}, expr
                    i += 1
            elif text in _KEYWORDS:
                pass
            elif following[1] == "(" or following[1] in {"by", "without"}:
                assert text in _FUNCTIONS, f"unknown function {text} in {expr}"
            else:
                names.add(text)
        i += 1
    assert depth_of_braces == 0, expr
    return names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up == 0", {"up"}),
        ('up{job="twisted-chat", instance=~"$instance"} == 0', {"up"}),
        (
            (
                "histogram_quantile(0.99, sum by (job, le) "
                '(rate(a_seconds_bucket{x="}"}[$__rate_interval])))'
            ),
            {"a_seconds_bucket"},
        ),
        ("sum without (instance) (rate(b_total[5m] offset 1h)) > 1", {"b_total"}),
        ("a > 1000 and deriv(b[10m]) > 0", {"a", "b"}),
        ("x / on (instance) group_left y", {"x", "y"}),
        ('sum(c{reason="server-full"}) or vector(0)', {"c"}),
    ],
)
def test_metric_names_are_read_out_of_promql(expr: str, names: set[str]) -> None:
    """Only the selected metrics count: not labels, functions or keywords."""
    assert metric_names(expr) == names


def test_an_unknown_function_is_caught() -> None:
    """A misspelt function is not taken for a metric."""
    with pytest.raises(AssertionError, match="unknown function rat"):
        metric_names("rat(b_total[5m])")


# --- a strict reader of the YAML the deploy files use -----------------------


class YamlSubsetError(ValueError):
    """The text uses YAML this reader does not take (or is not YAML)."""


_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_.-]*):(?:\s+(.*))?$")
_DOUBLE = re.compile(r'"((?:[^"\\]|\\.)*)"\s*(?:#.*)?$')
_SINGLE = re.compile(r"'((?:[^']|'')*)'\s*(?:#.*)?$")
_BLOCK = re.compile(r"\|(-?)\s*(?:#.*)?$")


class _Reader:
    def __init__(self, text: str) -> None:
        if "\t" in text:
            raise YamlSubsetError("tabs")
        self.raw = text.splitlines()
        #: Overrides for lines whose start a "- " consumed: (indent, text).
        self.shifted: dict[int, tuple[int, str]] = {}
        self.i = 0

    def line(self, i: int) -> tuple[int, str] | None:
        """A line's indent and text, None for a blank or comment line."""
        if i in self.shifted:
            return self.shifted[i]
        text = self.raw[i]
        stripped = text.lstrip(" ")
        if not stripped or stripped.startswith("#"):
            return None
        return len(text) - len(stripped), stripped.rstrip()

    def next(self) -> tuple[int, str] | None:
        """The next significant line (the reader moves to it)."""
        while self.i < len(self.raw):
            found = self.line(self.i)
            if found is not None:
                return found
            self.i += 1
        return None

    def node(self, indent: int) -> Any:
        found = self.next()
        if found is None or found[0] < indent:
            return None
        if found[1] == "-" or found[1].startswith("- "):
            return self.sequence(found[0])
        return self.mapping(found[0])

    def sequence(self, indent: int) -> list[Any]:
        items: list[Any] = []
        while (found := self.next()) is not None and found[0] == indent:
            text = found[1]
            if not (text == "-" or text.startswith("- ")):
                raise YamlSubsetError(f"line {self.i + 1}: expected '- '")
            rest = text[1:].lstrip(" ")
            if not rest:
                self.i += 1
                items.append(self.node(indent + 1))
            elif _KEY.match(rest):
                self.shifted[self.i] = (indent + len(text) - len(rest), rest)
                items.append(self.node(indent + 1))
            else:
                items.append(self.scalar(rest))
                self.i += 1
        if found is not None and found[0] > indent:
            raise YamlSubsetError(f"line {self.i + 1}: bad indentation")
        return items

    def mapping(self, indent: int) -> dict[str, Any]:
        mapping: dict[str, Any] = {}
        while (found := self.next()) is not None and found[0] == indent:
            match = _KEY.match(found[1])
            if match is None:
                raise YamlSubsetError(f"line {self.i + 1}: expected 'key:'")
            key, value = match.group(1), match.group(2)
            if key in mapping:
                raise YamlSubsetError(f"line {self.i + 1}: {key} twice")
            self.i += 1
            if value is None or value.startswith("#"):
                after = self.next()
                if after is not None and (
                    after[0] > indent
                    or (after[0] == indent and (after[1] + " ").startswith("- "))
                ):
                    mapping[key] = self.node(after[0])
                else:
                    mapping[key] = None
            elif block := _BLOCK.match(value):
                mapping[key] = self.literal(indent, keep=not block.group(1))
            else:
                mapping[key] = self.scalar(value)
                after = self.next()
                if after is not None and after[0] > indent:
                    raise YamlSubsetError(f"line {self.i + 1}: continued scalar")
        if found is not None and found[0] > indent:
            raise YamlSubsetError(f"line {self.i + 1}: bad indentation")
        return mapping

    def literal(self, indent: int, *, keep: bool) -> str:
        """A ``|`` (or ``|-``) block: the lines indented past ``indent``."""
        lines: list[str] = []
        block_indent = None
        while self.i < len(self.raw):
            text = self.raw[self.i]
            stripped = text.lstrip(" ")
            if stripped:
                here = len(text) - len(stripped)
                if here <= indent:
                    break
                if block_indent is None:
                    block_indent = here
                elif here < block_indent:
                    raise YamlSubsetError(f"line {self.i + 1}: bad block indentation")
                lines.append(text[block_indent:])
            else:
                lines.append("")
            self.i += 1
        while lines and not lines[-1]:
            lines.pop()
        return "\n".join(lines) + ("\n" if keep and lines else "")

    def scalar(self, text: str) -> str:
        if text.startswith('"'):
            match = _DOUBLE.match(text)
            if match is None:
                raise YamlSubsetError(f"line {self.i + 1}: bad double-quoted string")
            decoded: str = json.loads(f'"{match.group(1)}"')
            return decoded
        if text.startswith("'"):
            match = _SINGLE.match(text)
            if match is None:
                raise YamlSubsetError(f"line {self.i + 1}: bad single-quoted string")
            return match.group(1).replace("''", "'")
        if text[0] in "[]{}&*!%@`|>,?:-#":
            raise YamlSubsetError(f"line {self.i + 1}: {text[0]!r} is not taken here")
        plain = re.split(r"\s#", text, maxsplit=1)[0].rstrip()
        if ": " in plain or plain.endswith(":"):
            raise YamlSubsetError(f"line {self.i + 1}: quote a value with ': '")
        return plain


def load_yaml(text: str) -> Any:
    """The document in ``text``, read strictly (see the module docstring)."""
    reader = _Reader(text)
    document = reader.node(0)
    if reader.next() is not None:
        raise YamlSubsetError(f"line {reader.i + 1}: bad indentation")
    return document


def test_yaml_reader_reads_what_the_deploy_files_use() -> None:
    """Mappings, sequences of mappings and scalars, quotes, ``|-`` blocks."""
    text = (
        "# a comment\n"
        "a: 1  # trailing\n"
        "b:\n"
        "  - x\n"
        '  - "y: z"\n'
        "  - name: n\n"
        "    rules:\n"
        "    - k: 'it''s'\n"
        "c: |-\n"
        "  one\n"
        "\n"
        "    two\n"
        "d:\n"
    )
    assert load_yaml(text) == {
        "a": "1",
        "b": ["x", "y: z", {"name": "n", "rules": [{"k": "it's"}]}],
        "c": "one\n\n  two",
        "d": None,
    }


@pytest.mark.parametrize(
    "text",
    [
        "a: b: c\n",
        "a: [1, 2]\n",
        "a: 1\n  b: 2\n",
        "a: 1\na: 2\n",
        "a:\n\t- 1\n",
        "a: >\n  folded\n",
        "a: 'open\n",
        "- a\nb: 1\n",
    ],
)
def test_yaml_reader_refuses_what_it_does_not_take(text: str) -> None:
    """Anything outside the subset is an error, not a guess."""
    with pytest.raises(YamlSubsetError):
        load_yaml(text)


# --- the alert rules -------------------------------------------------------


def alert_rules() -> list[dict[str, Any]]:
    document = load_yaml((DEPLOY / "alerts.yml").read_text("utf-8"))
    (group,) = document["groups"]
    assert group["name"] == "twisted-chat"
    rules: list[dict[str, Any]] = group["rules"]
    return rules


def test_alert_rules_cover_the_issue() -> None:
    """Writer behind, write errors, loop late, refusals, daemon down: each there."""
    names = {rule["alert"] for rule in alert_rules()}
    assert {
        "TwistedChatDown",
        "TwistedChatHistoryBehind",
        "TwistedChatHistoryNotSaved",
        "TwistedChatHistoryDropping",
        "TwistedChatEventLoopLate",
        "TwistedChatRefusalsSpiking",
    } <= names


def test_alert_rules_are_complete() -> None:
    """Each rule waits (``for:``), has a severity, a summary and a description."""
    for rule in alert_rules():
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule
        assert set(rule["annotations"]) == {"summary", "description"}, rule
        assert "{{ $labels.instance }}" in rule["annotations"]["summary"], rule


def test_event_loop_alert_is_p99_over_half_a_second_for_5_minutes() -> None:
    """The loop alert says what deploy/README.md says it does."""
    (rule,) = [r for r in alert_rules() if r["alert"] == "TwistedChatEventLoopLate"]
    expr = " ".join(rule["expr"].split())
    assert expr.startswith("histogram_quantile(0.99,"), expr
    assert expr.endswith("> 0.5"), expr
    assert rule["for"] == "5m"


def test_down_alert_reads_the_scrape_job() -> None:
    """``up`` is the job prometheus.yml scrapes."""
    (rule,) = [r for r in alert_rules() if r["alert"] == "TwistedChatDown"]
    assert rule["expr"] == 'up{job="twisted-chat"} == 0'
    (job,) = scrape_config()["scrape_configs"]
    assert job["job_name"] == "twisted-chat"


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_alert_rules_name_only_exported_metrics(rule: dict[str, Any]) -> None:
    """A renamed metric would make an alert that never fires."""
    names = metric_names(rule["expr"])
    assert names
    assert names <= EXPORTED | SYNTHETIC, names - EXPORTED - SYNTHETIC


def test_every_alert_is_explained_in_deploy_readme() -> None:
    """deploy/README.md says what each alert means and what to do."""
    section = readme_section(DEPLOY / "README.md", "## Metrics and health")
    for rule in alert_rules():
        assert f"`{rule['alert']}`" in section, rule["alert"]


# --- the scrape example ------------------------------------------------------


def scrape_config() -> dict[str, Any]:
    config: dict[str, Any] = load_yaml((DEPLOY / "prometheus.yml").read_text("utf-8"))
    return config


def test_scrape_example_reads_one_loopback_daemon_and_the_rules() -> None:
    """127.0.0.1:9100/metrics, and alerts.yml beside it."""
    config = scrape_config()
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"] == [{"targets": ["127.0.0.1:9100"]}]
    assert config["rule_files"] == ["alerts.yml"]
    assert (DEPLOY / config["rule_files"][0]).is_file()


# --- the dashboard -----------------------------------------------------------


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        (DEPLOY / "grafana-dashboard.json").read_text("utf-8")
    )
    return loaded


def panels() -> list[dict[str, Any]]:
    found = []
    for panel in dashboard()["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def expressions() -> list[str]:
    return [target["expr"] for panel in panels() for target in panel.get("targets", [])]


def test_dashboard_is_a_schema_39_model_with_a_datasource_variable() -> None:
    """Importable as is: the data source is chosen through ``DS_PROMETHEUS``."""
    board = dashboard()
    assert board["schemaVersion"] == 39
    assert board["uid"] == "twisted-chat"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    source = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    assert variables["instance"]["datasource"] == source
    for panel in panels():
        if panel["type"] != "row":
            assert panel["datasource"] == source, panel["title"]
            for target in panel["targets"]:
                assert target["datasource"] == source, panel["title"]


def test_dashboard_panels_have_unique_ids_and_fit_the_grid() -> None:
    """Grafana needs unique panel ids; 24 columns wide; no two panels overlap."""
    found = panels()
    ids = [panel["id"] for panel in found]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in found:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & mine, panel["title"]
        cells |= mine


def test_dashboard_shows_what_the_issue_asks_for() -> None:
    """Clients, messages, refusals, history, fan-out, the loop, the process."""
    used = set().union(*(metric_names(expr) for expr in expressions()))
    assert {
        "twisted_chat_clients",
        "twisted_chat_messages_total",
        "twisted_chat_deliveries_total",
        "twisted_chat_messages_received_total",
        "twisted_chat_connections_refused_total",
        "twisted_chat_history_backlog_messages",
        "twisted_chat_history_ok",
        "twisted_chat_fanout_seconds_bucket",
        "twisted_chat_event_loop_lateness_seconds_bucket",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "twisted_chat_udp_flood_dropped_lines_total",
    } <= used
    assert any(panel["type"] == "heatmap" for panel in panels())


#: The daemon's metrics the dashboard leaves out, and why.
NOT_ON_THE_DASHBOARD = {
    "twisted_chat_build_info",  # the version: a label, not a curve
    "twisted_chat_history_enabled",  # a setting
    "twisted_chat_server_bans",  # changes by hand, seen with /bans
}


def test_dashboard_shows_every_chat_metric() -> None:
    """A metric the daemon gains gets a panel (or a reason to have none)."""
    used = set().union(*(metric_names(expr) for expr in expressions()))
    shown = {re.sub(r"_(bucket|sum|count)$", "", name) for name in used}
    families = {
        name
        for name in EXPORTED
        if name.startswith("twisted_chat_")
        and not name.endswith(("_created", "_sum", "_count"))
    }
    missing = {
        name
        for name in families
        if name not in used and re.sub(r"_bucket$", "", name) not in shown
    }
    assert missing == NOT_ON_THE_DASHBOARD


def test_dashboard_counters_are_rated() -> None:
    """A counter is only ever shown as a rate or an increase, never raw."""
    for expr in expressions():
        for name in metric_names(expr):
            if name.endswith(("_total", "_bucket")):
                assert re.search(rf"\b(rate|increase)\({name}\b", expr), expr


@pytest.mark.parametrize("expr", expressions())
def test_dashboard_names_only_exported_metrics(expr: str) -> None:
    """A renamed metric would leave a panel empty."""
    names = metric_names(expr)
    assert names
    assert names <= EXPORTED | SYNTHETIC, names - EXPORTED - SYNTHETIC


def test_dashboard_instance_variable_reads_the_scrape_job() -> None:
    """``label_values(up{job=...}, instance)``: every daemon Prometheus scrapes."""
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    query = variables["instance"]["query"]["query"]
    match = re.fullmatch(r"label_values\((.*), instance\)", query)
    assert match is not None
    assert metric_names(match.group(1)) == {"up"}


# --- the socket unit -------------------------------------------------------


def test_metrics_socket_is_loopback_only_and_named() -> None:
    """One stream socket on 127.0.0.1:9100, passed as ``chat-metrics``."""
    unit = unit_settings("twisted-chat-metrics.socket")
    assert unit["ListenStream"] == ["127.0.0.1:9100"]
    assert unit["FileDescriptorName"] == ["chat-metrics"]
    assert unit["Service"] == ["twisted-chat.service"]
    assert "ListenDatagram" not in unit


def test_metrics_socket_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd accepts the unit (and the service it names) without a warning."""
    tool = shutil.which("systemd-analyze")
    assert tool is not None, "systemd-analyze is needed (Debian's systemd package)"
    twistd = tmp_path / "twistd"
    twistd.write_text("#!/bin/sh\n")
    twistd.chmod(0o755)
    names = ["twisted-chat-metrics.socket", "twisted-chat.service"]
    for name in names:
        text = (DEPLOY / name).read_text().replace(TWISTD, str(twistd))
        (tmp_path / name).write_text(text)
    result = subprocess.run(
        [tool, "verify", "--man=no", *names],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    ours = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if "twisted-chat" in line
    ]
    assert (result.returncode, ours) == (0, [])


# --- the READMEs -----------------------------------------------------------


def readme_section(path: Path, heading: str) -> str:
    """The text under ``heading`` up to the next heading of its level or higher."""
    text = path.read_text("utf-8")
    level = heading.split(" ", 1)[0]
    start = text.index(f"\n{heading}\n")
    ends = [
        match.start()
        for match in re.finditer(r"\n(#+) ", text[start + 1 :])
        if len(match.group(1)) <= len(level)
    ]
    return text[start : start + 1 + ends[0]] if ends else text[start:]


def test_deploy_readme_lists_the_metrics_files() -> None:
    """Each file is named in the section that explains it."""
    section = readme_section(DEPLOY / "README.md", "## Metrics and health")
    for name in (
        "prometheus.yml",
        "alerts.yml",
        "grafana-dashboard.json",
        "twisted-chat-metrics.socket",
    ):
        assert f"`{name}`" in section, name


def test_readme_says_to_bind_the_endpoint_to_loopback() -> None:
    """The README's example is loopback, and it says there is no authentication."""
    section = readme_section(ROOT / "README.md", "## Metrics")
    assert "--metrics tcp:9100:interface=127.0.0.1" in section
    assert "curl" in section
    assert "/healthz" in section
    assert "authentication" in section


@pytest.mark.parametrize(
    ("path", "heading"),
    [
        (ROOT / "README.md", "## Metrics"),
        (DEPLOY / "README.md", "## Metrics and health"),
    ],
)
def test_readmes_name_only_exported_metrics(path: Path, heading: str) -> None:
    """A metric the docs name is one the daemon shows (``*`` names a group)."""
    section = readme_section(path, heading)
    named = re.findall(r"`(twisted_chat_[a-z_*]+)", section)
    assert named
    for name in named:
        pattern = re.compile(re.escape(name).replace(r"\*", "[a-z_]+") + "(_bucket)?$")
        assert any(pattern.match(exported) for exported in EXPORTED), name
