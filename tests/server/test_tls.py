"""TLS: --tls-certfile/--tls-keyfile serve wss:// and https:// on one port; the SDK and CLI trust a CA file."""

from __future__ import annotations

import asyncio
import datetime
import json
import shutil
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_sdk import Agent
from agent_sdk.sync import SyncAgent
from hub.protocol.errors import Code, HubError
from tests.conftest import Cli, ThreadHub, hub_config, seconds


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 and localhost (its own CA), made here and now."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        openssl = shutil.which("openssl")
        if openssl is None:
            pytest.skip(
                "neither the `cryptography` package nor the `openssl` command is here to make a certificate"
            )
        subprocess.run(
            [
                openssl,
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                str(key),
                "-out",
                str(cert),
                "-days",
                "2",
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=IP:127.0.0.1,DNS:localhost",
            ],
            check=True,
            capture_output=True,
        )
        return cert, key
    import ipaddress

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    built = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(built.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert, key


@pytest.fixture
def certs(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed(tmp_path)


@pytest.fixture
def tls_hub(
    db_path: Path, certs: tuple[Path, Path], client_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[ThreadHub]:
    monkeypatch.setenv("XDG_CONFIG_HOME", client_env["XDG_CONFIG_HOME"])
    cert, key = certs
    th = ThreadHub(hub_config(db_path, tls_certfile=str(cert), tls_keyfile=str(key)))
    try:
        yield th
    finally:
        th.stop()


def test_the_hub_serves_wss_and_the_sdk_trusts_a_ca_file(
    tls_hub: ThreadHub, certs: tuple[Path, Path]
) -> None:
    """With a certificate the hub's URL is wss://; SyncAgent with `ca_file` sends and reads over TLS."""
    assert tls_hub.url.startswith("wss://127.0.0.1:")
    with SyncAgent("alice", hub=tls_hub.url, ca_file=str(certs[0])) as alice:
        seq = alice.send("alice", "over tls", allow_unknown=True)
        assert alice.list_messages()[-1]["seq"] == seq


async def test_the_async_agent_streams_over_wss(tls_hub: ThreadHub, certs: tuple[Path, Path]) -> None:
    """Agent (async) connects to wss:// with a CA file and receives its messages live."""
    async with (
        Agent("a", hub=tls_hub.url, ca_file=str(certs[0])) as a,
        Agent("b", hub=tls_hub.url, ca_file=str(certs[0])) as b,
    ):
        stream = b.messages()
        await a.send("b", "secret", allow_unknown=True)
        message = await asyncio.wait_for(anext(stream), seconds(5_000))
        assert message.body == "secret"


def test_an_untrusted_certificate_is_refused(tls_hub: ThreadHub) -> None:
    """Without the CA file the system store does not know the certificate: `unreachable`, saying why."""
    with pytest.raises(HubError) as info:
        SyncAgent("x", hub=tls_hub.url).connect()
    assert info.value.code == Code.UNREACHABLE and "certificate" in info.value.message.lower()
    with pytest.raises(HubError) as info:
        SyncAgent("x", hub=tls_hub.url.replace("wss://", "ws://")).connect()
    assert info.value.code == Code.UNREACHABLE  # plain ws:// to a TLS port does not get through


def test_the_dashboard_health_and_metrics_are_served_over_https(
    tls_hub: ThreadHub, certs: tuple[Path, Path]
) -> None:
    """The same port answers HTTPS GETs: /, /healthz and /metrics."""
    context = ssl.create_default_context(cafile=str(certs[0]))
    base = tls_hub.url.replace("wss://", "https://", 1)
    for path, expect in (("/healthz", b'{"ok":true}'), ("/", b"dashboard.js"), ("/metrics", b"synapse_up")):
        with urllib.request.urlopen(base + path, context=context, timeout=seconds(5_000)) as r:
            assert r.status == 200 and expect in r.read()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(base + "/healthz", timeout=seconds(5_000))  # not trusted without the CA


def test_the_cli_takes_a_ca_file_flag_or_variable(
    tls_hub: ThreadHub, certs: tuple[Path, Path], client_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--ca-file PEM` (or SYNAPSE_CA_FILE) lets every client command reach a wss:// hub."""
    cli = Cli(tls_hub.url, client_env)
    refused = cli("send", "--name", "a", "--target", "a", "hi")
    assert refused.exit_code == 4 and "certificate" in refused.stderr.lower()
    sent = cli("send", "--name", "a", "--target", "a", "hi", "--ca-file", str(certs[0]), "--json")
    assert sent.exit_code == 0, sent.stderr
    assert json.loads(sent.stdout)["seq"] == 1
    monkeypatch.setenv("SYNAPSE_CA_FILE", str(certs[0]))
    tailed = cli("tail", "--name", "a", "--since", "0", "--count", "1", "--kind", "message", "--json")
    assert tailed.exit_code == 0, tailed.stderr
    assert json.loads(tailed.stdout)["event"]["body"] == "hi"


def test_a_missing_certificate_stops_the_hub_with_a_clear_message(tmp_path: Path) -> None:
    """`synapse hub --tls-certfile MISSING` exits 1 naming the file, without serving."""
    from click.testing import CliRunner

    from cli.main import synapse

    missing = tmp_path / "nope.pem"
    result = CliRunner().invoke(
        synapse, ["hub", "--port", "0", "--db", str(tmp_path / "log.db"), "--tls-certfile", str(missing)]
    )
    assert result.exit_code == 1
    assert f"cannot load the TLS certificate {missing}" in result.stderr
