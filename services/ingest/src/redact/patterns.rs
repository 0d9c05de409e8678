//! Identifier-shaped PII found by regular expressions plus a check that the match is real:
//! payment card numbers (Luhn), US social security numbers and UK national insurance numbers
//! (issuing rules), UK postcodes and US ZIP+4 codes. The `regex` crate runs in linear time,
//! so hostile input cannot make these slow.

use std::sync::LazyLock;

use regex::Regex;

fn compile(pattern: &str) -> Regex {
    // The patterns are constants checked by the tests below.
    Regex::new(pattern).unwrap_or_else(|e| panic!("built-in redaction pattern {pattern}: {e}"))
}

/// 13–19 digits, optionally grouped by single spaces or hyphens.
static CARD: LazyLock<Regex> = LazyLock::new(|| compile(r"\b\d(?:[ -]?\d){12,18}\b"));
/// `123-45-6789` or `123 45 6789`.
static SSN: LazyLock<Regex> = LazyLock::new(|| compile(r"\b(\d{3})[- ](\d{2})[- ](\d{4})\b"));
/// `AB 12 34 56 C`, spaces optional.
static NINO: LazyLock<Regex> = LazyLock::new(|| {
    compile(r"\b([A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]) ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b")
});
/// UK postcodes (`SW1A 1AA`, `M1 1AE`, `B33 8TH`), upper case as written on mail.
static UK_POSTCODE: LazyLock<Regex> = LazyLock::new(|| {
    compile(r"\b(?:[A-PR-UWYZ][A-HK-Y]?\d[A-Z\d]? ?\d[ABD-HJLNP-UW-Z]{2}|GIR ?0AA)\b")
});
/// US ZIP+4 (`12345-6789`). Bare five-digit ZIP codes are left alone: too many other
/// numbers look the same.
static ZIP4: LazyLock<Regex> = LazyLock::new(|| compile(r"\b\d{5}-\d{4}\b"));

/// Byte spans of card numbers that pass the Luhn check.
pub(super) fn card_spans(text: &str) -> Vec<(usize, usize)> {
    CARD.find_iter(text)
        .filter(|m| luhn(m.as_str()))
        .map(|m| (m.start(), m.end()))
        .collect()
}

/// The Luhn checksum over the digits of `s` (separators ignored).
pub(super) fn luhn(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let d = d * 2;
                if d > 9 { d - 9 } else { d }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// US SSNs (never issued: area 000, 666 or 9xx, group 00, serial 0000) and UK NINOs (never
/// issued prefixes BG, GB, KN, NK, NT, TN, ZZ).
pub(super) fn national_id_spans(text: &str) -> Vec<(usize, usize)> {
    let ssn = SSN.captures_iter(text).filter_map(|c| {
        let (area, group, serial) = (&c[1], &c[2], &c[3]);
        let issued = area != "000"
            && area != "666"
            && !area.starts_with('9')
            && group != "00"
            && serial != "0000";
        let m = c.get(0)?;
        issued.then(|| (m.start(), m.end()))
    });
    let nino = NINO.captures_iter(text).filter_map(|c| {
        let issued = !matches!(&c[1], "BG" | "GB" | "KN" | "NK" | "NT" | "TN" | "ZZ");
        let m = c.get(0)?;
        issued.then(|| (m.start(), m.end()))
    });
    let mut spans: Vec<_> = ssn.chain(nino).collect();
    spans.sort_unstable();
    spans
}

pub(super) fn postcode_spans(text: &str) -> Vec<(usize, usize)> {
    let mut spans: Vec<_> = UK_POSTCODE
        .find_iter(text)
        .chain(ZIP4.find_iter(text))
        .map(|m| (m.start(), m.end()))
        .collect();
    spans.sort_unstable();
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(spans: Vec<(usize, usize)>, text: &str) -> Vec<String> {
        spans.iter().map(|&(s, e)| text[s..e].to_string()).collect()
    }

    #[test]
    fn luhn_accepts_valid_and_rejects_invalid_numbers() {
        for ok in [
            "4111 1111 1111 1111",
            "5500-0000-0000-0004",
            "378282246310005",
            "6011111111111117",
        ] {
            assert!(luhn(ok), "{ok}");
        }
        for bad in [
            "4111 1111 1111 1112",
            "1234 5678 9012 3456",
            "378282246310006",
            "0",
            "4111",
            // Luhn-valid but 20 digits: not a card number.
            "41111111111111111111",
        ] {
            assert!(!luhn(bad), "{bad}");
        }
    }

    #[test]
    fn cards_need_the_checksum() {
        let text = "pay with 4111 1111 1111 1111 or 4111-1111-1111-1112; ref 12345678901234567890";
        assert_eq!(
            found(card_spans(text), text),
            vec!["4111 1111 1111 1111".to_string()]
        );
    }

    #[test]
    fn ssn_and_nino() {
        let text = "SSN 123-45-6789, fake 000-12-3456 666-12-3456 900-12-3456 123-00-4567; \
                    NINO JG 12 34 56 C and AB123456D; QQ123456C is a specimen; not GB123456A or DQ123456C";
        assert_eq!(
            found(national_id_spans(text), text),
            vec!["123-45-6789", "JG 12 34 56 C", "AB123456D"]
        );
    }

    #[test]
    fn postcodes() {
        let text = "to SW1A 1AA, M1 1AE or B33 8TH; ZIP 90210-1234 but not 90210, sw1a 1aa, A1";
        assert_eq!(
            found(postcode_spans(text), text),
            vec!["SW1A 1AA", "M1 1AE", "B33 8TH", "90210-1234"]
        );
    }
}
