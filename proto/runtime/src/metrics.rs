//! Declared metrics and the Prometheus text writer that refuses undeclared names.
//!
//! Components keep their counters in atomics and render them on each scrape; nothing is
//! emitted from inside hot loops. Each crate declares its metrics once with
//! [`metrics!`](crate::metrics!); `hydrant::telemetry::all()` gathers every table so
//! dashboards can be checked.

use std::fmt::Write as _;

/// Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    /// Monotonic.
    Counter,
    /// Goes up and down.
    Gauge,
}

/// A declared metric.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// Full name, `hydrant_<component>_…`.
    pub name: &'static str,
    /// Counter or gauge.
    pub kind: Type,
    /// One-line help text.
    pub help: &'static str,
}

/// Declares metrics: generates a `names` module of constants and a `METRICS` table.
#[macro_export]
macro_rules! metrics {
    ($($ident:ident = $name:literal, $kind:ident, $help:literal;)*) => {
        /// Metric name constants.
        pub mod names {
            $(
                #[doc = $help]
                pub const $ident: &str = $name;
            )*
        }
        /// All metrics declared here.
        pub const METRICS: &[$crate::metrics::Metric] = &[
            $($crate::metrics::Metric { name: $name, kind: $crate::metrics::Type::$kind, help: $help },)*
        ];
    };
}

/// Builds a Prometheus text exposition for the metrics of one table.
#[derive(Debug)]
pub struct Text {
    table: &'static [Metric],
    out: String,
    last: &'static str,
}

impl Text {
    /// An empty exposition whose samples must be declared in `table`.
    pub fn new(table: &'static [Metric]) -> Text {
        Text {
            table,
            out: String::new(),
            last: "",
        }
    }

    /// Writes one sample. Samples of one metric must be written consecutively.
    ///
    /// # Panics
    /// If `name` is not declared in the table (a programming error caught by tests).
    pub fn sample(&mut self, name: &'static str, labels: &[(&str, &str)], value: f64) {
        let m = self
            .table
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("metric {name} is not declared in telemetry"));
        if self.last != name {
            let kind = match m.kind {
                Type::Counter => "counter",
                Type::Gauge => "gauge",
            };
            let _ = writeln!(self.out, "# HELP {name} {}\n# TYPE {name} {kind}", m.help);
            self.last = name;
        }
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// The finished exposition.
    pub fn finish(self) -> String {
        self.out
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
#[allow(unreachable_pub)]
mod tests {
    use super::*;

    crate::metrics! {
        DEMO = "hydrant_demo_envelopes_total", Counter, "Demo.";
    }

    #[test]
    fn writes_help_once_and_escapes_labels() {
        let mut t = Text::new(METRICS);
        t.sample(names::DEMO, &[("shard_id", "a\"b")], 1.0);
        t.sample(names::DEMO, &[("shard_id", "")], 2.0);
        let s = t.finish();
        assert_eq!(s.matches("# TYPE").count(), 1);
        assert!(
            s.contains(r#"hydrant_demo_envelopes_total{shard_id="a\"b"} 1"#),
            "{s}"
        );
    }
}
