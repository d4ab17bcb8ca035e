//! The log table: the most recent log and event rows, bounded by count (the oldest go
//! first, counted), for SQL. Log Cache serves per-app reads; this is for analysis across
//! sources.

use std::collections::VecDeque;
use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::model::LogRow;

/// Default rows kept.
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
        let col = |f: fn(&LogRow) -> String| -> Arc<StringArray> {
            Arc::new(StringArray::from_iter_values(self.rows.iter().map(f)))
        };
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from_iter_values(self.rows.iter().map(|r| r.ts))),
                col(|r| r.source_id.clone()),
                col(|r| r.instance_id.clone()),
                col(|r| r.source_type.clone()),
                col(|r| r.stream.to_owned()),
                col(|r| String::from_utf8_lossy(&r.payload).into_owned()),
            ],
        )
        .expect("columns match the schema")
    }
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
