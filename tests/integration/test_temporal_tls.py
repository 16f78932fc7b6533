"""Remote-cluster settings against a real server: the dev server has no TLS of its own, so a
TLS-terminating proxy (with certificates made by openssl here) stands in front of it, as a
load balancer or Temporal Cloud's front end would."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.service import RPCError

from orchestrator.settings import TemporalSettings
from orchestrator.temporal_client import connect

SERVER_NAME = "temporal.test"

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def _sign(folder: Path, name: str, extension: str) -> None:
    """A key and a certificate for ``name``, signed by the test CA."""
    request, extfile = folder / f"{name}.csr", folder / f"{name}.ext"
    extfile.write_text(extension + "\n")
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        f"/CN={name}",
        "-keyout",
        folder / f"{name}-key.pem",
        "-out",
        request,
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        request,
        "-CA",
        folder / "ca.pem",
        "-CAkey",
        folder / "ca-key.pem",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        extfile,
        "-out",
        folder / f"{name}.pem",
    )


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("certs")
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=ca",
        "-keyout",
        folder / "ca-key.pem",
        "-out",
        folder / "ca.pem",
    )
    _sign(folder, "server", f"subjectAltName=DNS:{SERVER_NAME}")
    _sign(folder, "client", "extendedKeyUsage=clientAuth")
    return folder


def _server_context(certs: Path, *, require_client_cert: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs / "server.pem", certs / "server-key.pem")
    context.set_alpn_protocols(["h2"])  # gRPC is HTTP/2
    if require_client_cert:
        context.load_verify_locations(certs / "ca.pem")
        context.verify_mode = ssl.CERT_REQUIRED
    return context


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def tls_proxy(target: str, context: ssl.SSLContext) -> AsyncIterator[str]:
    """Terminates TLS on a free port and forwards the bytes to ``target`` in the clear."""
    host, port = target.rsplit(":", 1)

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))

    server = await asyncio.start_server(forward, "127.0.0.1", 0, ssl=context)
    async with server:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def _reachable(client: Client) -> bool:
    return await client.service_client.check_health()


async def test_mutual_tls_settings_connect_through_a_tls_front_end(
    client: Client, certs: Path
) -> None:
    context = _server_context(certs, require_client_cert=True)
    async with tls_proxy(client.service_client.config.target_host, context) as address:
        settings = TemporalSettings(
            address=address,
            tls_server_name=SERVER_NAME,
            tls_ca_cert_path=certs / "ca.pem",
            tls_client_cert_path=certs / "client.pem",
            tls_client_key_path=certs / "client-key.pem",
        )
        assert await _reachable(await connect(settings))
        without_cert = settings.model_copy(
            update={"tls_client_cert_path": None, "tls_client_key_path": None}
        )
        with pytest.raises((RPCError, RuntimeError)):
            await _reachable(await connect(without_cert))


async def test_plain_settings_fail_against_tls_and_wrong_ca_is_refused(
    client: Client, certs: Path
) -> None:
    context = _server_context(certs, require_client_cert=False)
    async with tls_proxy(client.service_client.config.target_host, context) as address:
        with pytest.raises((RPCError, RuntimeError)):
            await _reachable(await connect(TemporalSettings(address=address)))
        # system roots do not know the test CA: the server is not trusted
        with pytest.raises((RPCError, RuntimeError)):
            await _reachable(
                await connect(
                    TemporalSettings(address=address, tls=True, tls_server_name=SERVER_NAME)
                )
            )


async def test_api_key_turns_tls_on_and_is_sent_as_the_client_credential(
    client: Client, certs: Path
) -> None:
    context = _server_context(certs, require_client_cert=False)
    async with tls_proxy(client.service_client.config.target_host, context) as address:
        settings = TemporalSettings(
            address=address,
            api_key="cloud-key-123",
            tls_server_name=SERVER_NAME,
            tls_ca_cert_path=certs / "ca.pem",
        )
        connected = await connect(settings)
        assert await _reachable(connected)
    config = connected.service_client.config
    assert config.api_key == "cloud-key-123"
    assert config.tls is not False
    # a key alone switches TLS on (Temporal Cloud needs it): the plain server is refused
    plain = TemporalSettings(address=client.service_client.config.target_host, api_key="k")
    with pytest.raises((RPCError, RuntimeError)):
        await _reachable(await connect(plain))
