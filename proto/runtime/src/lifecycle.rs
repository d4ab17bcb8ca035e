//! The one way a component runs and stops (after InfluxDB 3's `influxdb3_shutdown`).
//!
//! Every long task registers with a name and the [`Phase`] in which it stops. The component
//! runs until its trigger fires (a signal, a supervisor gone) or a task fails; then the
//! phases stop in order, each task watching its phase's token:
//!
//! 1. [`Phase::Accept`]: stop taking new work (ingress streams, Firehose subscriptions).
//! 2. [`Phase::Flush`]: hand what was accepted on (queues to dopplers or sinks, stores
//!    sealed, the last self-metrics snapshot, scale calls and alerts in flight).
//! 3. [`Phase::Serve`]: stop the HTTP and gRPC servers.
//!
//! One grace period bounds the whole stop. A task still running when it expires is named
//! in the log and in [`Stopped::overran`], then aborted. Whatever such a task held is never
//! lost silently: the types that hold accepted data count it when they are dropped (an
//! `IngressClient` counts its queue and in-flight batches as `dropped_shutdown`).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use tokio::task::{Id, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// When a task is told to stop, in stopping order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Stops taking new work.
    Accept,
    /// Hands on what was accepted.
    Flush,
    /// Stops serving (HTTP, gRPC).
    Serve,
}

impl Phase {
    /// Every phase, in stopping order.
    pub const ALL: [Phase; 3] = [Phase::Accept, Phase::Flush, Phase::Serve];

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Accept => "accept",
            Phase::Flush => "flush",
            Phase::Serve => "serve",
        })
    }
}

/// How a stop went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stopped {
    /// Tasks still running when the grace period expired (`phase/name`), aborted.
    pub overran: Vec<String>,
}

struct Task {
    phase: Phase,
    name: String,
}

/// What `JoinSet::join_next_with_id` yields for a task.
type Joined<E> = Result<(Id, Result<(), E>), tokio::task::JoinError>;

/// The end of the grace period, once the stop has begun: what a flush may still take.
#[derive(Debug, Clone, Default)]
pub struct Deadline(std::sync::Arc<std::sync::OnceLock<Instant>>);

impl Deadline {
    /// Time left before the grace period ends (zero once it has; `fallback` before the
    /// stop has begun).
    pub fn remaining(&self, fallback: Duration) -> Duration {
        self.0
            .get()
            .map_or(fallback, |d| d.saturating_duration_since(Instant::now()))
    }
}

/// A component's tasks and its ordered stop. `E` is the component's error type.
pub struct Lifecycle<E> {
    component: &'static str,
    grace: Duration,
    tokens: [CancellationToken; 3],
    tasks: JoinSet<Result<(), E>>,
    names: HashMap<Id, Task>,
    deadline: Deadline,
}

impl<E> fmt::Debug for Lifecycle<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lifecycle")
            .field("component", &self.component)
            .field("grace", &self.grace)
            .field("tasks", &self.names.len())
            .finish()
    }
}

impl<E: fmt::Display + Send + 'static> Lifecycle<E> {
    /// An empty lifecycle for `component` (used in log lines) that stops within `grace`.
    pub fn new(component: &'static str, grace: Duration) -> Lifecycle<E> {
        Lifecycle {
            component,
            grace,
            tokens: Default::default(),
            tasks: JoinSet::new(),
            names: HashMap::new(),
            deadline: Deadline::default(),
        }
    }

    /// The token cancelled when `phase` begins to stop; tasks of that phase watch it.
    pub fn token(&self, phase: Phase) -> CancellationToken {
        self.tokens[phase.index()].clone()
    }

    /// The grace period.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// When the grace period ends, for tasks that bound their own flush by it.
    pub fn deadline(&self) -> Deadline {
        self.deadline.clone()
    }

    /// Runs `task` as part of `phase`, under `name`. It must end soon after the phase's
    /// token ([`Lifecycle::token`]) is cancelled.
    pub fn spawn<F>(&mut self, phase: Phase, name: impl Into<String>, task: F)
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
    {
        let handle = self.tasks.spawn(task);
        self.names.insert(
            handle.id(),
            Task {
                phase,
                name: name.into(),
            },
        );
    }

    /// Runs `work` once `phase` begins to stop (a flush, a final snapshot), under `name`.
    pub fn on_stop<F>(&mut self, phase: Phase, name: impl Into<String>, work: F)
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
    {
        let token = self.token(phase);
        self.spawn(phase, name, async move {
            token.cancelled().await;
            work.await
        });
    }

    /// Runs until `trigger` fires or a task fails, then stops the phases in order within
    /// the grace period. Returns the first task error, else how the stop went.
    pub async fn run(mut self, trigger: CancellationToken) -> Result<Stopped, E> {
        let mut first_error: Option<E> = None;
        loop {
            tokio::select! {
                () = trigger.cancelled() => break,
                done = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    if let Some(e) = self.finished(done) {
                        tracing::error!(component = self.component, error = %e, "a task failed; stopping");
                        first_error = Some(e);
                        break;
                    }
                }
            }
        }
        let deadline = Instant::now() + self.grace;
        let _ = self.deadline.0.set(deadline);
        for phase in Phase::ALL {
            self.tokens[phase.index()].cancel();
            while self.names.values().any(|t| t.phase <= phase) {
                let done = tokio::select! {
                    done = self.tasks.join_next_with_id() => done,
                    () = tokio::time::sleep_until(deadline) => break,
                };
                if let Some(e) = self.finished(done) {
                    tracing::error!(component = self.component, error = %e, "a task failed while stopping");
                    first_error.get_or_insert(e);
                }
            }
        }
        let stopped = self.abort_overrunning().await;
        match first_error {
            Some(e) => Err(e),
            None => Ok(stopped),
        }
    }

    /// Records a finished task; returns its error, if it failed.
    fn finished(&mut self, done: Option<Joined<E>>) -> Option<E> {
        match done? {
            Ok((id, result)) => {
                self.names.remove(&id);
                result.err()
            }
            Err(e) => {
                let task = self.names.remove(&e.id());
                let name = task.map_or_else(|| "?".to_owned(), |t| t.name);
                if e.is_panic() {
                    tracing::error!(component = self.component, task = %name, "task panicked");
                }
                None
            }
        }
    }

    /// Names, counts and aborts what is still running after the grace period.
    async fn abort_overrunning(mut self) -> Stopped {
        let mut overran: Vec<String> = self
            .names
            .values()
            .map(|t| format!("{}/{}", t.phase, t.name))
            .collect();
        overran.sort();
        if !overran.is_empty() {
            tracing::warn!(
                component = self.component,
                grace = ?self.grace,
                overran = ?overran,
                "did not stop within the grace period; aborting what is left"
            );
        }
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        Stopped { overran }
    }
}

/// How often [`settled`] looks again.
const SETTLE_POLL: Duration = Duration::from_millis(10);

/// Returns once `done` holds, looking every 10 ms: for a phase that waits on a count
/// (open streams, subscriptions) to reach zero. Bounded by the grace period, like every
/// stop task.
pub async fn settled(done: impl Fn() -> bool) {
    while !done() {
        tokio::time::sleep(SETTLE_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Failed(&'static str);

    impl fmt::Display for Failed {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    /// Records the order in which tasks saw their phase begin.
    fn log() -> std::sync::Arc<std::sync::Mutex<Vec<&'static str>>> {
        std::sync::Arc::default()
    }

    #[tokio::test(start_paused = true)]
    async fn phases_stop_in_order_and_later_phases_keep_running_meanwhile() {
        let seen = log();
        let mut life: Lifecycle<Failed> = Lifecycle::new("test", Duration::from_secs(10));
        for (phase, name) in [
            (Phase::Serve, "http"),
            (Phase::Accept, "ingress"),
            (Phase::Flush, "queue"),
        ] {
            let token = life.token(phase);
            let seen = std::sync::Arc::clone(&seen);
            life.spawn(phase, name, async move {
                token.cancelled().await;
                // Flushing takes a while; the server must still be up meanwhile.
                if name == "queue" {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                seen.lock().unwrap().push(name);
                Ok(())
            });
        }
        let trigger = CancellationToken::new();
        trigger.cancel();
        let stopped = life.run(trigger).await.map_err(|e| e.0).unwrap();
        assert_eq!(stopped, Stopped::default());
        assert_eq!(*seen.lock().unwrap(), ["ingress", "queue", "http"]);
    }

    #[tokio::test(start_paused = true)]
    async fn one_grace_period_bounds_the_whole_stop_and_names_what_overran() {
        let mut life: Lifecycle<Failed> = Lifecycle::new("test", Duration::from_secs(5));
        let flush = life.token(Phase::Flush);
        life.spawn(Phase::Flush, "slow flush", async move {
            flush.cancelled().await;
            tokio::time::sleep(Duration::from_secs(4)).await;
            Ok(())
        });
        let serve = life.token(Phase::Serve);
        life.spawn(Phase::Serve, "stuck server", async move {
            serve.cancelled().await;
            std::future::pending::<()>().await;
            Ok(())
        });
        let accept = life.token(Phase::Accept);
        life.spawn(Phase::Accept, "ingress", async move {
            accept.cancelled().await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            Ok(())
        });
        let trigger = CancellationToken::new();
        trigger.cancel();
        let started = Instant::now();
        let stopped = life.run(trigger).await.map_err(|e| e.0).unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(5), "not 3 × 5 s");
        assert_eq!(stopped.overran, ["serve/stuck server"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_task_stops_the_rest_in_order_and_its_error_is_returned() {
        let seen = log();
        let mut life: Lifecycle<Failed> = Lifecycle::new("test", Duration::from_secs(5));
        life.spawn(Phase::Accept, "ingest", async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Err(Failed("refused"))
        });
        let s = std::sync::Arc::clone(&seen);
        life.on_stop(Phase::Flush, "flush", async move {
            s.lock().unwrap().push("flushed");
            Ok(())
        });
        let never = CancellationToken::new();
        let err = life.run(never).await.unwrap_err();
        assert_eq!(err.0, "refused");
        assert_eq!(*seen.lock().unwrap(), ["flushed"]);
    }
}
