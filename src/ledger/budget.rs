//! Budgets: which scopes a step belongs to, what each scope has spent, whether a step may start,
//! and which thresholds a change crosses. Pure: no I/O, no clock; the dispatcher feeds it usage.
//!
//! Scopes are the run, each base slash command with a limit, each job with its own limit, and the
//! rolling window (whose spend starts from what the ledger holds for the period). Tokens and
//! dollars are separate limits; a token is never compared with a dollar. Only agent steps spend,
//! so only agent steps belong to scopes.

use serde::Serialize;

use crate::manifest::{BudgetMode, Limit, Manifest, Task};
use crate::plan::{Action, Plan, StepId};

/// Thresholds reported once per scope, in percent of a limit.
pub const THRESHOLDS: [u8; 2] = [80, 100];

/// Spend in tokens and dollars.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Spend {
    pub tokens: u64,
    pub usd: f64,
}

/// One budget scope: its name, limit, spend, and the thresholds already reported.
#[derive(Clone, Debug, Serialize)]
pub struct Scope {
    /// "run", "/command", "job NAME", "window 5h".
    pub name: String,
    pub limit: Limit,
    pub used: Spend,
    #[serde(skip)]
    warned: Vec<u8>,
}

impl Scope {
    fn new(name: String, limit: Limit, used: Spend) -> Scope {
        Scope {
            name,
            limit,
            used,
            warned: Vec::new(),
        }
    }

    /// The larger of the token and dollar fractions used (0.0 when there is no limit).
    pub fn fraction(&self) -> f64 {
        let t = self
            .limit
            .tokens
            .map_or(0.0, |l| self.used.tokens as f64 / l as f64);
        let u = self.limit.usd.map_or(0.0, |l| self.used.usd / l);
        t.max(u)
    }

    /// Whether the scope has reached a limit.
    pub fn is_spent(&self) -> bool {
        self.limit.tokens.is_some_and(|l| self.used.tokens >= l)
            || self.limit.usd.is_some_and(|l| self.used.usd >= l)
    }

    /// How far past its limits the scope went (zero when within).
    pub fn overshoot(&self) -> Spend {
        Spend {
            tokens: self
                .limit
                .tokens
                .map_or(0, |l| self.used.tokens.saturating_sub(l)),
            usd: self.limit.usd.map_or(0.0, |l| (self.used.usd - l).max(0.0)),
        }
    }

    /// What is left under each limit.
    fn left(&self) -> (Option<u64>, Option<f64>) {
        (
            self.limit
                .tokens
                .map(|l| l.saturating_sub(self.used.tokens)),
            self.limit.usd.map(|l| (l - self.used.usd).max(0.0)),
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
}

impl Budgets {
    /// Builds the scopes of a run; `window_spent` is what the ledger holds for the window's period.
    pub fn new(manifest: &Manifest, plan: &Plan, window_spent: Spend) -> Budgets {
        let b = &manifest.budget;
        let mut scopes = vec![Scope::new("run".into(), b.run, Spend::default())];
        let window = b.window.as_ref().map(|w| {
            scopes.push(Scope::new(
                format!("window {}", crate::duration::format(w.period)),
                w.limit,
                window_spent,
            ));
            scopes.len() - 1
        });
        let mut command_scope = std::collections::HashMap::new();
        for (cmd, limit) in &b.commands {
            scopes.push(Scope::new(cmd.clone(), *limit, Spend::default()));
            command_scope.insert(cmd.as_str(), scopes.len() - 1);
        }
        let mut job_scope = vec![None; manifest.jobs.len()];
        for (j, job) in manifest.jobs.iter().enumerate() {
            if job.limit.is_set() && matches!(job.task, Task::Agent(_)) {
                scopes.push(Scope::new(
                    format!("job {}", job.name),
                    job.limit,
                    Spend::default(),
                ));
                job_scope[j] = Some(scopes.len() - 1);
            }
        }
        let mut members = Vec::with_capacity(plan.steps.len());
        let mut own = Vec::with_capacity(plan.steps.len());
        for step in &plan.steps {
            let mut of = Vec::new();
            if let Action::Agent { command, .. } = &step.action {
                of.push(0);
                of.extend(window);
                if let Some(&c) = command.as_deref().and_then(|c| command_scope.get(c)) {
                    of.push(c);
                }
                of.extend(job_scope[step.job]);
            }
            members.push(of);
            own.push(manifest.jobs[step.job].limit);
        }
        Budgets {
            mode: b.mode,
            scopes,
            members,
            own,
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
            if scope.name.starts_with("job ") {
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
            if let (Some(mine), Some(left)) = (own.usd, usd_left) {
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
    pub fn apply(&mut self, step: StepId, tokens: i64, usd: f64) -> Vec<Crossing> {
        let mut crossings = Vec::new();
        for &s in &self.members[step] {
            let scope = &mut self.scopes[s];
            scope.used.tokens = scope.used.tokens.saturating_add_signed(tokens);
            scope.used.usd = (scope.used.usd + usd).max(0.0);
            let percent = scope.fraction() * 100.0;
            for t in THRESHOLDS {
                if percent >= f64::from(t) && !scope.warned.contains(&t) {
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
    if let Some(l) = scope.limit.tokens {
        parts.push(format!("{}/{l} tokens", scope.used.tokens));
    }
    if let Some(l) = scope.limit.usd {
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
        assert!(b.apply(3, 700, 0.1).is_empty());
        let c = b.apply(3, 100, 0.0);
        assert_eq!(
            c,
            [Crossing {
                scope: 0,
                percent: 80
            }]
        );
        assert!(b.apply(3, 10, 0.0).is_empty());
        let c = b.apply(3, 200, 0.0);
        assert_eq!(
            c,
            [Crossing {
                scope: 0,
                percent: 100
            }]
        );
        assert!(b.apply(3, 200, 0.0).is_empty());
        assert_eq!(b.scopes[0].overshoot().tokens, 210);
    }

    #[test]
    fn block_mode_refuses_spent_scopes_and_limits_that_cannot_fit() {
        let mut b = budgets(MANIFEST, Spend::default());
        assert_eq!(b.refuse(2), None);
        b.apply(3, 750, 0.0);
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
        b.apply(3, 250, 0.0);
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
                usd: 2.5,
            },
        );
        assert!(b.refuse(3).unwrap().contains("window 5h budget is spent"));
    }

    #[test]
    fn warn_mode_never_refuses() {
        let text = MANIFEST.replace("mode = \"block\"", "mode = \"warn\"");
        let mut b = budgets(&text, Spend::default());
        b.apply(3, 5000, 5.0);
        assert_eq!(b.refuse(3), None);
        assert!(b.spent_scope(3).is_some());
    }

    #[test]
    fn corrections_may_lower_the_spend() {
        let mut b = budgets(MANIFEST, Spend::default());
        b.apply(3, 100, 0.5);
        b.apply(3, -40, -0.2);
        assert_eq!(b.scopes[0].used.tokens, 60);
        assert!((b.scopes[0].used.usd - 0.3).abs() < 1e-12);
    }
}
