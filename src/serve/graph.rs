//! A run's graph as SVG: one box per job, in layers by what it needs (a job sits one layer
//! below the deepest job it waits for), with an arrow for each job it needs. A job's steps (a
//! chain's steps, a fan-out's instances) are small boxes side by side in its box, each coloured
//! by its status; the live script changes a step box's class as statuses change.
//!
//! Owns the layout and the drawing. The plan comes from the run's `run_started` event (its
//! `graph`), the statuses from the run's summary; a run without the plan in its events (one
//! from before it was recorded) is drawn one job per layer in plan order, without arrows. Every
//! name is escaped.

use std::collections::BTreeMap;

use super::layout::escape;

use crate::events::GraphStep;
use crate::history::{StepView, job_of};

/// A step box's width and height; the gaps between boxes and layers.
const W: usize = 150;
const H: usize = 30;
const GAP: usize = 16;
const LAYER_GAP: usize = 36;
/// A job box's header (its name) above its steps, and its padding.
const HEAD: usize = 18;
const PAD: usize = 6;
/// Past this width a layer's jobs go on in a row below.
const WRAP: usize = 1100;
/// The most steps drawn in one job box; the rest are counted in the last.
const MAX_SHOWN: usize = 8;

/// One step box: its label, status, and its row in the page's steps table.
struct Member<'a> {
    label: &'a str,
    status: &'a str,
    row: Option<usize>,
}

struct Job<'a> {
    name: String,
    members: Vec<Member<'a>>,
    needs: Vec<usize>,
    layer: usize,
}

/// The graph of `plan` (empty when unknown) with the statuses of `steps` (the page's table).
pub fn svg(plan: &[GraphStep], steps: &[StepView]) -> String {
    let jobs = jobs(plan, steps);
    draw(&jobs)
}

/// The jobs in order of first appearance, with their members, the jobs they need, and layers.
fn jobs<'a>(plan: &'a [GraphStep], steps: &'a [StepView]) -> Vec<Job<'a>> {
    let mut jobs: Vec<Job> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    let mut job_of_step: BTreeMap<usize, usize> = BTreeMap::new();
    let rows: BTreeMap<&str, usize> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.label.as_str(), i))
        .collect();
    let mut add = |jobs: &mut Vec<Job<'a>>, name: String, m: Member<'a>| -> usize {
        let at = *index.entry(name.clone()).or_insert_with(|| {
            jobs.push(Job {
                name,
                members: Vec::new(),
                needs: Vec::new(),
                layer: 0,
            });
            jobs.len() - 1
        });
        jobs[at].members.push(m);
        at
    };
    for g in plan {
        let row = rows.get(g.label.as_str()).copied();
        let status = row.map_or("pending", |r| steps[r].status.as_str());
        let at = add(
            &mut jobs,
            g.job.clone(),
            Member {
                label: &g.label,
                status,
                row,
            },
        );
        job_of_step.insert(g.step, at);
    }
    let planned: std::collections::HashSet<&str> = plan.iter().map(|g| g.label.as_str()).collect();
    for (i, s) in steps.iter().enumerate() {
        if !planned.contains(s.label.as_str()) {
            let m = Member {
                label: &s.label,
                status: &s.status,
                row: Some(i),
            };
            add(&mut jobs, job_of(&s.label).to_string(), m);
        }
    }
    // A fan-out that expanded shows its instances, not the step that expanded it.
    for j in &mut jobs {
        let prefix = format!("{}[", j.name);
        if j.members.iter().any(|m| m.label.starts_with(&prefix)) {
            j.members.retain(|m| m.label != j.name);
        }
    }
    for g in plan {
        let to = job_of_step[&g.step];
        for n in &g.needs {
            if let Some(&from) = job_of_step.get(n)
                && from != to
                && !jobs[to].needs.contains(&from)
            {
                jobs[to].needs.push(from);
            }
        }
    }
    layer(&mut jobs, plan.is_empty());
    jobs
}

/// Each job one layer below the deepest it needs (the needs are acyclic: the manifest was
/// checked); without a plan, one job per layer.
fn layer(jobs: &mut [Job], unknown: bool) {
    if unknown {
        for (i, j) in jobs.iter_mut().enumerate() {
            j.layer = i;
        }
        return;
    }
    // At most one pass per job: the longest chain of needs has that many links.
    for _ in 0..jobs.len() {
        let mut moved = false;
        for i in 0..jobs.len() {
            let want = jobs[i]
                .needs
                .iter()
                .map(|&n| jobs[n].layer + 1)
                .max()
                .unwrap_or(0);
            if want > jobs[i].layer {
                jobs[i].layer = want;
                moved = true;
            }
        }
        if !moved {
            break;
        }
    }
}

fn draw(jobs: &[Job]) -> String {
    let layers = jobs.iter().map(|j| j.layer + 1).max().unwrap_or(1);
    let box_w = |j: &Job| j.members.len().clamp(1, MAX_SHOWN) * (W + PAD) + PAD;
    let box_h = HEAD + H + 2 * PAD;
    // Each job's top-left corner: layers top to bottom, jobs of a layer left to right, a layer
    // wider than WRAP going on in a row below (40 independent agents make a grid, not a strip);
    // each row centred.
    let mut at = vec![(0, 0); jobs.len()];
    let mut rows: Vec<(Vec<usize>, usize)> = Vec::new();
    let mut layer_bottom = vec![0; layers];
    let mut y = GAP;
    for (l, bottom) in layer_bottom.iter_mut().enumerate() {
        let mut x = GAP;
        rows.push((Vec::new(), 0));
        for (i, j) in jobs.iter().enumerate().filter(|(_, j)| j.layer == l) {
            if x > GAP && x + box_w(j) > WRAP {
                (x, y) = (GAP, y + box_h + GAP);
                rows.push((Vec::new(), 0));
            }
            at[i] = (x, y);
            x += box_w(j) + GAP;
            let row = rows.last_mut().expect("a row");
            row.0.push(i);
            row.1 = x;
        }
        *bottom = y + box_h;
        y += box_h + LAYER_GAP;
    }
    let width = rows.iter().map(|r| r.1).max().unwrap_or(GAP);
    for (members, row_width) in &rows {
        for &i in members {
            at[i].0 += (width - row_width) / 2;
        }
    }
    let height = y - LAYER_GAP + GAP;
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}"><defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#9ca3af"/></marker></defs>"##
    );
    for (i, j) in jobs.iter().enumerate() {
        for &n in &j.needs {
            // From the bottom of the needed job's layer, below its column (a line through the
            // layer's lower rows would read as a need between them), to the job.
            let fx = at[n].0 + box_w(&jobs[n]) / 2;
            let fy = layer_bottom[jobs[n].layer];
            let (tx, ty) = (at[i].0 + box_w(j) / 2, at[i].1);
            let mid = (fy + ty) / 2;
            svg.push_str(&format!(
                r#"<path class="need" d="M {fx} {fy} C {fx} {mid}, {tx} {mid}, {tx} {ty}" marker-end="url(#arrow)"/>"#
            ));
        }
    }
    for (i, j) in jobs.iter().enumerate() {
        let (x, y) = at[i];
        svg.push_str(&format!(
            r#"<g class="job" data-job="{}">"#,
            escape(&j.name)
        ));
        // A job of one step named as the job is that step's box alone, as tall as a job's.
        if let [m] = &j.members[..]
            && m.label == j.name
        {
            let short: String = m.label.chars().take(20).collect();
            svg.push_str(&step_box(m, &short, (x, y), (box_w(j), box_h)));
            svg.push_str("</g>");
            continue;
        }
        svg.push_str(&format!(
            r#"<rect class="job" x="{x}" y="{y}" width="{w}" height="{box_h}" rx="8"/><text class="job" x="{tx}" y="{ty}">{name}{count}</text>"#,
            name = escape(&j.name),
            count = if j.members.len() > 1 { format!(" ×{}", j.members.len()) } else { String::new() },
            w = box_w(j),
            tx = x + PAD + 2,
            ty = y + HEAD - 4,
        ));
        for (col, m) in j.members.iter().enumerate().take(MAX_SHOWN) {
            let label = if col == MAX_SHOWN - 1 && j.members.len() > MAX_SHOWN {
                format!("+{} more", j.members.len() - col)
            } else {
                m.label.chars().take(20).collect()
            };
            let corner = (x + PAD + col * (W + PAD), y + HEAD + PAD);
            svg.push_str(&step_box(m, &label, corner, (W, H)));
        }
        svg.push_str("</g>");
    }
    svg.push_str("</svg>");
    svg
}

/// A step's box: coloured by its status (a class the live script changes), named `label`.
fn step_box(m: &Member, label: &str, (x, y): (usize, usize), (w, h): (usize, usize)) -> String {
    let step = m
        .row
        .map(|r| format!(r#" data-step="{r}""#))
        .unwrap_or_default();
    format!(
        r#"<g class="step {status}" data-label="{data_label}"{step}><title>{title}</title><rect x="{x}" y="{y}" width="{w}" height="{h}" rx="6"/><text x="{lx}" y="{ly}">{label}</text></g>"#,
        status = escape(m.status),
        data_label = escape(m.label),
        title = escape(&format!("{}: {}", m.label, m.status)),
        lx = x + 8,
        ly = y + h / 2 + 4,
        label = escape(label),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(step: usize, label: &str, job: &str, needs: &[usize]) -> GraphStep {
        GraphStep {
            step,
            label: label.into(),
            job: job.into(),
            needs: needs.to_vec(),
        }
    }

    fn ran(label: &str, status: &str) -> StepView {
        StepView {
            label: label.into(),
            status: status.into(),
            ..StepView::default()
        }
    }

    #[test]
    fn jobs_are_layered_by_what_they_need_and_a_fan_out_shows_its_instances() {
        // plan → implement (fans out) → review; lint needs nothing; report needs review and lint.
        let plan = [
            g(0, "plan", "plan", &[]),
            g(1, "implement", "implement", &[0]),
            g(2, "review", "review", &[1]),
            g(3, "lint", "lint", &[]),
            g(4, "report", "report", &[2, 3]),
        ];
        let steps = [
            ran("plan", "completed"),
            ran("implement", "completed"),
            ran("implement[a]", "completed"),
            ran("implement[b]", "running"),
            ran("lint", "failed"),
        ];
        let jobs = jobs(&plan, &steps);
        let of = |name: &str| jobs.iter().find(|j| j.name == name).expect(name);
        let layers: Vec<usize> = ["plan", "implement", "review", "lint", "report"]
            .iter()
            .map(|n| of(n).layer)
            .collect();
        assert_eq!(layers, [0, 1, 2, 0, 3]);
        let members: Vec<(&str, &str, Option<usize>)> = of("implement")
            .members
            .iter()
            .map(|m| (m.label, m.status, m.row))
            .collect();
        assert_eq!(
            members,
            [
                ("implement[a]", "completed", Some(2)),
                ("implement[b]", "running", Some(3))
            ]
        );
        assert_eq!(of("review").members[0].status, "pending");
        assert_eq!(of("report").needs.len(), 2);
        let svg = svg(&plan, &steps);
        assert_eq!(svg.matches("<path class=\"need\"").count(), 4);
        assert!(svg.contains(">implement ×2</text>"), "{svg}");
        assert!(
            svg.contains(r#"<g class="step running" data-label="implement[b]" data-step="3">"#)
        );
    }

    #[test]
    fn without_a_plan_each_job_has_its_layer_and_names_are_escaped() {
        let steps = [
            ran("a<b>", "completed"),
            ran("c [1/2]", "running"),
            ran("c [2/2]", "pending"),
        ];
        let jobs = jobs(&[], &steps);
        assert_eq!(jobs.iter().map(|j| j.layer).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(jobs[1].members.len(), 2);
        let svg = svg(&[], &steps);
        assert!(!svg.contains("a<b>") && svg.contains("a&lt;b&gt;"));
        assert!(!svg.contains("class=\"need\""));
    }

    #[test]
    fn forty_independent_jobs_make_a_grid_no_wider_than_the_wrap() {
        let plan: Vec<GraphStep> = (0..40)
            .map(|i| g(i, &format!("agent{i}"), &format!("agent{i}"), &[]))
            .collect();
        let svg = svg(&plan, &[]);
        let width: usize = svg["<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"".len()..]
            .split('"')
            .next()
            .and_then(|w| w.parse().ok())
            .expect("a width");
        assert!(width <= WRAP + GAP, "{width}");
        assert_eq!(svg.matches("<g class=\"step pending\"").count(), 40);
    }

    #[test]
    fn a_big_fan_out_shows_eight_boxes_the_last_counting_the_rest() {
        let steps: Vec<StepView> = (0..10)
            .map(|i| ran(&format!("x[{i}]"), "completed"))
            .collect();
        let svg = svg(&[], &steps);
        assert_eq!(svg.matches("<g class=\"step").count(), 8);
        assert!(
            svg.contains(">+3 more</text>") && svg.contains(">x ×10</text>"),
            "{svg}"
        );
    }
}
