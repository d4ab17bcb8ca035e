//! A bounded queue that drops its oldest entries instead of blocking the writer: Hydrant's
//! equivalent of Loggregator's diodes.
//!
//! Writers never wait. When a push would exceed the capacity (in entries, or in bytes as
//! measured by the queue's weigher), the oldest entries are evicted and counted, so a
//! consumer's `delivered + dropped` always equals what was pushed. Readers take whole
//! batches, which is what lets batching adapt to load: a reader that keeps up takes one
//! entry at a time with no added delay; one that falls behind takes many at once.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

/// Measures an entry for the byte bound.
pub type Weigher<T> = fn(&T) -> usize;

/// A bounded multi-producer queue with drop-oldest overflow.
#[derive(Debug)]
pub struct DropQueue<T> {
    inner: Mutex<Inner<T>>,
    notify: Notify,
    max_entries: usize,
    max_bytes: usize,
    weigh: Weigher<T>,
    pushed: AtomicU64,
    dropped: AtomicU64,
}

#[derive(Debug)]
struct Inner<T> {
    entries: VecDeque<T>,
    bytes: usize,
    closed: bool,
}

/// What one push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pushed {
    /// Entries evicted to make room (the oldest first).
    pub dropped: usize,
    /// Entries refused because the queue was closed.
    pub refused: usize,
}

impl<T> DropQueue<T> {
    /// A queue bounded by `max_entries` and `max_bytes` (both at least one entry is always
    /// kept, so a single oversized entry still passes through).
    pub fn new(max_entries: usize, max_bytes: usize, weigh: Weigher<T>) -> DropQueue<T> {
        DropQueue {
            inner: Mutex::new(Inner {
                entries: VecDeque::new(),
                bytes: 0,
                closed: false,
            }),
            notify: Notify::new(),
            max_entries: max_entries.max(1),
            max_bytes: max_bytes.max(1),
            weigh,
            pushed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// Appends entries, evicting the oldest as needed. Never blocks on a reader.
    pub fn push_all(&self, items: impl IntoIterator<Item = T>) -> Pushed {
        let mut result = Pushed::default();
        let mut count = 0u64;
        {
            // Sync mutex: the critical section is a few pointer moves and never awaits.
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            for item in items {
                if inner.closed {
                    result.refused += 1;
                    continue;
                }
                inner.bytes += (self.weigh)(&item);
                inner.entries.push_back(item);
                count += 1;
                while inner.entries.len() > 1
                    && (inner.entries.len() > self.max_entries || inner.bytes > self.max_bytes)
                {
                    if let Some(old) = inner.entries.pop_front() {
                        inner.bytes -= (self.weigh)(&old);
                        result.dropped += 1;
                    }
                }
            }
        }
        self.pushed.fetch_add(count, Ordering::Relaxed);
        if result.dropped > 0 {
            self.dropped
                .fetch_add(result.dropped as u64, Ordering::Relaxed);
        }
        if count > 0 {
            self.notify.notify_one();
        }
        result
    }

    /// Appends one entry.
    pub fn push(&self, item: T) -> Pushed {
        self.push_all(std::iter::once(item))
    }

    /// Puts entries a reader took but could not deliver back at the front, in their
    /// order, so another reader sends them next; accepted even after [`close`](Self::close)
    /// (they were accepted before it). Past the bounds the oldest go, as in
    /// [`push_all`](Self::push_all); returns how many were evicted.
    pub fn give_back(&self, items: Vec<T>) -> usize {
        if items.is_empty() {
            return 0;
        }
        let mut dropped = 0;
        {
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            for item in items.into_iter().rev() {
                inner.bytes += (self.weigh)(&item);
                inner.entries.push_front(item);
            }
            while inner.entries.len() > 1
                && (inner.entries.len() > self.max_entries || inner.bytes > self.max_bytes)
            {
                if let Some(old) = inner.entries.pop_front() {
                    inner.bytes -= (self.weigh)(&old);
                    dropped += 1;
                }
            }
        }
        if dropped > 0 {
            self.dropped.fetch_add(dropped as u64, Ordering::Relaxed);
        }
        self.notify.notify_one();
        dropped
    }

    /// Moves up to `max` entries, and no more than `max_bytes` (but always at least one
    /// entry when any is waiting), into `out` without waiting; returns how many.
    pub fn try_pop_batch(&self, max: usize, max_bytes: usize, out: &mut Vec<T>) -> usize {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut n = 0;
        let mut bytes = 0;
        while n < max {
            let Some(front) = inner.entries.front() else {
                break;
            };
            let w = (self.weigh)(front);
            if n > 0 && bytes + w > max_bytes {
                break;
            }
            bytes += w;
            n += 1;
            let item = inner.entries.pop_front().expect("front exists");
            out.push(item);
        }
        inner.bytes -= bytes;
        let more = !inner.entries.is_empty();
        drop(inner);
        if more {
            // Leave a permit for another reader sharing this queue.
            self.notify.notify_one();
        }
        n
    }

    /// Waits until at least one entry is available, then behaves as
    /// [`try_pop_batch`](Self::try_pop_batch). Returns 0 only once the queue is closed and empty.
    pub async fn pop_batch(&self, max: usize, max_bytes: usize, out: &mut Vec<T>) -> usize {
        loop {
            let notified = self.notify.notified();
            let n = self.try_pop_batch(max, max_bytes, out);
            if n > 0 {
                return n;
            }
            if self.is_closed() {
                // Wake the next reader so it sees the close too.
                self.notify.notify_one();
                return 0;
            }
            notified.await;
        }
    }

    /// Refuses further pushes; readers drain what is left, then see the end.
    pub fn close(&self) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
        self.notify.notify_waiters();
        self.notify.notify_one();
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).closed
    }

    /// Entries waiting.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entries
            .len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes waiting, as weighed.
    pub fn bytes(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).bytes
    }

    /// Entries accepted since creation.
    pub fn pushed(&self) -> u64 {
        self.pushed.load(Ordering::Relaxed)
    }

    /// Entries evicted since creation.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The entry bound.
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(_: &u32) -> usize {
        1
    }

    #[test]
    fn drops_oldest_and_counts_exactly() {
        let q = DropQueue::new(3, usize::MAX, one);
        let r = q.push_all(0..5u32);
        assert_eq!(r.dropped, 2);
        let mut out = Vec::new();
        assert_eq!(q.try_pop_batch(10, usize::MAX, &mut out), 3);
        assert_eq!(out, vec![2, 3, 4]);
        assert_eq!((q.pushed(), q.dropped()), (5, 2));
    }

    #[test]
    fn byte_bound_keeps_at_least_one_entry() {
        fn weight(x: &u32) -> usize {
            *x as usize
        }
        let q = DropQueue::new(100, 10, weight);
        q.push_all([4u32, 4]);
        assert_eq!(q.len(), 2);
        let r = q.push(50);
        assert_eq!(r.dropped, 2, "both small entries make way for the big one");
        assert_eq!((q.len(), q.bytes()), (1, 50));
    }

    #[test]
    fn given_back_entries_leave_first_in_order_even_after_close() {
        let q = DropQueue::new(4, usize::MAX, one);
        q.push_all([3u32, 4]);
        q.close();
        assert_eq!(q.give_back(vec![1, 2]), 0);
        let mut out = Vec::new();
        q.try_pop_batch(10, usize::MAX, &mut out);
        assert_eq!(out, vec![1, 2, 3, 4]);
        q.give_back(vec![5, 6, 7]);
        q.give_back(vec![1, 2]);
        assert_eq!(q.dropped(), 1, "past the bound the oldest goes");
        out.clear();
        q.try_pop_batch(10, usize::MAX, &mut out);
        assert_eq!(out, vec![2, 5, 6, 7]);
    }

    #[tokio::test]
    async fn pop_waits_for_data_and_ends_after_close() {
        let q = std::sync::Arc::new(DropQueue::new(10, usize::MAX, one));
        let reader = {
            let q = std::sync::Arc::clone(&q);
            tokio::spawn(async move {
                let mut out = Vec::new();
                let mut total = 0;
                while q.pop_batch(4, usize::MAX, &mut out).await > 0 {
                    total += out.len();
                    out.clear();
                }
                total
            })
        };
        for i in 0..7u32 {
            q.push(i);
            tokio::task::yield_now().await;
        }
        q.close();
        assert_eq!(q.push(99).refused, 1);
        assert_eq!(reader.await.unwrap(), 7);
    }
}
