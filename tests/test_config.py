from __future__ import annotations

from pathlib import Path

import pytest

from shoprec.config import load_settings
from shoprec.exceptions import ConfigError


def test_defaults() -> None:
    settings = load_settings()
    assert settings.workspace == Path("shoprec-data")
    assert settings.event_weights.weights["purchase"] == 5.0


def test_yaml_file_env_and_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "shoprec.yaml"
    config.write_text(
        "workspace: /from/file\nevent_weights:\n  weights: {view: 2}\n"
        "ingest:\n  mapping:\n    events: {user_id: customer}\n"
    )
    settings = load_settings(config)
    assert settings.workspace == Path("/from/file")
    assert settings.event_weights.weights == {"view": 2.0}
    assert settings.ingest.mapping.events == {"user_id": "customer"}
    monkeypatch.setenv("SHOPREC_WORKSPACE", "/from/env")
    assert load_settings(config).workspace == Path("/from/env")
    assert load_settings(config, workspace=Path("/from/flag")).workspace == Path("/from/flag")


def test_toml_file(tmp_path: Path) -> None:
    config = tmp_path / "shoprec.toml"
    config.write_text('[ingest]\ndefault_event_type = "purchase"\n')
    assert load_settings(config).ingest.default_event_type == "purchase"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ingest:\n  mapping: {orders: {}}\n", r"ingest\.mapping\.orders: Extra inputs"),
        ("event_weights: {weights: {view: heavy}}\n", r"event_weights\.weights\.view"),
        ("- a list\n", "must hold a mapping"),
        ("workspace: [unclosed\n", "not valid yaml"),
    ],
)
def test_bad_config_names_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "shoprec.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(config)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read config file"):
        load_settings(tmp_path / "nope.yaml")


def test_every_default_model_is_a_known_model() -> None:
    from shoprec.models import MODELS, parse_model_settings

    settings = load_settings()
    parsed = parse_model_settings(settings.models, settings.default_model)
    assert {config.kind for config in parsed.values()} == set(MODELS)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models:\n  fast: {kind: ease, l2: -1}\n", r"shoprec\.yaml: models\.fast: model ease: l2"),
        ("models:\n  odd: {kind: deep}\n", r"models\.odd: unknown model 'deep'; known models: als"),
        ("default_model: fast\n", r"default_model 'fast' is not among the models \(popular, "),
        ("evaluation: {split: {kind: sideways}}\n", r"shoprec\.yaml: evaluation\.split: "),
        ("evaluation: {tuning: {trials: lots}}\n", r"shoprec\.yaml: evaluation\.tuning: "),
    ],
)
def test_the_cli_checks_what_models_and_evaluation_define(
    tmp_path: Path, text: str, message: str
) -> None:
    from shoprec.cli.common import check_settings

    config = tmp_path / "shoprec.yaml"
    config.write_text(text)
    settings = load_settings(config)  # plain settings: their shape is checked by their users
    with pytest.raises(ConfigError, match=message):
        check_settings(settings, str(config))
