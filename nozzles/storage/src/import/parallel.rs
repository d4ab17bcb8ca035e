//! An import body parsed on several threads: cut into blocks of whole lines as it
//! arrives, the blocks dealt to one [`Scanner`] per thread in turn, the results put back
//! in body order.

use std::collections::HashMap;

use super::{ImportError, Scanned, Scanner, newlines};

/// Bytes of whole lines handed to a parsing thread at a time.
pub const BLOCK_BYTES: usize = 1 << 20;

/// Most threads parsing one body (blocks queue at most [`BLOCKS_QUEUED`] per thread, so a
/// body is never held whole).
pub const MAX_PARSE_THREADS: usize = 4;

/// Blocks waiting for each parsing thread.
pub const BLOCKS_QUEUED: usize = 2;

/// Parses a body on several threads as it arrives: the body is cut into blocks of whole
/// lines, dealt to the threads in turn, and the threads' results are put back in body
/// order: the same samples in the same order, and the same first bad line, as one
/// [`Scanner`] reading it all (the series may be listed in another order).
#[derive(Debug)]
pub struct ParallelScanner {
    /// Whole lines gathered for the next block, then the start of a line the last
    /// chunk cut.
    block: Vec<u8>,
    block_bytes: usize,
    /// Lines and bytes of the body before `block`.
    line: usize,
    offset: usize,
    /// Blocks sent so far.
    sent: usize,
    workers: Vec<(
        tokio::sync::mpsc::Sender<Block>,
        tokio::task::JoinHandle<Worker>,
    )>,
}

/// Whole lines of the body and where they start.
#[derive(Debug)]
struct Block {
    seq: usize,
    bytes: Vec<u8>,
    line: usize,
    offset: usize,
}

/// One thread's scanner and, per block it read, the rows that came of it.
#[derive(Debug)]
struct Worker {
    scanner: Scanner,
    blocks: Vec<(usize, std::ops::Range<usize>, Option<ImportError>)>,
}

impl ParallelScanner {
    /// A scanner for a body of about `size_hint` bytes, on as many threads as the machine
    /// has cores (at most [`MAX_PARSE_THREADS`]).
    pub fn new(now_ms: i64, size_hint: usize) -> ParallelScanner {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_PARSE_THREADS);
        ParallelScanner::with(now_ms, size_hint, threads, BLOCK_BYTES)
    }

    fn with(now_ms: i64, size_hint: usize, threads: usize, block_bytes: usize) -> ParallelScanner {
        let workers = (0..threads.max(1))
            .map(|_| {
                let (tx, mut rx) = tokio::sync::mpsc::channel::<Block>(BLOCKS_QUEUED);
                let task = tokio::task::spawn_blocking(move || {
                    let mut worker = Worker {
                        scanner: Scanner::new(now_ms, size_hint / threads.max(1)),
                        blocks: Vec::new(),
                    };
                    while let Some(b) = rx.blocking_recv() {
                        let start = worker.scanner.out.rows.len();
                        let result = worker.scanner.read_block(&b.bytes, b.line, b.offset);
                        let rows = start..worker.scanner.out.rows.len();
                        worker.blocks.push((b.seq, rows, result.err()));
                    }
                    worker
                });
                (tx, task)
            })
            .collect();
        ParallelScanner {
            block: Vec::new(),
            block_bytes,
            line: 0,
            offset: 0,
            sent: 0,
            workers,
        }
    }

    /// Takes the next chunk of the body.
    pub async fn feed(&mut self, chunk: &[u8]) {
        self.block.extend_from_slice(chunk);
        if self.block.len() < self.block_bytes {
            return;
        }
        if let Some(nl) = self.block.iter().rposition(|b| *b == b'\n') {
            let rest = self.block.split_off(nl + 1);
            let lines = std::mem::replace(&mut self.block, rest);
            self.send(lines).await;
        }
    }

    async fn send(&mut self, bytes: Vec<u8>) {
        let block = Block {
            seq: self.sent,
            line: self.line,
            offset: self.offset,
            bytes,
        };
        self.line += newlines(&block.bytes);
        self.offset += block.bytes.len();
        let worker = &self.workers[self.sent % self.workers.len()];
        self.sent += 1;
        // A worker only stops early by panicking, which `finish` reports.
        let _ = worker.0.send(block).await;
    }

    /// Reads the rest; the samples, or the body's first bad line.
    pub async fn finish(mut self) -> Result<Scanned, ImportError> {
        if !self.block.is_empty() {
            let last = std::mem::take(&mut self.block);
            self.send(last).await;
        }
        let mut workers = Vec::with_capacity(self.workers.len());
        for (tx, task) in self.workers {
            drop(tx);
            workers.push(task.await.map_err(|e| ImportError {
                line: 0,
                message: format!("parsing thread failed: {e}"),
            })?);
        }
        merge(workers)
    }
}

/// The workers' results in body order, their series merged by text.
fn merge(workers: Vec<Worker>) -> Result<Scanned, ImportError> {
    let mut order: Vec<(usize, usize, usize)> = Vec::new(); // (seq, worker, block)
    for (w, worker) in workers.iter().enumerate() {
        order.extend(
            worker
                .blocks
                .iter()
                .enumerate()
                .map(|(b, blk)| (blk.0, w, b)),
        );
    }
    order.sort_unstable();
    if let Some(e) = order
        .iter()
        .find_map(|&(_, w, b)| workers[w].blocks[b].2.as_ref())
    {
        return Err(e.clone());
    }
    let mut out = Scanned {
        keys: Vec::new(),
        rows: Vec::with_capacity(workers.iter().map(|w| w.scanner.out.rows.len()).sum()),
    };
    // Series are listed in order of first appearance in the body, as one scanner lists
    // them (so the catalog gives ids in the same order however the body was cut).
    let mut by_text: HashMap<&str, u32, foldhash::fast::RandomState> = HashMap::default();
    let texts: Vec<Vec<Option<&str>>> = workers
        .iter()
        .map(|worker| {
            let mut texts = vec![None; worker.scanner.out.keys.len()];
            for (text, &i) in &worker.scanner.by_text {
                texts[i as usize] = Some(&**text);
            }
            texts
        })
        .collect();
    let mut remaps: Vec<Vec<u32>> = workers
        .iter()
        .map(|w| vec![u32::MAX; w.scanner.out.keys.len()])
        .collect();
    for (_, w, b) in order {
        let scanner = &workers[w].scanner;
        for &(k, ts, v) in &scanner.out.rows[workers[w].blocks[b].1.clone()] {
            let global = &mut remaps[w][k as usize];
            if *global == u32::MAX {
                let text = texts[w][k as usize];
                *global = match text.and_then(|t| by_text.get(t)) {
                    Some(&i) => i,
                    None => {
                        out.keys.push(scanner.out.keys[k as usize].clone());
                        let i = out.keys.len() as u32 - 1;
                        if let Some(t) = text {
                            by_text.insert(t, i);
                        }
                        i
                    }
                };
            }
            out.rows.push((*global, ts, v));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::tests::scan;
    use crate::model::SeriesKey;

    /// What a body's samples are: (series, time, value bits), in body order.
    fn resolved(s: &Scanned) -> Vec<(SeriesKey, i64, u64)> {
        s.rows
            .iter()
            .map(|&(k, ts, v)| (s.keys[k as usize].clone(), ts, v.to_bits()))
            .collect()
    }

    async fn scan_parallel(
        body: &[u8],
        chunk: usize,
        threads: usize,
        block: usize,
    ) -> Result<Scanned, ImportError> {
        let mut p = ParallelScanner::with(5, body.len(), threads, block);
        for c in body.chunks(chunk) {
            p.feed(c).await;
        }
        p.finish().await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_body_parsed_on_several_threads_reads_as_on_one() {
        let mut text = String::new();
        for i in 0..4_000 {
            // Series recur across blocks; a repeated (series, time) keeps body order.
            text.push_str(&format!(
                "load{{app=\"a{}\"}} {i} {}\n",
                i % 37,
                (i % 50) * 10
            ));
            if i % 300 == 0 {
                text.push_str("# comment\n\nup{x=\"ü\"} 1\n");
            }
        }
        text.push_str("last 7 70"); // no final newline
        let one = scan(&text, 5).unwrap();
        for (chunk, threads, block) in [
            (1_000, 2, 64),
            (7, 3, 1_000),
            (65_536, 4, 4_096),
            (100, 1, 10),
        ] {
            let many = scan_parallel(text.as_bytes(), chunk, threads, block)
                .await
                .unwrap();
            assert_eq!(resolved(&many), resolved(&one), "{chunk} {threads} {block}");
            // Listed once each, in order of first appearance, as one scanner lists them.
            assert_eq!(many.keys, one.keys, "{chunk} {threads} {block}");
        }
        // The first bad line of the body is the error, whichever thread met it first;
        // and a byte that is not UTF-8 is named by its line and byte.
        let mut bad = text.clone();
        bad.insert_str(bad.len() / 2, "\nload{app=} 1\nup one\n");
        let mut broken = text.clone().into_bytes();
        broken.extend_from_slice(b"\nup{a=\"\xff\"} 2\nup one\n");
        for body in [bad.as_bytes(), &broken[..]] {
            let want = {
                let mut s = Scanner::new(5, 0);
                s.feed(body)
                    .and_then(|()| s.finish().map(drop))
                    .unwrap_err()
            };
            for (threads, block) in [(2, 64), (3, 500), (4, 100_000)] {
                let got = scan_parallel(body, 333, threads, block).await.unwrap_err();
                assert_eq!(got, want, "{threads} {block}");
            }
        }
    }
}
