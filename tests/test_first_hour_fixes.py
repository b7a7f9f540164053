"""Second pass over issue 13 ("a newcomer's first hour"): what the first pass left
wrong, each through the real CLI in a subprocess where it is about what ships."""

from __future__ import annotations

import os
from pathlib import Path

from cli_rig import footctl, one_json, sim_process


def config_file() -> Path:
    return Path(os.environ["FOOTCTL_CONFIG"])


# --- devices add: a virtual massager is saved as one -----------------------------------


def test_devices_add_saves_a_simulated_massager_as_simulated() -> None:
    path = config_file()
    added = footctl("--simulate", "shiatsu-aa55", "--json", "devices", "add", "--name",
                    "bedroom", "--timeout", "1")
    assert added.returncode == 0, added.stderr
    assert one_json(added)["simulate"] is True
    assert "simulate = true" in path.read_text()
    status = footctl("--json", "--device", "bedroom", "status")
    assert status.returncode == 0, status.stderr


def test_devices_add_over_a_sim_link_is_refused_with_the_reason(tmp_path: Path) -> None:
    path = config_file()
    with sim_process(tmp_path / "sim.log", "shiatsu-aa55") as (link, _control):
        proc = footctl("--link", link, "devices", "add", "--name", "bedroom",
                       "--timeout", "1")
    assert proc.returncode == 2, proc.stderr
    assert "cannot be saved" in proc.stderr and "--link" in proc.stderr
    assert not path.exists()
