//! The console's metrics, declared once (gathered by `hydrant::telemetry::all`).

use hydrant_runtime::instrument::{Family, Gauge};

hydrant_runtime::metrics! {
    CALLS = "hydrant_console_api_calls_total", Counter,
        "Calls of the page forwarded to a component's API, by api (cell, logcache, storage, autoscaler).";
    FAILED = "hydrant_console_api_failures_total", Counter,
        "Forwarded calls the component did not answer (unreachable, timed out), by api.";
    STREAMS = "hydrant_console_open_streams", Gauge,
        "Event streams (live logs) being forwarded to pages.";
    SIGN_INS = "hydrant_console_sign_ins_total", Counter,
        "Sign-ins, by result (accepted, refused).";
}

hydrant_runtime::labels! {
    /// The API a call went to.
    pub enum Api {
        /// The scheduler.
        Cell => [("api", "cell")],
        /// The log cache.
        Logcache => [("api", "logcache")],
        /// The storage nozzle.
        Storage => [("api", "storage")],
        /// The autoscaler.
        Autoscaler => [("api", "autoscaler")],
    }
}

hydrant_runtime::labels! {
    /// How a sign-in went.
    pub enum SignIn {
        /// The token is valid.
        Accepted => [("result", "accepted")],
        /// It is not.
        Refused => [("result", "refused")],
    }
}

hydrant_runtime::instruments! {
    /// What the console counts.
    pub struct Stats {
        /// Forwarded calls.
        pub calls: Family<Api> = names::CALLS,
        /// Calls no component answered.
        pub failed: Family<Api> = names::FAILED,
        /// Open event streams.
        pub streams: Gauge = names::STREAMS,
        /// Sign-ins.
        pub sign_ins: Family<SignIn> = names::SIGN_INS,
    }
}
