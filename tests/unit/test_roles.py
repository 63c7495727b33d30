"""Scale-out roles: an engine's slice of the plant, flag errors, and the bus wire format."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from linemon.config import BusConfig, ConfigError, PlantConfig, load_config
from linemon.live_bus import EngineStatus, EventBatch, LineState, Topics
from linemon.model import MachineState, StateChanged
from linemon.remote import LiveUnavailable, RemoteLinemon
from linemon.roles import check_role, engine_config, parse_lines
from rules.engine import Engine
from tests.support.plants import REPO

K8S_PLANT = REPO / "deploy" / "kubernetes" / "plant.yaml"
NOW = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)


@pytest.fixture
def plant() -> PlantConfig:
    data = yaml.safe_load(K8S_PLANT.read_text())
    data["rules"] = {"thresholds": [
        {"id": "oven", "machine": "paint-3", "signal": "temperature", "above": 200},
        {"id": "press", "machine": data["lines"][0]["machines"][0]["id"], "signal": "speed",
         "below": 1}]}
    return PlantConfig.model_validate(data)


def test_an_engine_gets_its_lines_their_sources_and_its_own_sessions_and_files(
        plant: PlantConfig) -> None:
    sliced = engine_config(plant, ["line-3"], "linemon-engine-1")
    assert [line.id for line in sliced.lines] == ["line-3"]
    used = {m.source for _, m in sliced.machines()}
    assert {s.name for s in sliced.sources} == used
    for source in sliced.sources:
        if source.kind == "mqtt":  # one broker session per engine
            assert source.client_id is not None and source.client_id.endswith(
                "-linemon-engine-1")
    assert sliced.historian.spool.path == Path("/var/lib/linemon/linemon-engine-1/spool.sqlite")
    assert sliced.notifications.outbox.path.parent.name == "linemon-engine-1"
    assert [r.id for r in sliced.rules.thresholds] == ["oven"]  # the other line's rule stays out
    assert plant.historian.spool.path == Path("/var/lib/linemon/spool.sqlite")  # untouched


def test_engine_slices_never_share_a_client_id(plant: PlantConfig) -> None:
    a = engine_config(plant, ["line-1", "line-3"], "linemon-engine-0")
    b = engine_config(plant, ["line-3"], "linemon-engine-1")
    ids_a = {s.client_id for s in a.sources if s.kind == "mqtt"}
    ids_b = {s.client_id for s in b.sources if s.kind == "mqtt"}
    assert ids_a and ids_b and not ids_a & ids_b


def test_bad_lines_and_engine_ids_name_the_flag(plant: PlantConfig) -> None:
    with pytest.raises(ConfigError, match=r"--lines: unknown line\(s\) line-9"):
        parse_lines(plant, "line-1,line-9")
    with pytest.raises(ConfigError, match="--lines: name at least one line"):
        parse_lines(plant, " , ")
    assert parse_lines(plant, "line-2, line-1,line-2") == ["line-2", "line-1"]
    with pytest.raises(ConfigError, match="--engine-id"):
        engine_config(plant, ["line-1"], "engine/0")


def test_roles_need_a_bus_and_a_shared_store(plant: PlantConfig) -> None:
    with pytest.raises(ConfigError, match="bus: --role engine needs a `bus:` section"):
        check_role(plant.model_copy(update={"bus": None}), "engine")
    demo = load_config(REPO / "deploy" / "demo" / "plant.yaml")
    with_bus = demo.model_copy(update={"bus": plant.bus})
    with pytest.raises(ConfigError, match=r"historian\.backend: --role api needs the InfluxDB"):
        check_role(with_bus, "api")
    check_role(demo, "all")  # the single process needs neither


def test_the_cli_refuses_an_engine_without_lines() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "linemon.cli", "run", "--config", str(K8S_PLANT), "--role",
         "engine"], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 2
    assert "--lines: --role engine needs --lines" in result.stderr


def _remote(plant: PlantConfig, tmp_path: Path) -> RemoteLinemon:
    demo = load_config(REPO / "deploy" / "demo" / "plant.yaml")
    historian = demo.historian.model_copy(update={"backend": demo.historian.backend.model_copy(
        update={"path": tmp_path / "history.sqlite"})})
    bus = BusConfig()  # the broker is never reached: messages are handed in directly
    return RemoteLinemon(demo.model_copy(update={"bus": bus, "historian": historian}),
                         clock=lambda: NOW)


def test_a_line_view_crosses_the_bus_unchanged(plant: PlantConfig, tmp_path: Path) -> None:
    remote = _remote(plant, tmp_path)
    engine = Engine(remote.config, NOW)
    view = engine.line_view("line-1", NOW)
    state = LineState(engine="e0", view=view, alerts=[], active=0, silences=[])
    remote._on_message(remote.topics.view("line-1"), state.model_dump_json().encode(), False)
    assert remote.engine.line_view("line-1", NOW) == view
    assert remote.engine.machine_view("press-1", NOW) == view.machines[0]
    assert remote.bus.stats.rejected == 0


def test_unknown_versions_and_garbage_are_counted_not_fatal(
        plant: PlantConfig, tmp_path: Path) -> None:
    remote = _remote(plant, tmp_path)
    topic = remote.topics.view("line-1")
    for payload in (b'{"v": 2, "engine": "e9"}', b"not json", b"{}"):
        remote._on_message(topic, payload, False)
    assert remote.bus.stats.rejected == 3
    assert remote.bus.stats.rejected_by_topic == {topic: 3}
    with pytest.raises(LiveUnavailable, match="no engine has published line 'line-1'"):
        remote.engine.line_view("line-1", NOW)


def test_events_cross_the_bus_as_the_same_dataclasses() -> None:
    event = StateChanged(machine="press-1", line="line-1", at=NOW, state=MachineState.DOWN,
                         previous=MachineState.RUNNING, reason_code="17", reason_text="Jam")
    batch = EventBatch.model_validate_json(EventBatch.of("e0", [event]).model_dump_json())
    assert batch.decoded() == [event]


def test_topics_are_versioned_and_safe_for_any_site_name() -> None:
    topics = Topics.of("linemon", "Stuttgart Plant / Hall 2")
    assert topics.view("line-1") == "linemon/v1/Stuttgart-Plant-Hall-2/lines/line-1/view"
    assert topics.line_of(topics.commands("line-7")) == "line-7"


def test_a_retained_view_or_an_offline_engine_is_not_live(plant: PlantConfig,
                                                           tmp_path: Path) -> None:
    """After a restart the broker replays the last view of an engine that may have died
    hours ago: it is kept, but served only once a live publish confirms it."""
    remote = _remote(plant, tmp_path)
    view = Engine(remote.config, NOW).line_view("line-1", NOW)
    payload = LineState(engine="e0", view=view, alerts=[], active=0,
                        silences=[]).model_dump_json().encode()
    remote._on_message(remote.topics.view("line-1"), payload, True)
    with pytest.raises(LiveUnavailable, match="waiting for a live update"):
        remote.engine.line_view("line-1", NOW)
    assert remote.engine.states() == []
    remote._on_message(remote.topics.view("line-1"), payload, False)
    assert remote.engine.line_view("line-1", NOW) == view
    offline = EngineStatus(engine="e0", lines=["line-1"], online=False, at=NOW)
    remote._on_message(remote.topics.engine("e0"), offline.model_dump_json().encode(), True)
    with pytest.raises(LiveUnavailable, match=r"\(e0\) is offline"):
        remote.engine.line_view("line-1", NOW)
