//! The stream-json parser alone, in MB/s: every line of the real Claude Code transcripts in
//! `tests/fixtures/`, parsed and accounted; the same for a tool-result-heavy stream whose `user`
//! lines carry large outputs (what long agent runs mostly write); and a long session's turns, the
//! assistant and user lines of one fixture repeated with fresh message and tool-use ids (what
//! `benches/zen.sh` replays, without its one init and one result line).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use orch::agent::accounting::Accounting;
use orch::agent::stream::parse_line;

const FIXTURES: &[&str] = &[
    include_str!("../tests/fixtures/claude-code-2.1.331/text-only.jsonl"),
    include_str!("../tests/fixtures/claude-code-2.1.331/tool-use-two-blocks-one-message.jsonl"),
    include_str!("../tests/fixtures/claude-code-2.1.331/error-max-turns.jsonl"),
    include_str!("../tests/fixtures/claude-code-2.1.331/error-max-budget-usd.jsonl"),
    include_str!("../tests/fixtures/claude-code-2.1.331/interrupted-by-sigint.jsonl"),
    include_str!("../tests/fixtures/claude-code-2.1.331/api-error-529-after-retries.jsonl"),
];

fn lines_of(texts: &[String]) -> Vec<Vec<u8>> {
    texts
        .iter()
        .flat_map(|t| t.lines().map(|l| l.as_bytes().to_vec()))
        .collect()
}

fn parse_all(lines: &[Vec<u8>]) -> usize {
    let mut accounting = Accounting::new(None);
    let mut n = 0;
    for line in lines {
        if let Some(event) = parse_line(line) {
            accounting.observe(&event);
            n += 1;
        }
    }
    n
}

fn bench(c: &mut Criterion) {
    let fixtures: Vec<String> = FIXTURES.iter().map(|s| s.to_string()).collect();
    let transcript = lines_of(&fixtures);
    // A tool result of 8 KiB, as Bash or Read return them, between the fixtures' own lines.
    let output = "x".repeat(8 << 10);
    let tool_result = format!(
        r#"{{"type":"user","message":{{"role":"user","content":[{{"tool_use_id":"toolu_1","type":"tool_result","content":"{output}","is_error":false}}]}},"parent_tool_use_id":null,"session_id":"s","uuid":"u","tool_use_result":{{"stdout":"{output}","stderr":"","interrupted":false}}}}"#
    );
    let mut heavy = Vec::new();
    for line in &transcript {
        heavy.push(line.clone());
        heavy.push(tool_result.as_bytes().to_vec());
    }
    let turns: Vec<Vec<u8>> = (0..500)
        .flat_map(|r| {
            let body = FIXTURES[1].lines().skip(1).take(4);
            body.map(move |l| {
                l.replace("msg_", &format!("msg_{r:06}"))
                    .replace("toolu_", &format!("toolu_{r:06}"))
                    .into_bytes()
            })
        })
        .collect();
    let mut group = c.benchmark_group("stream-parser");
    for (name, lines) in [
        ("fixtures", &transcript),
        ("tool-results", &heavy),
        ("turns", &turns),
    ] {
        let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_function(name, |b| b.iter(|| parse_all(lines)));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
