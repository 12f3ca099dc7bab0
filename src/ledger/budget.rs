//! Budgets: which scopes a step belongs to, what each scope has spent, whether a step may start,
//! and which thresholds a change crosses. Pure: no I/O, no clock; the dispatcher feeds it usage.
//!
//! Scopes are the run, each base slash command with a limit, each job with its own limit, and the
//! rolling window (whose spend starts from what the ledger holds for the period). Tokens and
//! dollars are separate limits; a token is never compared with a dollar. Only agent steps spend,
//! so only agent steps belong to scopes.
//!
//! All arithmetic is on integers: tokens as saturating u64, dollars as [`Nanos`]. The manifest's
//! dollar limits are converted once, when the scopes are built; a float is never compared here.

use serde::Serialize;

use super::nanos::Nanos;
use crate::manifest::{BudgetMode, Limit, Manifest, Task};
use crate::plan::{Action, Plan, StepId};

/// Thresholds reported once per scope, in percent of a limit.
pub const THRESHOLDS: [u8; 2] = [80, 100];

/// Spend in tokens and dollars (as nano-dollars; serialized as dollars).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Spend {
    pub tokens: u64,
    /// Dollars, as integer nano-dollars; never negative.
    pub usd: Nanos,
}

impl Spend {
    /// `self + other`, each figure saturating.
    pub fn saturating_add(self, other: Spend) -> Spend {
        Spend {
            tokens: self.tokens.saturating_add(other.tokens),
            usd: self.usd.saturating_add(other.usd),
        }
    }

    /// `self - other`, each figure saturating.
    pub fn saturating_sub(self, other: Spend) -> Spend {
        Spend {
            tokens: self.tokens.saturating_sub(other.tokens),
            usd: self.usd.saturating_sub(other.usd),
        }
    }
}

/// What a budget scope covers. The kind decides the rules (a job's own limit is not checked
/// against itself); the name is only for people.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScopeKind {
    /// The whole run (`[budget] tokens`, `usd`).
    Run,
    /// The rolling window across runs (`[budget] window`), starting from the ledger.
    Window,
    /// One base slash command (`[budget] commands."/review"`).
    Command,
    /// One job's own limit (`max_tokens`, `max_usd`).
    Job,
}

/// A scope's limits in budget units: tokens, and dollars as nano-dollars.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Caps {
    pub tokens: Option<u64>,
    pub usd: Option<Nanos>,
}

impl Caps {
    /// The manifest's limit, its dollars converted once to nano-dollars.
    pub fn of(limit: &Limit) -> Caps {
        Caps {
            tokens: limit.tokens,
            usd: limit.usd.map(Nanos::from_usd),
        }
    }
}

/// One budget scope: its kind and name, limit, spend, and the thresholds already reported.
#[derive(Clone, Debug)]
pub struct Scope {
    pub kind: ScopeKind,
    /// "run", "/command", "job NAME", "window 5h".
    pub name: String,
    /// The limit as the manifest gave it (for display).
    pub limit: Limit,
    /// The same limit in integer units, which every check uses.
    pub caps: Caps,
    pub used: Spend,
    warned: Vec<u8>,
}

/// Whether `used` is at least `percent` % of `limit`, exactly (no float rounding).
fn reached(used: u64, limit: u64, percent: u8) -> bool {
    u128::from(used) * 100 >= u128::from(limit) * u128::from(percent)
}

impl Scope {
    fn new(kind: ScopeKind, name: String, limit: Limit, used: Spend) -> Scope {
        Scope {
            kind,
            name,
            limit,
            caps: Caps::of(&limit),
            used,
            warned: Vec::new(),
        }
    }

    /// Dollars used, as a non-negative integer.
    fn usd_used(&self) -> u64 {
        u64::try_from(self.used.usd.0).unwrap_or(0)
    }

    /// Whether a limit of the scope is at `percent` % or more.
    pub fn at_percent(&self, percent: u8) -> bool {
        self.caps
            .tokens
            .is_some_and(|l| reached(self.used.tokens, l, percent))
            || self
                .caps
                .usd
                .is_some_and(|l| reached(self.usd_used(), u64::try_from(l.0).unwrap_or(0), percent))
    }

    /// Whether the scope has reached a limit.
    pub fn is_spent(&self) -> bool {
        self.at_percent(100)
    }

    /// How far past its limits the scope went (zero when within, and for a unit without a
    /// limit).
    pub fn overshoot(&self) -> Spend {
        Spend {
            tokens: self
                .caps
                .tokens
                .map_or(0, |l| self.used.tokens.saturating_sub(l)),
            usd: self.caps.usd.map_or(Nanos::ZERO, |l| {
                self.used.usd.saturating_sub(l).non_negative()
            }),
        }
    }

    /// What is left under each limit.
    fn left(&self) -> (Option<u64>, Option<Nanos>) {
        (
            self.caps.tokens.map(|l| l.saturating_sub(self.used.tokens)),
            self.caps
                .usd
                .map(|l| l.saturating_sub(self.used.usd).non_negative()),
        )
    }
}

/// A threshold crossed by a change: reported once.
#[derive(Clone, Debug, PartialEq)]
pub struct Crossing {
    pub scope: usize,
    pub percent: u8,
}

/// All scopes of a run and which steps belong to which.
#[derive(Clone, Debug)]
pub struct Budgets {
    pub mode: BudgetMode,
    pub scopes: Vec<Scope>,
    /// For each step, the indexes of its scopes.
    members: Vec<Vec<usize>>,
    /// For each step, its job's own limit (checked before launch against what is left).
    own: Vec<Limit>,
    /// The window's scope, each command's, and each job instance's own.
    window: Option<usize>,
    command_scope: std::collections::HashMap<String, usize>,
    instance_scope: std::collections::HashMap<usize, usize>,
}

impl Budgets {
    /// Builds the scopes of a run; `window_spent` is what the ledger holds for the window's period.
    pub fn new(manifest: &Manifest, plan: &Plan, window_spent: Spend) -> Budgets {
        let b = &manifest.budget;
        let mut scopes = vec![Scope::new(
            ScopeKind::Run,
            "run".into(),
            b.run,
            Spend::default(),
        )];
        let window = b.window.as_ref().map(|w| {
            scopes.push(Scope::new(
                ScopeKind::Window,
                format!("window {}", crate::duration::format(w.period)),
                w.limit,
                window_spent,
            ));
            scopes.len() - 1
        });
        let mut command_scope = std::collections::HashMap::new();
        for (cmd, limit) in &b.commands {
            scopes.push(Scope::new(
                ScopeKind::Command,
                cmd.clone(),
                *limit,
                Spend::default(),
            ));
            command_scope.insert(cmd.clone(), scopes.len() - 1);
        }
        let mut budgets = Budgets {
            mode: b.mode,
            scopes,
            members: Vec::with_capacity(plan.steps.len()),
            own: Vec::with_capacity(plan.steps.len()),
            window,
            command_scope,
            instance_scope: std::collections::HashMap::new(),
        };
        budgets.grow(manifest, plan, 0..plan.steps.len());
        budgets
    }

    /// Takes in steps of the plan (all of them at the start, a dynamic fan-out's new ones
    /// later): a job's `max_tokens`/`max_usd` is a scope of each instance of its own, named
    /// "job NAME" or "job NAME[key]"; the run, window and command scopes are shared.
    pub fn grow(&mut self, manifest: &Manifest, plan: &Plan, steps: std::ops::Range<StepId>) {
        for id in steps {
            debug_assert_eq!(id, self.members.len());
            let step = &plan.steps[id];
            let job = &manifest.jobs[step.job];
            let mut of = Vec::new();
            if let Action::Agent { command, .. } = &step.action {
                of.push(0);
                of.extend(self.window);
                if let Some(&c) = command.as_deref().and_then(|c| self.command_scope.get(c)) {
                    of.push(c);
                }
                if job.limit.is_set() && matches!(job.task, Task::Agent(_)) {
                    let scopes = &mut self.scopes;
                    let scope = *self.instance_scope.entry(step.instance).or_insert_with(|| {
                        scopes.push(Scope::new(
                            ScopeKind::Job,
                            format!("job {}", plan.instances[step.instance].name),
                            job.limit,
                            Spend::default(),
                        ));
                        scopes.len() - 1
                    });
                    of.push(scope);
                }
            }
            self.members.push(of);
            self.own.push(job.limit);
        }
    }

    /// The scopes a step belongs to.
    pub fn scopes_of(&self, step: StepId) -> &[usize] {
        &self.members[step]
    }

    /// In block mode, why a step may not start: a scope of it is spent, or its job's own limit
    /// cannot fit what a scope has left. `None` when it may start (always, in warn mode).
    pub fn refuse(&self, step: StepId) -> Option<String> {
        if self.mode != BudgetMode::Block {
            return None;
        }
        let own = self.own[step];
        for &s in &self.members[step] {
            let scope = &self.scopes[s];
            if scope.is_spent() {
                return Some(format!(
                    "the {} budget is spent ({})",
                    scope.name,
                    describe(scope)
                ));
            }
            // A job's own limit is checked against the other scopes, not against itself.
            if scope.kind == ScopeKind::Job {
                continue;
            }
            let (tokens_left, usd_left) = scope.left();
            if let (Some(mine), Some(left)) = (own.tokens, tokens_left) {
                if mine > left {
                    return Some(format!(
                        "its max_tokens {mine} cannot fit the {} tokens left in the {} budget",
                        left, scope.name
                    ));
                }
            }
            if let (Some(mine), Some(left)) = (Caps::of(&own).usd, usd_left) {
                if mine > left {
                    return Some(format!(
                        "its max_usd ${mine:.2} cannot fit the ${left:.2} left in the {} budget",
                        scope.name
                    ));
                }
            }
        }
        None
    }

    /// Applies a change of a step's spend (may be negative when an estimate is corrected) to
    /// every scope of the step; returns the thresholds crossed for the first time.
    pub fn apply(&mut self, step: StepId, tokens: i64, usd: Nanos) -> Vec<Crossing> {
        let mut crossings = Vec::new();
        for &s in &self.members[step] {
            let scope = &mut self.scopes[s];
            scope.used.tokens = scope.used.tokens.saturating_add_signed(tokens);
            scope.used.usd = scope.used.usd.saturating_add(usd).non_negative();
            for t in THRESHOLDS {
                if scope.at_percent(t) && !scope.warned.contains(&t) {
                    scope.warned.push(t);
                    crossings.push(Crossing {
                        scope: s,
                        percent: t,
                    });
                }
            }
        }
        crossings
    }

    /// The spent scopes a step belongs to (block mode stops the step when there is one).
    pub fn spent_scope(&self, step: StepId) -> Option<&Scope> {
        self.members[step]
            .iter()
            .map(|&s| &self.scopes[s])
            .find(|s| s.is_spent())
    }
}

/// "12000/10000 tokens, $1.20/$1.00".
pub fn describe(scope: &Scope) -> String {
    let mut parts = Vec::new();
    if let Some(l) = scope.caps.tokens {
        parts.push(format!("{}/{l} tokens", scope.used.tokens));
    }
    if let Some(l) = scope.caps.usd {
        parts.push(format!("${:.4}/${l:.2}", scope.used.usd));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::AgentProgram;
    use crate::plan::PlanOptions;
    use std::path::Path;

    fn usd(dollars: f64) -> Nanos {
        Nanos::from_usd(dollars)
    }

    fn budgets(text: &str, window: Spend) -> Budgets {
        let m = crate::manifest::load_str(Path::new("orch.toml"), text.into()).unwrap();
        let plan = Plan::build(
            &m,
            &PlanOptions {
                agent: AgentProgram {
                    program: "claude".into(),
                    prefix: vec![],
                },
                run_id: uuid::Uuid::nil(),
            },
        );
        Budgets::new(&m, &plan, window)
    }

    const MANIFEST: &str = r#"
        [budget]
        mode = "block"
        tokens = 1000
        usd = 1.0
        commands."/review" = { tokens = 500 }
        window = { period = "5h", usd = 2.0 }
        [jobs.lint]
        run = ["true"]
        [jobs.review]
        command = "/review all"
        pre_commands = ["/clear"]
        max_tokens = 300
        [jobs.free]
        prompt = "anything"
    "#;

    #[test]
    fn agent_steps_belong_to_their_scopes_and_process_steps_to_none() {
        let b = budgets(MANIFEST, Spend::default());
        let names = |step: StepId| -> Vec<&str> {
            b.scopes_of(step)
                .iter()
                .map(|&s| b.scopes[s].name.as_str())
                .collect()
        };
        assert!(names(0).is_empty());
        assert_eq!(names(1), ["run", "window 5h", "job review"]); // the /clear step
        assert_eq!(names(2), ["run", "window 5h", "/review", "job review"]);
        assert_eq!(names(3), ["run", "window 5h"]);
    }

    #[test]
    fn thresholds_are_reported_once_each() {
        let mut b = budgets(MANIFEST, Spend::default());
        assert!(b.apply(3, 700, usd(0.1)).is_empty());
        let c = b.apply(3, 100, usd(0.0));
        assert_eq!(
            c,
            [Crossing {
                scope: 0,
                percent: 80
            }]
        );
        assert!(b.apply(3, 10, usd(0.0)).is_empty());
        let c = b.apply(3, 200, usd(0.0));
        assert_eq!(
            c,
            [Crossing {
                scope: 0,
                percent: 100
            }]
        );
        assert!(b.apply(3, 200, usd(0.0)).is_empty());
        assert_eq!(b.scopes[0].overshoot().tokens, 210);
    }

    #[test]
    fn block_mode_refuses_spent_scopes_and_limits_that_cannot_fit() {
        let mut b = budgets(MANIFEST, Spend::default());
        assert_eq!(b.refuse(2), None);
        b.apply(3, 750, usd(0.0));
        // review's own 300 tokens no longer fit the 250 left in the run.
        assert!(
            b.refuse(2)
                .unwrap()
                .contains("max_tokens 300 cannot fit the 250 tokens left")
        );
        assert_eq!(
            b.refuse(3),
            None,
            "a job without its own limit may still start"
        );
        b.apply(3, 250, usd(0.0));
        assert!(b.refuse(3).unwrap().starts_with("the run budget is spent"));
        assert_eq!(
            b.refuse(0),
            None,
            "process steps spend nothing and are never refused"
        );
    }

    #[test]
    fn the_window_starts_from_the_ledger() {
        let b = budgets(
            MANIFEST,
            Spend {
                tokens: 0,
                usd: usd(2.5),
            },
        );
        assert!(b.refuse(3).unwrap().contains("window 5h budget is spent"));
    }

    #[test]
    fn warn_mode_never_refuses() {
        let text = MANIFEST.replace("mode = \"block\"", "mode = \"warn\"");
        let mut b = budgets(&text, Spend::default());
        b.apply(3, 5000, usd(5.0));
        assert_eq!(b.refuse(3), None);
        assert!(b.spent_scope(3).is_some());
    }

    #[test]
    fn corrections_may_lower_the_spend() {
        let mut b = budgets(MANIFEST, Spend::default());
        b.apply(3, 100, usd(0.5));
        b.apply(3, -40, usd(-0.2));
        assert_eq!(b.scopes[0].used.tokens, 60);
        assert_eq!(b.scopes[0].used.usd, usd(0.3));
    }

    #[test]
    fn scopes_have_kinds() {
        let b = budgets(MANIFEST, Spend::default());
        let kinds: Vec<(ScopeKind, &str)> =
            b.scopes.iter().map(|s| (s.kind, s.name.as_str())).collect();
        assert_eq!(
            kinds,
            [
                (ScopeKind::Run, "run"),
                (ScopeKind::Window, "window 5h"),
                (ScopeKind::Command, "/review"),
                (ScopeKind::Job, "job review"),
            ]
        );
    }

    #[test]
    fn dollar_limits_are_reached_exactly_in_nano_dollars() {
        // Ten steps of $0.10 against $1.00: as floats the sum is 0.9999999999999999 and the
        // run budget would never count as spent.
        let mut b = budgets(MANIFEST, Spend::default());
        for _ in 0..9 {
            b.apply(3, 0, usd(0.1));
        }
        assert!(!b.scopes[0].is_spent());
        b.apply(3, 0, usd(0.1));
        assert_eq!(b.scopes[0].used.usd, Nanos(1_000_000_000));
        assert!(b.scopes[0].is_spent());
        assert_eq!(b.scopes[0].overshoot(), Spend::default());
        assert!(b.refuse(3).unwrap().starts_with("the run budget is spent"));
    }

    #[test]
    fn huge_and_negative_changes_saturate() {
        let mut b = budgets(MANIFEST, Spend::default());
        for _ in 0..3 {
            b.apply(3, i64::MAX, Nanos(i64::MAX));
        }
        assert_eq!(b.scopes[0].used.tokens, u64::MAX);
        assert_eq!(b.scopes[0].used.usd, Nanos(i64::MAX));
        assert!(b.scopes[0].is_spent());
        let mut b = budgets(MANIFEST, Spend::default());
        b.apply(3, i64::MIN, Nanos(i64::MIN));
        assert_eq!(b.scopes[0].used, Spend::default());
    }

    #[test]
    fn overshoot_is_only_in_the_units_that_have_a_limit() {
        let mut b = budgets(MANIFEST, Spend::default());
        // The /review scope limits tokens only; its dollars are never "over".
        b.apply(2, 600, usd(3.0));
        let review = b
            .scopes
            .iter()
            .find(|s| s.kind == ScopeKind::Command)
            .unwrap();
        assert_eq!(
            review.overshoot(),
            Spend {
                tokens: 100,
                usd: Nanos::ZERO
            }
        );
        assert_eq!(
            b.scopes[0].overshoot(),
            Spend {
                tokens: 0,
                usd: usd(2.0)
            }
        );
    }
}
