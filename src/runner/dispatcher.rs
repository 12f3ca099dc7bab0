//! The dispatcher's shell: the one task that feeds the pure [`Core`] and applies its effects. It
//! listens to the executors (their events on a channel, their ends on a `JoinSet`), to SIGINT,
//! SIGTERM and SIGHUP, to the ledger writer's notices and to the core's own timer; it spawns
//! executors, stops and kills groups, queues ledger writes and hands events to the reporter.
//!
//! It decides nothing (the core does) and never touches SQLite (the writer thread does), so
//! nothing it waits on can freeze a launch, a stop or the live view. The run ends when the core
//! has nothing left to start and the `JoinSet` is empty: an executor that panics still ends, as
//! a failed step.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::RunContext;
use super::core::{Core, Effect, Input, Now};
use super::executor::{self, ExecutorEvent, Exited, Sent};
use super::writer::{Notice, Writer};
use crate::events::Event;
use crate::plan::StepId;
use crate::process::{Guardian, Stopper};

/// Room for executor events; an executor waits when the dispatcher falls this far behind.
const EVENTS: usize = 1024;

/// Runs the core to the run's end, applying every effect; returns the core for the outcome.
pub async fn run<'a>(
    ctx: &'a RunContext,
    mut core: Core<'a>,
    guardian: Arc<Guardian>,
    cluster: Option<Arc<super::slurm::Cluster>>,
    writer: &mut Writer,
    report: &mut dyn FnMut(Event),
) -> std::io::Result<(Core<'a>, Signals)> {
    let (tx, mut rx) = mpsc::channel::<Sent>(EVENTS);
    // The answers of git work on blocking threads (worktrees made and finished).
    let (git_tx, mut git_rx) = mpsc::unbounded_channel::<Input>();
    let mut signals = Signals {
        int: signal(SignalKind::interrupt())?,
        term: signal(SignalKind::terminate())?,
        hup: signal(SignalKind::hangup())?,
    };
    let mut shell = Shell {
        ctx,
        guardian,
        cluster,
        tx,
        tasks: JoinSet::new(),
        task_steps: HashMap::new(),
        stoppers: HashMap::new(),
        git_tx,
        writer,
        report,
        outputs: OutputsFile {
            path: ctx.outputs_file(),
            file: None,
        },
    };
    let fx = core.handle(Now::read(), Input::Tick);
    shell.apply(fx);
    loop {
        if core.is_over() && shell.tasks.is_empty() {
            break;
        }
        let wake = core.wake_at(Now::read());
        let woke = tokio::select! {
            // A signal is never starved by a busy stream of output, nor an executor's end (which
            // drains the stream first); every input runs the launches that are due.
            biased;
            _ = signals.int.recv() => Woke::Input(Input::Signal),
            _ = signals.term.recv() => Woke::Input(Input::Signal),
            _ = signals.hup.recv() => Woke::Input(Input::Signal),
            Some(joined) = shell.tasks.join_next_with_id(), if !shell.tasks.is_empty() => {
                Woke::Joined(Box::new(joined))
            }
            Some(event) = rx.recv() => Woke::Event(event),
            Some(input) = git_rx.recv() => Woke::Input(input),
            Some(notice) = shell.writer.notices.recv() => Woke::Notice(notice),
            () = sleep_until(wake), if wake.is_some() => Woke::Input(Input::Tick),
        };
        let input = match woke {
            Woke::Input(input) => input,
            Woke::Event(event) => shell.input_of(event),
            Woke::Joined(joined) => {
                // Everything the executor sent before it ended is already queued: handle it
                // first, so its end comes after its last usage.
                while let Ok(event) = rx.try_recv() {
                    let input = shell.input_of(event);
                    let fx = core.handle(Now::read(), input);
                    shell.apply(fx);
                }
                shell.ended(*joined)
            }
            Woke::Notice(notice) => {
                shell.notice(notice);
                continue;
            }
        };
        let fx = core.handle(Now::read(), input);
        shell.apply(fx);
    }
    let fx = core.finish_run();
    shell.apply(fx);
    Ok((core, signals))
}

/// The dispatcher's SIGINT, SIGTERM and SIGHUP handlers, handed back at the run's end: tokio
/// keeps its handlers installed, so a signal after the run would otherwise be swallowed while
/// orch waits for a failing ledger.
pub(super) struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Ready once a signal came that the run did not take (at once if it came as the run ended).
    pub(super) async fn any(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
            _ = self.hup.recv() => {}
        }
    }
}

/// What woke the dispatcher.
enum Woke {
    Input(Input),
    Event(Sent),
    Joined(Box<Result<(tokio::task::Id, Exited), tokio::task::JoinError>>),
    Notice(Notice),
}

async fn sleep_until(at: Option<std::time::Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at.into()).await;
    }
}

/// The effect applier: what the core cannot do itself.
struct Shell<'r, 'w> {
    ctx: &'r RunContext,
    guardian: Arc<Guardian>,
    cluster: Option<Arc<super::slurm::Cluster>>,
    tx: mpsc::Sender<Sent>,
    tasks: JoinSet<Exited>,
    task_steps: HashMap<tokio::task::Id, StepId>,
    stoppers: HashMap<StepId, Stopper>,
    git_tx: mpsc::UnboundedSender<Input>,
    writer: &'w mut Writer,
    report: &'w mut dyn FnMut(Event),
    outputs: OutputsFile,
}

/// The run folder's outputs file, opened when the first job ends: a line per job instance,
/// `{"job": NAME, "outputs": {...}}`, appended in one `write` each. One file for the run, not
/// one per job: on a file system slow to make files (ext4 soon after a folder of many was
/// deleted) a new file cost up to a millisecond of the dispatcher's time per job. A failure is
/// logged; the run's results hold the outputs too.
struct OutputsFile {
    path: std::path::PathBuf,
    file: Option<std::fs::File>,
}

impl OutputsFile {
    fn append(&mut self, job: &str, outputs: &Value) {
        use std::io::Write;
        let mut line = serde_json::to_vec(&super::OutputsLine { job, outputs })
            .expect("a JSON value serializes");
        line.push(b'\n');
        let file = match &mut self.file {
            Some(file) => file,
            None => match std::fs::File::options()
                .create(true)
                .append(true)
                .open(&self.path)
            {
                Ok(file) => self.file.insert(file),
                Err(e) => return tracing::warn!("cannot open {}: {e}", self.path.display()),
            },
        };
        if let Err(e) = file.write_all(&line) {
            tracing::warn!("cannot write {}: {e}", self.path.display());
        }
    }
}

impl Shell<'_, '_> {
    fn apply(&mut self, mut fx: Vec<Effect>) {
        // Launches first (with the secrets they bring, masked before they can print): a step
        // that waited on the one that just ended starts before that one's outputs file is
        // written and its reports and ledger rows are handed on, off a chain's critical path.
        // Nothing is reordered that anyone sees: what a new executor tells comes through this
        // task, after this batch, and the ledger writes keep their order.
        // A stable sort in place: the order within each part stays, and no batch is copied.
        fx.sort_by_key(|effect| !matches!(effect, Effect::Launch(_) | Effect::MaskSecrets(_)));
        for effect in fx {
            match effect {
                Effect::Launch(launch) => {
                    let step = launch.step;
                    let run = executor::execute(
                        *launch,
                        self.guardian.clone(),
                        self.cluster.clone(),
                        self.tx.clone(),
                    );
                    let id = self.tasks.spawn(run).id();
                    self.task_steps.insert(id, step);
                }
                Effect::Stop(step) => {
                    if let Some(s) = self.stoppers.get(&step) {
                        s.stop(self.ctx.ladder);
                    }
                }
                Effect::Kill(step) => {
                    if let Some(s) = self.stoppers.get(&step) {
                        s.kill();
                    }
                }
                Effect::Ledger(write) => self.writer.send(write),
                Effect::Report(event) => (self.report)(event),
                Effect::SaveOutputs { job, outputs } => self.outputs.append(&job, &outputs),
                Effect::MaskSecrets(values) => crate::secrets::extend(values),
                // Git runs on a blocking thread; a lock per repository keeps its commands in turn.
                Effect::PrepareWorktree { step, spec } => {
                    let tx = self.git_tx.clone();
                    tokio::task::spawn_blocking(move || {
                        let result = crate::worktree::prepare(&spec);
                        let _ = tx.send(Input::WorktreePrepared { step, result });
                    });
                }
                Effect::FinishWorktree { instance, finish } => {
                    let tx = self.git_tx.clone();
                    tokio::task::spawn_blocking(move || {
                        let result = crate::worktree::finish(&finish);
                        let _ = tx.send(Input::WorktreeFinished {
                            instance,
                            prepared: Box::new(finish.prepared),
                            result,
                        });
                    });
                }
                // The guardian kills every group once orch is gone.
                Effect::Exit => std::process::exit(crate::errors::ExitCode::Interrupted as i32),
            }
        }
    }

    /// An executor event as the core's input; the stopper stays here.
    fn input_of(&mut self, sent: Sent) -> Input {
        if let (ExecutorEvent::Started { step, .. }, Some(stopper)) = (&sent.event, sent.stopper) {
            self.stoppers.insert(*step, stopper);
        }
        Input::Executor(sent.event)
    }

    /// An executor's task ended: its exit, or its panic as a failed step.
    fn ended(
        &mut self,
        joined: Result<(tokio::task::Id, Exited), tokio::task::JoinError>,
    ) -> Input {
        let (id, input) = match joined {
            Ok((id, exited)) => (id, Input::Exited(Box::new(exited))),
            Err(e) => {
                let id = e.id();
                let step = *self
                    .task_steps
                    .get(&id)
                    .expect("every executor task is recorded at spawn");
                let message = if e.is_panic() {
                    panic_message(e.into_panic())
                } else {
                    "its task was cancelled".to_string()
                };
                (id, Input::Panicked { step, message })
            }
        };
        if let Some(step) = self.task_steps.remove(&id) {
            // The panicking executor's child guard has killed its group while unwinding.
            self.stoppers.remove(&step);
        }
        input
    }

    fn notice(&mut self, notice: Notice) {
        let error = match notice {
            Notice::Failing { error, queued } => format!(
                "{error}; {queued} write{} kept and retried",
                if queued == 1 { "" } else { "s" }
            ),
            Notice::Rejected { error } => {
                format!("{error}; the write was dropped (the step log keeps it)")
            }
            Notice::Recovered => return,
        };
        (self.report)(Event::LedgerFailed { error });
    }
}

pub(super) fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(s) => (*s).to_string(),
            Err(_) => "a panic without a message".to_string(),
        },
    }
}
