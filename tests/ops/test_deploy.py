"""deploy/: the systemd unit is hardened and valid, compose.yaml wires the hub to a healthy PostgreSQL, and the
image's settings and health check work on a real hub; docker itself is used only where it answers."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from hub.config import HubConfig
from tests.conftest import ROOT, seconds

DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "synapse-hub.service"
SETTINGS = {f.name for f in msgspec.structs.fields(HubConfig)}


def unit_entries(text: str) -> dict[str, list[tuple[str, str]]]:
    """systemd's INI dialect: sections of (key, value) pairs, keys may repeat; comments and blanks skipped."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None and "=" in line, f"not a unit line: {raw!r}"
        key, value = line.split("=", 1)
        current.append((key.strip(), value.strip()))
    return sections


def test_systemd_unit_is_hardened() -> None:
    """A throwaway user, a state directory, a read-only system, no privileges; SIGTERM drains; restarts on
    failure; settings from an env file."""
    sections = unit_entries(UNIT.read_text())
    service = dict(sections["Service"])
    expected = {
        "DynamicUser": "yes",
        "StateDirectory": "synapse",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "RestrictSUIDSGID": "yes",
        "CapabilityBoundingSet": "",
        "Restart": "on-failure",
        "KillSignal": "SIGTERM",
    }
    assert {k: service.get(k) for k in expected} == expected
    assert service["ExecStart"].endswith("/synapse hub")
    assert service["EnvironmentFile"].startswith("-/etc/synapse/")  # optional: the defaults run as they are
    assert "SYNAPSE_DB=/var/lib/synapse/hub.db" in [v for k, v in sections["Service"] if k == "Environment"]
    assert int(service["TimeoutStopSec"]) > HubConfig().drain_seconds
    assert dict(sections["Install"])["WantedBy"] == "multi-user.target"


def test_systemd_unit_verifies() -> None:
    """systemd-analyze accepts every directive (run on a copy whose ExecStart exists on this machine)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed: only the structural check ran")
    text = UNIT.read_text().replace("/opt/synapse-hub/bin/synapse hub", f"{sys.executable} -m hub hub")
    assert text != UNIT.read_text()
    copy = Path(subprocess.check_output(["mktemp", "-d"], text=True).strip()) / UNIT.name
    try:
        copy.write_text(text)
        run = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    finally:
        shutil.rmtree(copy.parent)
    out = run.stdout + run.stderr
    for complaint in ("Unknown key", "Unknown lvalue", "Invalid", "Failed to parse", "ignoring"):
        assert complaint not in out, out


def settings_named(text: str) -> set[str]:
    return {m.lower() for m in re.findall(r"\bSYNAPSE_([A-Z_]+)\b", text)}


def test_every_setting_in_deploy_is_a_hub_setting() -> None:
    """SYNAPSE_* names in the unit, env file, Dockerfile and compose file are real `synapse hub` settings."""
    for name in ("synapse-hub.service", "hub.env", "Dockerfile", "compose.yaml"):
        named = settings_named((DEPLOY / name).read_text())
        assert named and named <= SETTINGS, (name, named - SETTINGS)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(
        r"\\\n",
        " ",
        "\n".join(
            line
            for line in (DEPLOY / "Dockerfile").read_text().splitlines()
            if not line.lstrip().startswith("#")
        ),
    )
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in joined.splitlines()
        if line.strip()
    ]


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for op, args in dockerfile_instructions():
        if op == "ENV":
            env.update(part.partition("=")[::2] for part in shlex.split(args))
    return env


def healthcheck_code() -> str:
    for op, args in dockerfile_instructions():
        if op == "HEALTHCHECK":
            exec_form = json.loads(args[args.index("CMD") + 3 :])
            assert exec_form[:2] == ["python", "-c"]
            return str(exec_form[2])
    raise AssertionError("no HEALTHCHECK")


def test_dockerfile_shape() -> None:
    """Slim Python 3.11 base, a non-root user, the PostgreSQL extra, port 8876, a /healthz check, and only
    sources that exist are copied."""
    ops = dockerfile_instructions()
    first = dict(ops)
    assert first["FROM"] == "python:3.11-slim"
    users = [args for op, args in ops if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert any(op == "RUN" and "pip install '.[postgres]'" in args for op, args in ops)
    assert first["EXPOSE"] == "8876"
    assert "/healthz" in healthcheck_code()
    for op, args in ops:
        if op == "COPY":
            for source in shlex.split(args)[:-1]:
                assert (ROOT / source).exists(), source
    env = image_env()
    assert env["SYNAPSE_HOST"] == "0.0.0.0" and env["SYNAPSE_DB"].startswith("/data/")


def test_image_settings_run_a_hub_that_passes_its_health_check(tmp_path: Path) -> None:
    """The image's environment starts a real hub (listening on every address once an admin token is given,
    refusing without one) and its HEALTHCHECK command succeeds against it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNAPSE_")}
    env.update(image_env())
    env.update(
        {
            "SYNAPSE_DB": str(tmp_path / "data" / "hub.db"),
            "XDG_DATA_HOME": str(tmp_path / "data"),
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "SYNAPSE_PORT": "0",
            "PYTHONPATH": str(ROOT),
        }
    )
    refused = subprocess.run(
        [sys.executable, "-m", "hub", "hub"], env=env, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2 and "admin token" in refused.stderr
    env["SYNAPSE_ADMIN_TOKEN"] = "t" * 32
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub", "hub"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.match(r"listening ws://0\.0\.0\.0:(\d+)", line)
        assert match, line
        check = subprocess.run(
            [sys.executable, "-c", healthcheck_code()],
            env={**env, "SYNAPSE_PORT": match.group(1)},
            capture_output=True,
            timeout=seconds(30_000),
        )
        assert check.returncode == 0, check.stderr
    finally:
        proc.terminate()
        proc.wait(30)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def compose(path: Path = DEPLOY / "compose.yaml") -> dict[str, Any]:
    try:
        import yaml
    except ImportError:
        pytest.skip(f"PyYAML is not installed (it comes with the dev extra): {path.name} was not parsed")
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict)
    return doc


def check_postgres_hub(doc: dict[str, Any], name: str) -> None:
    """PostgreSQL 16 with a volume and a health check; the hub service `name`, built from deploy/Dockerfile,
    waits for it to be healthy, logs to it, needs an admin token, is checked on /healthz and published on
    loopback only."""
    postgres, hub = doc["services"]["postgres"], doc["services"][name]
    assert postgres["image"] == "postgres:16"
    assert "pgdata:/var/lib/postgresql/data" in postgres["volumes"] and "pgdata" in doc["volumes"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert hub["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert (DEPLOY / hub["build"]["context"] / hub["build"]["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    env = hub["environment"]
    assert (
        env["SYNAPSE_DB"].startswith("postgresql+psycopg://synapse:")
        and "@postgres:5432/" in env["SYNAPSE_DB"]
    )
    assert env["SYNAPSE_ADMIN_TOKEN"].startswith("${SYNAPSE_ADMIN_TOKEN:?")
    assert "/healthz" in " ".join(hub["healthcheck"]["test"])
    assert all(str(p).startswith("127.0.0.1:") for p in hub["ports"])


def test_compose_runs_the_hub_on_a_healthy_postgres() -> None:
    """compose.yaml: PostgreSQL 16 with a volume and a health check; the hub, built from deploy/Dockerfile,
    waits for it to be healthy and logs to it."""
    check_postgres_hub(compose(), "hub")


def docker_answers() -> str | None:
    """Why docker cannot be used here, or None when its engine answers."""
    docker = shutil.which("docker")
    if docker is None:
        return "docker is not installed"
    try:
        info = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "docker info timed out"
    if info.returncode != 0:
        return f"no docker engine answers (docker info: {(info.stderr.strip().splitlines() or ['?'])[-1]})"
    return None


def compose_config(path: Path) -> dict[str, Any]:
    """`docker compose config` of the file (given the two required variables); skips without docker compose."""
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip(f"docker is not installed: {path.name} was checked structurally only")
    version = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=30)
    if version.returncode != 0:
        pytest.skip(f"the docker compose plugin is not installed: {path.name} was checked structurally only")
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "POSTGRES_PASSWORD": "pw", "SYNAPSE_ADMIN_TOKEN": "t"}
    run = subprocess.run(
        [docker, "compose", "-f", str(path), "config", "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    config = json.loads(run.stdout)
    assert isinstance(config, dict)
    return config


def test_compose_config_is_valid() -> None:
    """`docker compose config` accepts the file (given the two required variables)."""
    config = compose_config(DEPLOY / "compose.yaml")
    assert config["services"]["hub"]["environment"]["SYNAPSE_DB"].startswith(
        "postgresql+psycopg://synapse:pw@"
    )


def test_image_builds() -> None:
    """The image builds from the repository root and runs `synapse` as a non-root user."""
    why = docker_answers()
    if why is not None:
        pytest.skip(why)
    tag = "synapse-hub:test"
    build = subprocess.run(
        ["docker", "build", "-f", str(DEPLOY / "Dockerfile"), "-t", tag, str(ROOT)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert build.returncode == 0, build.stderr[-4000:]
    run = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "id", tag, "-u"], capture_output=True, text=True
    )
    assert run.returncode == 0 and run.stdout.strip() == "10001"
    run = subprocess.run(["docker", "run", "--rm", tag, "--version"], capture_output=True, text=True)
    assert run.returncode == 0 and "synapse" in run.stdout
