"""Settings: defaults, then a YAML or TOML file, then ``SHOPREC_*`` environment variables.

Event weights, column mappings and every other tunable live here, not in code (DESIGN §2).

These are plain settings: this module imports no model, splitter or index. The parts whose
shape another module defines (``models``, ``evaluation.split``, ``evaluation.tuning``) are
checked by their consumers; the CLI checks them all when it loads the settings
(:func:`shoprec.cli.common.settings_for`), naming the file and the field.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from shoprec.exceptions import ConfigError, describe_validation_error
from shoprec.index import EF_SEARCH

__all__ = [
    "ColumnMapping",
    "EmbeddingSettings",
    "EventWeights",
    "IngestConfig",
    "ServingSettings",
    "Settings",
    "load_settings",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EventWeights(_Strict):
    """How much each event type counts in the user × item interaction matrix.

    Types not listed count zero. For types in ``value_weighted`` the event's ``value`` (a rating,
    a quantity) multiplies the weight.
    """

    weights: dict[str, float] = Field(
        default_factory=lambda: {
            "view": 1.0,
            "click": 1.0,
            "add_to_cart": 3.0,
            "wishlist": 2.0,
            "purchase": 5.0,
            "review": 5.0,
            "rating": 1.0,
        }
    )
    value_weighted: list[str] = Field(default_factory=lambda: ["rating"])


class ColumnMapping(_Strict):
    """Canonical column name -> source column name, per table, for the generic formats."""

    events: dict[str, str] = Field(default_factory=dict)
    items: dict[str, str] = Field(default_factory=dict)
    users: dict[str, str] = Field(default_factory=dict)


class IngestConfig(_Strict):
    """Options of ``shoprec ingest`` for sources whose shape is not fixed by their format."""

    table: Literal["auto", "events", "items", "users"] = Field(
        default="auto", description="which table the generic formats read; auto = by name"
    )
    mapping: ColumnMapping = Field(default_factory=ColumnMapping)
    timestamp_formats: list[str] = Field(
        default_factory=list,
        description="strftime formats tried in order (or 'epoch'); empty = ISO-8601 and friends",
    )
    event_type_map: dict[str, str] = Field(
        default_factory=dict, description="source event type -> canonical event type"
    )
    default_event_type: str | None = None
    entity_type: str | None = Field(default=None, description="entity type of ingested items")


_MODEL_KINDS = (
    "popular", "copurchase", "itemknn", "ease", "als", "bpr", "content", "buy_again",
    "next_item", "two_stage",
)  # fmt: skip


DEFAULT_METRICS = (
    "precision", "recall", "map", "ndcg", "mrr", "hit_rate", "missed_offers", "coverage",
    "gini", "novelty", "intra_list_diversity", "price_tier_fit",
)  # fmt: skip


class EvaluationSettings(_Strict):
    """What ``shoprec evaluate`` does: the split, the metrics and whether to tune first."""

    split: dict[str, Any] = Field(
        default_factory=lambda: {"kind": "time", "train_ratio": 0.8},
        description="a splitter: kind time (cutoff or train_ratio), leave_last_out or random",
    )
    k: int = Field(default=10, ge=1, le=1000)
    curve_ks: list[int] = Field(default_factory=lambda: [1, 5, 10, 20])
    metrics: list[str] = Field(default_factory=lambda: list(DEFAULT_METRICS))
    exclude_seen: Literal["model", "both", "exclude", "keep"] = "both"
    tune: bool = Field(default=False, description="tune each model on folds of the train part")
    tuning: dict[str, Any] = Field(default_factory=dict, description="see TuningConfig")


class ServingSettings(_Strict):
    """What ``shoprec serve`` does."""

    host: str = Field(default="127.0.0.1", description="address to bind (loopback by default)")
    port: int = Field(default=8080, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    reload_seconds: float = Field(
        default=1.0, ge=0, description="how often to look for a newly published run (0: never)"
    )
    recent_events: int = Field(
        default=50, ge=1, le=10_000, description="live events remembered per user"
    )
    ef_search: int = Field(
        default=EF_SEARCH,
        ge=1,
        le=4096,
        description="candidates an HNSW index search looks at (more: better recall, slower)",
    )
    bus: str = Field(
        default="memory://",
        description="event bus: memory:// (in process, logged to <workspace>/stream/bus) or "
        "redis://host:port/db (the redis extra: pip install 'shoprec[redis]')",
    )
    state: str = Field(
        default="memory://",
        description="live user state: memory:// or redis://host:port/db (the redis extra)",
    )
    lake_flush_seconds: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="how often the event worker appends what it applied to the lake; the live "
        "state has every event at once, and the bus keeps what is not yet in the lake",
    )
    worker: bool = Field(
        default=True,
        description="apply events in a thread of the server (false: run 'shoprec consume')",
    )
    demo_login: bool = Field(
        default=False,
        description="the storefront's password-less sign-in (a demo, not auth): off unless "
        "asked for; 'shoprec demo' turns it on for the server it starts",
    )


class EmbeddingSettings(_Strict):
    """What ``shoprec enrich`` (and the enrichment step of ``shoprec build``) does: which
    provider embeds the entities' text, and how text and attribute vectors combine."""

    provider: Literal["tfidf", "minilm", "http"] = Field(
        default="tfidf",
        description="tfidf: TF-IDF + SVD fitted on the catalogue (no download); minilm: "
        "all-MiniLM-L6-v2 on CPU (extra shoprec[text]); http: a remote enrichment service "
        "(see http)",
    )
    tfidf_dimensions: int = Field(
        default=64, ge=2, le=4096, description="SVD size of the tfidf provider's vectors"
    )
    tfidf_max_features: int = Field(
        default=50_000, ge=10, description="vocabulary size of the tfidf provider"
    )
    text_weight: float = Field(
        default=1.0, ge=0, description="weight of the text vector in an entity's vector"
    )
    attributes_weight: float = Field(
        default=0.5,
        ge=0,
        description="weight of the numeric block (scaled numbers) and of the categorical block "
        "(one-hot) in an entity's vector for scoring; each block is unit-normalised before "
        "weighting, then the whole",
    )
    batch_size: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description="texts per provider call (default: the provider's own, else 256)",
    )
    build: bool = Field(
        default=True,
        description="'shoprec build' enriches the catalogue through the cache before fitting, "
        "so content models can use the embeddings",
    )
    http: dict[str, Any] = Field(
        default_factory=dict,
        description="settings of the http provider (url, auth header, request/response "
        "mapping, batching, concurrency, timeouts, retries; see HttpProviderConfig)",
    )


class Settings(BaseSettings):
    """Everything shoprec can be told, with the embedded defaults."""

    model_config = SettingsConfigDict(
        env_prefix="SHOPREC_", env_nested_delimiter="__", extra="forbid"
    )

    workspace: Path = Path("shoprec-data")
    event_weights: EventWeights = Field(default_factory=EventWeights)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    models: dict[str, dict[str, Any]] = Field(
        default_factory=lambda: {kind: {"kind": kind} for kind in _MODEL_KINDS},
        description="name -> model config (kind plus hyperparameters)",
    )
    default_model: str = Field(
        default="auto",
        description="the model 'recommend' serves; auto: the two-stage model, which serves "
        "whichever of its ranker, fusion or generators its validation gate found best",
    )
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    embeddings: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="keys accepted in X-API-Key for writes and admin routes "
        "(env SHOPREC_API_KEYS, comma-separated)",
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the config file, which is passed in as init values.
        return env_settings, init_settings


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror or exc}") from None
    try:
        if path.suffix.lower() == ".toml":
            data: Any = tomllib.loads(text)
        else:
            data = yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not valid {path.suffix.lstrip('.') or 'YAML'}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config file must hold a mapping at the top level")
    return data


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from defaults, ``config_file``, the environment and explicit overrides.

    Explicit overrides (CLI flags) win over the environment, which wins over the file.
    """
    file_values = _read_config_file(config_file) if config_file is not None else {}
    try:
        settings = Settings(**file_values)
        explicit = {k: v for k, v in overrides.items() if v is not None}
        unknown = set(explicit) - set(Settings.model_fields)
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        if explicit:  # already typed by the CLI; validating again would re-read the environment
            settings = settings.model_copy(update=explicit)
    except ValidationError as exc:
        where = str(config_file) if config_file is not None else "settings"
        raise ConfigError(f"{where}: {describe_validation_error(exc)}") from None
    return settings
