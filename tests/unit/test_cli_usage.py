"""proxyctl's argument parsing: --help of every command and usage errors (no dashboard)."""

from __future__ import annotations

import pytest

from dashboard import cli

COMMANDS = [[], ["status"], ["group"], ["group", "list"], ["group", "add"], ["group", "remove"],
            ["group", "add-server"], ["group", "remove-server"], ["slots"],
            ["slots", "assign"], ["slots", "show"], ["proxy"], ["proxy", "list"],
            ["proxy", "remove"], ["up"], ["hotkeys"], ["bigkeys"]]


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: " ".join(a) or "proxyctl")
def test_help_for_every_command(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main([*argv, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: proxyctl")


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["slots", "assign", "0-10"])
    assert exc.value.code == 2
