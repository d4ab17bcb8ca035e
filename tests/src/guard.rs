//! Guards that release what a test started, however the test ends: a scratch directory
//! removed on drop, a child process killed and reaped on drop, and the lock that keeps the
//! CPU-heavy tests from running at the same time as each other.
//!
//! A test that panics unwinds through its locals, so every guard it holds runs its `Drop`;
//! processes and directories never outlive a failed test.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::Child;

/// A fresh directory under the system temp dir, removed with its contents when dropped.
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// Creates `<tmp>/hydrant-<name>-<pid>-<n>` (unique within the test run).
    pub fn new(name: &str) -> Scratch {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("hydrant-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create scratch dir");
        Scratch { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Deref for Scratch {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A child process that is killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct Proc(Option<Child>);

impl Proc {
    /// Takes ownership of a spawned child.
    pub fn new(child: Child) -> Proc {
        Proc(Some(child))
    }

    /// A guard holding nothing (to swap a child out of a guard it must outlive).
    pub fn empty() -> Proc {
        Proc(None)
    }

    /// Whether it has exited (reaping it if so).
    pub fn exited(&mut self) -> bool {
        self.0
            .as_mut()
            .is_none_or(|c| c.try_wait().ok().flatten().is_some())
    }

    /// Its process id (0 once it is gone).
    pub fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, std::process::Child::id)
    }

    /// Kills it now (`kill -9`) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits for it to exit by itself; returns its stdout (when piped). Panics unless it
    /// exited successfully.
    pub fn wait_output(mut self) -> String {
        use std::io::Read as _;
        let mut child = self.0.take().expect("child");
        let mut out = String::new();
        if let Some(mut s) = child.stdout.take() {
            let _ = s.read_to_string(&mut out);
        }
        let status = child.wait().expect("wait");
        assert!(status.success(), "exited with {status}");
        out
    }

    /// The child, while it has not been killed or waited for.
    pub fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("child still owned")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Held by a test that burns CPU on purpose and asserts on what it measures (a burner's
/// share, an autoscaler reacting to it). Such tests wait for each other, so the suite's
/// own parallelism cannot starve one of them; other tests still run beside them.
///
/// An exclusive `flock` on a file in the temp dir, so it also serialises tests run as
/// separate processes (cargo-nextest). Released when dropped.
#[derive(Debug)]
pub struct CpuHeavy {
    _file: std::fs::File,
}

/// Waits for the CPU-heavy lock.
pub async fn cpu_heavy() -> CpuHeavy {
    let path = std::env::temp_dir().join("hydrant-e2e-cpu-heavy.lock");
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .expect("open the CPU-heavy lock file");
        file.lock().expect("lock the CPU-heavy lock file");
        CpuHeavy { _file: file }
    })
    .await
    .expect("CPU-heavy lock task")
}
