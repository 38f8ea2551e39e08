"""
``--cluster`` at the edge: the option, the config file's keys, a bad URL,
and nothing of Redis loaded without it (issue 19).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.testing import MemoryReactorClock

from twisted_chat.core.settings import Settings
from twisted_chat.daemon.options import Options
from twisted_chat.daemon.service import make_chat_service
from twisted_chat.daemon.startup import StartupError

_PROBE = (
    "import sys\n"
    "from twisted.internet.testing import MemoryReactorClock\n"
    "from twisted_chat.core.settings import Settings\n"
    "from twisted_chat.daemon.service import make_chat_service\n"
    "s = Settings(history_db='off', state_dir={state!r}, cluster={url!r})"
    ".with_listeners({{'tcp': ('tcp:0',)}})\n"
    "make_chat_service(s, MemoryReactorClock())\n"
    "print(sorted(m for m in sys.modules if m.startswith(('txredisapi', "
    "'twisted_chat.cluster'))))\n"
)


def _loaded(tmp_path: Path, url: str) -> str:
    script = _PROBE.format(state=str(tmp_path), url=url)
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout.strip()


def test_without_cluster_nothing_of_redis_is_imported(tmp_path: Path) -> None:
    assert _loaded(tmp_path, "") == "[]"


def test_with_cluster_the_cluster_is_built(tmp_path: Path) -> None:
    loaded = _loaded(tmp_path, "redis://127.0.0.1:1/0")
    assert "'txredisapi'" in loaded
    assert "'twisted_chat.cluster.node'" in loaded


def test_the_service_has_a_cluster_node_that_has_not_connected(tmp_path: Path) -> None:
    settings = Settings(
        history_db="off", state_dir=str(tmp_path), cluster="redis://127.0.0.1:1/2"
    ).with_listeners({"tcp": ("tcp:0",)})
    service = make_chat_service(settings, MemoryReactorClock())
    node: Any = service.getServiceNamed("cluster")
    assert not node.link.up
    assert service.server.cluster is node


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:6379", "redis://", "redis://h:port/0", "redis://h/x"]
)
def test_a_bad_url_stops_the_start_with_a_clear_line(tmp_path: Path, url: str) -> None:
    settings = Settings(state_dir=str(tmp_path), cluster=url)
    with pytest.raises(StartupError, match="--cluster: bad cluster URL"):
        make_chat_service(settings, MemoryReactorClock())


def test_the_password_stays_out_of_errors(tmp_path: Path) -> None:
    settings = Settings(state_dir=str(tmp_path), cluster="ftp://:hunter2@h/0")
    with pytest.raises(StartupError) as caught:
        make_chat_service(settings, MemoryReactorClock())
    assert "hunter2" not in str(caught.value)


def test_the_options_and_the_config_file(tmp_path: Path) -> None:
    options = Options()
    options.parseOptions(["--cluster", "redis://10.0.0.5:6380/3"])
    assert options["settings"].cluster == "redis://10.0.0.5:6380/3"
    config = tmp_path / "chat.toml"
    config.write_text(
        'cluster = "rediss://redis.example.org/1"\ncluster-password = "s3cret"\n'
    )
    options = Options()
    options.parseOptions(["--config", str(config)])
    settings = options["settings"]
    assert settings.cluster == "rediss://redis.example.org/1"
    assert settings.cluster_password == "s3cret"  # noqa: S105
    assert "s3cret" not in repr(settings)
