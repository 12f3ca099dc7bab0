use std::collections::HashMap;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::template::{Error, PathSeg, Values};

/// Values looked up by a reference's canonical text.
struct Map(HashMap<String, Value>);

impl Values for Map {
    fn get(&self, r: &Reference) -> Result<Value, String> {
        self.0
            .get(&r.to_string())
            .cloned()
            .ok_or_else(|| "no value yet".to_string())
    }
}

fn values() -> Map {
    let pairs = [
        ("jobs.test.status", json!("failed")),
        ("jobs.build.status", json!("completed")),
        ("jobs.build.outputs.stdout", json!("ok: 3 warnings")),
        ("jobs.build.outputs.exit_code", json!(0)),
        ("jobs.plan.outputs.structured.count", json!(3)),
        ("jobs.plan.outputs.structured.tasks", json!(["a", "b", 1])),
        ("jobs.plan.outputs.structured.empty", json!([])),
        ("jobs.plan.outputs.structured.obj", json!({})),
        ("jobs.plan.outputs.structured.none", json!(null)),
        ("jobs.plan.outputs.structured.ratio", json!(0.5)),
        ("matrix.target", json!("frontend")),
        ("env.CI", json!("")),
    ];
    Map(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn holds(text: &str) -> bool {
    let c = parse(text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
    eval(&c, &values()).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn eval_err(text: &str) -> String {
    eval(&parse(text).expect("parses"), &values()).expect_err("fails")
}

fn error(text: &str) -> Error {
    let e = parse(text).expect_err("a mistake");
    assert_eq!(e.len(), 1);
    e[0].clone()
}

/// The loader's view in these tests: statuses are statuses, `n*` outputs numbers, `s*` strings,
/// `list*` arrays, `b*` booleans, everything else unknown.
fn type_of(r: &Reference) -> Type {
    match r {
        Reference::Status { .. } => Type::Status,
        Reference::Output { key, .. } if key.starts_with('n') => Type::Number,
        Reference::Output { key, .. } if key.starts_with('s') => Type::String,
        Reference::Output { key, .. } if key.starts_with("list") => Type::Array,
        Reference::Output { key, .. } if key.starts_with('b') => Type::Bool,
        _ => Type::Any,
    }
}

fn check_errors(text: &str) -> Vec<Error> {
    check(&parse(text).expect("parses"), &type_of)
}

fn check_error(text: &str) -> Error {
    let e = check_errors(text);
    assert_eq!(e.len(), 1, "{text}: {e:?}");
    e[0].clone()
}

#[test]
fn statuses_and_logic() {
    assert!(holds(r#"jobs.test.status == "failed""#));
    assert!(holds(r#"${{ jobs.test.status == 'failed' }}"#));
    assert!(holds(r#"  ${{jobs.test.status != "completed"}}  "#));
    assert!(holds(
        r#"jobs.test.status == "failed" && jobs.build.status == "completed""#
    ));
    assert!(!holds(r#"jobs.test.status == "completed" || false"#));
    assert!(holds(r#"!(jobs.test.status == "completed")"#));
    // `!` binds looser than a comparison.
    assert!(holds(r#"!jobs.test.status == "completed""#));
    // `&&` binds tighter than `||`.
    assert!(holds("true || false && false"));
    assert!(!holds("(true || false) && false"));
    assert!(holds("!!true"));
}

#[test]
fn truthiness_is_github_actions() {
    for falsy in [
        "false",
        "null",
        "0",
        "0.0",
        "-0",
        "''",
        "env.CI",
        "jobs.plan.outputs.structured.empty",
        "jobs.plan.outputs.structured.none",
        "jobs.build.outputs.exit_code",
    ] {
        assert!(!holds(falsy), "{falsy}");
    }
    for truthy in [
        "true",
        "1",
        "-2.5",
        "'x'",
        "'false'",
        "jobs.plan.outputs.structured.obj",
        "jobs.plan.outputs.structured.tasks",
        "matrix.target",
    ] {
        assert!(holds(truthy), "{truthy}");
    }
}

#[test]
fn equality_never_crosses_types() {
    assert!(!holds("jobs.build.outputs.exit_code == '0'"));
    assert!(holds("jobs.build.outputs.exit_code != '0'"));
    assert!(holds("jobs.build.outputs.exit_code == 0"));
    assert!(holds("jobs.build.outputs.exit_code == 0.0"));
    assert!(holds("1e2 == 100"));
    assert!(!holds("null == false"));
    assert!(holds("jobs.plan.outputs.structured.none == null"));
    assert!(!holds("true == 1"));
    assert!(holds("\"a\\\"b\" == 'a\"b'"));
}

#[test]
fn ordering() {
    assert!(holds("jobs.plan.outputs.structured.count > 2"));
    assert!(holds("jobs.plan.outputs.structured.count >= 3"));
    assert!(!holds("jobs.plan.outputs.structured.count < 3"));
    assert!(holds("jobs.plan.outputs.structured.count <= 3"));
    assert!(holds("jobs.plan.outputs.structured.ratio < 1"));
    assert!(holds("'apple' < 'banana'"));
    assert!(holds("-1 < 0"));
    assert_eq!(
        eval_err("matrix.target < 3"),
        "`<` compares two numbers or two strings, not a string and a number"
    );
    assert_eq!(
        eval_err("null >= 0"),
        "`>=` compares two numbers or two strings, not null and a number"
    );
}

#[test]
fn functions() {
    assert!(holds("contains(jobs.build.outputs.stdout, 'warning')"));
    assert!(!holds("contains(jobs.build.outputs.stdout, 'error')"));
    assert!(holds("contains(jobs.plan.outputs.structured.tasks, 'b')"));
    assert!(holds("contains(jobs.plan.outputs.structured.tasks, 1.0)"));
    assert!(!holds("contains(jobs.plan.outputs.structured.tasks, '1')"));
    assert!(holds("startsWith(matrix.target, 'front')"));
    assert!(holds("endsWith(matrix.target, 'end')"));
    assert!(!holds("endsWith(matrix.target, 'front')"));
    assert!(holds("length(jobs.plan.outputs.structured.tasks) == 3"));
    assert!(holds("length('ünï') == 3"));
    assert!(holds("length(jobs.plan.outputs.structured.empty) == 0"));
    assert!(holds("contains( 'abc' , 'b' ) && length ( 'x' ) == 1"));
    assert_eq!(
        eval_err("contains(jobs.plan.outputs.structured.count, 3)"),
        "`contains` looks in a string or an array, not in a number"
    );
    assert_eq!(
        eval_err("contains('abc', 1)"),
        "`contains` looks for a string in a string, not for a number"
    );
    assert_eq!(
        eval_err("startsWith(1, 'a')"),
        "`startsWith` takes two strings, not a number and a string"
    );
    assert_eq!(
        eval_err("length(null)"),
        "`length` counts a string's characters or an array's items, not null"
    );
}

#[test]
fn missing_values_are_named_and_short_circuit_skips_them() {
    assert_eq!(
        eval_err("jobs.gone.status == 'failed'"),
        "`jobs.gone.status`: no value yet"
    );
    assert!(holds("true || jobs.gone.status == 'failed'"));
    assert!(!holds("false && jobs.gone.status == 'failed'"));
}

#[test]
fn references_with_spans() {
    let text = r#"${{ jobs.a.status == "failed" || contains(item.tags, matrix.os) }}"#;
    let c = parse(text).unwrap();
    let refs: Vec<(String, &str)> = c
        .references()
        .into_iter()
        .map(|(r, s)| (r.to_string(), &text[s]))
        .collect();
    assert_eq!(
        refs,
        [
            ("jobs.a.status".to_string(), "jobs.a.status"),
            ("item.tags".to_string(), "item.tags"),
            ("matrix.os".to_string(), "matrix.os"),
        ]
    );
    let c = parse("item[0].x == 1").unwrap();
    assert_eq!(
        c.references()[0].0,
        &Reference::Item {
            path: vec![PathSeg::Index(0), PathSeg::Key("x".into())]
        }
    );
}

#[test]
fn hyphenated_names_are_names() {
    assert!(parse("jobs.frontend-tests.status == 'failed'").is_ok());
    // `true`/`false`/`null` only as whole words.
    let e = error("trueish == 1");
    assert_eq!(e.message, "`trueish` is not a reference");
}

#[test]
fn syntax_errors() {
    let e = error("");
    assert_eq!(e.message, "the condition is empty");
    let e = error("${{ }}");
    assert_eq!(e.message, "the condition is empty");
    let e = error("jobs.a.status ==");
    assert_eq!(e.message, "the condition ends where a value was expected");
    assert_eq!(e.span, 16..16);
    let text = "jobs.a.status = 'failed'";
    let e = error(text);
    assert_eq!(e.message, "`=` is not an operator");
    assert_eq!(e.help, "compare with `==`");
    assert_eq!(e.span, 14..15);
    let e = error("1 == 1 == 1");
    assert_eq!(e.message, "comparisons do not chain");
    let e = error("(true && false");
    assert_eq!(e.message, "this `(` is not closed");
    assert_eq!(e.span, 0..1);
    let e = error("true and false");
    assert_eq!(e.message, "unexpected `a` after the condition");
    assert_eq!(e.help, "write `&&` for and");
    assert_eq!(e.span, 5..8);
    let e = error("true & false");
    assert_eq!(e.help, "write `&&` for and");
    let e = error("true | false");
    assert_eq!(e.help, "write `||` for or");
    let e = error("'open");
    assert_eq!(e.message, "this string is not closed");
    assert_eq!(e.help, "close it with `'`");
    let e = error("- 1");
    assert_eq!(e.message, "`-` is not a number: a digit must follow `-`");
    let e = error("1e999 > 0");
    assert_eq!(e.message, "`1e999` is not a number: it is too large");
    let e = error("# == 1");
    assert_eq!(e.message, "unexpected `#` where a value was expected");
    let e = error("${{ jobs.a.status }} == 'failed'");
    assert_eq!(e.message, "unexpected `$` where a value was expected");
    assert_eq!(
        e.help,
        "write the whole condition inside one `${{ }}`, or without one"
    );
    let e = error("${{ true }} && ${{ false }}");
    assert_eq!(e.message, "unexpected `}` after the condition");
    assert_eq!(
        e.help,
        "write the whole condition inside one `${{ }}`, or without one"
    );
    let e = error("matrix.os.name == 'x'");
    assert_eq!(e.message, "`matrix.os` takes no path");
    let e = error("foo.bar == 1");
    assert_eq!(e.message, "`foo` is not a reference");
    let e = error("jobs.a.outcome == 'x'");
    assert_eq!(
        e.message,
        "`jobs.NAME` must be followed by `.outputs.KEY` or `.status`"
    );
}

#[test]
fn call_errors() {
    let e = error("contain(item, 'x')");
    assert_eq!(e.message, "`contain` is not a function");
    assert_eq!(
        e.help,
        "did you mean `contains`? the functions are contains, startsWith, endsWith, length"
    );
    let e = error("startswith(item, 'x')");
    assert!(
        e.help.starts_with("did you mean `startsWith`?"),
        "{}",
        e.help
    );
    let e = error("contains(item)");
    assert_eq!(e.message, "`contains` takes 2 arguments, not 1");
    assert_eq!(e.span, 0..14);
    let e = error("length()");
    assert_eq!(e.message, "`length` takes 1 argument, not 0");
    let e = error("length(item item)");
    assert_eq!(e.message, "expected `,` or `)` in the call of `length`");
}

#[test]
fn nesting_is_bounded() {
    let deep = format!("{}true{}", "(".repeat(65), ")".repeat(65));
    let e = error(&deep);
    assert_eq!(e.message, "the condition nests deeper than 64 levels");
    let ok = format!("{}true{}", "(".repeat(60), ")".repeat(60));
    assert!(holds(&ok));
    let e = error(&format!("{}true", "!".repeat(100)));
    assert_eq!(e.message, "the condition nests deeper than 64 levels");
    // Long chains are bounded too: their trees are deep.
    assert!(holds(&vec!["true"; 200].join(" && ")));
    let e = error(&vec!["true"; 5000].join(" && "));
    assert_eq!(
        e.message,
        "the condition holds more than 512 values and operators"
    );
}

#[test]
fn check_status_names() {
    let text = r#"jobs.x.status == "faild""#;
    let e = check_error(text);
    assert_eq!(e.message, r#""faild" is not a status"#);
    assert_eq!(&text[e.span.clone()], r#""faild""#);
    assert_eq!(
        e.help,
        "did you mean \"failed\"? a status is one of: pending, running, completed, failed, \
         skipped, blocked, budget_exceeded, timed_out, cancelled"
    );
    // Either side.
    let e = check_error(r#"'succeeded' != jobs.x.status"#);
    assert!(e.help.starts_with("a status is one of"), "{}", e.help);
    for ok in [
        "jobs.x.status == 'failed'",
        "jobs.x.status == 'budget_exceeded'",
        "jobs.x.status == jobs.y.status",
        "jobs.x.status == matrix.want",
        "jobs.x.status == jobs.a.outputs.sresult",
        "jobs.x.status != null",
        "contains(jobs.x.status, 'fail')",
        "startsWith(jobs.x.status, 'time')",
    ] {
        assert_eq!(check_errors(ok), [], "{ok}");
    }
}

#[test]
fn check_status_against_other_types() {
    let e = check_error("jobs.x.status == 1");
    assert_eq!(
        e.message,
        "`==` between a status and a number is always false"
    );
    assert!(e.help.starts_with("a status is a string, one of: pending"));
    let e = check_error("jobs.x.status != true");
    assert_eq!(
        e.message,
        "`!=` between a status and a boolean is always true"
    );
    let e = check_error("jobs.x.status < 'failed'");
    assert_eq!(e.message, "`<` cannot order a status");
    assert_eq!(
        e.help,
        "statuses are not ordered; compare them with `==` or `!=`"
    );
}

#[test]
fn check_mixed_types_and_orderings() {
    let text = "jobs.b.outputs.n == '0'";
    let e = check_error(text);
    assert_eq!(
        e.message,
        "`==` between a number and a string is always false"
    );
    assert_eq!(e.span, 0..text.len());
    assert!(e.help.contains("`0`, not `\"0\"`"));
    assert_eq!(
        check_error("jobs.b.outputs.n > 'x'").message,
        "`>` between a number and a string"
    );
    assert_eq!(
        check_error("jobs.b.outputs.b > 1").message,
        "`>` cannot order a boolean"
    );
    assert_eq!(
        check_error("jobs.b.outputs.list >= 1").message,
        "`>=` cannot order an array"
    );
    assert_eq!(check_error("null < 1").message, "`<` cannot order null");
    for ok in [
        "jobs.b.outputs.n > 2",
        "jobs.b.outputs.sname < 'm'",
        "jobs.b.outputs.other > 2",
        "jobs.b.outputs.other == 'x'",
        "jobs.b.outputs.n == null",
        "length(jobs.b.outputs.list) > 3",
        "length(jobs.b.outputs.sx) >= jobs.b.outputs.n",
        "jobs.b.outputs.btrue == false",
    ] {
        assert_eq!(check_errors(ok), [], "{ok}");
    }
}

#[test]
fn check_functions() {
    let text = "contains(jobs.b.outputs.n, 3)";
    let e = check_error(text);
    assert_eq!(e.message, "`contains` cannot look in a number");
    assert_eq!(&text[e.span.clone()], "jobs.b.outputs.n");
    assert_eq!(
        check_error("contains(true, 'x')").message,
        "`contains` cannot look in a boolean"
    );
    assert_eq!(
        check_error("contains(jobs.b.outputs.sout, 3)").message,
        "`contains` cannot look for a number in a string"
    );
    assert_eq!(
        check_error("startsWith(jobs.b.outputs.list, 'a')").message,
        "`startsWith` takes strings, not an array"
    );
    assert_eq!(
        check_error("endsWith('a', 1)").message,
        "`endsWith` takes strings, not a number"
    );
    assert_eq!(
        check_error("length(jobs.b.outputs.n)").message,
        "`length` cannot measure a number"
    );
    assert_eq!(
        check_error("length(1) > 0").message,
        "`length` cannot measure a number"
    );
    for ok in [
        "contains(jobs.b.outputs.list, 3)",
        "contains(jobs.b.outputs.any, 3)",
        "contains(jobs.b.outputs.sout, jobs.b.outputs.any)",
        "endsWith(jobs.b.outputs.any, 'x')",
    ] {
        assert_eq!(check_errors(ok), [], "{ok}");
    }
}

#[test]
fn check_collects_every_mistake() {
    let e = check_errors(
        "jobs.a.status == 'faild' || contains(jobs.b.outputs.n, 1) || jobs.b.outputs.n == 'x'",
    );
    assert_eq!(e.len(), 3, "{e:?}");
}

#[test]
fn any_passes_everything() {
    let any = |_: &Reference| Type::Any;
    for text in [
        "jobs.x.status == 'faild'",
        "contains(jobs.x.outputs.n, 1)",
        "item < 3",
        "item == 'x' && item > 3",
    ] {
        // Status references are `Any` here too: nothing is known.
        assert_eq!(check(&parse(text).unwrap(), &any), [], "{text}");
    }
}

#[test]
fn statuses_are_the_event_vocabulary() {
    assert_eq!(check::statuses().len(), 9);
    for s in check::statuses() {
        let v: crate::events::Status =
            serde_json::from_value(json!(s)).expect("a status name deserialises");
        assert_eq!(v.as_str(), s);
    }
}

/// Strings built from the tokens of the condition grammar.
fn token_soup() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("${{".to_string()),
            Just("}}".to_string()),
            Just("jobs.a.status".to_string()),
            Just("jobs.a.outputs.n[0]".to_string()),
            Just("item".to_string()),
            Just("==".to_string()),
            Just("!=".to_string()),
            Just("<=".to_string()),
            Just("<".to_string()),
            Just("=".to_string()),
            Just("!".to_string()),
            Just("&&".to_string()),
            Just("||".to_string()),
            Just("(".to_string()),
            Just(")".to_string()),
            Just(",".to_string()),
            Just("contains(".to_string()),
            Just("length(".to_string()),
            Just("'x'".to_string()),
            Just("\"".to_string()),
            Just("\\".to_string()),
            Just("-".to_string()),
            Just("1.5e3".to_string()),
            Just("true".to_string()),
            Just("null".to_string()),
            Just(" ".to_string()),
            Just("é".to_string()),
        ],
        0..20,
    )
    .prop_map(|parts| parts.concat())
}

/// Evaluates with every reference present (status `failed`, others `1`).
struct Everything;

impl Values for Everything {
    fn get(&self, r: &Reference) -> Result<Value, String> {
        Ok(match r {
            Reference::Status { .. } => json!("failed"),
            _ => json!(1),
        })
    }
}

proptest! {
    #[test]
    fn parse_never_panics(text in any::<String>()) {
        let _ = parse(&text);
    }

    #[test]
    fn parse_check_eval_never_panic_on_token_soup(text in token_soup()) {
        match parse(&text) {
            Ok(c) => {
                for (_, span) in c.references() {
                    prop_assert!(text.get(span).is_some());
                }
                for e in check(&c, &type_of) {
                    prop_assert!(text.get(e.span.clone()).is_some(), "{:?}", e);
                }
                let _ = eval(&c, &Everything);
            }
            Err(errors) => {
                for e in errors {
                    prop_assert!(text.get(e.span.clone()).is_some(), "{:?}", e);
                }
            }
        }
    }
}
