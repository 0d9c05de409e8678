//! Optional PII redaction, applied to extracted text before chunking, so neither search leg
//! ever stores the redacted values. Emails become `[EMAIL]`; phone numbers (9–15 digits with
//! the usual separators, or any digit run of 7+ after a leading `+`) become `[PHONE]`. Dates,
//! decimals and short numbers are left alone.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedactionConfig {
    pub emails: bool,
    pub phone_numbers: bool,
}

impl RedactionConfig {
    pub fn enabled(&self) -> bool {
        self.emails || self.phone_numbers
    }
}

pub fn redact(text: &str, config: &RedactionConfig) -> String {
    let mut out = text.to_string();
    if config.emails {
        out = replace_spans(&out, &email_spans(&out), "[EMAIL]");
    }
    if config.phone_numbers {
        out = replace_spans(&out, &phone_spans(&out), "[PHONE]");
    }
    out
}

fn replace_spans(text: &str, spans: &[(usize, usize)], with: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for &(s, e) in spans {
        out.push_str(&text[at..s]);
        out.push_str(with);
        at = e;
    }
    out.push_str(&text[at..]);
    out
}

fn is_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_domain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-')
}

fn email_spans(text: &str) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut spans = Vec::new();
    let mut floor = 0;
    for (at, _) in text.match_indices('@') {
        if at < floor {
            continue;
        }
        let mut start = at;
        while start > floor && is_local(bytes[start - 1]) {
            start -= 1;
        }
        let mut end = at + 1;
        while end < bytes.len() && is_domain(bytes[end]) {
            end += 1;
        }
        // Trailing dots/hyphens belong to the sentence, not the domain.
        while end > at + 1 && matches!(bytes[end - 1], b'.' | b'-') {
            end -= 1;
        }
        let domain = &text[at + 1..end];
        let tld_ok = domain.rsplit_once('.').is_some_and(|(host, tld)| {
            !host.is_empty() && tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic())
        });
        if start < at && tld_ok {
            spans.push((start, end));
            floor = end;
        }
    }
    spans
}

fn phone_spans(text: &str) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let boundary = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        if !(boundary && (b == b'+' || b == b'(' || b.is_ascii_digit())) {
            i += 1;
            continue;
        }
        let start = i;
        let mut end = i;
        let mut digits = 0;
        let mut dots = Vec::new();
        let mut j = i;
        while j < bytes.len() {
            match bytes[j] {
                d if d.is_ascii_digit() => {
                    digits += 1;
                    end = j + 1;
                }
                b'+' if j == start => {}
                b'.' => dots.push(j),
                b' ' | b'-' | b'(' | b')' => {}
                _ => break,
            }
            j += 1;
        }
        let plus = bytes[start] == b'+';
        let touches_word = end < bytes.len() && bytes[end].is_ascii_alphanumeric();
        // One dot inside the run is a decimal point; a trailing one ends the sentence.
        let decimal = dots.iter().filter(|&&d| d < end).count() == 1;
        if !touches_word
            && !decimal
            && ((plus && (7..=15).contains(&digits)) || (9..=15).contains(&digits))
        {
            spans.push((start, end));
            i = end;
        } else {
            i = j.max(i + 1);
        }
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: RedactionConfig = RedactionConfig {
        emails: true,
        phone_numbers: true,
    };

    #[test]
    fn emails() {
        let r = redact(
            "Mail jane.doe+x@mail.example.com, or bob@corp.io. Not: a@b, @home, x@y.z1",
            &ALL,
        );
        assert_eq!(r, "Mail [EMAIL], or [EMAIL]. Not: a@b, @home, x@y.z1");
    }

    #[test]
    fn phone_numbers() {
        for (input, want) in [
            ("call +1 (555) 123-4567 now", "call [PHONE] now"),
            ("office 555-123-4567.", "office [PHONE]."),
            ("uk +44 20 7946 0958", "uk [PHONE]"),
            ("(020) 7946 0958", "[PHONE]"),
            ("555.123.4567", "[PHONE]"),
            (
                "on 2024-11-22 at 3.14159 with 12345 items",
                "on 2024-11-22 at 3.14159 with 12345 items",
            ),
            ("id abc5551234567", "id abc5551234567"),
        ] {
            assert_eq!(redact(input, &ALL), want, "{input}");
        }
    }

    #[test]
    fn off_by_default() {
        let text = "jane@example.com +1 555 123 4567";
        assert!(!RedactionConfig::default().enabled());
        assert_eq!(redact(text, &RedactionConfig::default()), text);
        let emails_only = RedactionConfig {
            emails: true,
            phone_numbers: false,
        };
        assert_eq!(redact(text, &emails_only), "[EMAIL] +1 555 123 4567");
    }
}
