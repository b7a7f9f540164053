"""A real mosquitto for the MQTT tests: on a free loopback port, with optional
password auth and TLS (a test CA made here with openssl), restartable.

``scripts/test`` installs mosquitto when it is missing and starts one for the whole
session (``FOOTCTL_TEST_MQTT_PORT``); without it, the ``broker`` fixture starts its own.
Tests that restart, authenticate or use TLS get a broker of their own.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PORT_ENV = "FOOTCTL_TEST_MQTT_PORT"
# mosquitto starts in a few milliseconds; a loaded CI machine may take longer.
START_TIMEOUT_S = 10.0


def mosquitto_binary() -> str:
    """The mosquitto executable (Debian puts it in /usr/sbin)."""
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if found is None:
        raise RuntimeError(
            "mosquitto is not installed: run scripts/test (it installs it), "
            "or apt-get install mosquitto"
        )
    return found


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, timeout: float = START_TIMEOUT_S) -> None:
    """Until something accepts on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


@dataclass
class TestCA:
    """A CA and a server certificate for 127.0.0.1 / localhost."""

    ca: Path
    cert: Path
    key: Path


def make_test_ca(directory: Path) -> TestCA:
    """A throwaway CA and a server certificate signed by it (openssl)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca = directory / "ca.key", directory / "ca.crt"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.crt"
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    # EC keys: an RSA key takes a second to make on a busy machine.
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1")
    run("req", "-x509", *ec, "-nodes", "-days", "2", "-subj",
        "/CN=footctl test CA", "-keyout", str(ca_key), "-out", str(ca))
    run("req", *ec, "-nodes", "-subj", "/CN=localhost",
        "-keyout", str(key), "-out", str(csr))
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert))
    return TestCA(ca=ca, cert=cert, key=key)


@dataclass
class Broker:
    """One mosquitto process on 127.0.0.1."""

    directory: Path
    port: int = field(default_factory=free_port)
    users: dict[str, str] = field(default_factory=dict)
    tls: TestCA | None = None
    external: bool = False
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The broker URL for --mqtt (no user)."""
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    def _config(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        lines = [f"listener {self.port} 127.0.0.1", "persistence false",
                 f"log_dest file {self.directory / 'mosquitto.log'}", "log_type all"]
        if os.geteuid() == 0:
            # Started as root, mosquitto drops to the "mosquitto" user, who cannot read
            # the test's files (the password file, the TLS key) in pytest's 0700 tmp dir.
            lines.append("user root")
        if self.users:
            pw = self.directory / "passwd"
            pw.write_text("")
            for user, password in self.users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(pw), user, password], check=True,
                               capture_output=True)
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines.append("allow_anonymous true")
        if self.tls is not None:
            lines += [f"cafile {self.tls.ca}", f"certfile {self.tls.cert}",
                      f"keyfile {self.tls.key}"]
        conf = self.directory / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def start(self) -> Broker:
        """Start (again, on the same port) and wait until it listens."""
        if self.external:
            return self
        conf = self._config()
        self.process = subprocess.Popen(
            [mosquitto_binary(), "-c", str(conf)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        try:
            wait_listening(self.port)
        except OSError:
            self.stop()
            log = self.directory / "mosquitto.log"
            raise RuntimeError(
                f"mosquitto did not start: {log.read_text() if log.exists() else ''}"
            ) from None
        return self

    def stop(self) -> None:
        """Stop it (the port is free again once this returns)."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        """Stop, then start on the same port."""
        self.stop()
        self.start()


@contextlib.contextmanager
def running(directory: Path, **kwargs: object) -> Iterator[Broker]:
    """A broker for the duration of the block."""
    broker = Broker(directory, **kwargs)  # type: ignore[arg-type]
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """The session's shared anonymous broker (scripts/test's, else one of our own).
    Tests on it use their own base topic, so they never see each other's messages."""
    port = os.environ.get(PORT_ENV)
    if port:
        yield Broker(tmp_path_factory.mktemp("mosquitto"), port=int(port), external=True)
        return
    with running(tmp_path_factory.mktemp("mosquitto")) as b:
        yield b


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Broker]:
    """A broker for this test alone (to restart, or stop)."""
    with running(tmp_path / "mosquitto") as b:
        yield b
