"""Shared pytest fixtures: the tiny dataset trees under tests/fixtures/ (see tests/fixtures/make_fixtures.py), a marker
for the processes a test starts, and read-only folders."""
import contextlib
import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def fixtures() -> Path:
    """The folder holding the fixture trees (market1501/, dukemtmc/, msmt17_v1/, msmt17_v2/, veri/, synth/)."""
    return FIXTURES


@pytest.fixture
def copy_tree(tmp_path):
    """copy_tree('market1501/Market-1501-v15.09.15') -> a writable copy under tmp_path, to damage in a test."""
    def copy(rel: str) -> Path:
        return Path(shutil.copytree(FIXTURES / rel, tmp_path / Path(rel).name))
    return copy


class Marker:
    """A unique environment entry for the processes a test starts, to find every one of them afterwards."""

    def __init__(self, name: str):
        self.name, self.value = "REID_NB_TEST_MARKER", name

    def env(self, **extra) -> dict:
        """This process's environment with the marker (and `extra`), for a subprocess."""
        return {**os.environ, **extra, self.name: self.value}

    def alive(self) -> list[int]:
        """The processes whose environment holds the marker (a driver, its workers, their kernels), from /proc."""
        entry, found = f"{self.name}={self.value}".encode(), []
        for env in Path("/proc").glob("[0-9]*/environ"):
            try:
                if entry in env.read_bytes().split(b"\0"): found.append(int(env.parent.name))
            except OSError: pass
        return found


@pytest.fixture
def marker(request):
    """A Marker unique to the test; whatever still carries it at the end (a failed test's processes) is killed."""
    m = Marker(f"{request.node.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    yield m
    for pid in m.alive():
        with contextlib.suppress(OSError): os.kill(pid, signal.SIGKILL)


@pytest.fixture
def read_only():
    """read_only([folders], cmd, **kw) -> subprocess.run(cmd) with `folders` read-only: `chmod -R a-w` for a user
    (restored afterwards), a read-only bind mount in a private mount namespace for root (whom modes do not stop)."""
    def run(folders, cmd, **kw):
        folders = [str(f) for f in folders]
        if os.geteuid() != 0:
            subprocess.run(["chmod", "-R", "a-w", *folders], check=True)
            try: return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)
            finally: subprocess.run(["chmod", "-R", "u+w", *folders], check=True)
        if not shutil.which("unshare") or subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode:
            pytest.skip("running as root without a private mount namespace: no way to make a folder read-only")
        mounts = "".join(f'mount --bind -o ro "{f}" "{f}" && ' for f in folders)
        return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", mounts + 'exec "$@"', "sh",
                               *cmd], capture_output=True, text=True, timeout=120, **kw)
    return run
