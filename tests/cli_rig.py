"""The footctl CLI in subprocesses, shared by the end-to-end test modules.

The environment comes from conftest's isolated dirs (FOOTCTL_CONFIG, FOOTCTL_STATE_DIR,
...); a module that needs a config writes it with ``use_config``.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from footctl.virtual.sim import SimControl

# Wall-clock bound for one CLI run: the longest is a 15 s test program; generous because
# CI machines are shared (2 cores, several test processes).
CLI_TIMEOUT_S = 90.0
# How long wait_until waits by default: a reconnect or a daemon start on a loaded machine.
WAIT_S = 30.0
# How often wait_until looks again.
POLL_S = 0.05
# The ramp (one intensity level per 10 s by default) is exercised in the governor tests
# with a fake clock; here a fast ramp keeps each CLI call short.
FAST_RAMP = "[caps]\nintensity_step_seconds = 0.05\n"


def footctl_argv(*args: str) -> list[str]:
    """The command line that runs ``footctl *args`` with this interpreter."""
    return [sys.executable, "-m", "footctl.cli", *args]


def footctl(
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = CLI_TIMEOUT_S,
    check: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run the CLI to completion; ``env`` is laid over this process's environment;
    ``check``: a non-zero exit fails the test with the CLI's stderr."""
    proc = subprocess.run(
        footctl_argv(*args), capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})}, check=False,
    )  # fmt: skip
    if check and proc.returncode != 0:
        raise AssertionError(f"footctl {args} -> {proc.returncode}\n{proc.stderr}")
    return proc


def one_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """stdout is exactly one JSON object."""
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, (proc.stdout, proc.stderr)
    data = json.loads(lines[0])
    assert isinstance(data, dict)
    return data


def wait_until(predicate: Callable[[], Any], timeout: float = WAIT_S, what: str = "it") -> Any:
    """Poll ``predicate`` until it is truthy (its value), or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(POLL_S)
    raise AssertionError(f"timed out waiting for {what}")


def use_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> Path:
    """Write ``text`` as the config file every CLI run of the test reads."""
    config = tmp_path / "test-config.toml"
    config.write_text(text)
    monkeypatch.setenv("FOOTCTL_CONFIG", str(config))
    return config


def read_sim_banner(proc: subprocess.Popen[str]) -> tuple[str, SimControl]:
    """A started ``footctl sim`` process's first line: (link address, control client)."""
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first.startswith("footctl sim:"), first
    return first.split()[-1], SimControl(first.split(" control ")[1].split()[0])


@contextlib.contextmanager
def sim_process(log: Path, *profiles: str) -> Iterator[tuple[str, SimControl]]:
    """A ``footctl sim PROFILE...`` process (stderr into ``log``): (link, control)."""
    with log.open("w") as err:
        proc = subprocess.Popen(
            footctl_argv("sim", *profiles), stdout=subprocess.PIPE, stderr=err, text=True
        )
        try:
            yield read_sim_banner(proc)
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def start_owner(link: str, *args: str) -> subprocess.Popen[str]:
    """``footctl --link LINK --json ARGS``, left running (a one-shot command that stays
    the owner of the massager until its session ends)."""
    return subprocess.Popen(
        footctl_argv("--link", link, "--json", *args),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
