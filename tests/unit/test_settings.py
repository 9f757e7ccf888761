"""Settings validate, read nested env vars, and never show a secret."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from streamscribe.common.kafka import client_kwargs, security
from streamscribe.common.settings import CommonSettings, KafkaSettings
from streamscribe.ingest.settings import IngestSettings


def test_nested_env_vars_configure_sasl_and_the_secret_never_shows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STREAMSCRIBE_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("STREAMSCRIBE_KAFKA__SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("STREAMSCRIBE_KAFKA__SASL_USERNAME", "scribe")
    monkeypatch.setenv("STREAMSCRIBE_KAFKA__SASL_PASSWORD", "hunter2-secret")
    settings = CommonSettings()
    for shown in (repr(settings), str(settings), settings.model_dump_json()):
        assert "hunter2-secret" not in shown
    assert client_kwargs(settings.kafka)["sasl_plain_password"] == "hunter2-secret"
    assert client_kwargs(settings.kafka)["ssl_context"] is not None
    assert type(security(settings.kafka)).__name__ == "SASLScram512"


def test_sasl_without_credentials_is_refused_with_a_reason() -> None:
    with pytest.raises(ValidationError, match="sasl_mechanism, sasl_username and sasl_password"):
        KafkaSettings(security_protocol="SASL_PLAINTEXT")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("STREAMSCRIBE_INGEST__CHUNK_MAX_SECONDS", "500"),
        ("STREAMSCRIBE_INGEST__CHUNK_MIN_SECONDS", "40"),
        ("STREAMSCRIBE_TOPICS__PARTITIONS", "0"),
        ("STREAMSCRIBE_INGEST__ALLOW_PRIVATE_NETWORKS", "perhaps"),
    ],
)
def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        IngestSettings()


def test_the_topic_prefix_names_consumer_groups_apart_unless_a_group_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two pipelines on one cluster, told apart by their prefix, never share a group (one's
    workers would join, and wait on, the other's rebalances)."""
    monkeypatch.setenv("STREAMSCRIBE_TOPICS__PREFIX", "staging.")
    staging = IngestSettings()
    monkeypatch.setenv("STREAMSCRIBE_TOPICS__PREFIX", "")
    default = IngestSettings()
    assert staging.ingest.group("ingest", staging.topics) == "staging.streamscribe-ingest"
    assert default.ingest.group("ingest", default.topics) == "streamscribe-ingest"
    monkeypatch.setenv("STREAMSCRIBE_INGEST__GROUP_ID", "scribes")
    chosen = IngestSettings()
    assert chosen.ingest.group("ingest", chosen.topics) == "scribes"
