//! The log table: log and event rows for SQL, across sources (Log Cache serves per-app
//! reads). Rows wait in a bounded buffer (the oldest go first beyond it, counted) and are
//! written to hourly Parquet parts at each maintenance pass (`store.rs` in this module's
//! `store`), compacted and expired like the samples' parts.

use std::collections::VecDeque;
use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::model::LogRow;

pub mod store;

/// Default rows held in memory between two writes.
pub const DEFAULT_MAX_ROWS: usize = 1_000_000;

/// The schema of the `logs` table (`payload` is the line, invalid UTF-8 replaced).
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("ts", DataType::Int64, false),
        Field::new("source_id", DataType::Utf8, false),
        Field::new("instance_id", DataType::Utf8, false),
        Field::new("source_type", DataType::Utf8, false),
        Field::new("stream", DataType::Utf8, false),
        Field::new("payload", DataType::Utf8, false),
    ]))
}

/// Recent log rows.
#[derive(Debug, Default)]
pub struct LogTable {
    rows: VecDeque<LogRow>,
    max_rows: usize,
    /// Rows evicted to stay within the bound.
    pub evicted: u64,
    /// Rows ever added.
    pub added: u64,
}

impl LogTable {
    /// A table keeping at most `max_rows`.
    pub fn new(max_rows: usize) -> LogTable {
        LogTable {
            max_rows: max_rows.max(1),
            ..LogTable::default()
        }
    }

    /// Adds a row.
    pub fn push(&mut self, row: LogRow) {
        if self.rows.len() >= self.max_rows {
            self.rows.pop_front();
            self.evicted += 1;
        }
        self.rows.push_back(row);
        self.added += 1;
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Every row as one batch.
    pub fn to_batch(&self) -> RecordBatch {
        to_batch(self.rows.iter())
    }

    /// Takes every row out.
    pub fn take(&mut self) -> Vec<LogRow> {
        self.rows.drain(..).collect()
    }

    /// Puts rows back in front (a write that failed), within the bound.
    pub fn restore(&mut self, rows: Vec<LogRow>) {
        for row in rows.into_iter().rev() {
            if self.rows.len() >= self.max_rows {
                self.evicted += 1;
                continue;
            }
            self.rows.push_front(row);
        }
    }
}

/// Rows as one `logs` batch.
pub fn to_batch<'a>(rows: impl Iterator<Item = &'a LogRow> + Clone) -> RecordBatch {
    let col = |f: fn(&LogRow) -> String| -> Arc<StringArray> {
        Arc::new(StringArray::from_iter_values(rows.clone().map(f)))
    };
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.clone().map(|r| r.ts))),
            col(|r| r.source_id.clone()),
            col(|r| r.instance_id.clone()),
            col(|r| r.source_type.clone()),
            col(|r| r.stream.to_owned()),
            col(|r| String::from_utf8_lossy(&r.payload).into_owned()),
        ],
    )
    .expect("columns match the schema")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_tabular() {
        let mut t = LogTable::new(2);
        for i in 0..3 {
            t.push(LogRow {
                ts: i,
                source_id: "app".into(),
                instance_id: "0".into(),
                source_type: "APP/PROC/WEB".into(),
                stream: "OUT",
                payload: vec![b'a' + i as u8, 0xff],
            });
        }
        assert_eq!((t.len(), t.evicted, t.added), (2, 1, 3));
        let b = t.to_batch();
        assert_eq!(b.num_rows(), 2);
        let payload = b.column(5).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(payload.value(0), "b\u{fffd}");
    }
}
