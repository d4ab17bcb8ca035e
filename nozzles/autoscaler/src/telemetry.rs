//! The autoscaler's metrics, declared once (gathered by `hydrant::telemetry::all`).

hydrant_runtime::metrics! {
    APPS = "hydrant_autoscaler_apps", Gauge,
        "Apps with a policy.";
    OBSERVED = "hydrant_autoscaler_observed_envelopes_total", Counter,
        "Firehose envelopes that belonged to an app with a policy.";
    RECEIVED = "hydrant_autoscaler_received_envelopes_total", Counter,
        "Firehose envelopes received (gauges and timers of every app).";
    TICKS = "hydrant_autoscaler_ticks_total", Counter,
        "Evaluation ticks.";
    TICK_SECONDS = "hydrant_autoscaler_tick_duration_seconds", Gauge,
        "Duration of the latest tick (aggregation and evaluation of every app).";
    DECISIONS = "hydrant_autoscaler_decisions_total", Counter,
        "History records written, by status (succeeded, failed, ignored) and type (dynamic, schedule).";
    SCALE_CALLS = "hydrant_autoscaler_scale_calls_total", Counter,
        "Actuator scale calls, by result (ok, error, shadow).";
    LIST_ERRORS = "hydrant_autoscaler_list_errors_total", Counter,
        "Failed reads of instance counts from the platform.";
    ALERTS_FIRING = "hydrant_autoscaler_alerts_firing", Gauge,
        "Rule alerts firing now.";
    ALERT_NOTIFICATIONS = "hydrant_autoscaler_alert_notifications_total", Counter,
        "Alert deliveries, by receiver (alertmanager, webhook) and result (ok, failed, dropped).";
    RELOADS = "hydrant_autoscaler_policy_reloads_total", Counter,
        "Policy reloads, by result (ok, failed).";
    COOLING_DOWN = "hydrant_autoscaler_apps_cooling_down", Gauge,
        "Apps in a cooldown now (either direction).";
    APP_SCALINGS = "hydrant_autoscaler_app_scalings_total", Counter,
        "Per app (envelopes only, source_id = the app's guid, sent every tick): scales carried out, by direction (out, in).";
    APP_BREACH_TO_SCALE = "hydrant_autoscaler_app_breach_to_scale_seconds", Gauge,
        "Per app (envelopes only): from the start of the breach to the scale, at each dynamic scale.";
    RECONNECTS = "hydrant_autoscaler_firehose_reconnects_total", Counter,
        "Firehose subscriptions re-established.";
}
