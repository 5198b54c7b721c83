"""Configuration: defaults, validation with one-line reasons, secrets from the environment."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from device.cli import main
from device.cli.run import apply_overrides
from device.config import Config, load_config, parse_config
from device.errors import ConfigError


def test_every_option_has_a_default(tmp_path: Path) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    assert load_config(empty) == parse_config({})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"camera": {"sorce": "0"}}, "unknown option 'sorce'"),
        ({"cameras": {}}, "unknown section [cameras]"),
        ({"quality": {"min_score": "high"}}, "expected float"),
        ({"mqtt": {"port": 1883.5}}, "expected int"),
        ({"mqtt": {"tls": 1}}, "expected bool"),
        ({"detector": {"variant": "long"}}, "variant must be"),
        ({"quality": {"max_yaw": float("nan")}}, "finite"),
        ({"model": "x"}, "must be a table"),
        ({"liveness": {"require": "yes"}}, "liveness] require: expected bool"),
        ({"liveness": {"requires": True}}, "unknown option 'requires'"),
        ({"liveness": {"frames": 1}}, "[liveness] frames: must be 2 to 1000, not 1"),
        ({"detector": {"min_score": 1.5}}, "[detector] min_score: must be 0 to 1, not 1.5"),
        (
            {"quality": {"min_sharpness": -3}},
            "[quality] min_sharpness: must be 0 to 100000, not -3",
        ),
        ({"model": {"threshold": 5.0}}, "[model] threshold: must be -1 to 1, not 5"),
        ({"mqtt": {"port": 0}}, "[mqtt] port: must be 1 to 65535, not 0"),
        ({"visits": {"crops": 11}}, "[visits] crops: must be 1 to 10, not 11"),
        (
            {"quality": {"min_brightness": 200, "max_brightness": 100}},
            "must be below max_brightness",
        ),
        ({"enroll": {"samples": 2}}, "[enroll] min_samples"),
        ({"camera": {"backoff_initial": 20.0}}, "backoff_initial must not exceed backoff_max"),
        ({"liveness": []}, "[liveness] must be a table"),
        ({"mqtt": {"hosts": "a:1883"}}, "[mqtt] hosts: expected list"),
        ({"mqtt": {"hosts": ["a", 1883]}}, "[mqtt] hosts[1]: expected str"),
        ({"mqtt": {"hosts": ["a:1883", "b:99999"]}}, "hosts entry 'b:99999': port must be 1-65535"),
        ({"mqtt": {"hosts": [":1883"]}}, "hosts entry ':1883': expected HOST[:PORT]"),
        ({"mqtt": {"hosts": ["a b"]}}, "hosts entry 'a b': expected HOST[:PORT]"),
        ({"mqtt": {"host": "a", "hosts": ["b"]}}, "[mqtt] set host or hosts, not both"),
        ({"mqtt": {"status_interval": 0}}, "[mqtt] status_interval: must be 1 to 86400, not 0"),
        (
            {"liveness": {"require": True}, "detector": {"landmarks": "blazeface"}},
            '[liveness] require = true needs [detector] landmarks = "mesh"',
        ),
    ],
)
def test_invalid_values_are_named(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_config(raw)


@pytest.mark.parametrize(
    "text",
    ["[detector]\nmin_score = 1.5\n", '[detector]\nvariant = "long"\n', "[enroll]\nsamples = 2\n"],
)
def test_every_config_message_names_the_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"^config {path}"):
        load_config(path)


def test_every_numeric_default_lies_in_its_declared_range() -> None:
    defaults = Config()
    for section in dataclasses.fields(Config):
        for option in dataclasses.fields(getattr(defaults, section.name)):
            if "range" in option.metadata and option.default is not None:
                low, high = option.metadata["range"]
                assert low <= option.default <= high, (section.name, option.name)


def test_integers_are_accepted_for_floats_and_threshold_may_be_unset() -> None:
    config = parse_config({"quality": {"min_sharpness": 50}, "model": {"threshold": 0.42}})
    assert config.quality.min_sharpness == 50.0
    assert config.model.threshold == 0.42
    assert Config().model.threshold is None


def test_secrets_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[mqtt]\nhost = "127.0.0.1"\nusername = "file-user"\n')
    os.chmod(path, 0o600)
    monkeypatch.setenv("PEEPHOLE_MQTT_PASSWORD", "s3cret")
    config = load_config(path)
    assert (config.mqtt.username, config.mqtt.password) == ("file-user", "s3cret")


def test_cli_refuses_a_broken_config_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[camera\nsource = 0\n")
    result = CliRunner().invoke(main, ["--config", str(path), "inspect", "x.jpg"])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "not valid TOML" in result.output
    missing = CliRunner().invoke(
        main, ["--config", str(tmp_path / "nope.toml"), "inspect", "x.jpg"]
    )
    assert missing.exit_code == 1 and "config file not found" in missing.output


def test_world_readable_config_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[mqtt]\npassword = "x"\n')
    os.chmod(path, 0o644)
    with caplog.at_level(logging.WARNING, logger="device.config"):
        load_config(path)
    (record,) = [r for r in caplog.records if r.name == "device.config"]
    assert record.levelno == logging.WARNING and "readable by other users" in record.getMessage()


def test_cli_refuses_a_bad_liveness_section_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[liveness]\nrequire = "always"\n')
    os.chmod(path, 0o600)
    result = CliRunner().invoke(main, ["--config", str(path), "inspect", "x.jpg"])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1
    assert "[liveness] require: expected bool" in result.output
    assert parse_config({"liveness": {"require": True}}).liveness.require is True


def test_hosts_default_their_port_and_host_alone_is_a_one_entry_list() -> None:
    mqtt = parse_config({"mqtt": {"hosts": ["a", "b:1884", "[::1]"], "port": 8883}}).mqtt
    assert mqtt.brokers() == [("a", 8883), ("b", 1884), ("::1", 8883)]
    assert parse_config({"mqtt": {"host": "a", "port": 1884}}).mqtt.brokers() == [("a", 1884)]
    assert parse_config({}).mqtt.brokers() == []


def test_the_mqtt_option_replaces_the_configured_hosts() -> None:
    config = parse_config({"mqtt": {"hosts": ["a", "b"]}})
    apply_overrides(config, None, "c:1884", None, None, None)
    config.mqtt.validate()
    assert config.mqtt.brokers() == [("c", 1884)]


def test_cli_refuses_a_bad_hosts_entry_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[mqtt]\nhosts = ["a:1883", "b:port"]\n')
    os.chmod(path, 0o600)
    result = CliRunner().invoke(main, ["--config", str(path), "inspect", "x.jpg"])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1
    assert "[mqtt] hosts entry 'b:port': port must be 1-65535" in result.output
