//! Parallel gzip in the manner of pigz, and a small parallel map.
//!
//! The stream is cut into fixed blocks; each block is deflated on its own, primed with the
//! last 32 KiB of the block before it (so the ratio stays that of one stream), and ends with
//! a sync flush so the pieces concatenate into one valid deflate stream. Block boundaries
//! depend only on the input, so the output is byte-identical whatever the thread count.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc;
use std::thread;

use flate2::{Compress, Compression, FlushCompress, Status};

use crate::error::{Error, Result};

/// Bytes of input per independently compressed block.
const BLOCK: usize = 1 << 20;
/// The deflate window: how much of the previous block primes the next.
const WINDOW: usize = 32 * 1024;
/// gzip level, as `gzip -6`.
const LEVEL: u32 = 6;

fn workers() -> usize {
    thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 8)
}

struct Job {
    index: u64,
    dict: Vec<u8>,
    data: Vec<u8>,
    last: bool,
}

struct Done {
    index: u64,
    deflated: Vec<u8>,
    crc: crc32fast::Hasher,
    len: usize,
}

/// Write gzip of whatever `produce` writes into `out`.
pub(crate) fn gzip_parallel<W, F>(out: W, produce: F) -> Result<()>
where
    W: Write + Send,
    F: FnOnce(&mut dyn Write) -> Result<()>,
{
    let n = workers();
    thread::scope(|scope| {
        let (job_tx, job_rx) = mpsc::sync_channel::<Job>(n * 2);
        let job_rx = std::sync::Arc::new(std::sync::Mutex::new(job_rx));
        let (done_tx, done_rx) = mpsc::sync_channel::<io::Result<Done>>(n * 2);
        for _ in 0..n {
            let job_rx = job_rx.clone();
            let done_tx = done_tx.clone();
            scope.spawn(move || {
                loop {
                    let job = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else { return };
                    if done_tx.send(deflate_block(job)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        let writer = scope.spawn(move || write_in_order(out, done_rx));

        let mut blocks = Blocks { tx: Some(job_tx), buf: Vec::with_capacity(BLOCK), prev_tail: Vec::new(), index: 0 };
        let produced = produce(&mut blocks).and_then(|()| blocks.finish().map_err(Error::Write));
        drop(blocks);
        let written = writer.join().unwrap_or_else(|_| Err(io::Error::other("compression thread panicked")));
        produced?;
        written.map_err(Error::Write)
    })
}

/// Cuts the tar stream into blocks and hands them to the workers.
struct Blocks {
    tx: Option<mpsc::SyncSender<Job>>,
    buf: Vec<u8>,
    prev_tail: Vec<u8>,
    index: u64,
}

impl Blocks {
    fn send(&mut self, last: bool) -> io::Result<()> {
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(BLOCK));
        let tail_start = data.len().saturating_sub(WINDOW);
        let next_tail = data[tail_start..].to_vec();
        let dict = std::mem::replace(&mut self.prev_tail, next_tail);
        let job = Job { index: self.index, dict, data, last };
        self.index += 1;
        match &self.tx {
            Some(tx) => tx.send(job).map_err(|_| io::Error::other("compression stopped")),
            None => Err(io::Error::other("compression already finished")),
        }
    }

    fn finish(&mut self) -> io::Result<()> {
        self.send(true)?;
        self.tx = None;
        Ok(())
    }
}

impl Write for Blocks {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = BLOCK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == BLOCK {
            self.send(false)?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn deflate_block(job: Job) -> io::Result<Done> {
    let mut c = Compress::new(Compression::new(LEVEL), false);
    if !job.dict.is_empty() {
        c.set_dictionary(&job.dict).map_err(io::Error::other)?;
    }
    let mut out = Vec::with_capacity(job.data.len() / 2 + 1024);
    let flush = if job.last { FlushCompress::Finish } else { FlushCompress::Sync };
    let mut consumed = 0usize;
    loop {
        let before_in = c.total_in() as usize;
        if out.capacity() - out.len() < 64 * 1024 {
            out.reserve(out.capacity().max(64 * 1024));
        }
        let status = c.compress_vec(&job.data[consumed..], &mut out, flush).map_err(io::Error::other)?;
        consumed += c.total_in() as usize - before_in;
        let done = match status {
            Status::StreamEnd => true,
            // A sync flush is complete once all input is consumed and output space remains.
            _ => !job.last && consumed == job.data.len() && out.len() < out.capacity(),
        };
        if done {
            break;
        }
    }
    let mut crc = crc32fast::Hasher::new();
    crc.update(&job.data);
    Ok(Done { index: job.index, deflated: out, crc, len: job.data.len() })
}

fn write_in_order<W: Write>(mut out: W, done: mpsc::Receiver<io::Result<Done>>) -> io::Result<()> {
    // gzip header: magic, deflate, no flags, mtime 0, no extra flags, OS unknown.
    out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255])?;
    let mut pending = BTreeMap::new();
    let mut next = 0u64;
    let mut crc = crc32fast::Hasher::new();
    let mut total: u64 = 0;
    for block in done {
        let block = block?;
        pending.insert(block.index, block);
        while let Some(block) = pending.remove(&next) {
            out.write_all(&block.deflated)?;
            crc.combine(&block.crc);
            total += block.len as u64;
            next += 1;
        }
    }
    if !pending.is_empty() {
        return Err(io::Error::other("compression lost a block"));
    }
    out.write_all(&crc.finalize().to_le_bytes())?;
    out.write_all(&(total as u32).to_le_bytes())?;
    out.flush()
}

/// `items.iter().map(f).collect()`, spread over the machine's cores, keeping order.
pub(crate) fn map_parallel<T: Sync, U: Send>(items: &[T], f: impl Fn(&T) -> Result<U> + Sync) -> Result<Vec<U>> {
    let n = workers().min(items.len().max(1));
    let chunk = items.len().div_ceil(n).max(1);
    thread::scope(|scope| {
        let handles: Vec<_> = items.chunks(chunk).map(|part| scope.spawn(|| part.iter().map(&f).collect::<Result<Vec<U>>>())).collect();
        let mut out = Vec::with_capacity(items.len());
        for h in handles {
            out.extend(h.join().map_err(|_| Error::Write(io::Error::other("hashing thread panicked")))??);
        }
        Ok(out)
    })
}
