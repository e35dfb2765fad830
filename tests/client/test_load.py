"""The load bench's short variant: 16 clients page a faulty emulator process; every error seen was injected."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_sixteen_clients_through_injected_faults_see_no_other_error(tmp_path: Path) -> None:
    """5 s of bench/bench_load.py --faults: faults were injected, and observed == injected, kind by kind."""
    out = tmp_path / "load.json"
    command = [sys.executable, str(REPO / "bench" / "bench_load.py"), "--seconds", "5", "--faults", "--json", str(out)]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    result = json.loads(out.read_text())
    assert result["clients"] == 16 and result["requests"] > 0 and result["pages"] > 0
    assert result["injected_total"] > 0, "the fault mix should inject something in 5 s"
    assert result["uninjected_errors"] == 0 and result["injected_not_observed"] == 0, result
    assert result["observed"] == result["injected"] and result["unexpected"] == []
