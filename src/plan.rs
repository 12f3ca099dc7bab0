//! The plan: a petgraph DAG of steps built from a [`Manifest`], and readiness over it.
//!
//! A job becomes a chain of steps (its pre-commands, then its main command) sharing one Claude
//! session; a job's first step depends on the last step of every job it `needs`. Everything here is
//! pure: no I/O, no clock. The runner asks [`Plan::ready`] and [`Plan::doomed`] what to do next.

use std::time::Duration;

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use serde::Serialize;
use uuid::Uuid;

use crate::agent::{self, AgentProgram, Session};
use crate::events::Status;
use crate::manifest::{Agent, FanOut, Job, Manifest, Task, When};

/// Index of a step in the plan (also its position in [`Plan::steps`]).
pub type StepId = usize;

/// What a step runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Action {
    /// A Claude Code invocation in a session.
    Agent {
        prompt: String,
        session: Session,
        /// The base slash command, which keys command budgets.
        command: Option<String>,
    },
    Exec,
    Shell,
    /// A `for_each` job's expansion: once its source output exists, the runner turns the array
    /// into instances of the job. It spawns nothing.
    Expand {
        source: String,
    },
}

/// One process to spawn.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Step {
    pub id: StepId,
    /// Index of the job in the manifest.
    pub job: usize,
    /// Index of the job instance in [`Plan::instances`].
    pub instance: usize,
    /// The instance's name: the job's, or `job[key]` for an instance of a fan-out.
    pub job_name: String,
    /// 1-based position in the job's chain, and the chain's length.
    pub index: usize,
    pub of: usize,
    pub action: Action,
    /// The exact argv to spawn, program first, with its `${{ }}` templates not yet rendered.
    pub argv: Vec<String>,
    /// The model the job asks for (agent steps); Claude Code's `init` line may name another.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

impl Step {
    /// "job" for a one-step job, "job [2/3]" inside a chain.
    pub fn label(&self) -> String {
        if self.of == 1 {
            self.job_name.clone()
        } else {
            format!("{} [{}/{}]", self.job_name, self.index, self.of)
        }
    }

    /// Whether this is the job's main (last) step.
    pub fn is_main(&self) -> bool {
        self.index == self.of
    }

    /// Whether this step runs an agent (rather than a command).
    pub fn is_agent(&self) -> bool {
        matches!(self.action, Action::Agent { .. })
    }
}

/// A job of the run: a manifest job, one instance of a fan-out, or the fan-out itself.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Instance {
    /// `job`, or `job[key]` for a fan-out's instance.
    pub name: String,
    /// Index of the job in the manifest.
    pub job: usize,
    /// Its steps in chain order (a fan-out has none, or its expansion step).
    pub steps: Vec<StepId>,
    pub fan: Fan,
}

/// Where an instance sits in a fan-out.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fan {
    /// A job that does not fan out.
    Single,
    /// One instance of a fan-out: its position, its key, and its matrix values or item.
    Member {
        group: usize,
        index: usize,
        key: String,
        value: serde_json::Value,
    },
    /// A job with `matrix` or `for_each`: its instances in order, and a `for_each` job's
    /// expansion step (its instances exist once that step ran).
    Group {
        members: Vec<usize>,
        expand: Option<StepId>,
    },
}

/// The DAG of steps. Edges point from a dependency to its dependent and say when the dependent
/// may run after it.
#[derive(Clone, Debug)]
pub struct Plan {
    pub graph: DiGraph<StepId, When>,
    pub steps: Vec<Step>,
    /// A topological order that keeps the manifest's job order where it can; the steps of a
    /// dynamic fan-out are appended when it expands.
    pub order: Vec<StepId>,
    /// The jobs of the run: manifest jobs, fan-outs and their instances.
    pub instances: Vec<Instance>,
    /// Each manifest job's instance (its fan-out's group when it has one).
    pub of_job: Vec<usize>,
    options: PlanOptions,
    sessions: SessionChoice,
}

/// Which Claude sessions already exist, decided when a run starts (from the ledger): a chain
/// whose session exists continues it (`--resume`) instead of creating it (`--session-id`, which
/// Claude Code rejects for a session it has). A resumed run also inherits the sessions of the
/// run it continues, by job instance name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SessionChoice {
    /// Sessions Claude Code has (the ledger saw a result in them).
    pub known: std::collections::HashSet<Uuid>,
    /// Per job instance name, the session to use instead of the run's own.
    pub inherited: std::collections::HashMap<String, Uuid>,
}

/// Inputs to planning that do not come from the manifest.
#[derive(Clone, Debug)]
pub struct PlanOptions {
    /// The program that plays Claude Code.
    pub agent: AgentProgram,
    /// Seeds the sessions of jobs that do not name one, so each run gets fresh ones.
    pub run_id: Uuid,
}

/// What a dynamic expansion added to the plan.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Expansion {
    /// The new instances.
    pub instances: Vec<usize>,
    /// The new steps, a range at the end of [`Plan::steps`].
    pub steps: std::ops::Range<StepId>,
    /// Existing steps that gained a dependency (once per edge added).
    pub gained: Vec<StepId>,
}

/// The most characters of a fan-out key in an instance's name.
const MAX_KEY_CHARS: usize = 40;

impl Plan {
    /// Builds the plan. The manifest is validated, so every `needs` resolves and there is no cycle.
    pub fn build(manifest: &Manifest, options: &PlanOptions) -> Plan {
        Plan::build_with(manifest, options, SessionChoice::default())
    }

    /// Builds the plan knowing which sessions already exist (see [`SessionChoice`]).
    pub fn build_with(manifest: &Manifest, options: &PlanOptions, sessions: SessionChoice) -> Plan {
        let n = manifest.jobs.len();
        let mut plan = Plan {
            graph: DiGraph::with_capacity(n, n),
            steps: Vec::with_capacity(n),
            order: Vec::new(),
            instances: Vec::with_capacity(n),
            of_job: Vec::with_capacity(n),
            options: options.clone(),
            sessions,
        };
        for (j, job) in manifest.jobs.iter().enumerate() {
            let top = match &job.fan_out {
                None => {
                    let i = plan.add_instance(job.name.clone(), j, Fan::Single);
                    plan.add_chain(job, i, None);
                    i
                }
                Some(FanOut::Matrix { combinations }) => {
                    let group = plan.add_instance(
                        job.name.clone(),
                        j,
                        Fan::Group {
                            members: Vec::new(),
                            expand: None,
                        },
                    );
                    let keys = combinations.iter().map(|c| c.key.clone()).collect();
                    let values = combinations
                        .iter()
                        .map(|c| serde_json::Value::Object(c.values.iter().cloned().collect()))
                        .collect();
                    plan.add_members(job, group, keys, values);
                    group
                }
                Some(FanOut::ForEach { source, .. }) => {
                    let group = plan.add_instance(
                        job.name.clone(),
                        j,
                        Fan::Group {
                            members: Vec::new(),
                            expand: None,
                        },
                    );
                    let id = plan.add_step(Step {
                        id: 0,
                        job: j,
                        instance: group,
                        job_name: job.name.clone(),
                        index: 1,
                        of: 1,
                        action: Action::Expand {
                            source: source.clone(),
                        },
                        argv: Vec::new(),
                        model: None,
                    });
                    plan.instances[group].steps.push(id);
                    if let Fan::Group { expand, .. } = &mut plan.instances[group].fan {
                        *expand = Some(id);
                    }
                    group
                }
            };
            plan.of_job.push(top);
        }
        let index: std::collections::HashMap<&str, usize> = manifest
            .jobs
            .iter()
            .enumerate()
            .map(|(i, j)| (j.name.as_str(), i))
            .collect();
        for (j, job) in manifest.jobs.iter().enumerate() {
            let entries = plan.entries(plan.of_job[j]);
            for need in &job.needs {
                let Some(&k) = index.get(need.job.as_str()) else {
                    continue;
                };
                // `needs` holds no repeats (resolve removes them), so no edge is added twice.
                for exit in plan.exits(plan.of_job[k]) {
                    for &entry in &entries {
                        plan.graph
                            .add_edge(NodeIndex::new(exit), NodeIndex::new(entry), need.when);
                    }
                }
            }
        }
        plan.order = stable_topological_order(&plan.graph);
        plan
    }

    fn add_instance(&mut self, name: String, job: usize, fan: Fan) -> usize {
        self.instances.push(Instance {
            name,
            job,
            steps: Vec::new(),
            fan,
        });
        self.instances.len() - 1
    }

    fn add_step(&mut self, mut step: Step) -> StepId {
        let id = self.steps.len();
        step.id = id;
        let node = self.graph.add_node(id);
        debug_assert_eq!(node.index(), id);
        self.steps.push(step);
        id
    }

    /// Adds one instance of `group` per key (with its value), each with its chain of steps.
    fn add_members(
        &mut self,
        job: &Job,
        group: usize,
        keys: Vec<String>,
        values: Vec<serde_json::Value>,
    ) -> Vec<usize> {
        let mut added = Vec::with_capacity(keys.len());
        for (i, (key, value)) in keys.into_iter().zip(values).enumerate() {
            let name = format!("{}[{key}]", job.name);
            let member = self.add_instance(
                name,
                self.instances[group].job,
                Fan::Member {
                    group,
                    index: i,
                    key: key.clone(),
                    value,
                },
            );
            self.add_chain(job, member, Some(&key));
            if let Fan::Group { members, .. } = &mut self.instances[group].fan {
                members.push(member);
            }
            added.push(member);
        }
        added
    }

    /// Adds an instance's chain of steps (one per pre-command, then the main one).
    fn add_chain(&mut self, job: &Job, instance: usize, key: Option<&str>) {
        let name = self.instances[instance].name.clone();
        let model = match &job.task {
            Task::Agent(agent) => agent.model.clone(),
            _ => None,
        };
        // An isolated job's `setup` commands run first, each a step of its own in the new
        // worktree: contained, logged and stopped like every step.
        let setup = job.isolation.iter().flat_map(|i| &i.setup).map(|command| {
            (
                Action::Shell,
                vec!["sh".to_string(), "-c".to_string(), command.clone()],
            )
        });
        let chain: Vec<(Action, Vec<String>)> = setup.collect();
        let mut chain = chain;
        chain.extend(match &job.task {
            Task::Agent(agent) => agent_chain(
                agent,
                job.limit.usd,
                &name,
                key,
                &self.options,
                &self.sessions,
            ),
            Task::Exec { argv } => vec![(Action::Exec, argv.clone())],
            Task::Shell { script } => vec![(
                Action::Shell,
                vec!["sh".into(), "-c".into(), script.clone()],
            )],
        });
        let of = chain.len();
        let mut prev: Option<StepId> = None;
        for (i, (action, argv)) in chain.into_iter().enumerate() {
            let id = self.add_step(Step {
                id: 0,
                job: self.instances[instance].job,
                instance,
                job_name: name.clone(),
                index: i + 1,
                of,
                action,
                argv,
                model: model.clone(),
            });
            if let Some(prev) = prev {
                self.graph
                    .add_edge(NodeIndex::new(prev), NodeIndex::new(id), When::Success);
            }
            self.instances[instance].steps.push(id);
            prev = Some(id);
        }
    }

    /// The steps that wait for an instance's dependencies: its first step, each member's first
    /// step, or a `for_each` job's expansion step.
    fn entries(&self, instance: usize) -> Vec<StepId> {
        let inst = &self.instances[instance];
        match &inst.fan {
            Fan::Group {
                expand: Some(e), ..
            } => vec![*e],
            Fan::Group { members, .. } => members
                .iter()
                .flat_map(|&m| self.instances[m].steps.first().copied())
                .collect(),
            _ => inst.steps.first().copied().into_iter().collect(),
        }
    }

    /// The steps an instance's dependents wait for: its last step, or every member's last step
    /// (and a `for_each` job's expansion step).
    pub fn exits(&self, instance: usize) -> Vec<StepId> {
        let inst = &self.instances[instance];
        match &inst.fan {
            Fan::Group { members, expand } => expand
                .iter()
                .copied()
                .chain(
                    members
                        .iter()
                        .flat_map(|&m| self.instances[m].steps.last().copied()),
                )
                .collect(),
            _ => inst.steps.last().copied().into_iter().collect(),
        }
    }

    /// Expands a `for_each` job's group into one instance per `(key, item)`: their steps depend
    /// on the expansion step, and everything that waited for the expansion step now waits for
    /// their last steps too, with the same condition.
    pub fn expand(
        &mut self,
        manifest: &Manifest,
        group: usize,
        items: Vec<(String, serde_json::Value)>,
    ) -> Expansion {
        let Fan::Group {
            expand: Some(expand),
            ..
        } = self.instances[group].fan
        else {
            return Expansion::default();
        };
        let job = &manifest.jobs[self.instances[group].job];
        let dependents: Vec<(StepId, When)> = self
            .graph
            .edges_directed(NodeIndex::new(expand), Direction::Outgoing)
            .map(|e| (e.target().index(), *e.weight()))
            .collect();
        let first = self.steps.len();
        let (keys, values) = items.into_iter().unzip();
        let members = self.add_members(job, group, keys, values);
        let mut gained = Vec::new();
        for &m in &members {
            let (head, tail) = {
                let steps = &self.instances[m].steps;
                (steps[0], *steps.last().expect("an instance has a step"))
            };
            self.graph
                .add_edge(NodeIndex::new(expand), NodeIndex::new(head), When::Success);
            for &(dep, when) in &dependents {
                self.graph
                    .add_edge(NodeIndex::new(tail), NodeIndex::new(dep), when);
                gained.push(dep);
            }
        }
        let steps = first..self.steps.len();
        self.order.extend(steps.clone());
        Expansion {
            instances: members,
            steps,
            gained,
        }
    }

    /// An instance's status from its steps: completed when all did, else the first step that did
    /// not. A fan-out's is its expansion's when that did not complete, else completed when every
    /// instance did (or it had none), else the first failure among them, else the first other
    /// status.
    pub fn instance_status(&self, states: &[Status], instance: usize) -> Status {
        let inst = &self.instances[instance];
        let own = inst
            .steps
            .iter()
            .map(|&s| states[s])
            .find(|s| *s != Status::Completed)
            .unwrap_or(Status::Completed);
        let Fan::Group { members, .. } = &inst.fan else {
            return own;
        };
        if own != Status::Completed {
            return own;
        }
        let of: Vec<Status> = members
            .iter()
            .map(|&m| self.instance_status(states, m))
            .collect();
        of.iter()
            .copied()
            .find(|s| s.is_failure())
            .or_else(|| of.iter().copied().find(|s| *s != Status::Completed))
            .unwrap_or(Status::Completed)
    }

    /// The steps of manifest job `job`'s own instance (none for a fan-out, or its expansion
    /// step).
    pub fn job_steps(&self, job: usize) -> &[StepId] {
        &self.instances[self.of_job[job]].steps
    }

    /// The steps a step waits for.
    pub fn dependencies(&self, id: StepId) -> impl Iterator<Item = StepId> + '_ {
        self.graph
            .neighbors_directed(NodeIndex::new(id), Direction::Incoming)
            .map(NodeIndex::index)
    }

    /// Pending steps whose dependencies all ended, none of them doomed it, in plan order.
    pub fn ready<'a>(&'a self, states: &'a [Status]) -> impl Iterator<Item = StepId> + 'a {
        self.order.iter().copied().filter(move |&id| {
            states[id] == Status::Pending
                && self
                    .graph
                    .edges_directed(NodeIndex::new(id), Direction::Incoming)
                    .all(|e| {
                        let d = states[e.source().index()];
                        d.is_final() && (d == Status::Completed || *e.weight() != When::Success)
                    })
        })
    }

    /// Pending steps that can never run because a dependency they need to succeed did not.
    pub fn doomed<'a>(
        &'a self,
        states: &'a [Status],
    ) -> impl Iterator<Item = (StepId, StepId)> + 'a {
        self.order.iter().copied().filter_map(move |id| {
            if states[id] != Status::Pending {
                return None;
            }
            self.graph
                .edges_directed(NodeIndex::new(id), Direction::Incoming)
                .find(|e| {
                    let d = states[e.source().index()];
                    *e.weight() == When::Success && d.is_final() && d != Status::Completed
                })
                .map(|e| (id, e.source().index()))
        })
    }

    /// Earliest launch offsets. Steps without dependencies launch in plan order, `delay` apart
    /// (`max_parallel` cannot bind before any of them ends); a dependent step launches at least
    /// `delay` after its last dependency did, and in truth later, when that dependency ends.
    pub fn launch_offsets(&self, delay: Duration) -> Vec<Duration> {
        let mut offsets = vec![Duration::ZERO; self.steps.len()];
        let mut roots = 0u32;
        for &id in &self.order {
            offsets[id] = match self.dependencies(id).map(|d| offsets[d]).max() {
                None => {
                    roots += 1;
                    delay.saturating_mul(roots - 1)
                }
                Some(last) => last.saturating_add(delay),
            };
        }
        offsets
    }
}

/// An instance's key from values: strings as they are and others as JSON, joined by ",";
/// clipped to a readable length.
pub fn combination_key<'v>(values: impl Iterator<Item = &'v serde_json::Value>) -> String {
    let parts: Vec<String> = values.map(value_key).collect();
    clip_key(&parts.join(","))
}

/// A value as a key: a string as it is, anything else as compact JSON.
pub fn value_key(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A key of at most [`MAX_KEY_CHARS`] characters, on one line.
pub fn clip_key(key: &str) -> String {
    let one_line: String = key
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.chars().count() <= MAX_KEY_CHARS {
        return one_line;
    }
    let mut out: String = one_line.chars().take(MAX_KEY_CHARS - 1).collect();
    out.push('…');
    out
}

/// The keys of a `for_each` job's items: each item's `id` or `name` field when every item has
/// one and they are all different, else the items' positions.
pub fn item_keys(items: &[serde_json::Value]) -> Vec<String> {
    for field in ["id", "name"] {
        let keys: Option<Vec<String>> = items
            .iter()
            .map(|item| match item.get(field) {
                Some(v @ (serde_json::Value::String(_) | serde_json::Value::Number(_))) => {
                    Some(clip_key(&value_key(v)))
                }
                _ => None,
            })
            .collect();
        if let Some(keys) = keys {
            let unique: std::collections::HashSet<&String> = keys.iter().collect();
            if unique.len() == keys.len() && !keys.iter().any(String::is_empty) {
                return keys;
            }
        }
    }
    (0..items.len()).map(|i| i.to_string()).collect()
}

/// Readiness kept up to date as steps end, so that the dispatcher never rescans the whole plan:
/// the rule of [`Plan::ready`] and [`Plan::doomed`], applied incrementally (a run of 100,000 steps
/// would otherwise spend quadratic time deciding what to launch).
#[derive(Clone, Debug)]
pub struct Frontier {
    /// Each step's dependencies that have not completed yet.
    waiting: Vec<usize>,
    /// Pending steps whose dependencies all completed, by position in [`Plan::order`].
    ready: std::collections::BTreeSet<usize>,
    /// The ready steps that are expansions (a subset of `ready`), so that finding one is not a
    /// scan of every ready step per launch.
    expansions: std::collections::BTreeSet<usize>,
    /// Each step's position in [`Plan::order`].
    position: Vec<usize>,
    /// Steps already known never to run.
    gone: Vec<bool>,
    /// Steps that can never run, with the dependency that ended without completing.
    doomed: Vec<(StepId, StepId)>,
}

impl Frontier {
    pub fn new(plan: &Plan) -> Frontier {
        let n = plan.steps.len();
        let mut position = vec![0; n];
        for (p, &id) in plan.order.iter().enumerate() {
            position[id] = p;
        }
        let waiting: Vec<usize> = (0..n).map(|id| plan.dependencies(id).count()).collect();
        debug_assert_eq!(plan.order.len(), n);
        let ready: std::collections::BTreeSet<usize> = (0..n)
            .filter(|&id| waiting[id] == 0)
            .map(|id| position[id])
            .collect();
        let expansions = ready
            .iter()
            .copied()
            .filter(|&p| is_expansion(plan, plan.order[p]))
            .collect();
        Frontier {
            waiting,
            ready,
            expansions,
            position,
            gone: vec![false; n],
            doomed: Vec::new(),
        }
    }

    /// The ready steps, in plan order.
    pub fn ready<'a>(&'a self, plan: &'a Plan) -> impl Iterator<Item = StepId> + 'a {
        self.ready.iter().map(|&p| plan.order[p])
    }

    /// The first ready expansion (a dynamic fan-out's step), in plan order.
    pub fn ready_expansion(&self, plan: &Plan) -> Option<StepId> {
        self.expansions.first().map(|&p| plan.order[p])
    }

    /// Whether no step is ready.
    pub fn is_empty(&self) -> bool {
        self.ready.is_empty()
    }

    /// A ready step left the pending state (it was launched or refused).
    pub fn remove(&mut self, id: StepId) {
        self.ready.remove(&self.position[id]);
        self.expansions.remove(&self.position[id]);
    }

    /// A step ended. `ok` says whether it counts as a success for the steps that need it to
    /// succeed (it completed, or its job's failure is tolerated): those that need its success are
    /// doomed when it does not (see [`Frontier::take_doomed`]); the others become ready once all
    /// their dependencies ended.
    pub fn ended(&mut self, plan: &Plan, id: StepId, ok: bool) {
        self.remove(id);
        self.gone[id] = true;
        for edge in plan
            .graph
            .edges_directed(NodeIndex::new(id), Direction::Outgoing)
        {
            let next = edge.target().index();
            self.waiting[next] -= 1;
            if self.gone[next] {
                continue;
            }
            if *edge.weight() == When::Success && !ok {
                self.gone[next] = true;
                self.doomed.push((next, id));
            } else if self.waiting[next] == 0 {
                self.ready.insert(self.position[next]);
                if is_expansion(plan, next) {
                    self.expansions.insert(self.position[next]);
                }
            }
        }
    }

    /// The plan grew (a dynamic fan-out expanded): takes in its new steps, and the new
    /// dependencies of steps it already had.
    pub fn grow(&mut self, plan: &Plan, expansion: &Expansion) {
        for id in expansion.steps.clone() {
            debug_assert_eq!(id, self.waiting.len());
            self.waiting.push(plan.dependencies(id).count());
            self.position
                .push(plan.order.len() - (plan.steps.len() - id));
            self.gone.push(false);
        }
        for &dep in &expansion.gained {
            self.waiting[dep] += 1;
        }
    }

    /// The steps found never to run since the last call, each with the dependency that doomed it.
    /// Report each as ended (not completed) to doom its own dependents in turn.
    pub fn take_doomed(&mut self) -> Vec<(StepId, StepId)> {
        let mut doomed = std::mem::take(&mut self.doomed);
        doomed.sort_by_key(|(id, _)| self.position[*id]);
        doomed
    }
}

fn is_expansion(plan: &Plan, id: StepId) -> bool {
    matches!(plan.steps[id].action, Action::Expand { .. })
}

/// A job instance's session chain: pre-commands first (`--session-id`), then `--resume` for the
/// rest. A named session is one per instance: a fan-out's instances derive theirs from it. A
/// session that already exists (a named one from an earlier run, or one a resumed run
/// inherits) is continued from the first step on: `--resume` throughout.
fn agent_chain(
    agent: &Agent,
    max_usd: Option<f64>,
    name: &str,
    key: Option<&str>,
    options: &PlanOptions,
    sessions: &SessionChoice,
) -> Vec<(Action, Vec<String>)> {
    let own = match (agent.session_id, key) {
        (Some(named), None) => named,
        (Some(named), Some(key)) => Uuid::new_v5(&named, key.as_bytes()),
        (None, _) => Uuid::new_v5(&options.run_id, name.as_bytes()),
    };
    let inherited = sessions.inherited.get(name).copied();
    let session = inherited.unwrap_or(own);
    let exists = sessions.known.contains(&session);
    // `session = "fork"`: once the named session exists, each run continues a copy of its own
    // (`--resume NAMED --fork-session --session-id COPY`), leaving the named one as it was.
    let fork = (agent.fork_session && exists && inherited.is_none())
        .then(|| (session, Uuid::new_v5(&options.run_id, name.as_bytes())));
    let session = fork.map_or(session, |(_, copy)| copy);
    // Only the main step answers in the shape of `output_schema`: a pre-command asked for it
    // would be held to the schema too.
    let before = Agent {
        output_schema: None,
        ..agent.clone()
    };
    let last = agent.pre_commands.len();
    agent
        .pre_commands
        .iter()
        .chain(std::iter::once(&agent.prompt))
        .enumerate()
        .map(|(i, prompt)| {
            let session = if i == 0 && !exists {
                Session::New(session)
            } else {
                Session::Resume(session)
            };
            let mut argv = Vec::with_capacity(20);
            argv.push(options.agent.program.to_string_lossy().into_owned());
            argv.extend(options.agent.prefix.iter().cloned());
            let of = if i == last { agent } else { &before };
            match fork {
                Some((named, copy)) if i == 0 => {
                    let mut args = agent::claude_args(of, max_usd, Session::Resume(named), prompt);
                    // Before the `--` that ends the options.
                    let at = args.len() - 2;
                    args.splice(
                        at..at,
                        [
                            "--fork-session".to_string(),
                            "--session-id".into(),
                            copy.to_string(),
                        ],
                    );
                    argv.extend(args);
                }
                _ => argv.extend(agent::claude_args(of, max_usd, session, prompt)),
            }
            let command = Agent::base_command(prompt).map(str::to_string);
            (
                Action::Agent {
                    prompt: prompt.clone(),
                    session,
                    command,
                },
                argv,
            )
        })
        .collect()
}

fn stable_topological_order(graph: &DiGraph<StepId, When>) -> Vec<StepId> {
    let n = graph.node_count();
    let mut indegree: Vec<usize> = (0..n)
        .map(|i| {
            graph
                .neighbors_directed(NodeIndex::new(i), Direction::Incoming)
                .count()
        })
        .collect();
    let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<usize>> = indegree
        .iter()
        .enumerate()
        .filter(|(_, d)| **d == 0)
        .map(|(i, _)| std::cmp::Reverse(i))
        .collect();
    let mut order = Vec::with_capacity(n);
    while let Some(std::cmp::Reverse(i)) = ready.pop() {
        order.push(i);
        for m in graph.neighbors_directed(NodeIndex::new(i), Direction::Outgoing) {
            indegree[m.index()] -= 1;
            if indegree[m.index()] == 0 {
                ready.push(std::cmp::Reverse(m.index()));
            }
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::load_str;
    use std::path::Path;

    fn plan_of(text: &str) -> Plan {
        let m = load_str(Path::new("orch.toml"), text.into()).expect("valid manifest");
        Plan::build(
            &m,
            &PlanOptions {
                agent: AgentProgram {
                    program: "claude".into(),
                    prefix: vec![],
                },
                run_id: Uuid::nil(),
            },
        )
    }

    const PIPELINE: &str = r#"
        [jobs.lint]
        run = ["lint"]
        [jobs.agent]
        command = "/createtestsv2 unit"
        pre_commands = ["/compact"]
        clear_history = true
        needs = ["lint"]
        [jobs.other]
        shell = "echo hi"
        [jobs.last]
        prompt = "sum up"
        needs = ["agent", "other"]
    "#;

    #[test]
    fn only_the_main_step_is_asked_for_the_output_schema() {
        let plan = plan_of(
            "[jobs.a]\nprompt = \"plan\"\npre_commands = [\"/compact\"]\n\
             output_schema = { type = \"object\" }\n",
        );
        let flagged: Vec<bool> = plan
            .steps
            .iter()
            .map(|s| s.argv.iter().any(|a| a == "--json-schema"))
            .collect();
        assert_eq!(flagged, [false, true]);
    }

    #[test]
    fn pre_commands_become_a_session_chain() {
        let plan = plan_of(PIPELINE);
        let agent: Vec<&Step> = plan.job_steps(1).iter().map(|&i| &plan.steps[i]).collect();
        let prompts: Vec<&str> = agent
            .iter()
            .map(|s| match &s.action {
                Action::Agent { prompt, .. } => prompt.as_str(),
                _ => panic!(),
            })
            .collect();
        assert_eq!(prompts, ["/clear", "/compact", "/createtestsv2 unit"]);
        let sessions: Vec<Session> = agent
            .iter()
            .map(|s| match &s.action {
                Action::Agent { session, .. } => *session,
                _ => panic!(),
            })
            .collect();
        let id = sessions[0].id();
        assert_eq!(
            sessions,
            [Session::New(id), Session::Resume(id), Session::Resume(id)]
        );
        assert!(
            agent[0]
                .argv
                .windows(2)
                .any(|w| w == ["--session-id", &id.to_string()])
        );
        assert!(
            agent[2]
                .argv
                .windows(2)
                .any(|w| w == ["--resume", &id.to_string()])
        );
        assert_eq!(
            agent[2].argv[agent[2].argv.len() - 2..],
            ["--", "/createtestsv2 unit"]
        );
        assert_eq!(agent[1].label(), "agent [2/3]");
        let commands: Vec<Option<&str>> = agent
            .iter()
            .map(|s| match &s.action {
                Action::Agent { command, .. } => command.as_deref(),
                _ => None,
            })
            .collect();
        assert_eq!(
            commands,
            [Some("/clear"), Some("/compact"), Some("/createtestsv2")]
        );
    }

    #[test]
    fn needs_link_first_step_to_last_steps() {
        let plan = plan_of(PIPELINE);
        let first_of_agent = plan.job_steps(1)[0];
        assert_eq!(plan.dependencies(first_of_agent).collect::<Vec<_>>(), [0]);
        let last = plan.job_steps(3)[0];
        let mut deps: Vec<_> = plan.dependencies(last).collect();
        deps.sort();
        assert_eq!(
            deps,
            [*plan.job_steps(1).last().unwrap(), plan.job_steps(2)[0]]
        );
    }

    #[test]
    fn order_is_topological_and_keeps_the_written_order() {
        let plan = plan_of(PIPELINE);
        // lint, agent chain, other, last: independent steps keep their written order.
        assert_eq!(plan.order, [0, 1, 2, 3, 4, 5]);
        let position: Vec<usize> = {
            let mut p = vec![0; plan.order.len()];
            for (i, &s) in plan.order.iter().enumerate() {
                p[s] = i;
            }
            p
        };
        for e in plan.graph.edge_indices() {
            let (a, b) = plan.graph.edge_endpoints(e).unwrap();
            assert!(position[a.index()] < position[b.index()]);
        }
    }

    #[test]
    fn readiness_follows_states() {
        use Status::*;
        let plan = plan_of(PIPELINE);
        // 0 lint, 1-3 agent chain, 4 other, 5 last
        let mut states = vec![Pending; 6];
        assert_eq!(plan.ready(&states).collect::<Vec<_>>(), [0, 4]);
        states[0] = Running;
        states[4] = Completed;
        assert_eq!(plan.ready(&states).count(), 0);
        states[0] = Completed;
        assert_eq!(plan.ready(&states).collect::<Vec<_>>(), [1]);
        states[1] = Completed;
        states[2] = Failed;
        assert_eq!(plan.ready(&states).count(), 0);
        assert_eq!(plan.doomed(&states).collect::<Vec<_>>(), [(3, 2)]);
        states[3] = Skipped;
        assert_eq!(plan.doomed(&states).collect::<Vec<_>>(), [(5, 3)]);
    }

    /// The incremental frontier agrees with the pure readiness rules on random runs.
    #[test]
    fn the_frontier_matches_ready_and_doomed() {
        use proptest::prelude::*;
        use proptest::test_runner::TestRunner;
        let mut runner = TestRunner::default();
        let strategy = (
            2usize..25,
            proptest::collection::vec((0usize..25, 0usize..25), 0..40),
            proptest::collection::vec((any::<proptest::sample::Index>(), any::<bool>()), 0..60),
        );
        runner
            .run(&strategy, |(n, edges, moves)| {
                let mut text = String::new();
                for i in 0..n {
                    // Edges only to earlier jobs keep the graph acyclic.
                    let needs: Vec<String> = edges
                        .iter()
                        .filter(|(a, b)| a % n == i && b % n < i)
                        .map(|(_, b)| format!("\"j{}\"", b % n))
                        .collect();
                    let kind = if i % 3 == 0 {
                        "command = \"/x\"\npre_commands = [\"/clear\"]"
                    } else {
                        "run = [\"true\"]"
                    };
                    text.push_str(&format!(
                        "[jobs.j{i}]\n{kind}\nneeds = [{}]\n",
                        needs.join(", ")
                    ));
                }
                let plan = plan_of(&text);
                let mut frontier = Frontier::new(&plan);
                let mut states = vec![Status::Pending; plan.steps.len()];
                for (pick, ok) in moves {
                    let ready: Vec<StepId> = plan.ready(&states).collect();
                    prop_assert_eq!(frontier.ready(&plan).collect::<Vec<_>>(), ready.clone());
                    if ready.is_empty() {
                        break;
                    }
                    let id = ready[pick.index(ready.len())];
                    frontier.remove(id);
                    states[id] = if ok {
                        Status::Completed
                    } else {
                        Status::Failed
                    };
                    frontier.ended(&plan, id, ok);
                    loop {
                        let doomed = frontier.take_doomed();
                        let mut expected: Vec<StepId> =
                            plan.doomed(&states).map(|(d, _)| d).collect();
                        expected.sort_unstable();
                        let mut got: Vec<StepId> = doomed.iter().map(|(d, _)| *d).collect();
                        got.sort_unstable();
                        prop_assert_eq!(got, expected);
                        if doomed.is_empty() {
                            break;
                        }
                        for (d, _) in doomed {
                            states[d] = Status::Skipped;
                            frontier.ended(&plan, d, false);
                        }
                    }
                }
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn a_known_session_is_resumed_from_the_first_step_and_a_fork_copies_it() {
        let text = "[jobs.a]\npre_commands = [\"/clear\"]\nprompt = \"x\"\nsession_id = \"nightly\"\n\
                    [jobs.f]\nprompt = \"y\"\nsession_id = \"base\"\nsession = \"fork\"\n";
        let m = load_str(Path::new("orch.toml"), text.into()).unwrap();
        let options = PlanOptions {
            agent: AgentProgram {
                program: "claude".into(),
                prefix: vec![],
            },
            run_id: Uuid::from_u128(7),
        };
        let nightly = crate::manifest::resolve::session_uuid("nightly");
        let base = crate::manifest::resolve::session_uuid("base");
        let sessions = |plan: &Plan| -> Vec<Session> {
            plan.steps
                .iter()
                .map(|s| match &s.action {
                    Action::Agent { session, .. } => *session,
                    _ => panic!(),
                })
                .collect()
        };
        // First night: both sessions are created.
        let fresh = Plan::build(&m, &options);
        assert_eq!(
            sessions(&fresh),
            [
                Session::New(nightly),
                Session::Resume(nightly),
                Session::New(base)
            ]
        );
        // Once the ledger knows them: `--resume` throughout, and the fork continues a copy.
        let known = SessionChoice {
            known: [nightly, base].into_iter().collect(),
            inherited: Default::default(),
        };
        let later = Plan::build_with(&m, &options, known.clone());
        let copy = Uuid::new_v5(&options.run_id, b"f");
        assert_eq!(
            sessions(&later),
            [
                Session::Resume(nightly),
                Session::Resume(nightly),
                Session::Resume(copy)
            ]
        );
        assert!(!later.steps[0].argv.iter().any(|a| a == "--session-id"));
        let fork = &later.steps[2].argv;
        let dash = fork.iter().position(|a| a == "--").unwrap();
        assert_eq!(
            fork[dash - 5..dash],
            [
                "--resume",
                &base.to_string(),
                "--fork-session",
                "--session-id",
                &copy.to_string()
            ]
        );
        // A resumed run continues the session it inherits, forked or not.
        let inherited = SessionChoice {
            known: [nightly, base, copy].into_iter().collect(),
            inherited: [("f".to_string(), copy)].into_iter().collect(),
        };
        let resumed = Plan::build_with(&m, &options, inherited);
        assert_eq!(sessions(&resumed)[2], Session::Resume(copy));
        assert!(!resumed.steps[2].argv.iter().any(|a| a == "--fork-session"));
    }

    #[test]
    fn sessions_are_fresh_per_run_unless_named() {
        let text = "[jobs.a]\nprompt = \"x\"\n[jobs.b]\nprompt = \"y\"\nsession_id = \"nightly\"\n";
        let m = load_str(Path::new("orch.toml"), text.into()).unwrap();
        let session_of = |run_id: Uuid, job: usize| {
            let plan = Plan::build(
                &m,
                &PlanOptions {
                    agent: AgentProgram {
                        program: "claude".into(),
                        prefix: vec![],
                    },
                    run_id,
                },
            );
            match &plan.steps[job].action {
                Action::Agent { session, .. } => session.id(),
                _ => panic!(),
            }
        };
        let (r1, r2) = (Uuid::from_u128(1), Uuid::from_u128(2));
        assert_ne!(session_of(r1, 0), session_of(r2, 0));
        assert_eq!(session_of(r1, 1), session_of(r2, 1));
        assert_eq!(
            session_of(r1, 1),
            crate::manifest::resolve::session_uuid("nightly")
        );
    }

    #[test]
    fn launch_offsets_stagger_the_first_wave() {
        let plan = plan_of(PIPELINE);
        let offsets = plan.launch_offsets(Duration::from_secs(5));
        // lint and other are the first wave; the agent chain follows lint.
        assert_eq!(offsets[0], Duration::ZERO);
        assert_eq!(offsets[4], Duration::from_secs(5));
        assert_eq!(offsets[1], Duration::from_secs(5));
        assert_eq!(offsets[3], Duration::from_secs(15));
        assert_eq!(offsets[5], Duration::from_secs(20));
    }
}
