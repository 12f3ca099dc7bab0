//! Draining one pipe: append the raw bytes to the log file and deliver framed lines.
//!
//! Owns the hot path (benchmarked at 16 children × 50 MB): large reads, one `write(2)` per read,
//! memchr framing, no per-byte work. A log file is created when its pipe's first byte arrives, so
//! a step that writes nothing on a stream has no file for it (readers take a missing log as
//! empty); that saves two `openat`s per quiet step. It must never stop reading because the log or the consumer
//! failed (a child blocked on a full pipe would hang the step), and never hold more than one read
//! buffer plus one capped line.
//!
//! A log write that fails (a full disk, a file-size limit) is reported at once as a [`LogFault`]
//! and never stops the draining: the bytes that could not be written are counted, each later chunk
//! is tried again, and once writes succeed again the log resumes at a line boundary (the torn
//! line before the gap is ended, the torn one after it dropped), so that readers of the log see
//! whole lines only. A log that cannot be created is such a failure too, tried again each chunk.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
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

/// Bytes of a step's output that did not reach its log file, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogFault {
    /// The pipe whose log it is.
    pub stream: Stream,
    /// The log file.
    pub path: PathBuf,
    /// The first write error, as the OS put it ("No space left on device (os error 28)").
    pub error: String,
    /// Bytes read from the pipe but not written to the log (so far, in a live report).
    pub bytes_lost: u64,
    /// Whether writing worked again after the failure (the log has a gap, not a missing end).
    pub resumed: bool,
}

/// Where one pipe's output goes.
pub(crate) struct Sink {
    pub(crate) stream: Stream,
    /// The log file, created (or appended to) at the first byte.
    pub(crate) log_path: PathBuf,
    pub(crate) lines: mpsc::Sender<Vec<Line>>,
    pub(crate) max_line_bytes: usize,
    /// Told of the first failed write of each streak of failures, as it happens.
    pub(crate) faults: mpsc::UnboundedSender<LogFault>,
}

/// The log file of one pipe, with its failures counted.
struct LogFile {
    /// None until the first chunk (or while it cannot be created).
    file: Option<File>,
    /// Set once a write failed; its `bytes_lost` grows while writes keep failing.
    fault: Option<LogFault>,
    /// A write failed and none has succeeded since.
    failing: bool,
}

impl LogFile {
    /// Writes `chunk`, or counts it lost. Returns the fault to report when this write began a
    /// streak of failures.
    fn write(&mut self, stream: Stream, path: &Path, chunk: &[u8]) -> Option<LogFault> {
        let mut data = chunk;
        if self.failing {
            // Resume at a line boundary: drop the torn rest of the line the gap began in.
            let Some(i) = memchr::memchr(b'\n', data) else {
                self.lose(data.len());
                return None;
            };
            // End the torn line, if any was written: a log never created has none.
            let ended = match &mut self.file {
                Some(file) => write_some(file, b"\n").1.is_none(),
                None => open(path).map(|file| self.file = Some(file)).is_ok(),
            };
            if !ended {
                self.lose(data.len());
                return None;
            }
            self.lose(i + 1);
            data = &data[i + 1..];
            self.failing = false;
            if let Some(fault) = &mut self.fault {
                fault.resumed = true;
            }
        }
        let (written, error) = self.put(path, data);
        let err = error?;
        let first_of_streak = !self.failing;
        self.failing = true;
        let fault = self.fault.get_or_insert_with(|| LogFault {
            stream,
            path: path.to_path_buf(),
            error: err.to_string(),
            bytes_lost: 0,
            resumed: false,
        });
        fault.bytes_lost += (data.len() - written) as u64;
        first_of_streak.then(|| fault.clone())
    }

    /// Writes `data` to the file, creating it first if this is its first byte.
    fn put(&mut self, path: &Path, data: &[u8]) -> (usize, Option<io::Error>) {
        let file = match &mut self.file {
            Some(file) => file,
            None => match open(path) {
                Ok(file) => self.file.insert(file),
                Err(err) => return (0, Some(err)),
            },
        };
        write_some(file, data)
    }

    fn lose(&mut self, n: usize) {
        if let Some(fault) = &mut self.fault {
            fault.bytes_lost += n as u64;
        }
    }
}

/// Opens `path` for appending, creating it if missing.
pub(crate) fn open(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// Writes as much of `data` as the file takes: the bytes written, and the error that stopped it.
fn write_some(file: &mut File, data: &[u8]) -> (usize, Option<io::Error>) {
    let mut written = 0;
    while written < data.len() {
        match file.write(&data[written..]) {
            Ok(0) => return (written, Some(io::ErrorKind::WriteZero.into())),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (written, Some(e)),
        }
    }
    (written, None)
}

/// Reads `reader` to EOF (or, once `finish` turns true, until it goes idle), writing every chunk
/// to the log and sending its lines. Returns what could not be written to the log, if anything,
/// after draining anyway.
pub(crate) async fn drain(
    mut reader: impl AsyncRead + Unpin,
    sink: Sink,
    mut finish: watch::Receiver<bool>,
) -> Option<LogFault> {
    let Sink {
        stream,
        log_path,
        lines,
        max_line_bytes,
        faults,
    } = sink;
    let mut log = LogFile {
        file: None,
        fault: None,
        failing: false,
    };
    let mut framer = Framer::new(stream, max_line_bytes);
    // Filled by `read_buf` into spare capacity: a zeroed buffer would cost a memset per pipe per
    // step, which showed in the per-step overhead of short steps. It starts small, so that a
    // thousand quiet agents cost little memory, and grows while reads fill it (a busy stream).
    let mut buf: Vec<u8> = Vec::with_capacity(FIRST_READ_BUF);
    let mut out = Vec::new();
    let mut deliver = true;
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
        if let Some(fault) = log.write(stream, &log_path, chunk) {
            // Nobody listening (the step's executor is gone) changes nothing here.
            let _ = faults.send(fault);
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
    log.fault
}

/// Sends the lines of `out` as one batch, leaving it empty; false once the receiver is gone (then
/// framing stops altogether).
async fn send_all(lines: &mpsc::Sender<Vec<Line>>, out: &mut Vec<Line>) -> bool {
    if out.is_empty() {
        return true;
    }
    lines.send(std::mem::take(out)).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;

    fn log(file: File) -> LogFile {
        LogFile {
            file: Some(file),
            fault: None,
            failing: false,
        }
    }

    /// `/dev/full` answers every write with ENOSPC, a real full disk for anyone, root or not.
    #[test]
    fn writes_to_a_full_device_are_counted_and_reported_once() {
        let path = PathBuf::from("/dev/full");
        let mut log = log(OpenOptions::new().write(true).open(&path).unwrap());
        let first = log.write(Stream::Stdout, &path, b"one\ntwo\n");
        let fault = first.expect("the first failure is reported");
        assert_eq!(fault.bytes_lost, 8);
        assert!(fault.error.contains("No space left"), "{}", fault.error);
        assert_eq!(log.write(Stream::Stdout, &path, b"three\n"), None);
        assert_eq!(log.write(Stream::Stdout, &path, b"four"), None);
        let fault = log.fault.unwrap();
        assert_eq!(fault.bytes_lost, 8 + 6 + 4);
        assert!(!fault.resumed);
    }

    #[test]
    fn writing_resumes_at_a_line_boundary_once_space_returns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("step.log");
        let full = PathBuf::from("/dev/full");
        let mut log = log(File::create(&path).unwrap());
        assert_eq!(log.write(Stream::Stdout, &path, b"whole\ntorn "), None);
        // The disk fills up...
        let good = log
            .file
            .replace(OpenOptions::new().write(true).open(&full).unwrap());
        assert!(log.write(Stream::Stdout, &path, b"line\nlost\n").is_some());
        // ...and has room again: the torn rest of the line is dropped, whole lines resume.
        log.file = good;
        assert_eq!(log.write(Stream::Stdout, &path, b"half\nnext\n"), None);
        let fault = log.fault.clone().unwrap();
        assert!(fault.resumed);
        assert_eq!(fault.bytes_lost, 10 + 5);
        assert_eq!(std::fs::read(&path).unwrap(), b"whole\ntorn \nnext\n");
    }

    #[test]
    fn a_log_is_created_at_its_first_byte_and_its_creation_can_fail_like_a_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("later").join("step.log");
        let mut log = LogFile {
            file: None,
            fault: None,
            failing: false,
        };
        // Its folder does not exist yet: creating the file fails, the bytes are counted lost.
        let fault = log.write(Stream::Stderr, &path, b"gone\nhal").unwrap();
        assert_eq!(fault.bytes_lost, 8);
        assert!(!path.exists());
        std::fs::create_dir(path.parent().unwrap()).unwrap();
        assert_eq!(log.write(Stream::Stderr, &path, b"f\nkept\n"), None);
        assert!(log.fault.as_ref().unwrap().resumed);
        assert_eq!(std::fs::read(&path).unwrap(), b"kept\n");
    }
}
