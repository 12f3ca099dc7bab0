//! `orch plan` on a generated manifest of 10,000 jobs with dependencies: loading (parse, read,
//! resolve), building the step DAG, and rendering the text plan, each measured on its own.

use std::fmt::Write;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use orch::agent::AgentProgram;
use orch::plan::{Plan, PlanOptions};

/// `n` jobs: every tenth an agent job with a pre-command, each job needing up to two earlier ones.
pub fn manifest(n: usize) -> String {
    let mut s = String::from("[settings]\nstartup_delay = \"1s\"\nmax_parallel = 16\n\n");
    for i in 0..n {
        let _ = writeln!(s, "[jobs.job-{i}]");
        if i % 10 == 0 {
            let _ = writeln!(
                s,
                "command = \"/review part {i}\"\npre_commands = [\"/clear\"]"
            );
        } else {
            let _ = writeln!(s, "run = [\"true\", \"{i}\"]");
        }
        match i {
            0 => {}
            1 => s.push_str("needs = [\"job-0\"]\n"),
            _ => {
                // A chain, a fan-in on job-0 every fifth job, and a pseudo-random earlier job.
                let other = if i % 5 == 0 { 0 } else { (i * 7919 + 13) % i };
                let _ = writeln!(s, "needs = [\"job-{}\", \"job-{other}\"]", i - 1);
            }
        }
        s.push('\n');
    }
    s
}

fn bench(c: &mut Criterion) {
    let text = manifest(10_000);
    let options = PlanOptions {
        agent: AgentProgram {
            program: "claude".into(),
            prefix: vec![],
        },
        run_id: uuid::Uuid::nil(),
    };
    let path = Path::new("orch.toml");
    let m = orch::manifest::load_str(path, text.clone()).expect("generated manifest is valid");
    let plan = Plan::build(&m, &options);
    let mut group = c.benchmark_group("plan-10k-jobs");
    group.sample_size(10);
    group.bench_function("load", |b| {
        b.iter(|| orch::manifest::load_str(path, text.clone()).expect("valid"))
    });
    group.bench_function("build", |b| b.iter(|| Plan::build(&m, &options)));
    group.bench_function("render-text", |b| {
        b.iter(|| {
            let view = orch::commands::plan::view(&m, &plan, chrono::Utc::now(), Vec::new());
            orch::report::plan::render(&view, orch::cli::PlanFormat::Text)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
