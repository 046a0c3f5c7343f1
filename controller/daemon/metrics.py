"""Prometheus metrics of the daemon, in one registry per daemon instance.

A registry per instance (not the global default) lets tests run several
daemons in one process and read each one's counters. The metric names are
the contract that docs/operations.md and the Grafana dashboard rely on.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """Every metric the daemon exports."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.events_consumed = Counter(
            "stopbandit_events_consumed", "Valid events consumed, by type.", ["type"], registry=r
        )
        self.events_invalid = Counter(
            "stopbandit_events_invalid",
            "Messages rejected and dead-lettered, by reason kind.",
            ["reason"],
            registry=r,
        )
        self.joined = Counter(
            "stopbandit_interactions_joined", "Decisions joined to their outcome.", registry=r
        )
        self.expired = Counter(
            "stopbandit_join_expired",
            "Decisions whose outcome did not arrive within join.wait_s.",
            registry=r,
        )
        self.orphans = Counter(
            "stopbandit_join_orphans",
            "Outcomes whose decision did not arrive within join.wait_s.",
            registry=r,
        )
        self.duplicates = Counter(
            "stopbandit_join_duplicates", "Duplicate decisions or outcomes dropped.", registry=r
        )
        self.evicted = Counter(
            "stopbandit_join_evicted",
            "Pending events evicted because join.max_pending was reached.",
            registry=r,
        )
        self.counterfactual_dropped = Counter(
            "stopbandit_counterfactual_dropped",
            "Counterfactual traces dropped (their outcome still learned), by reason: a wire rule "
            "broken (shape, arm, em, tokens, order, monotone) or a rule of the decision "
            "(unknown_arm, not_below_played).",
            ["reason"],
            registry=r,
        )
        self.learned = Counter(
            "stopbandit_interactions_learned", "Interactions that updated the models.", registry=r
        )
        self.skipped = Counter(
            "stopbandit_interactions_skipped",
            "Replayed interactions skipped because their request_id was already learned.",
            registry=r,
        )
        self.policies_published = Counter(
            "stopbandit_policies_published", "Policy messages published.", registry=r
        )
        self.publish_latency = Histogram(
            "stopbandit_publish_latency_seconds",
            "Time to build and publish one round of policies.",
            registry=r,
        )
        self.consumer_lag = Gauge(
            "stopbandit_consumer_lag",
            "Messages behind the end of the events topic, per partition.",
            ["partition"],
            registry=r,
        )
        self.checkpoint_age = Gauge(
            "stopbandit_checkpoint_age_seconds",
            "Seconds since the partition's last checkpoint.",
            ["partition"],
            registry=r,
        )
        self.checkpoint_duration = Histogram(
            "stopbandit_checkpoint_duration_seconds", "Time to write one checkpoint.", registry=r
        )
        self.greedy_threshold = Gauge(
            "stopbandit_policy_greedy_threshold",
            "The threshold the current policy believes best, per segment.",
            ["segment"],
            registry=r,
        )
        self.drift_resets = Gauge(
            "stopbandit_drift_resets",
            "Drift resets of the segment's arm statistics so far (checkpointed: survives "
            "restarts and rebalances), per segment.",
            ["segment"],
            registry=r,
        )
        self.policy_version = Gauge(
            "stopbandit_policy_version",
            "Version of the last policy issued, per segment.",
            ["segment"],
            registry=r,
        )
