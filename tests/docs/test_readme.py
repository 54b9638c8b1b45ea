"""The README's modality table is the registry's, as `polymodal list modalities --markdown` prints it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The table sits between pymdownx.snippets section markers, so docs/index.md includes the same lines.
TABLE = re.compile(
    r"<!-- --8<-- \[start:modality-table\] -->\n(.*?)<!-- --8<-- \[end:modality-table\] -->", re.S
)
REGENERATE = "POLYMODAL_DISABLE_PLUGIN_AUTOLOAD=1 polymodal list modalities --markdown"


def test_readme_modality_table_is_generated() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert REGENERATE in readme  # the one-line way to regenerate it is stated
    found = TABLE.search(readme)
    assert found, "README.md lacks the modality-table markers"
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLYMODAL_")}
    env["POLYMODAL_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # built-in plugins only, whatever else is installed
    out = subprocess.run(
        [sys.executable, "-m", "polymodal.cli", "list", "modalities", "--markdown"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    generated = out.stdout
    rows = generated.splitlines()
    assert len(rows) == 2 + 12 and [r.split(" | ")[0] for r in rows[2:]] == [
        "| audio", "| graph", "| hyperspectral", "| image", "| imu", "| infrared",
        "| point_cloud", "| tabular", "| text", "| time_series", "| video", "| xray",
    ]  # fmt: skip
    assert found[1] == generated, f"README.md's modality table is stale; regenerate it with\n  {REGENERATE}"
