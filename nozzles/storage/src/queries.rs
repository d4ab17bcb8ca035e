//! Where queries run: threads of their own, a time limit, and a memory budget, so no query
//! can starve ingest, hang the API, or take the process's memory.
//!
//! One SQL query (a three-way cross join) once froze storage for about 50 s: `/healthz`
//! and PromQL hung with it, the Firehose stream broke, and samples were lost. Now:
//! - every PromQL and SQL query runs on a runtime of its own (`--query-threads`), apart from
//!   the one that ingests and serves, so a busy query shares the CPU but never blocks them;
//! - a query still running after `--query-timeout` is dropped (DataFusion's streams stop
//!   when dropped) and answered `503` with Prometheus' `timeout` error;
//! - SQL runs within a DataFusion memory pool of `--query-memory` shared by all queries: a
//!   query that needs more is refused with the pool named, rather than growing the
//!   process;
//! - a query that panics is answered `500` (`internal`); the process and other queries go
//!   on.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};

/// Time one query may run.
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(60);

/// Memory all SQL queries together may hold.
pub const DEFAULT_QUERY_MEMORY: usize = 1024 * 1024 * 1024;

/// Threads queries run on.
pub const DEFAULT_QUERY_THREADS: usize = 1;

/// Query limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time one query may run.
    pub timeout: Duration,
    /// Memory all SQL queries together may hold, in bytes.
    pub memory: usize,
    /// Threads queries run on.
    pub threads: usize,
    /// The size and shape a PromQL query may have.
    pub promql: crate::promql::limits::Limits,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            timeout: DEFAULT_QUERY_TIMEOUT,
            memory: DEFAULT_QUERY_MEMORY,
            threads: DEFAULT_QUERY_THREADS,
            promql: crate::promql::limits::Limits::default(),
        }
    }
}

/// Why a query produced no answer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Failure {
    /// It ran past the time limit and was stopped.
    #[error("the query ran longer than {0:?} (--query-timeout) and was stopped")]
    Timeout(Duration),
    /// It panicked; the message says where.
    #[error("the query failed unexpectedly: {0}")]
    Panicked(String),
    /// The query runtime is shutting down.
    #[error("storage is stopping")]
    Stopping,
}

/// The query runtime and its limits.
pub struct Queries {
    runtime: Option<tokio::runtime::Runtime>,
    env: Arc<RuntimeEnv>,
    limits: Limits,
}

impl std::fmt::Debug for Queries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queries")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Queries {
    /// Starts the query threads.
    pub fn new(limits: Limits) -> std::io::Result<Queries> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(limits.threads.max(1))
            .thread_name("query")
            // PromQL evaluation recurses over the (bounded) expression tree.
            .thread_stack_size(8 * 1024 * 1024)
            .enable_all()
            .build()?;
        let env = RuntimeEnvBuilder::new()
            .with_memory_limit(limits.memory, 1.0)
            .build_arc()
            .map_err(std::io::Error::other)?;
        Ok(Queries {
            runtime: Some(runtime),
            env,
            limits,
        })
    }

    /// The limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// A DataFusion session whose memory comes from the shared pool.
    pub fn session(&self, config: SessionConfig) -> SessionContext {
        SessionContext::new_with_config_rt(config, Arc::clone(&self.env))
    }

    /// Runs `query` on the query threads within the time limit.
    pub async fn run<T, F>(&self, query: F) -> Result<T, Failure>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let Some(runtime) = &self.runtime else {
            return Err(Failure::Stopping);
        };
        let task = runtime.spawn(query);
        let abort = task.abort_handle();
        match tokio::time::timeout(self.limits.timeout, task).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) if e.is_panic() => {
                let what = hydrant_runtime::admin::panic_message(e.into_panic().as_ref());
                tracing::error!(panic = %what, "a query panicked");
                Err(Failure::Panicked(what))
            }
            Ok(Err(_)) => Err(Failure::Stopping),
            Err(_) => {
                abort.abort();
                tracing::warn!(limit = ?self.limits.timeout, "a query ran past its time limit and was stopped");
                Err(Failure::Timeout(self.limits.timeout))
            }
        }
    }
}

impl Drop for Queries {
    fn drop(&mut self) {
        // Dropping a runtime inside another one panics; let its threads end on their own.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl From<Failure> for hydrant_promql::Error {
    fn from(f: Failure) -> hydrant_promql::Error {
        match f {
            Failure::Timeout(_) => hydrant_promql::Error::Timeout(f.to_string()),
            _ => hydrant_promql::Error::Internal(f.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queries(timeout: Duration) -> Queries {
        Queries::new(Limits {
            timeout,
            memory: 64 * 1024 * 1024,
            threads: 1,
            promql: Default::default(),
        })
        .unwrap()
    }

    #[tokio::test]
    async fn answers_stops_slow_queries_and_survives_panics() {
        let q = queries(Duration::from_millis(200));
        assert_eq!(q.run(async { 42 }).await, Ok(42));
        let slow = q.run(async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            1
        });
        assert_eq!(
            slow.await,
            Err(Failure::Timeout(Duration::from_millis(200)))
        );
        // A generous limit here, so a busy machine cannot turn the panic into a timeout.
        let q = queries(Duration::from_secs(30));
        let panicked = q.run(async {
            let v: Vec<u8> = Vec::new();
            v.get(3).copied().expect("index 3 of an empty vector")
        });
        let panicked = panicked.await;
        assert!(
            matches!(&panicked, Err(Failure::Panicked(m)) if m.contains("index 3")),
            "{panicked:?}"
        );
        assert_eq!(q.run(async { "still here" }).await, Ok("still here"));
    }

    #[tokio::test]
    async fn sql_beyond_the_memory_pool_is_refused() {
        let q = queries(Duration::from_secs(30));
        let ctx = q.session(SessionConfig::new());
        let sql = "SELECT string_agg(repeat('x', 100000), ',') FROM generate_series(1, 2000)";
        let result = q
            .run(async move {
                let df = ctx.sql(sql).await?;
                df.collect().await
            })
            .await
            .expect("no panic, no timeout");
        let err = result.expect_err("200 MB in a 64 MiB pool").to_string();
        assert!(err.contains("Resources exhausted"), "{err}");
    }
}
