//! The plan: a petgraph DAG of steps built from a [`Manifest`], and readiness over it.
//!
//! A job becomes a chain of steps (its pre-commands, then its main command) sharing one Claude
//! session; a job's first step depends on the last step of every job it `needs`. Everything here is
//! pure: no I/O, no clock. The runner asks [`Plan::ready`] and [`Plan::doomed`] what to do next.

use std::time::Duration;

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use serde::Serialize;
use uuid::Uuid;

use crate::agent::{self, AgentProgram, Session};
use crate::events::Status;
use crate::manifest::{Agent, Manifest, Task};

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
}

/// One process to spawn.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Step {
    pub id: StepId,
    /// Index of the job in the manifest.
    pub job: usize,
    pub job_name: String,
    /// 1-based position in the job's chain, and the chain's length.
    pub index: usize,
    pub of: usize,
    pub action: Action,
    /// The exact argv to spawn, program first.
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
}

/// The DAG of steps. Edges point from a dependency to its dependent.
#[derive(Clone, Debug)]
pub struct Plan {
    pub graph: DiGraph<StepId, ()>,
    pub steps: Vec<Step>,
    /// A topological order that keeps the manifest's job order where it can.
    pub order: Vec<StepId>,
    /// Each job's steps, in chain order.
    pub jobs: Vec<Vec<StepId>>,
}

/// Inputs to planning that do not come from the manifest.
#[derive(Clone, Debug)]
pub struct PlanOptions {
    /// The program that plays Claude Code.
    pub agent: AgentProgram,
    /// Seeds the sessions of jobs that do not name one, so each run gets fresh ones.
    pub run_id: Uuid,
}

impl Plan {
    /// Builds the plan. The manifest is validated, so every `needs` resolves and there is no cycle.
    pub fn build(manifest: &Manifest, options: &PlanOptions) -> Plan {
        let mut graph = DiGraph::with_capacity(manifest.jobs.len(), manifest.jobs.len());
        let mut steps = Vec::with_capacity(manifest.jobs.len());
        let mut jobs = Vec::with_capacity(manifest.jobs.len());
        for (j, job) in manifest.jobs.iter().enumerate() {
            let model = match &job.task {
                Task::Agent(agent) => agent.model.clone(),
                _ => None,
            };
            let chain: Vec<(Action, Vec<String>)> = match &job.task {
                Task::Agent(agent) => agent_chain(agent, job.limit.usd, &job.name, options),
                Task::Exec { argv } => vec![(Action::Exec, argv.clone())],
                Task::Shell { script } => vec![(
                    Action::Shell,
                    vec!["sh".into(), "-c".into(), script.clone()],
                )],
            };
            let of = chain.len();
            let mut ids = Vec::with_capacity(of);
            for (i, (action, argv)) in chain.into_iter().enumerate() {
                let id = steps.len();
                let node = graph.add_node(id);
                debug_assert_eq!(node.index(), id);
                if let Some(&prev) = ids.last() {
                    graph.add_edge(NodeIndex::new(prev), node, ());
                }
                ids.push(id);
                steps.push(Step {
                    id,
                    job: j,
                    job_name: job.name.clone(),
                    index: i + 1,
                    of,
                    action,
                    argv,
                    model: model.clone(),
                });
            }
            jobs.push(ids);
        }
        let index: std::collections::HashMap<&str, usize> = manifest
            .jobs
            .iter()
            .enumerate()
            .map(|(i, j)| (j.name.as_str(), i))
            .collect();
        for (j, job) in manifest.jobs.iter().enumerate() {
            let first = NodeIndex::new(jobs[j][0]);
            for need in &job.needs {
                let Some(&n) = index.get(need.as_str()) else {
                    continue;
                };
                let last = NodeIndex::new(*jobs[n].last().expect("a job has a step"));
                // `needs` holds no repeats (resolve removes them), so no edge is added twice.
                graph.add_edge(last, first, ());
            }
        }
        let order = stable_topological_order(&graph);
        Plan {
            graph,
            steps,
            order,
            jobs,
        }
    }

    /// The steps a step waits for.
    pub fn dependencies(&self, id: StepId) -> impl Iterator<Item = StepId> + '_ {
        self.graph
            .neighbors_directed(NodeIndex::new(id), Direction::Incoming)
            .map(NodeIndex::index)
    }

    /// Pending steps whose dependencies all completed, in plan order.
    pub fn ready<'a>(&'a self, states: &'a [Status]) -> impl Iterator<Item = StepId> + 'a {
        self.order.iter().copied().filter(move |&id| {
            states[id] == Status::Pending
                && self
                    .dependencies(id)
                    .all(|d| states[d] == Status::Completed)
        })
    }

    /// Pending steps that can never run because a dependency ended without completing.
    pub fn doomed<'a>(
        &'a self,
        states: &'a [Status],
    ) -> impl Iterator<Item = (StepId, StepId)> + 'a {
        self.order.iter().copied().filter_map(move |id| {
            if states[id] != Status::Pending {
                return None;
            }
            self.dependencies(id)
                .find(|&d| states[d].is_final() && states[d] != Status::Completed)
                .map(|d| (id, d))
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

/// Readiness kept up to date as steps end, so that the dispatcher never rescans the whole plan:
/// the rule of [`Plan::ready`] and [`Plan::doomed`], applied incrementally (a run of 100,000 steps
/// would otherwise spend quadratic time deciding what to launch).
#[derive(Clone, Debug)]
pub struct Frontier {
    /// Each step's dependencies that have not completed yet.
    waiting: Vec<usize>,
    /// Pending steps whose dependencies all completed, by position in [`Plan::order`].
    ready: std::collections::BTreeSet<usize>,
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
        let ready = (0..n)
            .filter(|&id| waiting[id] == 0)
            .map(|id| position[id])
            .collect();
        Frontier {
            waiting,
            ready,
            position,
            gone: vec![false; n],
            doomed: Vec::new(),
        }
    }

    /// The ready steps, in plan order.
    pub fn ready<'a>(&'a self, plan: &'a Plan) -> impl Iterator<Item = StepId> + 'a {
        self.ready.iter().map(|&p| plan.order[p])
    }

    /// Whether no step is ready.
    pub fn is_empty(&self) -> bool {
        self.ready.is_empty()
    }

    /// A ready step left the pending state (it was launched or refused).
    pub fn remove(&mut self, id: StepId) {
        self.ready.remove(&self.position[id]);
    }

    /// A step ended. When it completed, dependents whose dependencies are all done become ready;
    /// otherwise its pending dependents can never run (see [`Frontier::take_doomed`]).
    pub fn ended(&mut self, plan: &Plan, id: StepId, completed: bool) {
        self.remove(id);
        self.gone[id] = true;
        for next in plan
            .graph
            .neighbors_directed(NodeIndex::new(id), Direction::Outgoing)
        {
            let next = next.index();
            if completed {
                self.waiting[next] -= 1;
                if self.waiting[next] == 0 && !self.gone[next] {
                    self.ready.insert(self.position[next]);
                }
            } else if !self.gone[next] {
                self.gone[next] = true;
                self.doomed.push((next, id));
            }
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

/// A job's session chain: pre-commands first (`--session-id`), then `--resume` for the rest.
fn agent_chain(
    agent: &Agent,
    max_usd: Option<f64>,
    job: &str,
    options: &PlanOptions,
) -> Vec<(Action, Vec<String>)> {
    let session = agent
        .session_id
        .unwrap_or_else(|| Uuid::new_v5(&options.run_id, job.as_bytes()));
    agent
        .pre_commands
        .iter()
        .chain(std::iter::once(&agent.prompt))
        .enumerate()
        .map(|(i, prompt)| {
            let session = if i == 0 {
                Session::New(session)
            } else {
                Session::Resume(session)
            };
            let mut argv = Vec::with_capacity(20);
            argv.push(options.agent.program.to_string_lossy().into_owned());
            argv.extend(options.agent.prefix.iter().cloned());
            argv.extend(agent::claude_args(agent, max_usd, session, prompt));
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

/// Kahn's algorithm taking the lowest-numbered ready step first, so independent jobs keep the
/// order they were written in (which is the order they launch in).
fn stable_topological_order(graph: &DiGraph<StepId, ()>) -> Vec<StepId> {
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
    fn pre_commands_become_a_session_chain() {
        let plan = plan_of(PIPELINE);
        let agent: Vec<&Step> = plan.jobs[1].iter().map(|&i| &plan.steps[i]).collect();
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
        let first_of_agent = plan.jobs[1][0];
        assert_eq!(plan.dependencies(first_of_agent).collect::<Vec<_>>(), [0]);
        let last = plan.jobs[3][0];
        let mut deps: Vec<_> = plan.dependencies(last).collect();
        deps.sort();
        assert_eq!(deps, [*plan.jobs[1].last().unwrap(), plan.jobs[2][0]]);
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
