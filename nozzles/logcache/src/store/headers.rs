//! Interned envelope headers. Most envelopes of a source share everything but their
//! timestamp and message: source id, instance id and tags. The store keeps that header once
//! per distinct value, reference-counted by the entries that use it, so a cached log line
//! costs little more than its payload. Headers are freed with their last entry, so a source
//! that puts unique values in its tags cannot grow the table beyond its live entries.
//! Headers stay encoded; reads decode them with the envelope.

use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug)]
struct Slot {
    key: Arc<[u8]>,
    refs: u32,
}

/// A per-source header table.
#[derive(Debug, Default)]
pub(crate) struct Headers {
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    index: HashMap<Arc<[u8]>, u32>,
    /// Bytes held by live headers (estimated).
    pub(crate) bytes: usize,
}

/// Cost of one header beyond its encoded bytes: the shared allocation's counts, the map
/// entry and the slot.
const HEADER_OVERHEAD: usize = 80;

impl Headers {
    /// The id of `encoded` (an `Envelope` without timestamp and message), adding a
    /// reference.
    pub(crate) fn intern(&mut self, encoded: &[u8]) -> u32 {
        if let Some(&id) = self.index.get(encoded)
            && let Some(Some(slot)) = self.slots.get_mut(id as usize)
        {
            slot.refs += 1;
            return id;
        }
        let key: Arc<[u8]> = encoded.into();
        self.bytes += key.len() + HEADER_OVERHEAD;
        let slot = Slot {
            key: Arc::clone(&key),
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
        id
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
            self.bytes -= slot.key.len() + HEADER_OVERHEAD;
            self.index.remove(&slot.key);
            self.free.push(id);
        }
    }

    /// The encoded header.
    pub(crate) fn get(&self, id: u32) -> Option<&Arc<[u8]>> {
        self.slots.get(id as usize)?.as_ref().map(|s| &s.key)
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

    use hydrant_proto::v2::Envelope;
    use prost::Message as _;

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
        let a = h.intern(&header("0"));
        assert_eq!(h.intern(&header("0")), a);
        let b = h.intern(&header("1"));
        assert_ne!(a, b);
        assert_eq!(h.len(), 2);
        h.release(a);
        assert_eq!(h.len(), 2, "one reference left");
        h.release(a);
        assert_eq!(h.len(), 1);
        assert!(h.get(a).is_none());
        let c = h.intern(&header("2"));
        assert_eq!(c, a, "freed ids are reused");
        assert_eq!(
            Envelope::decode(&h.get(b).unwrap()[..])
                .unwrap()
                .instance_id,
            "1"
        );
        h.release(b);
        h.release(c);
        assert_eq!((h.len(), h.bytes), (0, 0));
    }
}
