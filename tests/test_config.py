import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from mmchat.config import Config, parse_config

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_come_from_the_dataclass():
    config = parse_config([], environ={})
    assert config == Config()


def test_environment_sets_defaults_and_flags_override_them():
    env = {"MMCHAT_MODEL": "/models/x", "MMCHAT_PORT": "9000", "MMCHAT_SHARE": "yes", "MMCHAT_TEMPERATURE": "0.2"}
    config = parse_config(["--port", "9100"], environ=env)
    assert config.model == "/models/x"
    assert config.port == 9100  # the flag wins over the environment
    assert config.share is True
    assert config.temperature == 0.2


def test_bool_flags_can_be_turned_off_again():
    config = parse_config(["--no-speak-answers"], environ={"MMCHAT_SPEAK_ANSWERS": "1"})
    assert config.speak_answers is False


@pytest.mark.parametrize("env", [{"MMCHAT_PORT": "eighty"}, {"MMCHAT_QUANTIZATION": "fp3"}])
def test_bad_environment_values_are_refused_with_the_variable_named(env, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_config([], environ=env)
    said = str(exit_info.value.code) + capsys.readouterr().err
    assert next(iter(env)) in said


def test_help_documents_every_option():
    result = subprocess.run([sys.executable, "app.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    help_text = " ".join(result.stdout.split())
    for field in dataclasses.fields(Config):
        assert "--" + field.name.replace("_", "-") in help_text
        assert "MMCHAT_" + field.name.upper() in help_text
