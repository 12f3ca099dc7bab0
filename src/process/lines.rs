//! The receiving end of a child's lines: a bounded tokio mpsc channel carrying the lines of one
//! read chunk at a time, unbatched again on the receiving side.
//!
//! Owns the batching that keeps the hot path cheap: one channel operation per read chunk (up to
//! thousands of short lines) instead of one per line. It must never reorder lines of a pipe.

use tokio::sync::mpsc;

use super::Line;

/// Batches in flight per child before the drains wait for the consumer (backpressure). Each batch
/// holds at most one read chunk plus one capped line, so memory stays bounded.
pub(crate) const BATCHES_IN_FLIGHT: usize = 8;

/// The lines of both pipes of one child, each pipe's lines in order; ends after both pipes end.
#[derive(Debug)]
pub struct Lines {
    rx: mpsc::Receiver<Vec<Line>>,
    batch: std::vec::IntoIter<Line>,
}

impl Lines {
    pub(crate) fn new(rx: mpsc::Receiver<Vec<Line>>) -> Self {
        Lines {
            rx,
            batch: Vec::new().into_iter(),
        }
    }

    /// A receiver that is already closed.
    pub(crate) fn closed() -> Self {
        let (_, rx) = mpsc::channel(1);
        Lines::new(rx)
    }

    /// The next line, or `None` once both pipes are drained (or abandoned). Cancel-safe, so it
    /// can sit in a `tokio::select!`.
    pub async fn recv(&mut self) -> Option<Line> {
        loop {
            if let Some(line) = self.batch.next() {
                return Some(line);
            }
            self.batch = self.rx.recv().await?.into_iter();
        }
    }

    /// The lines not yet returned of the current batch, or else the next batch (never empty), or
    /// `None` at the end; cheaper than [`Lines::recv`] for consumers that only scan. Cancel-safe.
    pub async fn recv_batch(&mut self) -> Option<Vec<Line>> {
        let rest: Vec<Line> = self.batch.by_ref().collect();
        if !rest.is_empty() {
            return Some(rest);
        }
        self.rx.recv().await
    }

    /// The next line if one is ready now, without waiting.
    pub fn try_recv(&mut self) -> Option<Line> {
        loop {
            if let Some(line) = self.batch.next() {
                return Some(line);
            }
            self.batch = self.rx.try_recv().ok()?.into_iter();
        }
    }

    /// Stops receiving: the drains keep writing the logs but deliver no more lines.
    pub fn close(&mut self) {
        self.rx.close();
    }
}
