"""Settings: defaults, environment, TOML, and one clear line for a bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from settings import Settings, SettingsError, load_settings, unknown_environment_names


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("CUNXIANG_"):
            monkeypatch.delenv(name)


def test_defaults_are_sqlite_in_data_loopback_8080_and_shanghai_time() -> None:
    settings = load_settings()
    assert settings.database_url == f"sqlite+aiosqlite:///{(Path('data') / 'cunxiang.db').resolve()}"
    assert (settings.server.host, settings.server.port) == ("127.0.0.1", 8080)
    assert settings.timezone == "Asia/Shanghai"


def test_environment_overrides_a_toml_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "cunxiang.toml"
    config.write_text('county_name = "文件县"\n[server]\nport = 9000\nhost = "0.0.0.0"\n', encoding="utf-8")
    monkeypatch.setenv("CUNXIANG_SERVER_PORT", "9100")
    monkeypatch.setenv("CUNXIANG_DATABASE_URL", "postgresql+asyncpg://u:p@db/cunxiang")
    settings = load_settings(config)
    assert settings.county_name == "文件县"
    assert settings.server.port == 9100
    assert settings.server.host == "0.0.0.0"
    assert settings.database_url == "postgresql+asyncpg://u:p@db/cunxiang"
    assert not settings.is_sqlite


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("CUNXIANG_SERVER_PORT", "eighty", "CUNXIANG_SERVER_PORT (server.port): Input should be a valid integer"),
        (
            "CUNXIANG_SERVER_PORT",
            "70000",
            "CUNXIANG_SERVER_PORT (server.port): Input should be less than or equal to 65535",
        ),
        ("CUNXIANG_TIMEZONE", "Mars/Olympus", "CUNXIANG_TIMEZONE (timezone): unknown time zone 'Mars/Olympus'"),
        ("CUNXIANG_DATABASE_URL", "mysql://x", "CUNXIANG_DATABASE_URL (database.url): must start with"),
        ("CUNXIANG_ASTERISK", "maybe", "CUNXIANG_ASTERISK (asterisk): Input should be 'sandbox', 'external' or 'none'"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    message = str(raised.value)
    assert "\n" not in message
    assert expected in message


def test_a_whole_section_that_is_not_json_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUNXIANG_SERVER", "{")
    with pytest.raises(SettingsError, match='bad setting: error parsing value for field "server"'):
        load_settings()


def test_an_unknown_key_in_the_file_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[server]\nprot = 1\n", encoding="utf-8")
    with pytest.raises(SettingsError, match=r"server\.prot.*Extra inputs are not permitted"):
        load_settings(config)


def test_a_missing_or_broken_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[server\n", encoding="utf-8")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(broken)


def test_misspelt_environment_variables_are_reported() -> None:
    environ = {"CUNXIANG_SERVER_PORT": "1", "CUNXIANG_SERVR_PORT": "2", "CUNXIANG_ASTERISK_CACHE": "/x", "PATH": "/bin"}
    assert unknown_environment_names(environ, ("CUNXIANG_ASTERISK_CACHE",)) == ["CUNXIANG_SERVR_PORT"]


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(Exception, match="frozen"):
        settings.server.port = 1  # type: ignore[misc]
