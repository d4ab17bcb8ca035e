//! Interned envelope headers. Most envelopes of a source share everything but their
//! timestamp and message: source id, instance id and tags. The store keeps that header once
//! per distinct value, reference-counted by the entries that use it, so a cached log line
//! costs little more than its payload. Headers are freed with their last entry, so a source
//! that puts unique values in its tags cannot grow the table beyond its live entries.

use std::collections::HashMap;
use std::sync::Arc;

use hydrant_proto::v2::Envelope;
use prost::Message as _;

#[derive(Debug)]
struct Slot {
    key: Box<[u8]>,
    decoded: Arc<Envelope>,
    refs: u32,
}

/// A per-source header table.
#[derive(Debug, Default)]
pub(crate) struct Headers {
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    index: HashMap<Box<[u8]>, u32>,
    /// Bytes held by live headers (keys and decoded copies, estimated).
    pub(crate) bytes: usize,
}

/// Rough cost of one decoded header beyond its encoded bytes (maps, strings, Arc).
const DECODED_OVERHEAD: usize = 256;

impl Headers {
    /// The id of `encoded` (an `Envelope` without timestamp and message), adding a
    /// reference; `None` if the bytes do not decode (they were validated upstream, so this
    /// does not happen in practice).
    pub(crate) fn intern(&mut self, encoded: &[u8]) -> Option<u32> {
        if let Some(&id) = self.index.get(encoded)
            && let Some(Some(slot)) = self.slots.get_mut(id as usize)
        {
            slot.refs += 1;
            return Some(id);
        }
        let decoded = Arc::new(Envelope::decode(encoded).ok()?);
        let key: Box<[u8]> = encoded.into();
        self.bytes += key.len() * 2 + DECODED_OVERHEAD;
        let slot = Slot {
            key: key.clone(),
            decoded,
            refs: 1,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = Some(slot);
                id
            }
            None => {
                self.slots.push(Some(slot));
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(key, id);
        Some(id)
    }

    /// Drops one reference; the header goes with its last entry.
    pub(crate) fn release(&mut self, id: u32) {
        let Some(entry) = self.slots.get_mut(id as usize) else {
            return;
        };
        let Some(slot) = entry else { return };
        slot.refs -= 1;
        if slot.refs == 0 {
            let slot = entry.take().expect("checked above");
            self.bytes -= slot.key.len() * 2 + DECODED_OVERHEAD;
            self.index.remove(&slot.key);
            self.free.push(id);
        }
    }

    /// The decoded header.
    pub(crate) fn get(&self, id: u32) -> Option<&Arc<Envelope>> {
        self.slots.get(id as usize)?.as_ref().map(|s| &s.decoded)
    }

    /// Live headers.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(instance: &str) -> Vec<u8> {
        Envelope {
            source_id: "s".into(),
            instance_id: instance.into(),
            ..Default::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn interns_counts_and_frees() {
        let mut h = Headers::default();
        let a = h.intern(&header("0")).unwrap();
        assert_eq!(h.intern(&header("0")), Some(a));
        let b = h.intern(&header("1")).unwrap();
        assert_ne!(a, b);
        assert_eq!(h.len(), 2);
        h.release(a);
        assert_eq!(h.len(), 2, "one reference left");
        h.release(a);
        assert_eq!(h.len(), 1);
        assert!(h.get(a).is_none());
        let c = h.intern(&header("2")).unwrap();
        assert_eq!(c, a, "freed ids are reused");
        assert_eq!(h.get(b).unwrap().instance_id, "1");
        h.release(b);
        h.release(c);
        assert_eq!((h.len(), h.bytes), (0, 0));
    }
}
