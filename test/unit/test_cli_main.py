"""The `seem-ros` dispatcher: help, unknown commands, lazy dispatch to a registered module."""
import sys
import types

import pytest

from seem_ros.cli import main as cli


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 0
    assert 'usage: seem-ros' in capsys.readouterr().out


def test_unknown_command_exits_2():
    with pytest.raises(SystemExit) as exc:
        cli.main(['no-such-command'])
    assert exc.value.code == 2


def test_registered_command_gets_the_remaining_arguments(monkeypatch):
    calls = []
    module = types.ModuleType('fake_command')
    module.main = lambda argv: calls.append(argv) or 3
    monkeypatch.setitem(sys.modules, 'fake_command', module)
    monkeypatch.setitem(cli.COMMANDS, 'fake', ('fake_command', 'a fake command'))
    assert cli.main(['fake', '--x', '1']) == 3
    assert calls == [['--x', '1']]
    assert 'a fake command' in cli.build_parser().format_help()
