//! Making text from outside orch safe to print on a terminal: what a step writes, job names,
//! reasons and messages that quote them.
//!
//! A terminal obeys the control characters it is sent: a child's `ESC ] 52 ; c ; … BEL` writes
//! the user's clipboard (OSC 52), `ESC [ 2 J` clears the screen, `ESC [ H` and `\r` move the
//! cursor over orch's own lines, a bidi override (U+202E) makes text read backwards. This module
//! owns the one rule every human reporter applies before printing such text:
//!
//! - escape sequences are removed whole: CSI (`ESC [` … final byte), OSC (`ESC ]` … BEL or ST),
//!   DCS, SOS, PM and APC (`ESC P`/`X`/`^`/`_` … ST), two- and three-byte `ESC` sequences, and
//!   their 8-bit C1 forms (U+009B CSI, U+009D OSC, U+0090 DCS, …); an unterminated string
//!   sequence swallows the rest of the text, as a terminal would;
//! - every other C0 control, DEL and C1 control is shown as a visible picture (`\r` as `␍`, BEL
//!   as `␇`, DEL as `␡`, C1 as `�`), tab is kept, newline only by [`sanitize_block`];
//! - bidi embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069) become `�`.
//!
//! It must never be applied to what is stored or machine-read (logs, NDJSON events, the results
//! file keep the exact bytes; JSON escapes them), and never to orch's own colours: reporters
//! sanitize the foreign pieces before they add their styling.
//!
//! It is also where terminal text meets the secret mask ([`crate::secrets`]): every function
//! here shows a secret's value as `***`.

use std::borrow::Cow;

const ESC: char = '\u{1b}';
const BEL: char = '\u{7}';
/// The 8-bit String Terminator.
const ST8: char = '\u{9c}';

/// `text` as one line safe for a terminal: see the module documentation; a newline is shown as
/// `␊`. Borrows when nothing needed changing (the common case costs one scan).
pub fn sanitize(text: &str) -> Cow<'_, str> {
    clean(text, false)
}

/// Like [`sanitize`], but newlines are kept: for multi-line text printed whole.
pub fn sanitize_block(text: &str) -> Cow<'_, str> {
    clean(text, true)
}

/// Like [`sanitize_block`], but colour and style sequences (SGR: `ESC [` digits and `;` `m`)
/// are kept: for text orch rendered itself with colours around foreign pieces (error reports,
/// command output). A foreign SGR can only recolour text; everything that moves, clears, writes
/// the clipboard or sets titles is still removed.
pub fn sanitize_keep_colours(text: &str) -> Cow<'_, str> {
    clean_with(text, true, true)
}

fn needs_work(c: char, keep_newlines: bool) -> bool {
    match c {
        '\t' => false,
        '\n' => !keep_newlines,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' => true,
        _ => is_bidi_control(c),
    }
}

/// The index of the first character that needs work. A byte scan first: every such character
/// is an ASCII control, DEL, or starts with 0xC2 (C1 controls) or 0xE2 (bidi controls), and
/// those bytes never occur inside another character, so only they are decoded.
fn first_suspect(text: &str, keep_newlines: bool) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(offset) = bytes[from..]
        .iter()
        .position(|&b| b < 0x20 || b == 0x7f || b == 0xc2 || b == 0xe2)
    {
        let at = from + offset;
        let c = text[at..]
            .chars()
            .next()
            .expect("a suspect byte starts a character");
        if needs_work(c, keep_newlines) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn clean(text: &str, keep_newlines: bool) -> Cow<'_, str> {
    clean_with(text, keep_newlines, false)
}

/// The secret mask, then [`clean_unmasked`].
fn clean_with(text: &str, keep_newlines: bool, keep_sgr: bool) -> Cow<'_, str> {
    match crate::secrets::mask(text) {
        Cow::Borrowed(_) => clean_unmasked(text, keep_newlines, keep_sgr),
        Cow::Owned(masked) => {
            Cow::Owned(clean_unmasked(&masked, keep_newlines, keep_sgr).into_owned())
        }
    }
}

fn clean_unmasked(text: &str, keep_newlines: bool, keep_sgr: bool) -> Cow<'_, str> {
    let Some(first) = first_suspect(text, keep_newlines) else {
        return Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..first]);
    let mut chars = text[first..].chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ESC => match chars.next() {
                Some('[') => {
                    let sequence = skip_csi(&mut chars);
                    if keep_sgr && is_sgr(&sequence) {
                        out.push(ESC);
                        out.push('[');
                        out.push_str(&sequence);
                    }
                }
                Some(']' | 'P' | 'X' | '^' | '_') => skip_string(&mut chars),
                // `ESC` + intermediates (0x20–0x2F) + a final byte: charset selection, `ESC c`
                // (full reset), `ESC 7`/`ESC 8` (save/restore cursor) and the like.
                Some(' '..='/') => {
                    while chars.next_if(|c| matches!(c, ' '..='/')).is_some() {}
                    chars.next();
                }
                // A lone ESC at the end, or ESC + a final byte: both dropped.
                _ => {}
            },
            '\u{9b}' => {
                skip_csi(&mut chars);
            }
            '\u{9d}' | '\u{90}' | '\u{98}' | '\u{9e}' | '\u{9f}' => skip_string(&mut chars),
            '\t' => out.push(c),
            '\n' if keep_newlines => out.push(c),
            '\u{0}'..='\u{1f}' => {
                out.push(char::from_u32(0x2400 + c as u32).expect("control pictures exist"))
            }
            '\u{7f}' => out.push('\u{2421}'),
            '\u{80}'..='\u{9f}' => out.push('\u{fffd}'),
            c if is_bidi_control(c) => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Skips a CSI body: parameter bytes (0x30–0x3F), intermediates (0x20–0x2F), one final byte
/// (0x40–0x7E); anything else ends the sequence without being consumed. Returns the body.
fn skip_csi(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> String {
    let mut body = String::new();
    while let Some(c) = chars.next_if(|c| matches!(c, '0'..='?')) {
        body.push(c);
    }
    while let Some(c) = chars.next_if(|c| matches!(c, ' '..='/')) {
        body.push(c);
    }
    if let Some(c) = chars.next_if(|c| matches!(c, '@'..='~')) {
        body.push(c);
    }
    body
}

/// A colour/style body: digits, `;` and `:` then `m`.
fn is_sgr(body: &str) -> bool {
    body.strip_suffix('m').is_some_and(|params| {
        params
            .chars()
            .all(|c| c.is_ascii_digit() || c == ';' || c == ':')
    })
}

/// Skips a control string (OSC, DCS, SOS, PM, APC) up to and including its terminator: BEL
/// (for OSC, as xterm accepts), `ESC \` or the 8-bit ST.
fn skip_string(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while let Some(c) = chars.next() {
        match c {
            BEL | ST8 => return,
            ESC => {
                chars.next_if_eq(&'\\');
                return;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_untouched() {
        let text = "build: 3 passed\t(ünïcode ✓, emoji 🦀)";
        assert!(matches!(sanitize(text), Cow::Borrowed(_)));
        assert_eq!(sanitize(text), text);
    }

    #[test]
    fn removes_osc_52_clipboard_writes_with_either_terminator() {
        assert_eq!(sanitize("a\x1b]52;c;ZXZpbA==\x07b"), "ab");
        assert_eq!(sanitize("a\x1b]52;c;ZXZpbA==\x1b\\b"), "ab");
        assert_eq!(sanitize("a\u{9d}52;c;ZXZpbA==\u{9c}b"), "ab");
        // Window title and hyperlinks are OSC too.
        assert_eq!(
            sanitize("\x1b]0;pwned\x07\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\"),
            "link"
        );
    }

    #[test]
    fn removes_screen_clears_cursor_moves_and_colours() {
        assert_eq!(sanitize("\x1b[2J\x1b[H\x1b[3;1Hx"), "x");
        assert_eq!(sanitize("\x1b[31mred\x1b[0m \x1b[?25l"), "red ");
        assert_eq!(sanitize("\u{9b}2Jx"), "x");
        assert_eq!(sanitize("\x1bc\x1b7\x1b8\x1b(Bok"), "ok");
    }

    #[test]
    fn removes_device_control_strings_and_an_unterminated_tail() {
        assert_eq!(sanitize("a\x1bP+q544e\x1b\\b"), "ab");
        assert_eq!(sanitize("a\x1b_apc\x1b\\b\x1b^pm\x07c"), "abc");
        assert_eq!(sanitize("kept\x1b]52;c;never ends"), "kept");
        assert_eq!(sanitize("lone escape\x1b"), "lone escape");
    }

    #[test]
    fn shows_other_controls_as_pictures() {
        assert_eq!(sanitize("50%\r60%"), "50%␍60%");
        assert_eq!(sanitize("bell\x07 del\x7f nul\0"), "bell␇ del␡ nul␀");
        assert_eq!(sanitize("one\ntwo"), "one␊two");
        assert_eq!(sanitize_block("one\ntwo\r"), "one\ntwo␍");
        assert_eq!(sanitize("c1 \u{85} x"), "c1 \u{fffd} x");
    }

    #[test]
    fn keeps_colours_only_when_asked() {
        let text = "\x1b[1;31merror\x1b[0m: job \x1b[2J\x1b]52;c;eA==\x07x\nnext";
        assert_eq!(
            sanitize_keep_colours(text),
            "\x1b[1;31merror\x1b[0m: job x\nnext"
        );
        assert_eq!(sanitize(text), "error: job x␊next");
        assert_eq!(sanitize_keep_colours("\x1b[?25l\x1b[5n"), "");
    }

    #[test]
    fn defuses_bidi_overrides() {
        assert_eq!(
            sanitize("file\u{202e}gnp.exe \u{2066}x\u{2069}"),
            "file\u{fffd}gnp.exe \u{fffd}x\u{fffd}"
        );
    }

    #[test]
    fn never_lets_an_escape_through() {
        // Every ESC/C1 byte in any position, followed by anything, leaves no ESC or C1 behind.
        let tails = [
            "", "[", "]", "P", "[1;2", "]52;c;", "(", " ", "\x1b", "\u{9b}",
        ];
        for lead in ["\x1b", "\u{9b}", "\u{9d}", "\u{90}"] {
            for tail in tails {
                for after in ["", "x", "\x07", "\x1b\\", "m"] {
                    let text = format!("a{lead}{tail}{after}z");
                    let clean = sanitize(&text);
                    assert!(
                        !clean
                            .chars()
                            .any(|c| c == ESC || ('\u{80}'..='\u{9f}').contains(&c)),
                        "{text:?} gave {clean:?}"
                    );
                }
            }
        }
    }
}
