//! Emails and phone numbers, found by hand-written scanners (no regex backtracking on
//! hostile input, and the separators phone numbers are written with).
//!
//! Emails: `local@domain.tld` with a 2+ letter TLD. Phone numbers: 9–15 digits with the
//! usual separators (spaces, `-`, `()`, `.`), or 7–15 digits after a leading `+`. Dates,
//! decimals and short numbers are left alone.

fn is_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_domain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-')
}

pub(super) fn email_spans(text: &str) -> Vec<(usize, usize)> {
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

pub(super) fn phone_spans(text: &str) -> Vec<(usize, usize)> {
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

    fn apply(text: &str, spans: &[(usize, usize)], with: &str) -> String {
        let mut out = String::new();
        let mut at = 0;
        for &(s, e) in spans {
            out.push_str(&text[at..s]);
            out.push_str(with);
            at = e;
        }
        out.push_str(&text[at..]);
        out
    }

    #[test]
    fn emails() {
        let text = "Mail jane.doe+x@mail.example.com, or bob@corp.io. Not: a@b, @home, x@y.z1";
        assert_eq!(
            apply(text, &email_spans(text), "[EMAIL]"),
            "Mail [EMAIL], or [EMAIL]. Not: a@b, @home, x@y.z1"
        );
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
            assert_eq!(
                apply(input, &phone_spans(input), "[PHONE]"),
                want,
                "{input}"
            );
        }
    }
}
