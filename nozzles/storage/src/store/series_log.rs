//! The catalog's file, `series.jsonl`: one line per series in id order, each the CRC-32 of
//! its JSON (8 hex digits), a space, and `{"id", "name", "labels"}`. Appended and synced
//! before a series' samples are logged; cut back when a write fails; on load a damaged
//! line is skipped and counted and its id kept by a placeholder ([`LOST_SERIES`]), so no
//! id is ever given to another series.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use super::{Error, crc, io};
use crate::catalog::{Catalog, SeriesId};
use crate::model::SeriesKey;

/// Loads the catalog at `path`: damaged lines are skipped and counted, lost ids keep their
/// place as placeholders, and the file is rewritten whole when anything was damaged or
/// torn (so appends stay line-aligned). Returns the catalog and the damaged lines.
pub(super) fn load(path: &Path, max_per_metric: usize) -> Result<(Catalog, u64), Error> {
    let mut catalog = Catalog::new(max_per_metric);
    let mut corrupt = 0u64;
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io(path)(e)),
    };
    for line in text.lines().filter(|l| !l.is_empty()) {
        let Some((id, key)) = parse_line(line) else {
            corrupt += 1;
            tracing::warn!(file = %path.display(), "damaged catalog line skipped");
            continue;
        };
        let next = catalog.len() as SeriesId;
        if id < next || catalog.id(&key).is_some() {
            corrupt += 1; // a duplicate: the first line of an id wins
            continue;
        }
        // Ids whose lines were lost keep their place, so they are never given again.
        for missing in next..id {
            catalog.insert(lost(missing));
        }
        catalog.insert(key);
    }
    let rewrite_needed = corrupt > 0
        || text.lines().filter(|l| !l.is_empty()).count() != catalog.len()
        || (!text.is_empty() && !text.ends_with('\n'));
    if rewrite_needed {
        rewrite(path, &catalog)?;
    }
    Ok((catalog, corrupt))
}

/// Most placeholders made for ids only the WAL knows (the WAL is checksummed, so its ids
/// are real; this only bounds what one start can allocate).
pub(super) const MAX_LOST_IDS: SeriesId = 1_000_000;

/// Writes the whole catalog to `path` (a temporary file, synced, renamed over it).
pub(super) fn rewrite(path: &Path, catalog: &Catalog) -> Result<(), Error> {
    let mut text = String::new();
    for id in 0..catalog.len() as SeriesId {
        text.push_str(&line(id, catalog.key(id)));
        text.push('\n');
    }
    let tmp = path.with_extension("jsonl.tmp");
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(io(path))
}

/// The name of a placeholder for a series whose catalog line was lost.
pub const LOST_SERIES: &str = "hydrant_lost_series";

/// A catalog line: the CRC-32 of its JSON (8 hex digits), a space, the JSON.
pub(crate) fn line(id: SeriesId, key: &SeriesKey) -> String {
    let json = serde_json::json!({"id": id, "name": key.name, "labels": key.labels}).to_string();
    format!("{:08x} {json}", crc(json.as_bytes()))
}

/// The id and key of a catalog line; `None` when it is damaged. Lines written before the
/// CRC existed (bare JSON) are read as they are.
pub(crate) fn parse_line(line: &str) -> Option<(SeriesId, SeriesKey)> {
    let json = match line.split_once(' ') {
        Some((sum, json)) if sum.len() == 8 && !line.starts_with('{') => {
            let want = u32::from_str_radix(sum, 16).ok()?;
            (crc(json.as_bytes()) == want).then_some(json)?
        }
        _ => line,
    };
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let labels = v["labels"]
        .as_object()?
        .iter()
        .map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect::<Option<_>>()?;
    let key = SeriesKey {
        name: v["name"].as_str()?.to_owned(),
        labels,
    };
    Some((v["id"].as_u64()?, key))
}

/// The placeholder for series `id`, whose catalog line was lost.
pub(crate) fn lost(id: SeriesId) -> SeriesKey {
    SeriesKey {
        name: LOST_SERIES.to_owned(),
        labels: [("series_id".to_owned(), id.to_string())].into(),
    }
}
