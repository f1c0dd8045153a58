"""Generated Verilog passes `verilator --lint-only -Wall` (with the repo's waiver file)."""

from __future__ import annotations

import pytest

from sparsa.cli import main

CASES = [(top, nm) for top in ("array", "pe") for nm in ("2:4", "1:4", "2:8", "1:1", "4:4", "3:4")]
CASES += [("accelerator", "2:4"), ("accelerator", "1:1")]


@pytest.mark.rtl
@pytest.mark.parametrize(("top", "nm"), CASES)
def test_verilog_is_lint_clean(tmp_path, capsys, top, nm):
    assert main(["verilog", "--rows", "4", "--cols", "3", "--nm", nm, "--top", top,
                 "-o", str(tmp_path), "--lint"]) == 0
    assert "lint-only -Wall: clean" in capsys.readouterr().out
