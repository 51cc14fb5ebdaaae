"""npm packages for the tests of third-party SSE clients: installed into a test's folder."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest


def install(spec: str, where: Path) -> str:
    """`npm install spec` into `where`; the path of node. Without node and npm, or when the
    registry does not answer, the test skips (fails under CI=true, where both are expected)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not (node and npm):
        if os.environ.get("CI") == "true":
            pytest.fail(f"node and npm are needed for the {spec} test")
        pytest.skip("node and npm are not installed")
    done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(where),
                           spec], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"npm install {spec} failed: {done.stderr[-500:]}")
        pytest.skip(f"npm install {spec} failed (offline?)")
    return node
