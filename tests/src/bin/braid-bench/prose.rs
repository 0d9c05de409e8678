//! Generated sections read like the rest of BENCHMARKS.md: prose wrapped at [`WIDTH`] columns.
//! Tables, headings, comments, code and lines already short enough are left as they are.

/// Widest prose line a section gets.
pub const WIDTH: usize = 100;

/// `section` with every long prose line wrapped at [`WIDTH`] columns on spaces. A list item's
/// continuation lines are indented under its text. A line never starts with a word Markdown
/// would read as syntax (`-`, `*`, `+`, `#`, `|`, `>`, `1.`): such a word stays on the line
/// before it, even past the width.
pub fn wrap_prose(section: &str) -> String {
    let mut out = String::with_capacity(section.len() + section.len() / WIDTH);
    let mut in_code = false;
    for line in section.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        let fence = body.trim_start().starts_with("```");
        let keep = in_code
            || fence
            || body.chars().count() <= WIDTH
            || body.starts_with('|')
            || body.starts_with('#')
            || body.starts_with("<!--")
            || body.starts_with("    ");
        if fence {
            in_code = !in_code;
        }
        if keep {
            out.push_str(line);
            continue;
        }
        let indent = if body.starts_with("- ") || body.starts_with("* ") {
            2
        } else {
            0
        };
        let mut width = 0;
        for (i, word) in body.split(' ').enumerate() {
            let w = word.chars().count();
            if i > 0 {
                if width + 1 + w > WIDTH && width > indent && !markdown_syntax(word) {
                    out.push('\n');
                    out.push_str(&" ".repeat(indent));
                    width = indent;
                } else {
                    out.push(' ');
                    width += 1;
                }
            }
            out.push_str(word);
            width += w;
        }
        if line.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

/// Whether `word` at the start of a line would be read as Markdown syntax.
fn markdown_syntax(word: &str) -> bool {
    if word.is_empty() || word.starts_with(['-', '*', '+', '#', '|', '>', '=']) {
        return true;
    }
    let digits = word.chars().take_while(char::is_ascii_digit).count();
    digits > 0 && word[digits..].starts_with(['.', ')'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_prose_is_wrapped_and_nothing_else_moves() {
        let long = "word ".repeat(60);
        let table = format!("| {} |", "cell ".repeat(40));
        let section = format!(
            "<!-- bench:x -->\n## Title\n\n{long}\n\n{table}\n- {long}\nshort line\n```\n{long}\n```\n"
        );
        let wrapped = wrap_prose(&section);
        for line in wrapped.lines() {
            let table_or_code = line == table || line == long;
            assert!(
                line.chars().count() <= WIDTH || table_or_code,
                "too long: {line:?}"
            );
        }
        assert!(
            wrapped.contains(&format!("\n{table}\n")),
            "a table row is never wrapped"
        );
        assert!(
            wrapped.contains(&format!("```\n{long}\n```")),
            "code is never wrapped"
        );
        assert!(
            wrapped.contains("\n  word"),
            "a list item's lines stay in the item"
        );
        // Wrapping only turns spaces into line breaks (plus a list item's indent).
        let words = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        assert_eq!(words(&wrapped), words(&section));
        assert_eq!(
            wrap_prose(&wrapped),
            wrapped,
            "wrapping twice changes nothing"
        );
    }

    #[test]
    fn no_line_starts_with_markdown_syntax() {
        for marker in ["-", "*", "+", "#", "|", ">", "2.", "3)"] {
            // The width runs out exactly before the marker.
            let line = format!("{} {marker} tail of the sentence", "x".repeat(WIDTH - 1));
            let wrapped = wrap_prose(&line);
            assert!(wrapped.lines().count() > 1, "{line:?} was not wrapped");
            for l in wrapped.lines().skip(1) {
                let first = l.split(' ').next().unwrap();
                assert!(
                    !markdown_syntax(first),
                    "a line starts with {first:?}: {wrapped:?}"
                );
            }
            assert_eq!(
                wrapped.split_whitespace().count(),
                line.split_whitespace().count()
            );
        }
    }
}
