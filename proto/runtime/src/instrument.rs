//! Metric structs that render themselves.
//!
//! A component keeps what it counts in instruments that know their metric: a [`Counter`],
//! a [`Gauge`], a [`Seconds`] (the latest duration of something), or a [`Family`] of counters over a fixed set of label values ([`Labels`]).
//! [`instruments!`](crate::instruments!) declares a struct of them whose [`Render`] writes
//! every field, so a component's `/metrics` is "render my instruments, then the few values
//! only known at scrape time" instead of a hand-kept list of samples that can fall out of
//! step with the struct.
//!
//! Updates are single relaxed atomic operations, cheap enough for the ingest path.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use crate::metrics::Text;

/// Something that writes its samples into a text exposition.
pub trait Render {
    /// Writes this instrument's (or struct's) samples into `t`.
    fn render(&self, t: &mut Text);
}

/// An instrument built from the name of the metric it samples.
pub trait Instrument: Render {
    /// The instrument for metric `name` (declared with [`metrics!`](crate::metrics!)).
    fn named(name: &'static str) -> Self;
}

/// A monotonic count.
#[derive(Debug)]
pub struct Counter {
    name: &'static str,
    value: AtomicU64,
}

impl Counter {
    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.value.fetch_add(1, Relaxed);
    }

    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        self.value.fetch_add(n, Relaxed);
    }

    /// The count so far.
    pub fn get(&self) -> u64 {
        self.value.load(Relaxed)
    }
}

impl Instrument for Counter {
    fn named(name: &'static str) -> Counter {
        Counter {
            name,
            value: AtomicU64::new(0),
        }
    }
}

impl Render for Counter {
    fn render(&self, t: &mut Text) {
        t.sample(self.name, &[], self.get() as f64);
    }
}

/// A value that goes up and down.
#[derive(Debug)]
pub struct Gauge {
    name: &'static str,
    value: AtomicI64,
}

impl Gauge {
    /// Adds `n` (which may be negative).
    #[inline]
    pub fn add(&self, n: i64) {
        self.value.fetch_add(n, Relaxed);
    }

    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.value.store(v, Relaxed);
    }

    /// The value now.
    pub fn get(&self) -> i64 {
        self.value.load(Relaxed)
    }

    /// Adds one until the returned guard drops (an open stream, a call in flight).
    pub fn track(&self) -> Tracked<'_> {
        self.add(1);
        Tracked(self)
    }
}

impl Instrument for Gauge {
    fn named(name: &'static str) -> Gauge {
        Gauge {
            name,
            value: AtomicI64::new(0),
        }
    }
}

impl Render for Gauge {
    fn render(&self, t: &mut Text) {
        t.sample(self.name, &[], self.get() as f64);
    }
}

/// The latest duration of something (a tick, a flush), rendered in seconds.
#[derive(Debug)]
pub struct Seconds {
    name: &'static str,
    micros: AtomicU64,
}

impl Seconds {
    /// Records the latest duration.
    pub fn set(&self, d: std::time::Duration) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.micros.store(micros, Relaxed);
    }

    /// The latest duration.
    pub fn get(&self) -> std::time::Duration {
        std::time::Duration::from_micros(self.micros.load(Relaxed))
    }
}

impl Instrument for Seconds {
    fn named(name: &'static str) -> Seconds {
        Seconds {
            name,
            micros: AtomicU64::new(0),
        }
    }
}

impl Render for Seconds {
    fn render(&self, t: &mut Text) {
        t.sample(self.name, &[], self.get().as_secs_f64());
    }
}

/// One unit of a [`Gauge`], given back on drop.
#[derive(Debug)]
pub struct Tracked<'a>(&'a Gauge);

impl Drop for Tracked<'_> {
    fn drop(&mut self) {
        self.0.add(-1);
    }
}

/// A fixed set of label values: each value is one series of a [`Family`]. Usually declared
/// with [`labels!`](crate::labels!).
pub trait Labels: Copy + 'static {
    /// Every value, in the order the series are written; `ALL[v.index()] == v`.
    const ALL: &'static [Self];
    /// The label pairs of this value's series.
    fn pairs(self) -> &'static [(&'static str, &'static str)];
    /// This value's position in [`ALL`](Labels::ALL).
    fn index(self) -> usize;
}

/// Counters of one metric, one per value of `L`; every series is written, zeros too, so
/// a dashboard sees the series before the first event.
#[derive(Debug)]
pub struct Family<L> {
    name: &'static str,
    counts: Box<[AtomicU64]>,
    labels: std::marker::PhantomData<L>,
}

impl<L: Labels> Family<L> {
    /// Adds one to `label`'s series.
    #[inline]
    pub fn inc(&self, label: L) {
        self.add(label, 1);
    }

    /// Adds `n` to `label`'s series.
    #[inline]
    pub fn add(&self, label: L, n: u64) {
        self.counts[label.index()].fetch_add(n, Relaxed);
    }

    /// `label`'s count so far.
    pub fn get(&self, label: L) -> u64 {
        self.counts[label.index()].load(Relaxed)
    }

    /// Every value with its count, in declaration order.
    pub fn counts(&self) -> impl Iterator<Item = (L, u64)> + '_ {
        L::ALL.iter().map(|&l| (l, self.get(l)))
    }
}

impl<L: Labels> Instrument for Family<L> {
    fn named(name: &'static str) -> Family<L> {
        Family {
            name,
            counts: L::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            labels: std::marker::PhantomData,
        }
    }
}

impl<L: Labels> Render for Family<L> {
    fn render(&self, t: &mut Text) {
        for (l, n) in self.counts() {
            t.sample(self.name, l.pairs(), n as f64);
        }
    }
}

/// Declares an enum of label values and its [`Labels`] impl:
///
/// ```
/// hydrant_runtime::labels! {
///     /// How a read ended.
///     pub enum ReadStatus {
///         Ok => [("status", "ok")],
///         NotFound => [("status", "not_found")],
///     }
/// }
/// # use hydrant_runtime::instrument::Labels;
/// assert_eq!(ReadStatus::NotFound.pairs(), &[("status", "not_found")]);
/// ```
#[macro_export]
macro_rules! labels {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $($(#[$vmeta:meta])* $variant:ident => [$(($k:literal, $v:literal)),+ $(,)?]),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $crate::instrument::Labels for $name {
            const ALL: &'static [Self] = &[$(Self::$variant,)+];
            fn pairs(self) -> &'static [(&'static str, &'static str)] {
                match self {
                    $(Self::$variant => &[$(($k, $v)),+],)+
                }
            }
            fn index(self) -> usize {
                self as usize
            }
        }
    };
}

/// Declares a struct of instruments, each built from its metric's name, with `Default`
/// and a [`Render`] that writes every field in order:
///
/// ```
/// use hydrant_runtime::instrument::{Counter, Gauge, Render};
/// hydrant_runtime::metrics! {
///     SEEN = "hydrant_demo_seen_total", Counter, "Things seen.";
///     OPEN = "hydrant_demo_open", Gauge, "Things open.";
/// }
/// hydrant_runtime::instruments! {
///     /// What the demo counts.
///     pub struct Stats {
///         /// Things seen.
///         pub seen: Counter = names::SEEN,
///         /// Things open.
///         pub open: Gauge = names::OPEN,
///     }
/// }
/// let s = Stats::default();
/// s.seen.add(2);
/// let mut t = hydrant_runtime::metrics::Text::new(METRICS);
/// s.render(&mut t);
/// assert!(t.finish().contains("hydrant_demo_seen_total 2\n"));
/// ```
#[macro_export]
macro_rules! instruments {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $($(#[$fmeta:meta])* $fvis:vis $field:ident : $ty:ty = $metric:expr),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug)]
        $vis struct $name {
            $($(#[$fmeta])* $fvis $field: $ty,)+
        }

        impl Default for $name {
            fn default() -> Self {
                use $crate::instrument::Instrument as _;
                $name {
                    $($field: <$ty>::named($metric),)+
                }
            }
        }

        impl $crate::instrument::Render for $name {
            fn render(&self, t: &mut $crate::metrics::Text) {
                $(self.$field.render(t);)+
            }
        }
    };
}

#[cfg(test)]
#[allow(unreachable_pub)]
mod tests {
    use super::*;

    crate::metrics! {
        SEEN = "hydrant_test_seen_total", Counter, "Seen.";
        OPEN = "hydrant_test_open", Gauge, "Open.";
        REFUSED = "hydrant_test_refused_total", Counter, "Refused, by reason.";
    }

    crate::labels! {
        /// Why.
        pub enum Reason {
            /// Bad.
            Bad => [("reason", "bad")],
            /// Big.
            Big => [("reason", "big"), ("limit", "1\"KiB")],
        }
    }

    crate::instruments! {
        /// Test stats.
        pub struct Stats {
            /// Seen.
            pub seen: Counter = names::SEEN,
            /// Open.
            pub open: Gauge = names::OPEN,
            /// Refused.
            pub refused: Family<Reason> = names::REFUSED,
        }
    }

    #[test]
    fn a_struct_renders_every_instrument_with_zeros_and_labels() {
        let s = Stats::default();
        s.seen.add(3);
        s.refused.inc(Reason::Big);
        let tracked = s.open.track();
        let mut t = Text::new(METRICS);
        s.render(&mut t);
        let text = t.finish();
        assert!(text.contains("hydrant_test_seen_total 3\n"), "{text}");
        assert!(text.contains("hydrant_test_open 1\n"), "{text}");
        assert!(
            text.contains("hydrant_test_refused_total{reason=\"bad\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains(r#"hydrant_test_refused_total{reason="big",limit="1\"KiB"} 1"#),
            "{text}"
        );
        assert_eq!(text.matches("# TYPE").count(), 3, "{text}");
        drop(tracked);
        assert_eq!(s.open.get(), 0);
    }

    #[test]
    #[should_panic(expected = "not declared")]
    fn an_undeclared_name_is_refused_at_render() {
        let c = Counter::named("hydrant_test_undeclared_total");
        let mut t = Text::new(METRICS);
        c.render(&mut t);
    }
}
