//! The core's part in worktree isolation: when an isolated instance's worktree is made (before its
//! first step launches), where its steps run (the worktree), and what its end waits for (the
//! worktree's commit and clean-up, whose result joins its outputs and may fail it).
//!
//! Like the rest of the core it decides only: the git work is the dispatcher's, in
//! [`crate::worktree`], asked for with [`Effect::PrepareWorktree`] and [`Effect::FinishWorktree`].

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use serde_json::{Map, Value};

use super::{Core, Effect, Exited, Now, Rendered};
use crate::events::Status;
use crate::manifest::Keep;
use crate::plan::StepId;
use crate::worktree::{Finish, Finished, Prepare, Prepared};

/// Isolated instances' worktrees through a run.
#[derive(Default)]
pub(super) struct Worktrees {
    /// First steps waiting for their instance's worktree.
    preparing: BTreeSet<StepId>,
    /// Worktrees that exist, by instance, while the instance's steps run.
    live: HashMap<usize, Prepared>,
    /// Instances whose worktree is being finished, with what their end waits to conclude.
    finishing: HashMap<usize, Ending>,
    /// Each finished worktree's outputs, until its instance's outputs are recorded.
    outputs: HashMap<usize, Map<String, Value>>,
}

/// What an instance's end waits for its worktree to conclude.
enum Ending {
    /// The step that ended it, as it ended.
    Step(Box<Held>),
    /// The run stopped before the instance's next step could run; `step` is where a failure to
    /// finish the worktree is recorded.
    Abandoned { step: StepId },
}

struct Held {
    exited: Exited,
    status: Status,
    reason: Option<String>,
    extra: Option<Value>,
}

impl Worktrees {
    /// Nothing is being made or finished (live worktrees wait for their steps).
    pub(super) fn is_idle(&self) -> bool {
        self.preparing.is_empty() && self.finishing.is_empty()
    }

    /// First steps waiting for a worktree; each holds a launch slot.
    pub(super) fn preparing(&self) -> usize {
        self.preparing.len()
    }

    /// Where an isolated instance's steps run, once its worktree exists.
    pub(super) fn cwd(&self, instance: usize) -> Option<&Path> {
        self.live.get(&instance).map(|p| p.cwd.as_path())
    }

    /// An instance's outputs with its worktree's added.
    pub(super) fn add_outputs(&mut self, instance: usize, outputs: Value) -> Value {
        match (self.outputs.remove(&instance), outputs) {
            (Some(extra), Value::Object(mut own)) => {
                own.extend(extra);
                Value::Object(own)
            }
            (_, outputs) => outputs,
        }
    }
}

/// The outputs a worktree adds: its branch and base, and what its job changed (null when the
/// worktree could not be finished).
fn outputs_of(prepared: &Prepared, finished: Option<&Finished>) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("branch".into(), Value::String(prepared.branch.clone()));
    out.insert(
        "commit".into(),
        finished.map_or(Value::Null, |f| Value::String(f.commit.clone())),
    );
    out.insert("base".into(), Value::String(prepared.base_commit.clone()));
    for (key, n) in [
        ("files_changed", finished.map(|f| f.files_changed)),
        ("insertions", finished.map(|f| f.insertions)),
        ("deletions", finished.map(|f| f.deletions)),
    ] {
        out.insert(key.into(), n.map_or(Value::Null, Value::from));
    }
    out
}

impl Core<'_> {
    /// Asks for the worktree of `id`'s instance if `id` is an isolated instance's first step and
    /// it has none yet; `true` when the step now waits for it (or failed, with the reason, when
    /// its `branch` or `base` could not be rendered).
    pub(super) fn prepare_worktree(
        &mut self,
        id: StepId,
        rendered: &Rendered,
        fx: &mut Vec<Effect>,
    ) -> bool {
        let step = &self.plan.steps[id];
        let job = &self.ctx.manifest.jobs[step.job];
        let Some(iso) = &job.isolation else {
            return false;
        };
        if step.index != 1 || self.isolated.live.contains_key(&step.instance) {
            return false;
        }
        let instance = step.instance;
        let name = self.plan.instances[instance].name.clone();
        // A resumed run continues the branches (and kept worktrees) of the run that first ran
        // its jobs: the default names come from that run's id.
        let origin = self
            .ctx
            .carried
            .origin
            .as_deref()
            .unwrap_or(&self.ctx.run_id);
        let short = origin.rsplit('-').next().unwrap_or(origin);
        let scope = self.scope(instance);
        let plain = crate::template::Mode::Plain;
        let spec = (|| -> Result<Prepare, String> {
            let branch = match &iso.branch {
                Some(b) => scope
                    .render(b, plain)
                    .map_err(|e| format!("its `branch` cannot be rendered: {e}"))?,
                None => crate::worktree::default_branch(short, &name),
            };
            let base = match &iso.base {
                Some(b) => Some(
                    scope
                        .render(b, plain)
                        .map_err(|e| format!("its `base` cannot be rendered: {e}"))?,
                ),
                None => None,
            };
            Ok(Prepare {
                workspace: rendered.cwd.clone(),
                dir: self
                    .ctx
                    .manifest
                    .settings
                    .state_dir
                    .join("worktrees")
                    .join(crate::worktree::branch_component(short))
                    .join(crate::worktree::branch_component(&name)),
                branch,
                base,
                resume: self.ctx.carried.resumed_from.is_some(),
            })
        })();
        match spec {
            Ok(spec) => {
                self.isolated.preparing.insert(id);
                self.running_of_job[step.job] += 1;
                fx.push(Effect::PrepareWorktree {
                    step: id,
                    spec: Box::new(spec),
                });
            }
            Err(why) => {
                self.skip(
                    id,
                    Status::Failed,
                    format!("failed before it started: {why}"),
                    fx,
                );
                self.end_in_frontier(id, Status::Failed);
            }
        }
        true
    }

    /// The worktree of `step`'s instance exists (its first step launches now) or could not be
    /// made (the step fails with git's answer).
    pub(super) fn worktree_prepared(
        &mut self,
        now: Now,
        step: StepId,
        result: Result<Prepared, String>,
        fx: &mut Vec<Effect>,
    ) {
        if !self.isolated.preparing.remove(&step) {
            return;
        }
        let (job, instance) = (self.plan.steps[step].job, self.plan.steps[step].instance);
        self.running_of_job[job] -= 1;
        let prepared = match result {
            Ok(p) => p,
            Err(why) => {
                let reason = format!("failed before it started: its worktree: {why}");
                self.skip(step, Status::Failed, reason, fx);
                self.end_in_frontier(step, Status::Failed);
                return;
            }
        };
        self.isolated.live.insert(instance, prepared);
        if self.stop.is_some() {
            let reason = "cancelled: the run was interrupted".to_string();
            self.skip(step, Status::Cancelled, reason, fx);
            self.end_in_frontier(step, Status::Cancelled);
            return; // `advance` finishes the worktree.
        }
        match self.render(step) {
            Ok(rendered) => self.launch(now, step, rendered, fx),
            Err(why) => {
                let reason = format!("failed before it started: {why}");
                self.skip(step, Status::Failed, reason, fx);
                self.end_in_frontier(step, Status::Failed);
                self.abandon(instance, step, Status::Failed, fx);
            }
        }
    }

    /// Whether the end of `id` ends an isolated instance that has a worktree: its last step, or
    /// a step whose failure skips the rest of the chain.
    pub(super) fn ends_worktree(&self, id: StepId, status: Status) -> bool {
        let step = &self.plan.steps[id];
        self.isolated.live.contains_key(&step.instance)
            && (step.is_main() || status != Status::Completed)
    }

    /// Holds the end of `e`'s step until its instance's worktree is committed and cleaned up.
    pub(super) fn finish_worktree(
        &mut self,
        _now: Now,
        e: Exited,
        status: Status,
        reason: Option<String>,
        extra: Option<Value>,
        fx: &mut Vec<Effect>,
    ) {
        let instance = self.plan.steps[e.step].instance;
        self.request_finish(instance, status, fx);
        self.isolated.finishing.insert(
            instance,
            Ending::Step(Box::new(Held {
                exited: e,
                status,
                reason,
                extra,
            })),
        );
    }

    /// Whether a step of the instance runs now or waits for its worktree to be made.
    fn instance_busy(&self, instance: usize) -> bool {
        self.running
            .iter()
            .chain(self.isolated.preparing.iter())
            .any(|&s| self.plan.steps[s].instance == instance)
    }

    /// Finishes the worktrees of instances that will run no more steps because the run stops.
    pub(super) fn abandon_worktrees(&mut self, fx: &mut Vec<Effect>) {
        let idle: Vec<usize> = self
            .isolated
            .live
            .keys()
            .copied()
            .filter(|&i| !self.instance_busy(i))
            .collect();
        for instance in idle {
            let step = self.plan.instances[instance]
                .steps
                .iter()
                .copied()
                .rfind(|&s| self.states[s] != Status::Pending)
                .unwrap_or(self.plan.instances[instance].steps[0]);
            self.abandon(instance, step, Status::Cancelled, fx);
        }
    }

    /// A step of an isolated instance ended without running (a budget refused it or its retry,
    /// its templates failed to render): when nothing else of the instance runs, its worktree is
    /// finished now, so that what the instance's earlier steps did is committed to its branch.
    pub(super) fn release_idle_worktree(
        &mut self,
        id: StepId,
        status: Status,
        fx: &mut Vec<Effect>,
    ) {
        let instance = self.plan.steps[id].instance;
        if !self.isolated.live.contains_key(&instance) {
            return;
        }
        if !self.instance_busy(instance) {
            self.abandon(instance, id, status, fx);
        }
    }

    fn abandon(&mut self, instance: usize, step: StepId, status: Status, fx: &mut Vec<Effect>) {
        self.request_finish(instance, status, fx);
        self.isolated
            .finishing
            .insert(instance, Ending::Abandoned { step });
    }

    /// Asks the dispatcher to commit (unless `commit = false`) and clean up (per `keep`) the
    /// instance's worktree, which stops being live.
    fn request_finish(&mut self, instance: usize, status: Status, fx: &mut Vec<Effect>) {
        let Some(prepared) = self.isolated.live.remove(&instance) else {
            return;
        };
        let job = &self.ctx.manifest.jobs[self.plan.instances[instance].job];
        let iso = job
            .isolation
            .as_ref()
            .expect("a live worktree's job is isolated");
        let name = &self.plan.instances[instance].name;
        let commit = iso.commit.then(|| {
            format!(
                "orch: {name} (run {})\n\nWhat job `{name}` of run {} left uncommitted, committed by orch.",
                self.ctx.run_id, self.ctx.run_id
            )
        });
        let remove = match iso.keep {
            Keep::Always => false,
            Keep::Never => true,
            Keep::OnFailure => status == Status::Completed,
        };
        fx.push(Effect::FinishWorktree {
            instance,
            finish: Box::new(Finish {
                prepared,
                commit,
                remove,
            }),
        });
    }

    /// The worktree is finished: its outputs join the instance's, and the held end concludes (a
    /// failure to commit or clean up fails a step that had completed).
    pub(super) fn worktree_finished(
        &mut self,
        now: Now,
        instance: usize,
        prepared: Prepared,
        result: Result<Finished, String>,
        fx: &mut Vec<Effect>,
    ) {
        let Some(ending) = self.isolated.finishing.remove(&instance) else {
            return;
        };
        let outputs = outputs_of(&prepared, result.as_ref().ok());
        let failure = result.err().map(|why| {
            format!(
                "its worktree {} (branch `{}`) could not be finished: {why}",
                prepared.dir.display(),
                prepared.branch
            )
        });
        match ending {
            Ending::Step(held) => {
                let Held {
                    exited,
                    mut status,
                    mut reason,
                    extra,
                } = *held;
                if let Some(why) = failure {
                    reason = Some(match reason {
                        Some(r) => format!("{r}; {why}"),
                        None => why,
                    });
                    if status == Status::Completed {
                        status = Status::Failed;
                    }
                }
                self.isolated.outputs.insert(instance, outputs);
                self.conclude(now, exited, status, reason, extra, fx);
                // Outputs not recorded (a chain that failed before its last step) are dropped.
                self.isolated.outputs.remove(&instance);
            }
            Ending::Abandoned { step } => {
                if let Some(why) = failure {
                    let record = &mut self.records[step];
                    record.reason = Some(match record.reason.take() {
                        Some(r) => format!("{r}; {why}"),
                        None => why,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "core_worktree_tests.rs"]
mod tests;
