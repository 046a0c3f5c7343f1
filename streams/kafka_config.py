"""The Kafka connection and topic settings, owned by the edge that uses them.

The daemon's configuration (`controller.config`) embeds this model as its
`kafka` section; the streams package itself never imports the controller.
"""

from __future__ import annotations

from pathlib import Path  # noqa: TC003 - pydantic reads the annotation at runtime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator


class KafkaConfig(BaseModel):
    """Broker connection and topics; security settings pass through to kafka-python."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bootstrap_servers: list[str] = Field(default_factory=lambda: ["localhost:9092"], min_length=1)
    events_topic: str = "stopbandit.events"
    policies_topic: str = "stopbandit.policies"
    dlq_topic: str = "stopbandit.dlq"
    group_id: str = "stopbandit"
    client_id: str = "stopbandit"
    create_topics: bool = False
    partitions: Annotated[int, Field(ge=1)] = 6
    # Of the topics the daemon creates; None: 3, or every broker of a smaller cluster (with
    # a warning). Policies and checkpoints are state a restart needs: replicate them.
    replication_factor: Annotated[int, Field(ge=1)] | None = None
    session_timeout_ms: Annotated[int, Field(ge=1000)] = 10_000
    # How long one try to reach the cluster may block (kafka-python: 30 s); retries follow
    # with jittered backoff, and a stop request is only seen between tries.
    bootstrap_timeout_ms: Annotated[int, Field(ge=100)] = 5_000
    max_poll_records: Annotated[int, Field(ge=1)] = 2_000
    # The consumer has one fetch in flight per broker, for the partitions with nothing
    # buffered; when those are quiet the broker holds it this long while the busy ones
    # wait, so it bounds the delay from an event to its policy (kafka-python: 500).
    fetch_max_wait_ms: Annotated[int, Field(ge=0)] = 100
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    @field_validator("bootstrap_servers", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        # kafka-python and librdkafka both take "host1:9092,host2:9092"; so does this file.
        if isinstance(value, str):
            return [server.strip() for server in value.split(",") if server.strip()]
        return value
