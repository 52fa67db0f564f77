"""``manage.py generate`` is the load generator with the same options and bytes."""

import subprocess
import sys

from .conftest import REPO_ROOT, run_manage

ARGS = [
    "--records",
    "3000",
    "--pages",
    "30",
    "--seed",
    "11",
    "--duplicates",
    "0.01",
    "--no-progress",
]


def test_manage_generate_writes_the_same_bytes_as_python_m_loadgen(tmp_path):
    via_manage, via_module = tmp_path / "manage", tmp_path / "module"
    run_manage("generate", "--out", str(via_manage), *ARGS)
    subprocess.run(
        [sys.executable, "-m", "loadgen", "--out", str(via_module), *ARGS],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
    )
    for name in ("ga.json", "psi.json"):
        written = (via_manage / name).read_bytes()
        assert written == (via_module / name).read_bytes()
        assert written.startswith(b"[{") and written.rstrip().endswith(b"}]")


def test_manage_generate_reports_bad_options_as_a_command_error(tmp_path):
    result = run_manage(
        "generate", "--out", str(tmp_path), "--records", "0", "--no-progress", check=False
    )
    assert result.returncode != 0
    assert "--records must be at least 1" in result.stderr
