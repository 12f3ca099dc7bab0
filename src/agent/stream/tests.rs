//! Unit tests of the stream-json parser, fed real Claude Code 2.1.331 lines.

use super::*;

const TWO_BLOCKS: &str = include_str!(
    "../../../tests/fixtures/claude-code-2.1.331/tool-use-two-blocks-one-message.jsonl"
);
const RETRY_529: &str =
    include_str!("../../../tests/fixtures/claude-code-2.1.331/api-error-529-after-retries.jsonl");

fn events(transcript: &str) -> Vec<StreamEvent<'_>> {
    transcript
        .lines()
        .filter_map(|l| parse_line(l.as_bytes()))
        .collect()
}

#[test]
fn parses_init_assistant_user_and_result() {
    let evs = events(TWO_BLOCKS);
    assert_eq!(evs.len(), 6);
    assert_eq!(
        evs[0],
        StreamEvent::Init {
            session_id: "ec06e02c-3400-4686-a7ed-441a5faac63e".into(),
            model: Some("claude-opus-5-5".into()),
        }
    );
    let StreamEvent::Assistant {
        message_id,
        model,
        usage,
        tool_uses,
        text,
        ..
    } = &evs[1]
    else {
        panic!("not assistant: {:?}", evs[1]);
    };
    assert_eq!(message_id, "msg_01b1352fc73dd4456c81c809");
    assert_eq!(model, "claude-opus-5-5");
    assert_eq!(
        *usage,
        TokenCounts {
            input: 3,
            output: 1,
            cache_read: 0,
            cache_creation: 12000,
            cache_creation_5m: 10000,
            cache_creation_1h: 2000,
        }
    );
    assert!(tool_uses.is_empty());
    assert_eq!(text.as_deref(), Some("I'll list the files."));
    let StreamEvent::Assistant {
        tool_uses,
        tool_use_ids,
        text,
        ..
    } = &evs[2]
    else {
        panic!("not assistant: {:?}", evs[2]);
    };
    assert_eq!(tool_uses, &["Bash"]);
    assert_eq!(tool_use_ids, &["toolu_0142bed2ecabe344fa930ad0"]);
    assert_eq!(*text, None);
    assert_eq!(evs[3], StreamEvent::User);
    let StreamEvent::Result {
        is_error,
        subtype,
        total_cost_usd,
        usage,
        model_usage,
        num_turns,
        ..
    } = &evs[5]
    else {
        panic!("not result: {:?}", evs[5]);
    };
    assert!(!is_error);
    assert_eq!(subtype, "success");
    assert_eq!(*total_cost_usd, 0.071324);
    assert_eq!(usage.output, 69);
    assert_eq!(*num_turns, Some(2));
    let opus = &model_usage["claude-opus-5-5"];
    assert_eq!(opus.cost_usd, 0.071324);
    assert_eq!(opus.tokens.cache_creation_5m, 10300);
    assert_eq!(opus.tokens.cache_creation_1h, 2000);
    assert_eq!(opus.tokens.total(), 11 + 69 + 12000 + 12300);
}

#[test]
fn parses_api_retries_and_an_error_result_with_success_subtype() {
    let evs = events(RETRY_529);
    assert_eq!(
        evs[1],
        StreamEvent::ApiRetry {
            attempt: 1,
            error_status: Some(529),
            error: Some("overloaded".into()),
            retry_delay_ms: Some(530),
        }
    );
    let StreamEvent::Assistant { model, .. } = &evs[3] else {
        panic!("{:?}", evs[3])
    };
    assert_eq!(model, "<synthetic>");
    let StreamEvent::Result {
        is_error,
        subtype,
        model_usage,
        api_error_status,
        ..
    } = &evs[4]
    else {
        panic!("{:?}", evs[4])
    };
    assert!(is_error);
    assert_eq!(subtype, "success");
    assert!(model_usage.is_empty());
    assert_eq!(*api_error_status, Some(529));
}

#[test]
fn rate_limit_events_in_both_shapes() {
    let nested = br#"{"type":"rate_limit_event","rate_limit_info":{"status":"allowed_warning","resetsAt":1771390800,"rateLimitType":"five_hour","utilization":0.91,"isUsingOverage":false},"session_id":"s"}"#;
    assert_eq!(
        parse_line(nested),
        Some(StreamEvent::RateLimit {
            status: "allowed_warning".into(),
            resets_at: Some(1771390800),
            rate_limit_type: Some("five_hour".into()),
            utilization: Some(0.91),
        })
    );
    let flat = br#"{"type":"rate_limit_event","status":"rejected","resetsAt":1771390800000}"#;
    let Some(StreamEvent::RateLimit {
        status, resets_at, ..
    }) = parse_line(flat)
    else {
        panic!("flat shape not parsed");
    };
    assert_eq!((status.as_str(), resets_at), ("rejected", Some(1771390800)));
    let iso = br#"{"type":"rate_limit_event","rate_limit_info":{"status":"allowed","resetsAt":"2026-02-18T05:00:00Z"}}"#;
    let Some(StreamEvent::RateLimit { resets_at, .. }) = parse_line(iso) else {
        panic!()
    };
    assert_eq!(resets_at, Some(1771390800));
}

#[test]
fn garbage_gives_none_and_unknown_gives_other() {
    for line in [
        &b""[..],
        b"   \r\n",
        b"not json",
        b"\xff\xfe\x80garbage",
        b"{\"type\":\"assistant\"",
        b"[1,2,3]",
        b"{\"type\":\"result\",\"subtype\":\"\xff\"}",
    ] {
        assert_eq!(
            parse_line(line),
            None,
            "{:?}",
            String::from_utf8_lossy(line)
        );
    }
    for line in [
        &br#"{"type":"stream_event","event":{"type":"content_block_delta"}}"#[..],
        br#"{"type":"system","subtype":"compact_boundary"}"#,
        br#"{"no_type":true}"#,
        br#"{"type":"assistant","message":"not an object"}"#,
        // Invalid UTF-8 inside a skipped field is skipped with it.
        b"{\"type\":\"user\",\"junk\":\"\xff\"}",
    ] {
        assert!(matches!(
            parse_line(line),
            Some(StreamEvent::Other | StreamEvent::User)
        ));
    }
    // A line that is not UTF-8 as a whole is still read: only its broken string is skipped.
    let line = b"{\"type\":\"assistant\",\"junk\":\"\xff\",\"message\":{\"id\":\"m1\",\"model\":\"m\",\"usage\":{\"input_tokens\":3}}}";
    assert!(matches!(
        parse_line(line),
        Some(StreamEvent::Assistant {
            usage: TokenCounts { input: 3, .. },
            ..
        })
    ));
}

/// Every line of every recorded transcript, and a few edge shapes.
fn all_fixture_lines() -> Vec<String> {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/claude-code-2.1.331");
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("fixtures") {
        let text = std::fs::read_to_string(entry.expect("fixture").path()).expect("fixture");
        lines.extend(text.lines().map(str::to_owned));
    }
    lines
}

#[test]
fn an_assistant_line_read_for_its_message_gives_what_the_whole_line_gives() {
    let mut lines: Vec<String> = all_fixture_lines()
        .into_iter()
        .filter(|l| l.starts_with(r#"{"type":"assistant","#))
        .collect();
    assert!(lines.len() >= 10, "{} assistant lines", lines.len());
    lines.extend([
        r#"{"type":"assistant","message":"not an object"}"#.to_owned(),
        r#"{"type":"assistant","parent_tool_use_id":"toolu_1","message":{"id":"m","model":"x","usage":{"input_tokens":1e400},"content":[{"type":"text","text":"a\nb"}]}}"#.to_owned(),
        r#"{"type":"assistant","type":"result"}"#.to_owned(),
        r#"{"type":"assistant","message":{"id":"m"},"message":{"id":"n"}}"#.to_owned(),
    ]);
    for line in &lines {
        let whole = read::<raw::RawLine>(line.as_bytes()).map(raw::RawLine::into_event);
        let message =
            read::<raw::RawAssistantLine>(line.as_bytes()).map(raw::RawAssistantLine::into_event);
        assert_eq!(message, whole, "{line}");
    }
}

#[test]
fn a_user_line_is_not_read() {
    for line in all_fixture_lines()
        .iter()
        .filter(|l| l.starts_with(r#"{"type":"user","#))
    {
        assert_eq!(
            parse_line(line.as_bytes()),
            Some(StreamEvent::User),
            "{line}"
        );
    }
    // Nothing of a user line is read, so nothing in it can be wrong.
    assert_eq!(
        parse_line(br#"{"type":"user","message":{"usage":{"input_tokens":5}},"#),
        Some(StreamEvent::User)
    );
    // Only Claude Code's own spelling, type first, is skipped; any other goes through the parser.
    assert_eq!(parse_line(br#"{"type": "user""#), None);
    assert_eq!(
        parse_line(br#"{"uuid":"u","type":"user"}"#),
        Some(StreamEvent::User)
    );
}

#[test]
fn fields_of_unexpected_type_do_not_lose_the_line() {
    let line = br#"{"type":"assistant","error":{"nested":[1]},"message":{"id":"m1","model":"claude-haiku-4-5","usage":{"input_tokens":"5","output_tokens":2.0,"cache_creation":"odd"},"content":"plain string"}}"#;
    let Some(StreamEvent::Assistant {
        message_id,
        usage,
        tool_uses,
        ..
    }) = parse_line(line)
    else {
        panic!("assistant line lost");
    };
    assert_eq!(message_id, "m1");
    assert_eq!(
        (usage.input, usage.output, usage.cache_creation_5m),
        (5, 2, 0)
    );
    assert!(tool_uses.is_empty());
    let result = br#"{"type":"result","subtype":"error_max_turns","total_cost_usd":null,"modelUsage":[],"errors":["a",1,"b"]}"#;
    let Some(StreamEvent::Result {
        is_error,
        total_cost_usd,
        errors,
        ..
    }) = parse_line(result)
    else {
        panic!("result lost");
    };
    assert!(is_error, "missing is_error falls back to the subtype");
    assert_eq!(total_cost_usd, 0.0);
    assert_eq!(errors, ["a", "b"]);
}

#[test]
fn long_text_is_truncated_on_a_char_boundary() {
    let text = "é".repeat(DISPLAY_TEXT_MAX);
    let line = format!(
        r#"{{"type":"assistant","message":{{"id":"m","model":"x","content":[{{"type":"text","text":"{text}"}}]}}}}"#
    );
    let Some(StreamEvent::Assistant { text: Some(t), .. }) = parse_line(line.as_bytes()) else {
        panic!("no text");
    };
    assert!(t.len() <= DISPLAY_TEXT_MAX && t.len() >= DISPLAY_TEXT_MAX - 1);
    assert!(t.chars().all(|c| c == 'é'));
    assert!(matches!(t, Cow::Borrowed(_)), "no escape, no copy");
    // Written with escapes, the text is decoded into its own string, cut the same way.
    let line = line.replacen("é", "\\u00e9", 1);
    let Some(StreamEvent::Assistant { text: Some(t), .. }) = parse_line(line.as_bytes()) else {
        panic!("no text");
    };
    assert!(matches!(t, Cow::Owned(_)));
    assert!(t.len() <= DISPLAY_TEXT_MAX && t.len() >= DISPLAY_TEXT_MAX - 1);
    assert!(t.chars().all(|c| c == 'é'));
}

#[test]
fn an_assistant_line_borrows_its_strings_and_an_overflowing_one_owns_them() {
    let line = TWO_BLOCKS.lines().nth(1).expect("an assistant line");
    let Some(StreamEvent::Assistant {
        message_id, model, ..
    }) = parse_line(line.as_bytes())
    else {
        panic!("not assistant");
    };
    assert!(matches!(message_id, Cow::Borrowed(_)) && matches!(model, Cow::Borrowed(_)));
    // A number beyond f64 sends the line through the quoting path, whose event outlives it.
    let line = br#"{"type":"assistant","message":{"id":"m1","model":"x","usage":{"input_tokens":1e400,"output_tokens":2},"content":[{"type":"tool_use","id":"t1","name":"Bash"}]}}"#;
    let Some(StreamEvent::Assistant {
        message_id,
        usage,
        tool_uses,
        tool_use_ids,
        anomalies,
        ..
    }) = parse_line(line)
    else {
        panic!("not assistant");
    };
    assert!(matches!(message_id, Cow::Owned(_)));
    assert_eq!((message_id.as_ref(), usage.output), ("m1", 2));
    assert_eq!(
        (tool_uses, tool_use_ids),
        (vec!["Bash".into()], vec!["t1".into()])
    );
    assert_eq!(anomalies.len(), 1, "{anomalies:?}");
}

#[test]
fn token_count_arithmetic_saturates() {
    let a = TokenCounts {
        input: 5,
        output: 1,
        ..TokenCounts::default()
    };
    let b = TokenCounts {
        input: 7,
        output: 1,
        cache_read: 3,
        ..TokenCounts::default()
    };
    assert_eq!(a.saturating_sub(&b), TokenCounts::default());
    let mut c = a;
    c.add(&b);
    assert_eq!(c.total(), 12 + 2 + 3);
}

fn result_of(line: &str) -> (TokenCounts, f64, BTreeMap<String, ModelUsage>, Vec<Anomaly>) {
    match parse_line(line.as_bytes()) {
        Some(StreamEvent::Result {
            usage,
            total_cost_usd,
            model_usage,
            anomalies,
            ..
        }) => (usage, total_cost_usd, model_usage, anomalies),
        other => panic!("not a result: {other:?} from {line}"),
    }
}

#[test]
fn token_counts_above_the_cap_are_counted_at_the_cap_with_an_anomaly() {
    // 10^19 fits a u64 but not an i64; 10^20 fits neither (serde reads it as a float).
    let line = r#"{"type":"assistant","message":{"id":"m","model":"x","usage":{"input_tokens":10000000000000000000,"output_tokens":100000000000000000000,"cache_read_input_tokens":1000000000000,"cache_creation_input_tokens":7}}}"#;
    let Some(StreamEvent::Assistant {
        usage, anomalies, ..
    }) = parse_line(line.as_bytes())
    else {
        panic!("assistant line lost");
    };
    assert_eq!(
        (
            usage.input,
            usage.output,
            usage.cache_read,
            usage.cache_creation
        ),
        (TOKEN_CAP, TOKEN_CAP, TOKEN_CAP, 7),
        "at the cap itself is not an anomaly; above it is counted at it"
    );
    let fields: Vec<&str> = anomalies.iter().map(|a| a.field.as_str()).collect();
    assert_eq!(
        fields,
        ["message.usage.input_tokens", "message.usage.output_tokens"]
    );
    assert_eq!(
        anomalies[0].to_string(),
        "message.usage.input_tokens = 10000000000000000000 is above the cap of 10^12 tokens; \
         counted as 1000000000000"
    );
}

#[test]
fn negative_fractional_and_garbage_counts_are_anomalies() {
    let line = r#"{"type":"result","subtype":"success","is_error":false,"usage":{"input_tokens":-5,"output_tokens":2.5,"cache_read_input_tokens":"lots","cache_creation_input_tokens":{"n":1}},"modelUsage":{"m":{"inputTokens":"inf","outputTokens":"3","costUSD":0.25}},"total_cost_usd":0.25}"#;
    let (usage, cost, models, anomalies) = result_of(line);
    assert_eq!(
        (
            usage.input,
            usage.output,
            usage.cache_read,
            usage.cache_creation
        ),
        (0, 2, 0, 0)
    );
    assert_eq!(
        (models["m"].tokens.input, models["m"].tokens.output),
        (TOKEN_CAP, 3),
        "an infinite count is above the cap"
    );
    assert_eq!(cost, 0.25);
    let problems: Vec<(&str, &str)> = anomalies
        .iter()
        .map(|a| (a.field.as_str(), a.problem.as_str()))
        .collect();
    assert_eq!(
        problems,
        [
            ("usage.input_tokens", "is negative"),
            ("usage.output_tokens", "is not a whole number"),
            ("usage.cache_read_input_tokens", "is not a number"),
            ("usage.cache_creation_input_tokens", "is not a number"),
            (
                "modelUsage.m.inputTokens",
                "is above the cap of 10^12 tokens"
            ),
        ]
    );
}

#[test]
fn non_finite_and_negative_costs_are_rejected_with_an_anomaly() {
    for (written, problem) in [
        (r#""inf""#, "is not finite"),
        (r#""-Infinity""#, "is not finite"),
        (r#""NaN""#, "is not a number"),
        ("1e309", "is not finite"),
        ("-1e309", "is not finite"),
        ("-1", "is negative"),
        ("-0.5", "is negative"),
        ("true", "is not a number"),
    ] {
        let line = format!(
            r#"{{"type":"result","subtype":"success","is_error":false,"result":"ok","total_cost_usd":{written},"usage":{{"input_tokens":10,"output_tokens":5}},"modelUsage":{{"m":{{"inputTokens":10,"outputTokens":5,"costUSD":{written}}},"n":{{"outputTokens":1,"costUSD":0.125}}}}}}"#
        );
        let Some(StreamEvent::Result {
            is_error,
            result_text,
            total_cost_usd,
            usage,
            model_usage,
            anomalies,
            ..
        }) = parse_line(line.as_bytes())
        else {
            panic!("{written}: the result line was lost");
        };
        // The rest of the line is read: the verdict, the text, the usage.
        assert!(!is_error, "{written}");
        assert_eq!(result_text.as_deref(), Some("ok"), "{written}");
        assert_eq!((usage.input, usage.output), (10, 5), "{written}");
        assert_eq!(model_usage["m"].cost_usd, 0.0, "{written}");
        // The total falls back to the models' accepted costs.
        assert_eq!(total_cost_usd, 0.125, "{written}");
        let seen: Vec<(&str, &str)> = anomalies
            .iter()
            .map(|a| (a.field.as_str(), a.problem.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                ("modelUsage.m.costUSD", problem),
                ("total_cost_usd", problem)
            ],
            "{written}"
        );
    }
}

#[test]
fn costs_above_the_cap_are_counted_at_it_and_ordinary_ones_untouched() {
    let (_, cost, _, anomalies) =
        result_of(r#"{"type":"result","subtype":"success","total_cost_usd":5e9,"modelUsage":{}}"#);
    assert_eq!(cost, COST_CAP_USD);
    assert_eq!(anomalies.len(), 1);
    let (_, cost, _, anomalies) = result_of(
        r#"{"type":"result","subtype":"success","total_cost_usd":"0.5","modelUsage":{}}"#,
    );
    assert_eq!((cost, anomalies.len()), (0.5, 0));
}

#[test]
fn extreme_rate_limit_figures_neither_panic_nor_pass_non_finite_values() {
    let line = br#"{"type":"rate_limit_event","rate_limit_info":{"status":"allowed","resetsAt":-9223372036854775808,"utilization":"NaN"}}"#;
    let Some(StreamEvent::RateLimit {
        resets_at,
        utilization,
        ..
    }) = parse_line(line)
    else {
        panic!("rate limit line lost");
    };
    assert_eq!(resets_at, Some(i64::MIN / 1000));
    assert_eq!(utilization, None);
}

/// The result line Claude Code 2.1.331 wrote for `--json-schema` after the model called its
/// `StructuredOutput` tool with `{"tasks":["alpha","beta"]}` (captured against the suite's mock).
const STRUCTURED_RESULT: &str = r#"{"duration_api_ms":43,"stop_reason":"tool_use","session_id":"2d3e5c08-5b7c-4d73-b4db-6100db6e632f","total_cost_usd":0.000212,"usage":{"input_tokens":3,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":10,"output_tokens_details":{"thinking_tokens":0},"server_tool_use":{"web_search_requests":0,"web_fetch_requests":0},"service_tier":"standard","cache_creation":{"ephemeral_1h_input_tokens":0,"ephemeral_5m_input_tokens":0},"inference_geo":"","iterations":[],"speed":"standard","fallback_credit":null},"modelUsage":{"claude-opus-5-5":{"inputTokens":3,"outputTokens":10,"cacheReadInputTokens":0,"cacheCreationInputTokens":0,"webSearchRequests":0,"costUSD":0.000212,"contextWindow":1000000,"maxOutputTokens":128000,"thinkingTokens":0,"cacheCreationEphemeral5mInputTokens":0,"cacheCreationEphemeral1hInputTokens":0,"canonicalModel":"claude-opus-5-5","provider":"firstParty","costBasis":"list"}},"permission_denials":[],"terminal_reason":"completed","fast_mode_state":"off","fast_mode_disabled_reason":"sdk_opt_in_required","subagent_stats":{"spawned":0,"requested":{"background":0,"foreground":0,"unset":0},"started_in_background":0,"max_depth":0,"spawned_by_subagents":0,"completed":0,"failed":0,"killed":{"parent":0,"user":0,"system":0},"refused":{"depth_limit":0,"concurrency_limit":0,"budget":0},"by_type":{}},"safety_stops":0,"is_error":false,"num_turns":2,"subtype":"success","api_error_status":null,"result":"{\"tasks\":[\"alpha\",\"beta\"]}","structured_output":{"tasks":["alpha","beta"]},"ttft_ms":108,"type":"result","duration_ms":137,"uuid":"d9b86ff9-805e-45f5-afb4-7428abdb1c4e","ttft_stream_ms":107,"time_to_request_ms":95,"first_content_frame_ms":107,"queued_turn_count":0,"result_index":0,"model_usage_since_last_result":{"claude-opus-5-5":{"inputTokens":3,"outputTokens":10,"cacheReadInputTokens":0,"cacheCreationInputTokens":0,"webSearchRequests":0,"costUSD":0.000212,"contextWindow":1000000,"maxOutputTokens":128000,"thinkingTokens":0,"cacheCreationEphemeral5mInputTokens":0,"cacheCreationEphemeral1hInputTokens":0,"canonicalModel":"claude-opus-5-5","provider":"firstParty","costBasis":"list"}}}"#;

/// The same CLI's result after five `StructuredOutput` calls that did not match the schema.
const STRUCTURED_RETRIES_EXHAUSTED: &str = r#"{"is_error":true,"duration_api_ms":106,"num_turns":6,"stop_reason":"tool_use","session_id":"b2983a28-36e6-4f46-a363-4badaeae9fee","total_cost_usd":0.00106,"usage":{"input_tokens":12,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":40,"output_tokens_details":{"thinking_tokens":0},"server_tool_use":{"web_search_requests":0,"web_fetch_requests":0},"service_tier":"standard","cache_creation":{"ephemeral_1h_input_tokens":0,"ephemeral_5m_input_tokens":0},"inference_geo":"","iterations":[],"speed":"standard","fallback_credit":null},"modelUsage":{"claude-opus-5-5":{"inputTokens":15,"outputTokens":50,"cacheReadInputTokens":0,"cacheCreationInputTokens":0,"webSearchRequests":0,"costUSD":0.00106,"contextWindow":1000000,"maxOutputTokens":128000,"thinkingTokens":0,"cacheCreationEphemeral5mInputTokens":0,"cacheCreationEphemeral1hInputTokens":0,"canonicalModel":"claude-opus-5-5","provider":"firstParty","costBasis":"list"}},"permission_denials":[],"terminal_reason":"structured_output_retry_exhausted","fast_mode_state":"off","fast_mode_disabled_reason":"sdk_opt_in_required","subagent_stats":{"spawned":0,"requested":{"background":0,"foreground":0,"unset":0},"started_in_background":0,"max_depth":0,"spawned_by_subagents":0,"completed":0,"failed":0,"killed":{"parent":0,"user":0,"system":0},"refused":{"depth_limit":0,"concurrency_limit":0,"budget":0},"by_type":{}},"safety_stops":0,"subtype":"error_max_structured_output_retries","errors":["Failed to provide valid structured output after 5 attempts — last StructuredOutput error: Output does not match required schema: /tasks/0: must be string"],"type":"result","duration_ms":381,"uuid":"a174090a-c178-4189-b385-e690528dd340","queued_turn_count":0,"result_index":0,"model_usage_since_last_result":{"claude-opus-5-5":{"inputTokens":15,"outputTokens":50,"cacheReadInputTokens":0,"cacheCreationInputTokens":0,"webSearchRequests":0,"costUSD":0.00106,"contextWindow":1000000,"maxOutputTokens":128000,"thinkingTokens":0,"cacheCreationEphemeral5mInputTokens":0,"cacheCreationEphemeral1hInputTokens":0,"canonicalModel":"claude-opus-5-5","provider":"firstParty","costBasis":"list"}}}"#;

#[test]
fn a_result_carries_the_structured_output_of_json_schema() {
    let Some(StreamEvent::Result {
        is_error,
        subtype,
        result_text,
        structured_output,
        ..
    }) = parse_line(STRUCTURED_RESULT.as_bytes())
    else {
        panic!("not a result");
    };
    assert!(!is_error);
    assert_eq!(subtype, "success");
    assert_eq!(
        structured_output,
        Some(serde_json::json!({ "tasks": ["alpha", "beta"] }))
    );
    // With nothing said after the tool call, the CLI's `result` text is the answer as JSON.
    assert_eq!(
        result_text.as_deref(),
        Some(r#"{"tasks":["alpha","beta"]}"#)
    );
}

#[test]
fn a_result_without_structured_output_or_with_null_has_none() {
    let Some(StreamEvent::Result {
        is_error,
        subtype,
        errors,
        structured_output,
        ..
    }) = parse_line(STRUCTURED_RETRIES_EXHAUSTED.as_bytes())
    else {
        panic!("not a result");
    };
    assert!(is_error);
    assert_eq!(subtype, "error_max_structured_output_retries");
    assert!(errors[0].contains("/tasks/0: must be string"), "{errors:?}");
    assert_eq!(structured_output, None);
    let null = STRUCTURED_RESULT.replace(
        r#""structured_output":{"tasks":["alpha","beta"]}"#,
        r#""structured_output":null"#,
    );
    assert_ne!(null, STRUCTURED_RESULT);
    let Some(StreamEvent::Result {
        structured_output, ..
    }) = parse_line(null.as_bytes())
    else {
        panic!("not a result");
    };
    assert_eq!(structured_output, None);
}

#[test]
fn structured_output_of_any_shape_is_kept_as_written() {
    for answer in [
        r#""just text""#,
        "[1,2,3]",
        "42",
        r#"{"a":{"b":[true,null]}}"#,
    ] {
        let line = format!(
            r#"{{"type":"result","subtype":"success","is_error":false,"structured_output":{answer}}}"#
        );
        let Some(StreamEvent::Result {
            structured_output, ..
        }) = parse_line(line.as_bytes())
        else {
            panic!("not a result: {line}");
        };
        let expected: serde_json::Value = serde_json::from_str(answer).unwrap();
        assert_eq!(structured_output, Some(expected), "{line}");
    }
}
