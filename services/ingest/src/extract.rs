//! Plain text out of the three accepted content types. Headings are kept as lines of their
//! own (they carry meaning for both legs); HTML scripts, styles and comments are dropped.
//!
//! Any input gives valid UTF-8 out, never a panic: control characters (NUL included, also
//! when written as an HTML entity such as `&#0;`) become spaces, so neither PostgreSQL nor an
//! index ever sees them, and whitespace is normalised.

use pulldown_cmark::{Event, Parser, Tag, TagEnd};

/// Accepted MIME types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mime {
    Plain,
    Markdown,
    Html,
}

impl Mime {
    pub const ALLOWED: &'static str = "text/plain, text/markdown, text/html";

    /// Parses a MIME type; parameters such as `; charset=utf-8` are ignored and an empty
    /// value means text/plain.
    pub fn parse(value: &str) -> Option<Self> {
        let base = value
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match base.as_str() {
            "" | "text/plain" => Some(Mime::Plain),
            "text/markdown" | "text/x-markdown" => Some(Mime::Markdown),
            "text/html" | "application/xhtml+xml" => Some(Mime::Html),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mime::Plain => "text/plain",
            Mime::Markdown => "text/markdown",
            Mime::Html => "text/html",
        }
    }
}

/// Extracted text plus a title found in the content (first heading, or HTML `<title>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    pub text: String,
    pub title: Option<String>,
}

pub fn extract(mime: Mime, content: &str) -> Extracted {
    let extracted = match mime {
        Mime::Plain => Extracted {
            text: normalise(content),
            title: None,
        },
        Mime::Markdown => markdown(content),
        Mime::Html => html(content),
    };
    Extracted {
        title: extracted
            .title
            .map(|t| one_line(&t))
            .filter(|t| !t.is_empty()),
        ..extracted
    }
}

fn markdown(content: &str) -> Extracted {
    let mut out = String::with_capacity(content.len());
    let mut title: Option<String> = None;
    let mut heading: Option<String> = None;
    for event in Parser::new(content) {
        match event {
            Event::Start(Tag::Heading { .. }) => heading = Some(String::new()),
            Event::End(TagEnd::Heading(_)) => {
                if let Some(h) = heading.take()
                    && title.is_none()
                    && !h.trim().is_empty()
                {
                    title = Some(h.trim().to_string());
                }
                out.push_str("\n\n");
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some(h) = heading.as_mut() {
                    h.push_str(&t);
                }
                out.push_str(&t);
            }
            Event::SoftBreak => out.push(' '),
            Event::HardBreak => out.push('\n'),
            Event::End(
                TagEnd::Paragraph | TagEnd::Item | TagEnd::CodeBlock | TagEnd::BlockQuote(_),
            ) => out.push_str("\n\n"),
            Event::End(TagEnd::TableCell) => out.push(' '),
            Event::End(TagEnd::TableRow | TagEnd::TableHead) => out.push('\n'),
            _ => {}
        }
    }
    Extracted {
        text: normalise(&out),
        title,
    }
}

const SKIP_TAGS: &[&str] = &[
    "script", "style", "noscript", "template", "svg", "iframe", "object",
];
const BLOCK_TAGS: &[&str] = &[
    "p",
    "div",
    "br",
    "hr",
    "li",
    "ul",
    "ol",
    "tr",
    "td",
    "th",
    "table",
    "section",
    "article",
    "header",
    "footer",
    "nav",
    "aside",
    "main",
    "blockquote",
    "pre",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "dt",
    "dd",
    "figcaption",
    "form",
    "title",
];

fn html(content: &str) -> Extracted {
    let mut out = String::with_capacity(content.len() / 2);
    let mut title: Option<String> = None;
    let mut h1: Option<String> = None;
    // Where text currently goes besides `out`: Some(buffer) inside <title> or the first <h1>.
    let mut capture: Option<(&'static str, String)> = None;
    let mut rest = content;
    while let Some(lt) = rest.find('<') {
        let text = &rest[..lt];
        push_text(&mut out, &mut capture, text);
        rest = &rest[lt..];
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = after.find("-->").map_or("", |end| &after[end + 3..]);
            continue;
        }
        let Some(gt) = rest.find('>') else {
            rest = "";
            break;
        };
        let tag = &rest[1..gt];
        rest = &rest[gt + 1..];
        let closing = tag.starts_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        if !closing && SKIP_TAGS.contains(&name.as_str()) && !tag.ends_with('/') {
            let close = format!("</{name}");
            rest = match find_ci(rest, &close) {
                Some(i) => rest[i..].find('>').map_or("", |g| &rest[i + g + 1..]),
                None => "",
            };
            continue;
        }
        match (closing, name.as_str()) {
            (false, "title") if title.is_none() => capture = Some(("title", String::new())),
            (false, "h1") if h1.is_none() && capture.is_none() => {
                capture = Some(("h1", String::new()))
            }
            (true, "title") | (true, "h1") => {
                if let Some((which, buf)) = capture.take() {
                    let buf = decode_entities(
                        buf.split_whitespace()
                            .collect::<Vec<_>>()
                            .join(" ")
                            .as_str(),
                    );
                    if which == "title" {
                        title = Some(buf);
                        // The <title> is metadata, not body text.
                        continue;
                    }
                    h1 = Some(buf);
                }
            }
            _ => {}
        }
        if BLOCK_TAGS.contains(&name.as_str()) {
            out.push('\n');
        }
    }
    push_text(&mut out, &mut capture, rest);
    let title = title
        .filter(|t| !t.is_empty())
        .or(h1.filter(|t| !t.is_empty()));
    Extracted {
        text: normalise(&decode_entities(&out)),
        title,
    }
}

fn push_text(out: &mut String, capture: &mut Option<(&'static str, String)>, text: &str) {
    if let Some((which, buf)) = capture.as_mut() {
        buf.push_str(text);
        if *which == "title" {
            return;
        }
    }
    out.push_str(text);
}

fn find_ci(haystack: &str, needle: &str) -> Option<usize> {
    let h = haystack.as_bytes();
    let n = needle.as_bytes();
    (0..h.len().saturating_sub(n.len() - 1)).find(|&i| h[i..i + n.len()].eq_ignore_ascii_case(n))
}

fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        // Entities are short: look for the `;` in the next 12 bytes (a byte search, so a
        // multi-byte character straddling that window cannot split).
        let end = rest.as_bytes()[..rest.len().min(12)]
            .iter()
            .position(|&b| b == b';');
        let decoded = end.and_then(|e| {
            let entity = &rest[1..e];
            let ch = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some(' '),
                _ if entity.starts_with("#x") || entity.starts_with("#X") => {
                    u32::from_str_radix(&entity[2..], 16)
                        .ok()
                        .and_then(char::from_u32)
                }
                _ if entity.starts_with('#') => entity[1..].parse().ok().and_then(char::from_u32),
                _ => None,
            };
            ch.map(|c| (c, e))
        });
        match decoded {
            Some((c, e)) => {
                out.push(c);
                rest = &rest[e + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// A title on one line: control characters (a newline written as `&#10;` too) become
/// spaces, runs of whitespace one space.
fn one_line(s: &str) -> String {
    braid_core::validate::clean_text(s)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Turns control characters into spaces, collapses runs of spaces within lines and runs of
/// blank lines; trims the ends.
fn normalise(s: &str) -> String {
    let cleaned = braid_core::validate::clean_text(s);
    let mut out = String::with_capacity(s.len());
    let mut blank_run = 0;
    for line in cleaned.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.is_empty() {
            blank_run += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank_run > 0 { "\n\n" } else { "\n" });
        }
        blank_run = 0;
        out.push_str(&words.join(" "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mime_parsing() {
        assert_eq!(Mime::parse(""), Some(Mime::Plain));
        assert_eq!(
            Mime::parse("text/markdown; charset=utf-8"),
            Some(Mime::Markdown)
        );
        assert_eq!(Mime::parse("TEXT/HTML"), Some(Mime::Html));
        assert_eq!(Mime::parse("application/pdf"), None);
    }

    #[test]
    fn plain_text_is_normalised() {
        let e = extract(Mime::Plain, "  a   b \n\n\n\n c\td ");
        assert_eq!(e.text, "a b\n\nc d");
        assert_eq!(e.title, None);
    }

    #[test]
    fn markdown_keeps_headings_and_drops_syntax() {
        let md = "# Braid Guide\n\nSome **bold** text and `code`.\n\n## Setup\n\n- one\n- two\n\n[link](http://x)";
        let e = extract(Mime::Markdown, md);
        assert_eq!(e.title.as_deref(), Some("Braid Guide"));
        assert!(
            e.text
                .starts_with("Braid Guide\n\nSome bold text and code."),
            "{}",
            e.text
        );
        assert!(e.text.contains("Setup"));
        assert!(e.text.contains("one\n\ntwo"));
        assert!(e.text.contains("link"));
        assert!(!e.text.contains("**") && !e.text.contains("http://x"));
    }

    #[test]
    fn html_drops_scripts_styles_comments_and_decodes_entities() {
        let html = r#"<!DOCTYPE html><html><head><title>Page &amp; Title</title>
            <style>body { color: red }</style><script>var x = "<p>no</p>";</script></head>
            <body><!-- hidden --><h1>Main heading</h1><p>Fish &lt;3 chips&#33; caf&#xE9;</p>
            <SCRIPT type="x">alert(1)</SCRIPT><div>last<br/>line</div></body></html>"#;
        let e = extract(Mime::Html, html);
        assert_eq!(e.title.as_deref(), Some("Page & Title"));
        assert!(e.text.contains("Main heading"), "{}", e.text);
        assert!(e.text.contains("Fish <3 chips! café"), "{}", e.text);
        assert!(e.text.contains("last\nline"), "{}", e.text);
        for absent in ["color", "var x", "alert", "hidden", "Page & Title", "<p>"] {
            assert!(
                !e.text.contains(absent),
                "{absent} leaked into {:?}",
                e.text
            );
        }
    }

    #[test]
    fn html_title_falls_back_to_h1() {
        let e = extract(Mime::Html, "<h1>Only <em>heading</em></h1><p>body</p>");
        assert_eq!(e.title.as_deref(), Some("Only heading"));
        assert_eq!(e.text, "Only heading\n\nbody");
    }

    #[test]
    fn broken_html_does_not_panic() {
        for s in [
            "<",
            "<p",
            "a < b",
            "<script>never closed",
            "&#xZZ; &bogus; &",
            "<!-- open",
        ] {
            let _ = extract(Mime::Html, s);
        }
        assert_eq!(extract(Mime::Html, "a < b").text, "a");
    }

    #[test]
    fn entity_lookahead_across_multibyte_characters_does_not_panic() {
        // The 12-byte window used to end inside `é`/`日` and panic on the slice.
        for s in [
            "&aaaaaaaaaaé;",
            "&日本語日本語;",
            "&#x1F980&amp;🦀🦀🦀",
            "&abcdefghij日",
        ] {
            let e = extract(Mime::Html, s);
            assert!(!e.text.is_empty(), "{s}");
        }
        assert_eq!(
            extract(Mime::Html, "caf&#xE9; &日本語;").text,
            "café &日本語;"
        );
    }

    #[test]
    fn control_characters_never_survive() {
        for mime in [Mime::Plain, Mime::Markdown, Mime::Html] {
            let e = extract(
                mime,
                "<title>t\u{0}x</title># A\u{0}B\n\nx\u{0}y&#0;z\u{1b}[0m\r\n",
            );
            assert!(!e.text.contains('\0'), "{mime:?}: {:?}", e.text);
            assert!(
                e.text.chars().all(|c| c == '\n' || !c.is_control()),
                "{mime:?}: {:?}",
                e.text
            );
            assert!(
                e.title.iter().all(|t| !t.chars().any(char::is_control)),
                "{mime:?}: {:?}",
                e.title
            );
        }
        assert_eq!(extract(Mime::Plain, "a\u{0}b").text, "a b");
    }

    #[test]
    fn a_title_is_one_line_even_when_an_entity_or_markdown_writes_a_newline() {
        // Found writing the extract fuzz targets' title property (no control character):
        // `&#10;` decodes to a newline after the title's whitespace was collapsed, and
        // normalising kept it.
        for (mime, input) in [
            (Mime::Html, "<title>a&#10;b</title>"),
            (Mime::Html, "<h1>a&#xA;&#13;b</h1>"),
            (Mime::Markdown, "# a&#10;b"),
        ] {
            let e = extract(mime, input);
            assert_eq!(e.title.as_deref(), Some("a b"), "{mime:?} {input:?}");
        }
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        fn nasty() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<String>(),
                "[<>&#;/a-z0-9 \\x00\n\\-*#`\\[\\]()!é日🦀\u{301}\u{202E}]{0,80}",
                "(<[a-z/!-]{0,8}( [a-z]+=\"[^\"]{0,5}\")?>|&#?[xX]?[0-9a-zA-Z]{0,9};?|[^<&]{0,6}){0,20}",
            ]
        }

        proptest! {
            #[test]
            fn extraction_never_panics_and_gives_clean_utf8(input in nasty()) {
                for mime in [Mime::Plain, Mime::Markdown, Mime::Html] {
                    let e = extract(mime, &input);
                    // `String` is valid UTF-8 by construction; check what PostgreSQL needs.
                    prop_assert!(!e.text.contains('\0'));
                    prop_assert!(e.text.chars().all(|c| c == '\n' || !c.is_control()));
                    prop_assert_eq!(e.text.trim(), e.text.as_str());
                    if let Some(t) = &e.title {
                        prop_assert!(!t.is_empty() && !t.chars().any(char::is_control));
                    }
                }
            }
        }
    }
}
