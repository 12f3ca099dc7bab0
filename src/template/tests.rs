use std::collections::HashMap;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

/// Values looked up by a reference's canonical text.
struct Map(HashMap<String, Value>);

impl Map {
    fn of(pairs: &[(&str, Value)]) -> Map {
        Map(pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect())
    }
}

impl Values for Map {
    fn get(&self, r: &Reference) -> Result<Value, String> {
        self.0
            .get(&r.to_string())
            .cloned()
            .ok_or_else(|| "the job has not completed".to_string())
    }
}

fn refs(text: &str) -> Vec<(Reference, Range<usize>)> {
    parse(text)
        .expect("parses")
        .references()
        .map(|(r, s)| (r.clone(), s))
        .collect()
}

fn one(text: &str) -> Reference {
    let r = refs(text);
    assert_eq!(r.len(), 1, "{text}");
    r[0].0.clone()
}

fn errors(text: &str) -> Vec<Error> {
    parse(text).expect_err("has mistakes")
}

fn error(text: &str) -> Error {
    let e = errors(text);
    assert_eq!(e.len(), 1, "{text}: {e:?}");
    e[0].clone()
}

fn key(k: &str) -> PathSeg {
    PathSeg::Key(k.to_string())
}

#[test]
fn every_reference_form_parses() {
    assert_eq!(
        one("${{ jobs.plan.outputs.structured.tasks[0].title }}"),
        Reference::Output {
            job: "plan".into(),
            key: "structured".into(),
            path: vec![key("tasks"), PathSeg::Index(0), key("title")],
        }
    );
    assert_eq!(
        one("${{jobs.frontend-tests.status}}"),
        Reference::Status {
            job: "frontend-tests".into()
        }
    );
    assert_eq!(
        one("${{ matrix.target }}"),
        Reference::Matrix {
            key: "target".into()
        }
    );
    assert_eq!(one("${{ item }}"), Reference::Item { path: vec![] });
    assert_eq!(
        one("${{ item.title }}"),
        Reference::Item {
            path: vec![key("title")]
        }
    );
    assert_eq!(
        one("${{ item[0] }}"),
        Reference::Item {
            path: vec![PathSeg::Index(0)]
        }
    );
    assert_eq!(
        one("${{ env.HOME }}"),
        Reference::Env {
            name: "HOME".into()
        }
    );
    assert_eq!(one("${{ run.id }}"), Reference::RunId);
    assert_eq!(one("${{ run.started_at }}"), Reference::RunStartedAt);
}

#[test]
fn job_and_path_accessors() {
    let r = one("${{ jobs.plan.outputs.structured.tasks[1] }}");
    assert_eq!(r.job(), Some("plan"));
    assert_eq!(r.path(), [key("tasks"), PathSeg::Index(1)]);
    let r = one("${{ jobs.x.status }}");
    assert_eq!((r.job(), r.path()), (Some("x"), &[][..]));
    let r = one("${{ item.id }}");
    assert_eq!((r.job(), r.path()), (None, &[key("id")][..]));
    assert_eq!(one("${{ env.X }}").job(), None);
}

#[test]
fn quoted_names_and_keys() {
    assert_eq!(
        one(r#"${{ jobs["my job"].outputs["key with spaces"][ 2 ]['it\'s'] }}"#),
        Reference::Output {
            job: "my job".into(),
            key: "key with spaces".into(),
            path: vec![PathSeg::Index(2), key("it's")],
        }
    );
    assert_eq!(
        one("${{ jobs['a.b'].status }}"),
        Reference::Status { job: "a.b".into() }
    );
    // A `}}` inside a quoted key does not close the hole.
    assert_eq!(
        one(r#"${{ item["a}}b"] }}"#),
        Reference::Item {
            path: vec![key("a}}b")]
        }
    );
}

#[test]
fn spans_cover_the_reference_inside_the_hole() {
    let text = "echo ${{ jobs.a.status }} and ${{item}}";
    let r = refs(text);
    assert_eq!(&text[r[0].1.clone()], "jobs.a.status");
    assert_eq!(&text[r[1].1.clone()], "item");
}

#[test]
fn display_is_canonical() {
    for (text, canonical) in [
        (
            "jobs.plan.outputs.structured.tasks[0].title",
            "jobs.plan.outputs.structured.tasks[0].title",
        ),
        (r#"jobs['my job'].status"#, r#"jobs["my job"].status"#),
        (
            r#"jobs.a.outputs["x y"]["q\"\\"][3]"#,
            r#"jobs.a.outputs["x y"]["q\"\\"][3]"#,
        ),
        (r#"item["plain"]"#, "item.plain"),
        (r#"env["A B"]"#, r#"env["A B"]"#),
        ("matrix.kind", "matrix.kind"),
        ("run.id", "run.id"),
        ("run.started_at", "run.started_at"),
    ] {
        let r = one(&format!("${{{{ {text} }}}}"));
        assert_eq!(r.to_string(), canonical);
        assert_eq!(one(&format!("${{{{ {canonical} }}}}")), r);
    }
}

#[test]
fn escapes_and_plain_dollars() {
    let t = parse("cost: $5 {x} $${{ not a hole }} }} $").expect("parses");
    assert!(t.is_literal());
    let out = render(&t, &Map::of(&[]), Mode::Shell).expect("renders");
    assert_eq!(out, "cost: $5 {x} ${{ not a hole }} }} $");
    // `$$${{` is a `$` and the escape.
    let t = parse("$$${{").expect("parses");
    assert_eq!(render(&t, &Map::of(&[]), Mode::Plain).unwrap(), "$${{");
    // An escape next to a real hole.
    let text = "$${{ x }} ${{ run.id }}";
    assert_eq!(refs(text).len(), 1);
}

#[test]
fn single_is_one_hole_with_whitespace_around() {
    let single = |t: &str| parse(t).unwrap().single().cloned();
    assert_eq!(
        single("  ${{ jobs.plan.outputs.structured.tasks }}\n"),
        Some(Reference::Output {
            job: "plan".into(),
            key: "structured".into(),
            path: vec![key("tasks")]
        })
    );
    assert_eq!(single("x ${{ item }}"), None);
    assert_eq!(single("${{ item }}${{ item }}"), None);
    assert_eq!(single("plain"), None);
    assert_eq!(single(""), None);
}

#[test]
fn unclosed_hole_spans_to_the_end() {
    let text = "echo ${{ jobs.a.status";
    let e = error(text);
    assert_eq!(e.message, "this `${{` is not closed");
    assert_eq!(e.span, 5..text.len());
    assert_eq!(e.help, "close it with `}}`");
    // A second `${{` before any `}}`: the first is unclosed up to it, the second still parses.
    let text = "${{ item ${{ run.id }}";
    let e = error(text);
    assert_eq!(e.span, 0..9);
    // An apostrophe outside brackets opens no quote: the next hole still parses.
    let e = errors("${{ it's }} ${{ run.id }} ${{ jobs[\"x}} y\"].status }}");
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].message, "`it` is not a reference");
    // A quote after `[` that never closes: the first `}}` closes, the string is reported.
    let e = error("${{ item['a }} b");
    assert_eq!(e.message, "this string is not closed");
}

#[test]
fn empty_hole() {
    let e = error("a ${{  }} b");
    assert_eq!(e.message, "this `${{ }}` is empty");
    assert_eq!(e.span, 2..9);
    assert!(e.help.contains("jobs.NAME.outputs.result"), "{}", e.help);
}

#[test]
fn unknown_root_with_did_you_mean() {
    let text = "${{ jbos.a.status }}";
    let e = error(text);
    assert_eq!(e.message, "`jbos` is not a reference");
    assert_eq!(&text[e.span.clone()], "jbos");
    assert_eq!(
        e.help,
        "did you mean `jobs`? references start with jobs., matrix., item, env. or run."
    );
    let e = error("${{ foo }}");
    assert_eq!(
        e.help,
        "references start with jobs., matrix., item, env. or run."
    );
    let e = error("${{ .x }}");
    assert_eq!(e.message, "expected a reference, found `.`");
}

#[test]
fn jobs_needs_outputs_or_status() {
    for text in ["${{ jobs.x }}", "${{ jobs.x.result }}"] {
        let e = error(text);
        assert_eq!(
            e.message,
            "`jobs.NAME` must be followed by `.outputs.KEY` or `.status`"
        );
        assert!(e.help.contains("`.outputs.KEY`"), "{}", e.help);
    }
    let e = error("${{ jobs.x.output.result }}");
    assert!(e.help.starts_with("did you mean `outputs`?"), "{}", e.help);
    let e = error("${{ jobs.x.outputs }}");
    assert_eq!(e.message, "expected `.` and an output key");
    let e = error("${{ jobs }}");
    assert_eq!(e.message, "expected `.` and a job name");
}

#[test]
fn run_has_id_and_started_at() {
    let text = "${{ run.other }}";
    let e = error(text);
    assert_eq!(e.message, "`run.other` is not a reference");
    assert_eq!(&text[e.span.clone()], "run.other");
    let e = error("${{ run.startedat }}");
    assert!(
        e.help.starts_with("did you mean `run.started_at`?"),
        "{}",
        e.help
    );
    let e = error("${{ run }}");
    assert_eq!(
        e.message,
        "`run` must be followed by `.id` or `.started_at`"
    );
}

#[test]
fn bad_paths() {
    let e = error("${{ item[x] }}");
    assert_eq!(e.message, "expected an index or a quoted key inside `[ ]`");
    let text = "${{ item[-1] }}";
    let e = error(text);
    assert_eq!(
        e.message,
        "`-1` is not an index; indexes count from 0 at the start"
    );
    assert_eq!(&text[e.span.clone()], "-1");
    let e = error("${{ item.tasks. }}");
    assert_eq!(e.message, "`.` must be followed by a key");
    let e = error("${{ item[0 }}");
    assert_eq!(e.message, "this `[` is not closed");
    assert_eq!(e.help, "close it with `]`");
    let e = error("${{ item[99999999999999999999999] }}");
    assert!(e.message.contains("is too large"), "{}", e.message);
    let e = error(r#"${{ item["abc] }}"#);
    assert_eq!(e.message, "this string is not closed");
    let e = error(r#"${{ item["a\n"] }}"#);
    assert_eq!(e.message, r"unknown escape `\n` in a string");
    let e = error("${{ matrix[0] }}");
    assert_eq!(
        e.message,
        "expected a matrix key as a quoted string inside `[ ]`"
    );
}

#[test]
fn paths_only_where_they_belong() {
    for (text, reference) in [
        ("${{ matrix.os.name }}", "matrix.os"),
        ("${{ jobs.a.status[0] }}", "jobs.a.status"),
        ("${{ env.HOME.x }}", "env.HOME"),
        ("${{ run.id.x }}", "run.id"),
    ] {
        let e = error(text);
        assert_eq!(e.message, format!("`{reference}` takes no path"));
        assert_eq!(e.span.start, 4 + reference.len());
    }
}

#[test]
fn one_reference_per_hole() {
    let text = r#"${{ jobs.a.status == "failed" }}"#;
    let e = error(text);
    assert_eq!(
        e.message,
        r#"unexpected `== "failed"` after `jobs.a.status`"#
    );
    assert_eq!(&text[e.span.clone()], r#"== "failed""#);
    assert!(e.help.contains("`if`"));
}

#[test]
fn every_mistake_is_reported() {
    let text = "${{ foo }} ${{ }} ${{ run.x }} ${{ item[-2] }} ${{ jobs.ok.status }} ${{ item";
    let e = errors(text);
    let messages: Vec<&str> = e.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "`foo` is not a reference",
            "this `${{ }}` is empty",
            "`run.x` is not a reference",
            "`-2` is not an index; indexes count from 0 at the start",
            "this `${{` is not closed",
        ]
    );
    // Spans are in order and inside the text.
    assert!(e.windows(2).all(|w| w[0].span.end <= w[1].span.start));
    assert!(e.iter().all(|e| e.span.end <= text.len()));
}

#[test]
fn render_plain_values() {
    let values = Map::of(&[
        ("jobs.a.outputs.result", json!("hello")),
        ("jobs.a.outputs.n", json!(3)),
        ("jobs.a.outputs.f", json!(1.5)),
        ("jobs.a.outputs.b", json!(true)),
        ("jobs.a.outputs.z", json!(null)),
        ("jobs.a.outputs.list", json!(["x", 1])),
        ("jobs.a.outputs.obj", json!({"k": [1, 2], "a": "b"})),
    ]);
    let t = parse(
        "${{jobs.a.outputs.result}}|${{jobs.a.outputs.n}}|${{jobs.a.outputs.f}}|\
         ${{jobs.a.outputs.b}}|${{jobs.a.outputs.z}}|${{jobs.a.outputs.list}}|${{jobs.a.outputs.obj}}",
    )
    .unwrap();
    assert_eq!(
        render(&t, &values, Mode::Plain).unwrap(),
        r#"hello|3|1.5|true|null|["x",1]|{"a":"b","k":[1,2]}"#
    );
    assert_eq!(
        render(&t, &values, Mode::Shell).unwrap(),
        r#"'hello'|'3'|'1.5'|'true'|'null'|'["x",1]'|'{"a":"b","k":[1,2]}'"#
    );
}

#[test]
fn render_names_the_missing_reference() {
    let t = parse("x ${{ jobs.plan.outputs.result }}").unwrap();
    assert_eq!(
        render(&t, &Map::of(&[]), Mode::Plain).unwrap_err(),
        "`${{ jobs.plan.outputs.result }}`: the job has not completed"
    );
}

#[test]
fn render_refuses_nul() {
    let t = parse("${{ item }}").unwrap();
    let values = Map::of(&[("item", json!("a\u{0}b"))]);
    let e = render(&t, &values, Mode::Plain).unwrap_err();
    assert!(e.contains("NUL byte"), "{e}");
}

#[test]
fn shell_mode_quotes_only_the_holes() {
    let t = parse("echo \"$HOME\" ${{ item }} | tr a b").unwrap();
    let values = Map::of(&[("item", json!("it's $(rm -rf /)"))]);
    assert_eq!(
        render(&t, &values, Mode::Shell).unwrap(),
        r#"echo "$HOME" 'it'\''s $(rm -rf /)' | tr a b"#
    );
}

#[test]
fn shell_quote_examples() {
    assert_eq!(shell_quote("it's"), r"'it'\''s'");
    assert_eq!(shell_quote(""), "''");
    assert_eq!(shell_quote("plain"), "'plain'");
    assert_eq!(shell_quote("''"), r"''\'''\'''");
}

/// Runs `printf %s HOLE` through a real `sh -c` with `value` in the hole; returns stdout.
fn through_sh(value: &str) -> Vec<u8> {
    let t = parse("printf %s ${{ item }}").unwrap();
    let script = render(&t, &Map::of(&[("item", json!(value))]), Mode::Shell).unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("sh runs");
    assert!(out.status.success(), "{script}: {out:?}");
    out.stdout
}

#[test]
fn hostile_values_survive_a_real_shell() {
    for value in [
        "",
        "'",
        "''",
        "it's",
        "\"double\"",
        "$(echo pwned)",
        "`echo pwned`",
        "${HOME}",
        "a\nb\n",
        "back\\slash\\",
        "\\'",
        "tab\tand space  ",
        "-n",
        "%s %d",
        "; echo pwned #",
        "ünïcødé ✓ 🦀",
        "*",
        "~",
    ] {
        assert_eq!(through_sh(value), value.as_bytes(), "{value:?}");
    }
}

#[test]
fn quoted_context_finds_holes_inside_quotes() {
    let at = |script: &str| {
        let i = script.find("${{").expect("a hole");
        quoted_context(script, i)
    };
    assert!(!at("echo ${{ item }}"));
    assert!(at("echo \"${{ item }}\""));
    assert!(at("echo 'x ${{ item }}'"));
    assert!(!at("echo 'x' ${{ item }}"));
    assert!(!at(r#"echo \"${{ item }}"#));
    assert!(at(r#"echo "a \" ${{ item }}""#));
    // A backslash inside single quotes escapes nothing.
    assert!(!at(r#"echo 'a\' ${{ item }}"#));
    // Quotes on an earlier line do not count.
    assert!(!at("echo \"a\necho ${{ item }}"));
    // A comment ends the scan.
    assert!(!at("# it's ${{ item }}"));
    assert!(!at("echo x # it's ${{ item }}"));
    // Earlier holes, whatever their quoting, are skipped whole.
    let script = r#"echo ${{ jobs["it's"].status }} ${{ item }}"#;
    let i = script.rfind("${{").unwrap();
    assert!(!quoted_context(script, i));
    // An offset inside a hole is judged by where the hole starts.
    let script = "echo \"${{ item }}\"";
    assert!(quoted_context(script, script.find("item").unwrap()));
    // Past the end is clamped.
    assert!(quoted_context("echo 'open", 1000));
}

#[test]
fn walk_follows_paths() {
    let v = json!({"tasks": [{"id": 1, "title": "a"}, {"id": 2, "title": "b"}]});
    let p = vec![key("tasks"), PathSeg::Index(1), key("title")];
    assert_eq!(walk(&v, &p).unwrap(), &json!("b"));
    assert_eq!(walk(&v, &[]).unwrap(), &v);
}

#[test]
fn walk_errors_say_what_is_there() {
    let v = json!({"tasks": [{"id": 1, "title": "a"}, {"id": 2, "title": "b"}], "n": 3});
    let e = |p: Vec<PathSeg>| walk(&v, &p).unwrap_err();
    assert_eq!(
        e(vec![key("tasks"), PathSeg::Index(5)]),
        "`tasks` has 2 items, [5] is past the end"
    );
    assert_eq!(
        e(vec![key("tasks"), PathSeg::Index(0), key("titel")]),
        "`tasks[0]` has no key `titel`; its keys are: id, title (did you mean `title`?)"
    );
    assert_eq!(
        e(vec![key("plan")]),
        "the value has no key `plan`; its keys are: n, tasks"
    );
    assert_eq!(
        e(vec![key("tasks"), key("x")]),
        "`tasks` is an array of 2 items, not an object: it has no key `x`; index it like [0]"
    );
    assert_eq!(
        e(vec![PathSeg::Index(0)]),
        "the value is an object, not an array: it has no [0]; its keys are: n, tasks"
    );
    assert_eq!(
        e(vec![key("n"), key("x")]),
        "`n` is a number, it has no key `x`"
    );
    assert_eq!(
        walk(&json!([]), &[PathSeg::Index(0)]).unwrap_err(),
        "the value has 0 items, [0] is past the end"
    );
    assert_eq!(
        walk(&json!(["a"]), &[PathSeg::Index(1)]).unwrap_err(),
        "the value has 1 item, [1] is past the end"
    );
    assert_eq!(
        walk(&json!({"a b": {}}), &[key("a b"), key("c")]).unwrap_err(),
        "`[\"a b\"]` has no key `c`; it has no keys"
    );
}

fn allows(schema: &Value, path: &str) -> Result<(), String> {
    let Reference::Item { path } = one(&format!("${{{{ item{path} }}}}")) else {
        unreachable!()
    };
    schema_allows(schema, &path)
}

#[test]
fn schema_properties_and_items() {
    let schema = json!({
        "type": "object",
        "properties": {
            "tasks": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"id": {"type": "integer"}, "title": {"type": "string"}},
                    "required": ["id", "title"],
                    "additionalProperties": false
                }
            },
            "meta": {"type": "object", "additionalProperties": {"type": "string"}},
            "free": {"type": "object", "properties": {"a": {}}, "additionalProperties": true},
            "anything": {}
        }
    });
    assert_eq!(allows(&schema, ""), Ok(()));
    assert_eq!(allows(&schema, ".tasks[3].title"), Ok(()));
    assert_eq!(allows(&schema, ".meta.whatever"), Ok(()));
    assert_eq!(allows(&schema, ".free.b.c[0]"), Ok(()));
    assert_eq!(allows(&schema, ".anything[0].x.y"), Ok(()));
    assert_eq!(
        allows(&schema, ".tasks[0].titel"),
        Err(
            "`tasks[0]`: the schema has no property `titel`; its properties are: id, title \
             (did you mean `title`?)"
                .into()
        )
    );
    assert_eq!(
        allows(&schema, ".tasks[0].title[0]"),
        Err("`tasks[0].title`: the schema says this is a string, which has no [0]".into())
    );
    assert_eq!(
        allows(&schema, ".tasks.x"),
        Err("`tasks`: the schema says this is an array, which has no key `x`".into())
    );
    assert_eq!(
        allows(&schema, ".meta.x.y"),
        Err("`meta.x`: the schema says this is a string, which has no key `y`".into())
    );
    // Properties without `additionalProperties`: closed (a documented choice).
    assert!(allows(&json!({"properties": {"a": {}}}), ".b").is_err());
    assert!(allows(&json!({"additionalProperties": false}), ".b").is_err());
    // No properties, or patternProperties: any key.
    assert_eq!(allows(&json!({"type": "object"}), ".b"), Ok(()));
    assert_eq!(
        allows(
            &json!({"properties": {"a": {}}, "patternProperties": {"^x": {}}}),
            ".b"
        ),
        Ok(())
    );
    assert_eq!(
        allows(&json!({"type": ["string", "null"]}), ".a"),
        Err("the value: the schema says this is a string or null, which has no key `a`".into())
    );
}

#[test]
fn schema_tuples_and_limits() {
    let tuple = json!({"type": "array", "prefixItems": [{"type": "string"}, {"type": "object"}],
                       "items": false});
    assert_eq!(allows(&tuple, "[1].x"), Ok(()));
    assert!(allows(&tuple, "[0].x").is_err());
    assert_eq!(
        allows(&tuple, "[2]"),
        Err("the value: the schema allows 2 items, so [2] is never there".into())
    );
    let draft7 = json!({"items": [{"type": "number"}], "additionalItems": {"type": "string"}});
    assert!(allows(&draft7, "[0].x").is_err());
    assert!(allows(&draft7, "[5][0]").is_err());
    assert_eq!(
        allows(&json!({"type": "array", "maxItems": 2}), "[2]"),
        Err("the value: the schema allows at most 2 items, so [2] is never there".into())
    );
    assert_eq!(
        allows(&json!({"type": "array", "maxItems": 2}), "[1]"),
        Ok(())
    );
    assert!(allows(&json!({"type": "integer"}), "[0]").is_err());
}

#[test]
fn schema_combinators_refs_and_booleans() {
    let schema = json!({
        "$defs": {
            "task": {"type": "object", "properties": {"title": {"type": "string"}},
                     "additionalProperties": false},
            "node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/node"},
                                                     "name": {"type": "string"}}}
        },
        "definitions": {"old": {"type": "array", "items": {"$ref": "#/$defs/task"}}},
        "type": "object",
        "properties": {
            "one": {"$ref": "#/$defs/task"},
            "list": {"$ref": "#/definitions/old"},
            "either": {"anyOf": [{"type": "string"}, {"$ref": "#/$defs/task"}]},
            "oneof": {"oneOf": [{"type": "string"}, {"type": "number"}]},
            "all": {"allOf": [{"properties": {"a": {}}}, {"properties": {"b": {}}}]},
            "tree": {"$ref": "#/$defs/node"},
            "loop": {"$ref": "#/properties/loop"},
            "remote": {"$ref": "https://example.com/schema.json"},
            "never": false,
            "always": true
        }
    });
    assert_eq!(allows(&schema, ".one.title"), Ok(()));
    assert!(allows(&schema, ".one.x").is_err());
    assert_eq!(allows(&schema, ".list[4].title"), Ok(()));
    assert!(allows(&schema, ".list[4].nope").is_err());
    assert_eq!(allows(&schema, ".either.title"), Ok(()));
    assert!(allows(&schema, ".either.nope").is_err());
    assert!(allows(&schema, ".oneof.x").is_err());
    assert_eq!(allows(&schema, ".all.a"), Ok(()));
    assert_eq!(allows(&schema, ".all.b"), Ok(()));
    assert!(allows(&schema, ".all.c").is_err());
    assert_eq!(allows(&schema, ".tree.child.child.child.name"), Ok(()));
    assert!(allows(&schema, ".tree.child.child.nam").is_err());
    assert_eq!(allows(&schema, ".loop.x[0]"), Ok(()));
    assert_eq!(allows(&schema, ".remote.x"), Ok(()));
    assert_eq!(allows(&schema, ".always.x"), Ok(()));
    assert_eq!(
        allows(&schema, ".never.x"),
        Err("`never`: the schema allows nothing there".into())
    );
    assert_eq!(allows(&json!(true), ".x[0]"), Ok(()));
    assert_eq!(allows(&json!({}), ".x[0]"), Ok(()));
}

/// Strings built from the characters that matter to the template grammar.
fn grammar_soup() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("${{".to_string()),
            Just("$${{".to_string()),
            Just("}}".to_string()),
            Just("jobs".to_string()),
            Just(".outputs".to_string()),
            Just(".status".to_string()),
            Just("item".to_string()),
            Just("run.".to_string()),
            Just("[".to_string()),
            Just("]".to_string()),
            Just("\"".to_string()),
            Just("'".to_string()),
            Just("\\".to_string()),
            Just(".".to_string()),
            Just("-1".to_string()),
            Just("0".to_string()),
            Just(" ".to_string()),
            Just("é".to_string()),
            "[a-z]{1,3}".prop_map(|s| s),
        ],
        0..24,
    )
    .prop_map(|parts| parts.concat())
}

/// Any reference, with names that need quoting now and then.
fn any_reference() -> impl Strategy<Value = Reference> {
    let name = prop_oneof!["[A-Za-z0-9_-]{1,6}", any::<String>()];
    let seg = prop_oneof![
        name.clone().prop_map(PathSeg::Key),
        (0usize..1000).prop_map(PathSeg::Index)
    ];
    let path = proptest::collection::vec(seg, 0..4);
    prop_oneof![
        (name.clone(), name.clone(), path.clone()).prop_map(|(job, key, path)| Reference::Output {
            job,
            key,
            path
        }),
        name.clone().prop_map(|job| Reference::Status { job }),
        name.clone().prop_map(|key| Reference::Matrix { key }),
        path.prop_map(|path| Reference::Item { path }),
        name.prop_map(|name| Reference::Env { name }),
        Just(Reference::RunId),
        Just(Reference::RunStartedAt),
    ]
}

proptest! {
    #[test]
    fn parse_never_panics(text in any::<String>()) {
        let _ = parse(&text);
        let _ = quoted_context(&text, text.len() / 2);
    }

    #[test]
    fn parse_never_panics_on_grammar_soup(text in grammar_soup()) {
        match parse(&text) {
            Ok(t) => {
                for (_, span) in t.references() {
                    prop_assert!(span.end <= text.len());
                }
            }
            Err(errors) => {
                for e in errors {
                    prop_assert!(e.span.start <= e.span.end && e.span.end <= text.len());
                    prop_assert!(text.get(e.span.clone()).is_some(), "span on a char boundary");
                }
            }
        }
        for at in 0..=text.len() {
            let _ = quoted_context(&text, at);
        }
    }

    #[test]
    fn display_parses_back(r in any_reference()) {
        let text = format!("${{{{ {r} }}}}");
        let t = parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e:?}")))?;
        prop_assert_eq!(t.single(), Some(&r));
    }
}

proptest! {
    // Each case spawns a shell: few cases.
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn shell_mode_is_byte_exact_through_sh(
        value in proptest::collection::vec(
            prop_oneof![
                Just("'".to_string()), Just("\"".to_string()), Just("\\".to_string()),
                Just("$(".to_string()), Just(")".to_string()), Just("`".to_string()),
                Just("\n".to_string()), Just("$".to_string()), Just(" ".to_string()),
                Just("*".to_string()), Just(";".to_string()), Just("&".to_string()),
                "[^\\x00]{0,4}",
            ],
            0..16,
        ).prop_map(|parts| parts.concat())
    ) {
        prop_assert_eq!(through_sh(&value), value.as_bytes());
    }
}
