//! The ledger writer: a thread that owns the run's SQLite connection and commits the dispatcher's
//! writes in groups (everything queued, one transaction), so the dispatcher never calls rusqlite
//! and never waits on a lock.
//!
//! A group that cannot commit for a passing reason (another process holds the write lock past the
//! busy timeout, a full disk, an I/O error) is kept and retried with backoff, in order. At the
//! run's end [`Writer::close`] waits a bounded time for the queue to land and says how many writes
//! did not; those are recovered from the step logs (the write-ahead record) by the next orch,
//! because the run's `finish_run`, queued last, did not land either and the run stays `running`.
//! The writer never decides anything and never reports: it hands back [`Notice`]s.
//!
//! Live estimates, and the ends of command steps, are not worth a commit each: a group holding
//! only such writes waits up to [`GROUP_WINDOW`] (or [`GROUP_MAX`] writes) for more; any other
//! write (the next step's start among them), the run's close, or a signal lands the group at once
//! (see [`may_wait`]). A killed orch so loses at most one window of estimates from the ledger,
//! never from the record: they are in the step logs, which the next orch re-reads
//! (`crate::ledger::reconcile`) because the run's end never landed. It may also lose the ends of
//! commands after which nothing started in that window: `orch resume` runs those again.
//!
//! Within a group, the usage deltas of one (step, model, kind) become one row, their sum: a
//! stream of estimates is one row per step per group, not one per message. Sums of integers
//! (tokens, nano-dollars) are exact, so a step's rows still sum to its latest figure, and a group
//! lands whole or not at all, so a crash loses no more than it did row by row.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rusqlite::ErrorCode;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::ledger::store::StepRow;
use crate::ledger::{Delta, Kind, Ledger};
use crate::plan::StepId;

/// Room in the channel to the thread; beyond it writes wait in the dispatcher's backlog.
const CHANNEL: usize = 1024;
/// A group of live estimates waits this long for more before it commits ...
pub const GROUP_WINDOW: Duration = Duration::from_millis(100);
/// ... or until it holds this many writes.
pub const GROUP_MAX: usize = 1024;
/// How long one attempt waits for another process's lock (SQLite's own busy wait).
const BUSY_WAIT: Duration = Duration::from_millis(100);
const BACKOFF_MIN: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_millis(500);
/// At the run's end, the longest wait for a ledger another process keeps locked.
pub const CLOSE_WAIT_BUSY: Duration = Duration::from_secs(30);
/// At the run's end, the longest wait for a ledger that fails for another reason (full, I/O).
pub const CLOSE_WAIT_OTHER: Duration = Duration::from_secs(5);

/// One write of the run, in the order the dispatcher decided it. The SQL is [`Ledger`]'s.
#[derive(Debug)]
pub enum Write {
    BeginStep {
        row: StepRow,
        at: DateTime<Utc>,
    },
    Usage {
        step: StepId,
        model: Option<String>,
        kind: Kind,
        delta: Delta,
        at: DateTime<Utc>,
    },
    FinishStep {
        step: StepId,
        status: &'static str,
        /// An agent's end lands at once; a command's, which carries no spend, may wait.
        is_agent: bool,
        at: DateTime<Utc>,
    },
    SaveSession {
        id: String,
        job: String,
        totals: String,
        at: DateTime<Utc>,
    },
    FinishRun {
        status: &'static str,
        exit_code: u8,
        /// The steps' statuses counted (JSON), for the run history.
        step_counts: String,
        at: DateTime<Utc>,
    },
}

/// What the writer tells the dispatcher while the run goes on.
#[derive(Debug)]
pub enum Notice {
    /// Writes stopped landing; they are kept and retried.
    Failing { error: String, queued: usize },
    /// A write SQLite refuses for good (not a lock or the disk): dropped, the logs keep it.
    Rejected { error: String },
    /// The queue landed again after failing.
    Recovered,
}

/// How the writes of a run ended up.
#[derive(Debug, Default)]
pub struct Landing {
    pub landed: usize,
    /// Still queued when the wait at the end ran out (the run's own end among them), or the
    /// run's end held back because a write before it was refused.
    pub not_landed: usize,
    /// Refused by SQLite for good.
    pub rejected: usize,
    pub last_error: Option<String>,
}

enum Msg {
    Write(Write),
    /// Land what is queued, waiting at most this long past a failure, then stop.
    Close {
        wait_busy: Duration,
        wait_other: Duration,
    },
}

/// The dispatcher's handle on the writer thread.
pub struct Writer {
    tx: SyncSender<Msg>,
    /// Writes the full channel did not take yet; never grows while the thread keeps up.
    backlog: VecDeque<Write>,
    thread: JoinHandle<Landing>,
    pub notices: UnboundedReceiver<Notice>,
    /// Set when the wait at the end is to stop at once (a signal came): see [`Writer::close_unless`].
    give_up: Arc<AtomicBool>,
}

impl Writer {
    /// Starts the thread; it owns `ledger` from now on.
    pub fn start(ledger: Ledger, run_id: String) -> std::io::Result<Writer> {
        let (tx, rx) = mpsc::sync_channel(CHANNEL);
        let (notify, notices) = unbounded_channel();
        // The thread retries on its own schedule; SQLite's wait is only for short lock holds.
        let _ = ledger.conn().busy_timeout(BUSY_WAIT);
        let give_up = Arc::new(AtomicBool::new(false));
        let giving_up = give_up.clone();
        let thread = std::thread::Builder::new()
            .name("orch-ledger".into())
            .spawn(move || serve(&ledger, &run_id, &rx, &notify, &giving_up))?;
        Ok(Writer {
            tx,
            backlog: VecDeque::new(),
            thread,
            notices,
            give_up,
        })
    }

    /// Queues a write; never blocks.
    pub fn send(&mut self, w: Write) {
        self.backlog.push_back(w);
        while let Some(w) = self.backlog.pop_front() {
            match self.tx.try_send(Msg::Write(w)) {
                Ok(()) => {}
                Err(TrySendError::Full(Msg::Write(w))) => {
                    self.backlog.push_front(w);
                    return;
                }
                // The thread is gone (it panicked): nothing can land; the logs keep the usage.
                Err(_) => {
                    self.backlog.clear();
                    return;
                }
            }
        }
    }

    /// Hands over the last writes and waits (off the async threads) for them to land, at most
    /// `wait_busy` past a busy ledger or `wait_other` past another failure.
    pub async fn close(self, wait_busy: Duration, wait_other: Duration) -> Landing {
        self.close_unless(wait_busy, wait_other, std::future::pending())
            .await
    }

    /// [`Writer::close`], but once `stop` is ready (a signal) a ledger that keeps failing is
    /// waited for no longer: what has not landed is counted, and the next orch start reconciles
    /// it from the step logs. Writes that land at once still land.
    pub async fn close_unless(
        self,
        wait_busy: Duration,
        wait_other: Duration,
        stop: impl Future<Output = ()>,
    ) -> Landing {
        let Writer {
            tx,
            backlog,
            thread,
            give_up,
            ..
        } = self;
        let pending = backlog.len();
        let join = tokio::task::spawn_blocking(move || {
            for w in backlog {
                if tx.send(Msg::Write(w)).is_err() {
                    break;
                }
            }
            let _ = tx.send(Msg::Close {
                wait_busy,
                wait_other,
            });
            drop(tx);
            thread.join()
        });
        tokio::pin!(join);
        let joined = tokio::select! {
            joined = &mut join => joined,
            () = stop => {
                give_up.store(true, Ordering::Relaxed);
                join.await
            }
        };
        match joined {
            Ok(Ok(landing)) => landing,
            _ => Landing {
                not_landed: pending,
                last_error: Some("the ledger writer thread panicked".into()),
                ..Landing::default()
            },
        }
    }
}

/// The thread: gathers what is queued, commits it as one transaction, retries what fails.
fn serve(
    ledger: &Ledger,
    run_id: &str,
    rx: &mpsc::Receiver<Msg>,
    notify: &UnboundedSender<Notice>,
    give_up: &AtomicBool,
) -> Landing {
    let mut landing = Landing::default();
    let mut queue: VecDeque<Write> = VecDeque::new();
    // Set once the dispatcher closed: how long to keep trying after a failure of each kind.
    let mut closing: Option<(Duration, Duration)> = None;
    let mut closed_at: Option<Instant> = None;
    let mut failing = false;
    let mut backoff = BACKOFF_MIN;
    // The run's end, held back because a write before it was refused (see `withhold_run_end`).
    let mut withheld = 0;
    // When the oldest write of the group being gathered arrived.
    let mut gathered: Option<Instant> = None;
    let take = |m: Msg, queue: &mut VecDeque<Write>, closing: &mut Option<_>| match m {
        Msg::Write(w) => queue.push_back(w),
        Msg::Close {
            wait_busy,
            wait_other,
        } => *closing = Some((wait_busy, wait_other)),
    };
    loop {
        if queue.is_empty() {
            gathered = None;
            if closing.is_some() {
                break;
            }
            match rx.recv() {
                Ok(m) => take(m, &mut queue, &mut closing),
                // The dispatcher is gone without closing (it panicked): nothing more comes.
                Err(_) => break,
            }
        }
        loop {
            match rx.try_recv() {
                Ok(m) => take(m, &mut queue, &mut closing),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    closing.get_or_insert((BACKOFF_MAX, BACKOFF_MAX));
                    break;
                }
            }
        }
        withhold_run_end(&landing, &mut queue, &mut withheld);
        if queue.is_empty() {
            continue;
        }
        let gathering = *gathered.get_or_insert_with(Instant::now);
        if closing.is_none() && !failing && may_wait(&queue) {
            let left = GROUP_WINDOW.saturating_sub(gathering.elapsed());
            if !left.is_zero() {
                match rx.recv_timeout(left) {
                    Ok(m) => take(m, &mut queue, &mut closing),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => {
                        closing.get_or_insert((BACKOFF_MAX, BACKOFF_MAX));
                    }
                }
                continue;
            }
        }
        match commit(ledger, run_id, queue.iter()) {
            Ok(()) => {
                landing.landed += queue.len();
                queue.clear();
                backoff = BACKOFF_MIN;
                if std::mem::take(&mut failing) {
                    let _ = notify.send(Notice::Recovered);
                }
            }
            Err(e) if passing(&e) => {
                let busy = is_busy(&e);
                landing.last_error = Some(e.to_string());
                if !std::mem::replace(&mut failing, true) {
                    let _ = notify.send(Notice::Failing {
                        error: e.to_string(),
                        queued: queue.len(),
                    });
                }
                if let Some((wait_busy, wait_other)) = closing {
                    // The wait at the end counts from the end, not from the first failure.
                    let closed = *closed_at.get_or_insert_with(Instant::now);
                    let wait = if busy { wait_busy } else { wait_other };
                    if closed.elapsed() >= wait || give_up.load(Ordering::Relaxed) {
                        break;
                    }
                }
                // Wait out the backoff, still taking what the dispatcher sends.
                match rx.recv_timeout(backoff) {
                    Ok(m) => take(m, &mut queue, &mut closing),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => {
                        closing.get_or_insert((BACKOFF_MAX, BACKOFF_MAX));
                    }
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            Err(_) => {
                // Something in the group is refused for good: land the writes one by one and
                // drop only the ones refused.
                let mut rest = std::mem::take(&mut queue).into_iter();
                while let Some(w) = rest.next() {
                    if landing.rejected > 0 && matches!(w, Write::FinishRun { .. }) {
                        withheld += 1;
                        continue;
                    }
                    match commit(ledger, run_id, std::iter::once(&w)) {
                        Ok(()) => landing.landed += 1,
                        // Not a refusal (the lock was taken, the disk filled): keep this write
                        // and the rest, in order, for the retries above.
                        Err(e) if passing(&e) => {
                            landing.last_error = Some(e.to_string());
                            queue.push_back(w);
                            queue.extend(rest);
                            break;
                        }
                        Err(e) => {
                            landing.rejected += 1;
                            landing.last_error = Some(e.to_string());
                            let _ = notify.send(Notice::Rejected {
                                error: e.to_string(),
                            });
                        }
                    }
                }
            }
        }
    }
    // Whatever the dispatcher sent and the thread never took counts as not landed too.
    while let Ok(m) = rx.try_recv() {
        if let Msg::Write(w) = m {
            queue.push_back(w);
        }
    }
    landing.not_landed = queue.len() + withheld;
    landing
}

/// Whether a group may wait for more: fewer than [`GROUP_MAX`] writes, each of which may wait:
/// live estimates, and the end of a command step (no spend rides on it). Anything else (a step's
/// start, an agent's end, a final figure, a session, the run's end) lands at once, with
/// everything before it: a step's row is there before it can spend, an agent's end is durable as
/// soon as SQLite can make it so, and whatever a step's end let start lands that end with its own
/// start. A crash loses at most the ends of commands in the last window after which nothing
/// started; `orch resume` runs those again.
fn may_wait(queue: &VecDeque<Write>) -> bool {
    queue.len() < GROUP_MAX
        && queue.iter().all(|w| match w {
            Write::Usage { kind, .. } => *kind == Kind::Estimate,
            Write::FinishStep { is_agent, .. } => !is_agent,
            Write::BeginStep { .. } | Write::SaveSession { .. } | Write::FinishRun { .. } => false,
        })
}

/// Once a write was refused (dropped), the run's end must not land: the run then stays `running`
/// and the next orch adds what was dropped from the step logs. A run marked finished is never
/// reconciled, so its dropped spend would be lost for good.
fn withhold_run_end(landing: &Landing, queue: &mut VecDeque<Write>, withheld: &mut usize) {
    if landing.rejected == 0 {
        return;
    }
    let before = queue.len();
    queue.retain(|w| !matches!(w, Write::FinishRun { .. }));
    *withheld += before - queue.len();
}

/// One transaction for a group of writes: all land or none.
fn commit<'w>(
    ledger: &Ledger,
    run_id: &str,
    writes: impl Iterator<Item = &'w Write>,
) -> rusqlite::Result<()> {
    let rows = coalesce(writes);
    if let [one] = rows.as_slice() {
        // One statement is its own transaction: no BEGIN and COMMIT to pay for (the common case
        // when steps are short and few run at once).
        return apply(ledger, run_id, one);
    }
    let conn = ledger.conn();
    let run = |sql: &str| conn.prepare_cached(sql).and_then(|mut s| s.execute([]));
    run("BEGIN IMMEDIATE")?;
    let mut result = Ok(());
    for row in &rows {
        result = apply(ledger, run_id, row);
        if result.is_err() {
            break;
        }
    }
    let result = result.and_then(|()| run("COMMIT").map(drop));
    if result.is_err() && !conn.is_autocommit() {
        let _ = run("ROLLBACK");
    }
    result
}

/// A statement of a group: a write as the dispatcher sent it, or the sum of a group's usage
/// deltas of one (step, model, kind).
#[derive(Debug)]
enum Row<'w> {
    Write(&'w Write),
    Usage {
        step: StepId,
        model: Option<&'w str>,
        kind: Kind,
        delta: Delta,
        /// The latest of the summed deltas' times: when the step reached the figure.
        at: DateTime<Utc>,
    },
}

/// The group's statements, in order, with each (step, model, kind)'s usage summed into the
/// place of its first delta (the group is one transaction, so no reader sees the order).
fn coalesce<'w>(writes: impl Iterator<Item = &'w Write>) -> Vec<Row<'w>> {
    let mut rows = Vec::new();
    let mut usage: HashMap<(StepId, Option<&'w str>, Kind), usize> = HashMap::new();
    for w in writes {
        let Write::Usage {
            step,
            model,
            kind,
            delta,
            at,
        } = w
        else {
            rows.push(Row::Write(w));
            continue;
        };
        let key = (*step, model.as_deref(), *kind);
        match usage.get(&key).and_then(|&i| rows.get_mut(i)) {
            Some(Row::Usage {
                delta: sum,
                at: latest,
                ..
            }) => {
                *sum = sum.then(delta);
                *latest = (*latest).max(*at);
            }
            _ => {
                usage.insert(key, rows.len());
                rows.push(Row::Usage {
                    step: *step,
                    model: model.as_deref(),
                    kind: *kind,
                    delta: delta.clone(),
                    at: *at,
                });
            }
        }
    }
    rows
}

fn apply(ledger: &Ledger, run_id: &str, row: &Row<'_>) -> rusqlite::Result<()> {
    let w = match row {
        Row::Usage {
            step,
            model,
            kind,
            delta,
            at,
        } => return ledger.record(run_id, *step, *model, *kind, delta, *at),
        Row::Write(w) => w,
    };
    match w {
        Write::BeginStep { row, at } => ledger.begin_step(run_id, row, *at),
        Write::Usage {
            step,
            model,
            kind,
            delta,
            at,
        } => ledger.record(run_id, *step, model.as_deref(), *kind, delta, *at),
        Write::FinishStep {
            step, status, at, ..
        } => ledger.finish_step(run_id, *step, status, *at),
        Write::SaveSession {
            id,
            job,
            totals,
            at,
        } => ledger.save_session(id, job, totals, *at),
        Write::FinishRun {
            status,
            exit_code,
            step_counts,
            at,
        } => ledger.finish_run(run_id, status, *exit_code, Some(step_counts), *at),
    }
}

fn code(e: &rusqlite::Error) -> Option<ErrorCode> {
    match e {
        rusqlite::Error::SqliteFailure(f, _) => Some(f.code),
        _ => None,
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        code(e),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// Whether a failure may pass: a lock, a full disk, an I/O error. Anything else will not.
fn passing(e: &rusqlite::Error) -> bool {
    matches!(
        code(e),
        Some(
            ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::DiskFull
                | ErrorCode::SystemIoFailure
                | ErrorCode::CannotOpen
                | ErrorCode::OutOfMemory
                | ErrorCode::FileLockingProtocolFailed
        )
    )
}

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
