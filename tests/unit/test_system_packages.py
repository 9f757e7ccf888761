"""`make test`'s first step, `scripts/system-packages`: on a machine without the tests' system
tools it installs them with apt-get as root, and otherwise names them and stops."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.conftest import require_tool

SCRIPT = Path(__file__).parents[2] / "scripts" / "system-packages"
# the browser tests': Debian's chromium (and its driver), npm for axe-core
PACKAGES = {"espeak-ng", "sox", "ffmpeg", "kcat", "prometheus", "chromium", "chromium-driver"}
PACKAGES |= {"npm"}


def _bare_path(tmp_path: Path, uid: int) -> dict[str, str]:
    """A PATH with only what the script needs besides the tools: bash, sort, and stand-ins for
    `id` (this uid) and `apt-get` (records its arguments)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "sort"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    (bin_dir / "id").write_text(f"#!{shutil.which('bash')}\necho {uid}\n")
    (bin_dir / "apt-get").write_text(
        f'#!{shutil.which("bash")}\necho "$*" >> {tmp_path / "apt.log"}\n'
    )
    for stand_in in ("id", "apt-get"):
        (bin_dir / stand_in).chmod(0o755)
    return {**os.environ, "PATH": str(bin_dir)}


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    bash = shutil.which("bash")
    assert bash
    return subprocess.run([bash, str(SCRIPT)], env=env, capture_output=True, text=True)


def test_as_root_the_missing_tools_are_installed_with_apt_get(tmp_path: Path) -> None:
    result = _run(_bare_path(tmp_path, 0))
    assert result.returncode == 0, result.stderr
    update, install = (tmp_path / "apt.log").read_text().splitlines()
    assert update.split() == ["update", "-qq"]
    words = install.split()
    assert words[:3] == ["install", "-y", "-qq"]
    assert set(words[3:]) == PACKAGES  # each package once (prometheus brings promtool too)
    assert len(words[3:]) == len(PACKAGES)


def test_otherwise_they_are_named_with_the_command_and_nothing_runs(tmp_path: Path) -> None:
    result = _run(_bare_path(tmp_path, 1000))
    assert result.returncode == 2
    named = result.stderr.split("apt-get install", 1)[1].split()
    assert set(named) == PACKAGES
    assert not (tmp_path / "apt.log").exists()


def test_nothing_is_done_when_every_tool_is_there() -> None:
    for tool in (*PACKAGES - {"chromium-driver"}, "promtool", "chromedriver"):
        require_tool(tool)
    result = subprocess.run([str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stderr == ""
