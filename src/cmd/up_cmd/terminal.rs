//! `up`'s terminal: its banner, progress and health lines, and what happens when nobody
//! reads them any more.

use tokio_util::sync::CancellationToken;

/// `up`'s terminal. Writing never panics: once stdout is gone (`hydrant up | head` after
/// `head` has exited), what follows goes to stderr and the stop token is cancelled, so
/// everything stops in order, as on Ctrl-C.
#[derive(Debug)]
pub(super) struct Terminal {
    stop: CancellationToken,
    broken: std::sync::atomic::AtomicBool,
}

impl Terminal {
    pub(super) fn new(stop: CancellationToken) -> Terminal {
        Terminal {
            stop,
            broken: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Writes a line.
    pub(super) fn line(&self, args: std::fmt::Arguments<'_>) {
        self.write(args, true);
    }

    /// Writes the start of a line (a step whose outcome follows).
    pub(super) fn part(&self, args: std::fmt::Arguments<'_>) {
        self.write(args, false);
    }

    fn write(&self, args: std::fmt::Arguments<'_>, newline: bool) {
        use std::io::Write as _;
        use std::sync::atomic::Ordering::Relaxed;
        let end = if newline { "\n" } else { "" };
        if !self.broken.load(Relaxed) {
            let mut out = std::io::stdout().lock();
            if write!(out, "{args}{end}")
                .and_then(|()| out.flush())
                .is_ok()
            {
                return;
            }
            self.broken.store(true, Relaxed);
            let _ = writeln!(
                std::io::stderr(),
                "\nhydrant up: standard output is closed; stopping everything"
            );
            self.stop.cancel();
        }
        let _ = write!(std::io::stderr(), "{args}{end}");
    }
}
