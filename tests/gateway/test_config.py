"""Configuration: defaults, TOML, environment precedence, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_settings
from gateway.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("BIOGW_"):
            monkeypatch.delenv(key)


def test_defaults_need_no_file() -> None:
    settings = load_settings()
    assert settings.ble.link == "virtual"
    assert settings.sim.polar == 1
    assert settings.sim.garment == 2


def test_toml_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "biogw.toml"
    path.write_text('log_level = "DEBUG"\n[ble]\nlink = "platform"\nadapter = "hci1"\n')
    settings = load_settings(path)
    assert settings.log_level == "DEBUG"
    assert settings.ble.link == "platform"
    assert settings.ble.adapter == "hci1"


def test_environment_overrides_file_field_by_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "biogw.toml"
    path.write_text('[ble]\nlink = "platform"\nadapter = "hci1"\n')
    monkeypatch.setenv("BIOGW_BLE__LINK", "virtual")
    settings = load_settings(path)
    assert settings.ble.link == "virtual"
    assert settings.ble.adapter == "hci1"


def test_overrides_win_over_environment_and_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "biogw.toml"
    path.write_text('log_level = "ERROR"\n[sim]\npolar = 3\ngarment = 4\n')
    monkeypatch.setenv("BIOGW_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("BIOGW_SIM__POLAR", "5")
    settings = load_settings(path, overrides={"log_level": "DEBUG", "sim": {"garment": 6}})
    assert settings.log_level == "DEBUG"
    assert settings.sim.polar == 5
    assert settings.sim.garment == 6


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.log_level = "DEBUG"  # type: ignore[misc]


def test_every_invalid_field_is_listed(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[ble]\nlink = "carrier-pigeon"\n[sim]\npolar = -1\nbogus = 1\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert info.value.source == str(path)
    fields = {p.split(":")[0] for p in info.value.problems}
    assert fields == {"ble.link", "sim.polar", "sim.bogus"}


def test_malformed_toml_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[ble\nlink = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(path)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(tmp_path / "absent.toml")


def test_bad_environment_value_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BIOGW_BLE__SCAN_TIMEOUT_S", "-3")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.source == "environment"
    assert info.value.problems[0].startswith("ble.scan_timeout_s")
