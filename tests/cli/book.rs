//! The book's links: every relative link in `book/src` names a chapter that exists and, when it
//! has a `#fragment`, a heading of that chapter (mdBook itself does not check either).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use super::harness::root;

/// The chapters' text, by file name.
fn chapters() -> BTreeMap<String, String> {
    let dir = root().join("book/src");
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

/// Lines outside fenced code blocks.
fn prose(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            out.push(line);
        }
    }
    out
}

/// A line without its inline code spans (a link shown as code is not a link).
fn without_code(line: &str) -> String {
    line.split('`').step_by(2).collect()
}

/// The targets of `[text](target)` links in a line.
fn links(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("](") {
        let after = &rest[i + 2..];
        let Some(end) = after.find(')') else { break };
        out.push(after[..end].trim());
        rest = &after[end..];
    }
    out
}

/// mdBook's heading ids: lower case, spaces to `-`, other punctuation dropped; repeats get `-1`,
/// `-2`, ...
fn heading_ids(text: &str) -> HashSet<String> {
    let mut ids = HashSet::new();
    for line in prose(text) {
        let Some(title) = line.strip_prefix('#').map(|t| t.trim_start_matches('#')) else {
            continue;
        };
        let title = title.replace('`', "");
        // Link text stays, its target goes: "[The plan](plan.md)" reads "The plan".
        let mut plain = String::new();
        let mut skipping = false;
        let mut prev = ' ';
        for c in title.trim().chars() {
            match c {
                '(' if prev == ']' => skipping = true,
                ')' if skipping => skipping = false,
                _ if skipping => {}
                '[' | ']' => {}
                _ => plain.push(c),
            }
            prev = c;
        }
        let id: String = plain
            .chars()
            .filter_map(|c| match c {
                c if c.is_alphanumeric() || c == '_' || c == '-' => Some(c.to_ascii_lowercase()),
                c if c.is_whitespace() => Some('-'),
                _ => None,
            })
            .collect();
        let mut unique = id.clone();
        let mut n = 1;
        while !ids.insert(unique.clone()) {
            unique = format!("{id}-{n}");
            n += 1;
        }
    }
    ids
}

#[test]
fn every_relative_link_in_the_book_resolves() {
    let chapters = chapters();
    let ids: BTreeMap<&str, HashSet<String>> = chapters
        .iter()
        .map(|(name, text)| (name.as_str(), heading_ids(text)))
        .collect();
    let mut broken = Vec::new();
    let mut checked = 0;
    for (name, text) in &chapters {
        for line in prose(text) {
            let line = without_code(line);
            for target in links(&line) {
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                checked += 1;
                let (file, fragment) = target.split_once('#').unwrap_or((target, ""));
                let file = if file.is_empty() { name.as_str() } else { file };
                // An image (`images/x.png`) must be a file of the book's sources.
                if file.starts_with("images/") {
                    if !root().join("book/src").join(file).is_file() {
                        broken.push(format!("{name}: `{target}`: no image {file}"));
                    }
                    continue;
                }
                let exists = Path::new(file).components().count() == 1 && ids.contains_key(file);
                if !exists {
                    broken.push(format!("{name}: `{target}`: no chapter {file}"));
                } else if !fragment.is_empty() && !ids[file].contains(fragment) {
                    broken.push(format!(
                        "{name}: `{target}`: {file} has no heading #{fragment}"
                    ));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    assert!(checked >= 20, "only {checked} links found");
}

#[test]
fn every_chapter_is_in_the_summary() {
    let chapters = chapters();
    let summary: Vec<String> = prose(&chapters["SUMMARY.md"])
        .into_iter()
        .flat_map(|l| links(l).into_iter().map(String::from).collect::<Vec<_>>())
        .collect();
    for name in chapters.keys().filter(|n| *n != "SUMMARY.md") {
        assert!(summary.contains(name), "{name} is not in SUMMARY.md");
    }
}

#[test]
fn heading_ids_follow_mdbook() {
    let ids = heading_ids(
        "# Pre-commands, `clear_history` and `compact_history`\n## Editor completion: the `#:schema` line\n## Steps\n## Steps\n```\n# not a heading\n```\n",
    );
    for id in [
        "pre-commands-clear_history-and-compact_history",
        "editor-completion-the-schema-line",
        "steps",
        "steps-1",
    ] {
        assert!(ids.contains(id), "{id} in {ids:?}");
    }
    assert!(!ids.contains("not-a-heading"));
}
