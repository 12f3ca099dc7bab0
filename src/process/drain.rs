//! Draining one pipe: append the raw bytes to the log file and deliver framed lines.
//!
//! Owns the hot path (benchmarked at 16 children × 50 MB): large reads, one `write(2)` per read,
//! memchr framing, no per-byte work. It must never stop reading because the log or the consumer
//! failed (a child blocked on a full pipe would hang the step), and never hold more than one read
//! buffer plus one capped line.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, timeout};

use super::frame::Framer;
use super::{Line, Stream};

/// Bytes asked of one read; matches the pipe size requested below.
const READ_BUF: usize = 256 * 1024;
/// The read buffer's first size; it grows to `READ_BUF` while reads fill it.
const FIRST_READ_BUF: usize = 512;
/// Pipe capacity requested (best effort); bigger pipes mean fewer wake-ups for chatty children.
const PIPE_SIZE: i32 = 256 * 1024;
/// Once told to finish, stop when the pipe has been idle this long...
const FINISH_IDLE: Duration = Duration::from_millis(50);
/// ...or when this long has passed, whichever comes first.
const FINISH_BUDGET: Duration = Duration::from_millis(500);

/// Asks the kernel for a larger pipe; failure only costs some wake-ups.
pub(crate) fn enlarge_pipe(fd: impl AsFd) {
    let _ = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
}

/// Where one pipe's output goes.
pub(crate) struct Sink {
    pub(crate) stream: Stream,
    pub(crate) log: File,
    pub(crate) lines: mpsc::Sender<Vec<Line>>,
    pub(crate) max_line_bytes: usize,
}

/// Reads `reader` to EOF (or, once `finish` turns true, until it goes idle), writing every chunk
/// to the log and sending its lines. Returns the first log-write error, after draining anyway.
pub(crate) async fn drain(
    mut reader: impl AsyncRead + Unpin,
    sink: Sink,
    mut finish: watch::Receiver<bool>,
) -> io::Result<()> {
    let Sink {
        stream,
        mut log,
        lines,
        max_line_bytes,
    } = sink;
    let mut framer = Framer::new(stream, max_line_bytes);
    // Filled by `read_buf` into spare capacity: a zeroed buffer would cost a memset per pipe per
    // step, which showed in the per-step overhead of short steps. It starts small, so that a
    // thousand quiet agents cost little memory, and grows while reads fill it (a busy stream).
    let mut buf: Vec<u8> = Vec::with_capacity(FIRST_READ_BUF);
    let mut out = Vec::new();
    let mut deliver = true;
    let mut log_error = None;
    let mut finish_by: Option<Instant> = None;
    loop {
        buf.clear();
        let read = match finish_by {
            None => tokio::select! {
                biased;
                read = reader.read_buf(&mut buf) => read,
                // An error means the monitor is gone (runtime shutting down): finish as well.
                _ = finish.wait_for(|finish| *finish) => {
                    finish_by = Some(Instant::now() + FINISH_BUDGET);
                    continue;
                }
            },
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                match timeout(left.min(FINISH_IDLE), reader.read_buf(&mut buf)).await {
                    Ok(read) => read,
                    // Idle or out of time: whoever still holds the pipe escaped the group.
                    Err(_) => break,
                }
            }
        };
        let n = match read {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => {
                tracing::warn!(?stream, %err, "reading a child's pipe failed");
                break;
            }
        };
        if n == buf.capacity() && buf.capacity() < READ_BUF {
            let mut bigger = Vec::with_capacity((buf.capacity() * 4).min(READ_BUF));
            bigger.extend_from_slice(&buf[..n]);
            buf = bigger;
        }
        let chunk = &buf[..n];
        // The read buffer is the write buffer: one write(2) per chunk puts every byte read into
        // the page cache at once, so orch crashing later loses nothing it had read.
        if log_error.is_none() {
            if let Err(err) = log.write_all(chunk) {
                log_error = Some(err);
            }
        }
        if deliver {
            framer.push(chunk, &mut out);
            deliver = send_all(&lines, &mut out).await;
        }
    }
    if deliver {
        framer.finish(&mut out);
        send_all(&lines, &mut out).await;
    }
    log_error.map_or(Ok(()), Err)
}

/// Sends the lines of `out` as one batch, leaving it empty; false once the receiver is gone (then
/// framing stops altogether).
async fn send_all(lines: &mpsc::Sender<Vec<Line>>, out: &mut Vec<Line>) -> bool {
    if out.is_empty() {
        return true;
    }
    lines.send(std::mem::take(out)).await.is_ok()
}
