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
///
/// Samples may be written in any order: each metric's samples come out together under one
/// `# HELP` and `# TYPE`, in the order metrics were first written (the text format allows
/// a metric's lines only once, in one group).
#[derive(Debug)]
pub struct Text {
    table: &'static [Metric],
    /// Each metric written so far, with its sample lines.
    groups: Vec<(&'static Metric, String)>,
}

impl Text {
    /// An empty exposition whose samples must be declared in `table`.
    pub fn new(table: &'static [Metric]) -> Text {
        Text {
            table,
            groups: Vec::new(),
        }
    }

    /// Writes one sample.
    ///
    /// # Panics
    /// If `name` is not declared in the table (a programming error caught by tests).
    pub fn sample(&mut self, name: &'static str, labels: &[(&str, &str)], value: f64) {
        let i = match self.groups.iter().position(|(m, _)| m.name == name) {
            Some(i) => i,
            None => {
                let m = self
                    .table
                    .iter()
                    .find(|m| m.name == name)
                    .unwrap_or_else(|| panic!("metric {name} is not declared in telemetry"));
                self.groups.push((m, String::new()));
                self.groups.len() - 1
            }
        };
        let out = &mut self.groups[i].1;
        out.push_str(name);
        if !labels.is_empty() {
            out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{k}=\"{}\"", escape(v));
            }
            out.push('}');
        }
        let _ = writeln!(out, " {value}");
    }

    /// The finished exposition.
    pub fn finish(self) -> String {
        let mut out = String::new();
        for (m, samples) in self.groups {
            let kind = match m.kind {
                Type::Counter => "counter",
                Type::Gauge => "gauge",
            };
            let _ = writeln!(
                out,
                "# HELP {} {}\n# TYPE {} {kind}",
                m.name, m.help, m.name
            );
            out.push_str(&samples);
        }
        out
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
        OTHER = "hydrant_demo_other", Gauge, "Other.";
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

    #[test]
    fn samples_written_apart_come_out_in_one_group() {
        let mut t = Text::new(METRICS);
        t.sample(names::DEMO, &[("sink", "a")], 1.0);
        t.sample(names::OTHER, &[], 5.0);
        t.sample(names::DEMO, &[("sink", "b")], 2.0);
        let s = t.finish();
        assert_eq!(
            s.matches("# TYPE hydrant_demo_envelopes_total").count(),
            1,
            "{s}"
        );
        let a = s.find(r#"{sink="a"}"#).unwrap();
        let b = s.find(r#"{sink="b"}"#).unwrap();
        let other = s.find("# TYPE hydrant_demo_other").unwrap();
        assert!(a < b && b < other, "{s}");
    }
}
