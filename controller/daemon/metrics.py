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
            "Pending events evicted because join.max_pending or join.max_pending_bytes was "
            "reached.",
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
            "Seconds the oldest event processed but not yet checkpointed has waited (0 when "
            "every processed event is checkpointed: an idle partition does not age).",
            ["partition"],
            registry=r,
        )
        self.checkpoint_duration = Histogram(
            "stopbandit_checkpoint_duration_seconds", "Time to write one checkpoint.", registry=r
        )
        # Per-segment policy gauges (daemon/segment_gauges.py): by name for the busiest
        # `control.top_segments` by traffic and `*`, every other segment under "_other".
        self.segments_evicted = Counter(
            "stopbandit_segments_evicted",
            "Segments evicted because limits.max_segments was reached (the one idle longest; "
            "back, it starts again from a cold start).",
            registry=r,
        )
        self.greedy_threshold = Gauge(
            "stopbandit_policy_greedy_threshold",
            "The threshold the current policy believes best, per segment (top segments by "
            "traffic; _other: the rest's traffic-weighted mean).",
            ["segment"],
            registry=r,
        )
        self.drift_resets = Gauge(
            "stopbandit_drift_resets",
            "Drift resets of the segment's arm statistics so far (checkpointed: survives "
            "restarts and rebalances), per segment (top segments; _other: the rest's sum).",
            ["segment"],
            registry=r,
        )
        self.policy_version = Gauge(
            "stopbandit_policy_version",
            "Version of the last policy issued, per segment (top segments; _other: the highest "
            "of the rest).",
            ["segment"],
            registry=r,
        )
        self.exploration_share = Gauge(
            "stopbandit_exploration_share",
            "Share of the segment's requests its current policy draws off the greedy arm "
            "(1 - pmf[greedy]; at most exploration.max_explore), per segment (top segments; "
            "_other: the rest's traffic-weighted mean).",
            ["segment"],
            registry=r,
        )
        self.checkpoint_refused = Gauge(
            "stopbandit_checkpoint_refused",
            "1 while the partition is refused (paused, the replica not ready) because its "
            "checkpoint is unusable, by reason: corrupt, arms, missing, offset_ahead.",
            ["partition", "reason"],
            registry=r,
        )
        self.checkpoint_resets = Counter(
            "stopbandit_checkpoint_resets",
            "Partitions started without their checkpoint's state or offsets "
            "(checkpoint.on_corrupt: reset, on_offset_ahead: reset_offsets), by reason.",
            ["partition", "reason"],
            registry=r,
        )
        self.checkpoint_fallbacks = Counter(
            "stopbandit_checkpoint_fallbacks",
            "Restores from the previous copy because the newest was unusable.",
            ["partition"],
            registry=r,
        )
        self.producer_replacements = Counter(
            "stopbandit_producer_replacements",
            "Producers closed and opened again because they could never deliver again, by "
            "reason: producer_state, fatal_state, sender_dead, closed.",
            ["reason"],
            registry=r,
        )
        self.events_lost_to_retention = Counter(
            "stopbandit_events_lost_to_retention",
            "Events removed from the log (retention) before this replica consumed them: the "
            "offset to resume from was below the log's beginning, by partition.",
            ["partition"],
            registry=r,
        )
        # Outcomes (controller/daemon/outcomes.py): per segment for the busiest
        # `control.top_segments` by traffic, the rest summed under segment="_other", the
        # replica's whole traffic under segment="_all"; group is controlled or control.
        self.outcome_requests = Gauge(
            "stopbandit_outcome_requests",
            "Joined requests learned in the partitions this replica owns (checkpointed with "
            "them), by segment and group (controlled: served by a policy; control: the "
            "control group).",
            ["segment", "group"],
            registry=r,
        )
        self.outcome_em = Gauge(
            "stopbandit_outcome_em",
            "Mean EM of those requests, by segment and group.",
            ["segment", "group"],
            registry=r,
        )
        self.outcome_tokens = Gauge(
            "stopbandit_outcome_tokens",
            "Mean tokens per request of those requests, by segment and group.",
            ["segment", "group"],
            registry=r,
        )
        self.savings_em_change = Gauge(
            "stopbandit_savings_em_change_pts",
            "Controlled minus control EM in points (100 x EM), by segment (_all: "
            "post-stratified by segment); NaN until each group has 2 requests.",
            ["segment"],
            registry=r,
        )
        self.savings_em_change_se = Gauge(
            "stopbandit_savings_em_change_pts_se",
            "Standard error of stopbandit_savings_em_change_pts (a 95 % interval is +-1.96 se).",
            ["segment"],
            registry=r,
        )
        self.savings_token_reduction = Gauge(
            "stopbandit_savings_token_reduction",
            "1 - controlled tokens / control tokens per request, by segment.",
            ["segment"],
            registry=r,
        )
        self.savings_token_reduction_se = Gauge(
            "stopbandit_savings_token_reduction_se",
            "Standard error of stopbandit_savings_token_reduction (delta method).",
            ["segment"],
            registry=r,
        )
        self.outcome_unmatched = Gauge(
            "stopbandit_outcome_unmatched",
            "Joined requests in neither group, by reason: fallback (the node knew no policy), "
            "control_not_served (a control-group member not served at control.arm: a node "
            "without control-group support, or control.fraction changed under it).",
            ["reason"],
            registry=r,
        )
        self.guardrail_blocked_arms = Gauge(
            "stopbandit_guardrail_blocked_arms",
            "Arms the guardrail holds at the floor in the segment's current policy, per segment "
            "(top segments; _other: the rest's traffic-weighted mean).",
            ["segment"],
            registry=r,
        )
        # Target mode (controller/targets, daemon/stats.py): fleet-wide, the same on every replica.
        self.target_lambda = Gauge(
            "stopbandit_target_token_cost_per_1k",
            "Target mode: the tuned token cost λ every policy is built with (fleet-wide).",
            registry=r,
        )
        self.target_achieved = Gauge(
            "stopbandit_target_achieved_pts",
            "Target mode: the targeted figure over λ's last interval, in points (token "
            "reduction or EM drop against the reference arm, fleet-wide).",
            registry=r,
        )
        self.target_value = Gauge(
            "stopbandit_target_pts",
            "Target mode: the target, in points (target.token_reduction x 100 or "
            "target.max_em_drop_pts).",
            registry=r,
        )
