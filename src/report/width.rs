//! Display width: how many terminal columns a string takes (a CJK character or an emoji takes
//! two, a combining mark none), and the cutting, padding and fitting every human reporter does
//! by it, so that a wide character in a job name cannot shift a column.
//!
//! Owns measuring and cutting text that is already sanitized and not yet coloured: it never
//! sees escape sequences, never prints, and never decides what a line says.

use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// Columns `s` takes on a terminal.
pub fn width(s: &str) -> usize {
    UnicodeWidthStr::width(s)
}

/// The start of `s` that fits in `max` bytes, cut on a character boundary.
pub fn cut_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `s` cut to at most `max` columns, an ellipsis marking the cut.
pub fn clip(s: &str, max: usize) -> String {
    if width(s) <= max {
        return s.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = c.width().unwrap_or(0);
        if used + w > max - 1 {
            break;
        }
        used += w;
        out.push(c);
    }
    out.push('…');
    out
}

/// `s` cut from its start to at most `max` columns (for paths, whose end says the most).
pub fn clip_start(s: &str, max: usize) -> String {
    if width(s) <= max {
        return s.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let mut kept: Vec<char> = Vec::new();
    let mut used = 0;
    for c in s.chars().rev() {
        let w = c.width().unwrap_or(0);
        if used + w > max - 1 {
            break;
        }
        used += w;
        kept.push(c);
    }
    std::iter::once('…').chain(kept.into_iter().rev()).collect()
}

/// `s` cut to `w` columns and padded with spaces to exactly `w` on the right.
pub fn left(s: &str, w: usize) -> String {
    let s = clip_name(s, w);
    let pad = w.saturating_sub(width(&s));
    format!("{s}{}", " ".repeat(pad))
}

/// A name cut to `max` columns: a fan-out instance's name (`implement[task-12]`) keeps its key
/// and loses the middle (`implem…[task-12]`), so that the instances stay apart; anything else is
/// cut at the end, as [`clip`] does.
pub fn clip_name(s: &str, max: usize) -> String {
    if width(s) <= max {
        return s.to_string();
    }
    let Some(open) = s.strip_suffix(']').and_then(|body| body.rfind('[')) else {
        return clip(s, max);
    };
    let (base, key) = s.split_at(open);
    let key_w = width(key);
    // Room for at least two characters of the base and the ellipsis.
    if key_w + 3 > max {
        return clip(s, max);
    }
    let mut out = clip(base, max - key_w);
    if !out.ends_with('…') {
        out.push('…');
    }
    out.push_str(key);
    out
}

/// `s` cut to `w` columns and padded with spaces to exactly `w` on the left.
pub fn right(s: &str, w: usize) -> String {
    let s = clip(s, w);
    let pad = w.saturating_sub(width(&s));
    format!("{}{s}", " ".repeat(pad))
}

/// The parts that fit in `max` columns joined by `sep`, in order, leaving out whole parts
/// (never a part cut mid-word) from the first that does not fit.
pub fn fit_parts(parts: &[String], sep: &str, max: usize) -> String {
    let mut out = String::new();
    for p in parts {
        let add = if out.is_empty() {
            width(p)
        } else {
            width(sep) + width(p)
        };
        if width(&out) + add > max {
            break;
        }
        if !out.is_empty() {
            out.push_str(sep);
        }
        out.push_str(p);
    }
    out
}

/// `text` broken at spaces into lines of at most `max` columns (a word longer than a line is
/// cut).
pub fn wrap(text: &str, max: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        if !line.is_empty() && width(&line) + 1 + width(word) > max {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines.into_iter().map(|l| clip(&l, max)).collect()
}

/// `text` broken into lines of at most `max` columns, at spaces where it can and inside a word
/// longer than a line (a path) where it must: nothing is lost. Lines after the first are
/// indented by `indent` columns (within `max`).
pub fn wrap_all(text: &str, max: usize, indent: usize) -> Vec<String> {
    let indent = indent.min(max / 2);
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    let room = |lines: &Vec<String>| if lines.is_empty() { max } else { max - indent };
    for word in text.split(' ') {
        let sep = usize::from(!line.is_empty());
        if width(&line) + sep + width(word) <= room(&lines) {
            if sep == 1 {
                line.push(' ');
            }
            line.push_str(word);
            continue;
        }
        if !line.is_empty() && width(word) <= room(&lines) {
            lines.push(std::mem::take(&mut line));
            line.push_str(word);
            continue;
        }
        // A word too long for any line: fill this line, then go on on the next.
        if sep == 1 {
            line.push(' ');
        }
        for c in word.chars() {
            let w = c.width().unwrap_or(0);
            if width(&line) + w > room(&lines) {
                lines.push(std::mem::take(&mut line));
            }
            line.push(c);
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    let pad = " ".repeat(indent);
    lines
        .into_iter()
        .enumerate()
        .map(|(i, l)| if i == 0 { l } else { format!("{pad}{l}") })
        .collect()
}

/// A model name as the tight layouts show it: `claude-sonnet-4-5-20250929` → `sonnet-4-5`.
pub fn short_model(model: &str) -> String {
    let m = model.strip_prefix("claude-").unwrap_or(model);
    // A trailing `-YYYYMMDD` is the snapshot date.
    match m.rsplit_once('-') {
        Some((head, date)) if date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit()) => {
            head.to_string()
        }
        _ => m.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_cut_on_a_character_boundary() {
        assert_eq!(cut_bytes("abc", 10), "abc");
        // "é" is two bytes: a cut inside it keeps neither.
        assert_eq!(cut_bytes("aé", 2), "a");
        assert_eq!(cut_bytes("aé", 3), "aé");
        assert_eq!(cut_bytes("日本", 4), "日");
        assert_eq!(cut_bytes("x", 0), "");
    }

    #[test]
    fn wide_characters_count_two_columns() {
        assert_eq!(width("レビュー"), 8);
        assert_eq!(clip("レビュー", 5), "レビ…");
        assert_eq!(width(&clip("レビュー", 5)), 5);
        assert_eq!(left("レビ", 6), "レビ  ");
        assert_eq!(right("ab", 4), "  ab");
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip_start("a/b/c/results.json", 10), "…ults.json");
        assert_eq!(clip_name("job implement[task-12]", 16), "job im…[task-12]");
        assert_eq!(
            clip_name("plain-name-too-long", 10),
            clip("plain-name-too-long", 10)
        );
        assert_eq!(clip_name("short[1]", 20), "short[1]");
    }

    #[test]
    fn parts_are_left_out_whole() {
        let parts = ["42.0s", "2 running", "1 done", "18.5K tokens"].map(String::from);
        assert_eq!(fit_parts(&parts, " · ", 20), "42.0s · 2 running");
        assert_eq!(fit_parts(&parts, " · ", 100), parts.join(" · "));
    }

    #[test]
    fn text_wraps_at_spaces() {
        assert_eq!(
            wrap("3 completed, 0 failed of 3 jobs", 14),
            ["3 completed, 0", "failed of 3", "jobs"]
        );
        assert_eq!(short_model("claude-sonnet-4-5-20250929"), "sonnet-4-5");
        let all = wrap_all(
            "12:00:00 ✘ x failed (log: a/very/long/path/of/logs.log)",
            20,
            9,
        );
        assert_eq!(
            all,
            [
                "12:00:00 ✘ x failed",
                "         (log: a/ver",
                "         y/long/path",
                "         /of/logs.lo",
                "         g)"
            ]
        );
        assert!(all.iter().all(|l| width(l) <= 20));
        assert_eq!(short_model("opus"), "opus");
    }
}
