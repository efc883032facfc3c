"""deploy/compose.ha.yaml: two hubs on one PostgreSQL log, both started with --standby (whichever takes the log
first serves), each checked on /healthz, and a client that lists both; the systemd files say how to run a
standby. docker itself is used only where it answers."""

from __future__ import annotations

from tests.ops.test_deploy import (
    DEPLOY,
    SETTINGS,
    UNIT,
    check_postgres_hub,
    compose,
    compose_config,
    settings_named,
)

COMPOSE_HA = DEPLOY / "compose.ha.yaml"
HUBS = ("hub-a", "hub-b")
CLIENT_SETTINGS = {"hub", "admin_token"}  # what the example client reads (cli.main), not `synapse hub` flags


def test_two_standby_hubs_share_one_log() -> None:
    """hub-a and hub-b: each a hub like compose.yaml's, run as `synapse hub --standby`, on one database URL and
    two loopback ports."""
    doc = compose(COMPOSE_HA)
    hubs = [doc["services"][name] for name in HUBS]
    for name, hub in zip(HUBS, hubs, strict=True):
        check_postgres_hub(doc, name)
        assert hub["command"] == ["hub", "--standby"]
    assert len({hub["environment"]["SYNAPSE_DB"] for hub in hubs}) == 1
    published = [str(p).rsplit(":", 2)[1] for hub in hubs for p in hub["ports"]]
    assert len(set(published)) == len(published) == 2


def test_the_client_lists_both_hubs() -> None:
    """The example client's SYNAPSE_HUB names hub-a and hub-b, in that order; it runs only when asked."""
    client = compose(COMPOSE_HA)["services"]["client"]
    assert client["environment"]["SYNAPSE_HUB"].split(",") == [f"ws://{name}:8876" for name in HUBS]
    assert client["profiles"] == ["example"]
    assert "SYNAPSE_HUB=ws://hub-a:8876,ws://hub-b:8876" in COMPOSE_HA.read_text()


def test_every_setting_is_real() -> None:
    """The hubs' SYNAPSE_* names are `synapse hub` settings, `standby` among them (documented in the unit and
    the env file); the client's are client settings."""
    services = compose(COMPOSE_HA)["services"]
    for name in HUBS:
        assert settings_named(" ".join(services[name]["environment"])) <= SETTINGS
    assert settings_named(" ".join(services["client"]["environment"])) <= CLIENT_SETTINGS
    assert "standby" in SETTINGS
    for path in (UNIT, DEPLOY / "hub.env"):
        assert "standby" in settings_named(path.read_text()), path.name


def test_compose_ha_config_is_valid() -> None:
    """`docker compose config` accepts the file and resolves both hubs to one database URL."""
    services = compose_config(COMPOSE_HA)["services"]
    urls = {services[name]["environment"]["SYNAPSE_DB"] for name in HUBS}
    assert urls == {"postgresql+psycopg://synapse:pw@postgres:5432/synapse"}
