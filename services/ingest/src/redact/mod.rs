//! Optional PII redaction, applied to the title, the extracted text and metadata values before
//! chunking, so neither search leg ever stores the redacted values.
//!
//! Each rule is switched on in `[redaction]` and replaces what it finds with a fixed token:
//! `emails` → `[EMAIL]`, `card_numbers` (13–19 digits passing the Luhn check) → `[CARD]`,
//! `national_ids` (US SSN, UK NINO) → `[NATIONAL_ID]`, `id_patterns` (regexes for student or
//! staff numbers) → `[ID]`, `custom` rules → their own replacement, `postcodes` (UK, US ZIP+4)
//! → `[POSTCODE]`, `phone_numbers` → `[PHONE]`, applied in that order. [`Redactor::fingerprint`]
//! names the settings, and the content hash includes it, so changing them re-indexes.

mod contact;
mod patterns;

use std::borrow::Cow;

use regex::Regex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Bumped whenever a built-in rule changes what it matches, so documents are re-indexed.
const RULES_VERSION: u32 = 2;
const MAX_PATTERN_BYTES: usize = 1024;
const MAX_RULES: usize = 64;

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RedactionConfig {
    /// Email addresses become `[EMAIL]`.
    pub emails: bool,
    /// Phone numbers become `[PHONE]`.
    pub phone_numbers: bool,
    /// Payment card numbers (13–19 digits, spaces or hyphens allowed) that pass the Luhn check.
    pub card_numbers: bool,
    /// US social security numbers (`123-45-6789`) and UK national insurance numbers.
    pub national_ids: bool,
    /// UK postcodes and US ZIP+4 codes.
    pub postcodes: bool,
    /// Regexes for student/staff numbers and similar, e.g. `\bS\d{7}\b`; matches become `[ID]`.
    pub id_patterns: Vec<String>,
    /// Any other regex with its own replacement: `{ pattern, replacement }` (default
    /// replacement `[REDACTED]`).
    pub custom: Vec<CustomRule>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CustomRule {
    pub pattern: String,
    /// Defaults to `[REDACTED]`.
    pub replacement: String,
}

impl RedactionConfig {
    pub fn enabled(&self) -> bool {
        self.emails
            || self.phone_numbers
            || self.card_numbers
            || self.national_ids
            || self.postcodes
            || !self.id_patterns.is_empty()
            || !self.custom.is_empty()
    }

    /// Every problem with the configured patterns, for start-up validation.
    pub fn validate(&self, errors: &mut Vec<String>) {
        if self.id_patterns.len() + self.custom.len() > MAX_RULES {
            errors.push(format!(
                "redaction: {} patterns, at most {MAX_RULES}",
                self.id_patterns.len() + self.custom.len()
            ));
        }
        let patterns = self
            .id_patterns
            .iter()
            .enumerate()
            .map(|(i, p)| (format!("redaction.id_patterns[{i}]"), p))
            .chain(
                self.custom
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (format!("redaction.custom[{i}].pattern"), &r.pattern)),
            );
        for (name, pattern) in patterns {
            if let Err(e) = compile_user(pattern) {
                errors.push(format!("{name}: {e}"));
            }
        }
        for (i, rule) in self.custom.iter().enumerate() {
            if rule.replacement.chars().any(char::is_control) {
                errors.push(format!(
                    "redaction.custom[{i}].replacement must not contain control characters"
                ));
            }
        }
    }
}

fn compile_user(pattern: &str) -> Result<Regex, String> {
    if pattern.is_empty() || pattern.len() > MAX_PATTERN_BYTES {
        return Err(format!("must be 1..={MAX_PATTERN_BYTES} bytes"));
    }
    let re = regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("not a valid regex: {e}"))?;
    if re.is_match("") {
        return Err("must not match the empty string".into());
    }
    Ok(re)
}

/// The compiled rules; built once at start-up.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    config: RedactionConfig,
    ids: Vec<Regex>,
    custom: Vec<(Regex, String)>,
    fingerprint: String,
}

impl Redactor {
    pub fn new(config: &RedactionConfig) -> Result<Self, String> {
        let mut errors = Vec::new();
        config.validate(&mut errors);
        if !errors.is_empty() {
            return Err(errors.join("; "));
        }
        let ids = config
            .id_patterns
            .iter()
            .map(|p| compile_user(p))
            .collect::<Result<_, _>>()?;
        let custom = config
            .custom
            .iter()
            .map(|r| {
                let with = if r.replacement.is_empty() {
                    "[REDACTED]".to_string()
                } else {
                    r.replacement.clone()
                };
                compile_user(&r.pattern).map(|re| (re, with))
            })
            .collect::<Result<_, _>>()?;
        let fingerprint = if config.enabled() {
            let settings = serde_json::to_string(config).unwrap_or_default();
            let mut h = Sha256::new();
            h.update(RULES_VERSION.to_le_bytes());
            h.update(settings.as_bytes());
            format!("redaction:{}", &hex::encode(h.finalize())[..16])
        } else {
            String::new()
        };
        Ok(Self {
            config: config.clone(),
            ids,
            custom,
            fingerprint,
        })
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled()
    }

    /// Names the settings (empty when redaction is off, so turning it on changes hashes and
    /// documents are re-indexed, while hashes made without redaction stay as they were).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let c = &self.config;
        let mut out: Cow<'a, str> = Cow::Borrowed(text);
        if c.emails {
            out = replace_spans(out, contact::email_spans, "[EMAIL]");
        }
        if c.card_numbers {
            out = replace_spans(out, patterns::card_spans, "[CARD]");
        }
        if c.national_ids {
            out = replace_spans(out, patterns::national_id_spans, "[NATIONAL_ID]");
        }
        for re in &self.ids {
            out = replace_regex(out, re, "[ID]");
        }
        for (re, with) in &self.custom {
            out = replace_regex(out, re, with);
        }
        if c.postcodes {
            out = replace_spans(out, patterns::postcode_spans, "[POSTCODE]");
        }
        if c.phone_numbers {
            out = replace_spans(out, contact::phone_spans, "[PHONE]");
        }
        out
    }
}

fn replace_regex<'a>(text: Cow<'a, str>, re: &Regex, with: &str) -> Cow<'a, str> {
    match re.replace_all(&text, regex::NoExpand(with)) {
        Cow::Borrowed(_) => text,
        Cow::Owned(s) => Cow::Owned(s),
    }
}

fn replace_spans<'a>(
    text: Cow<'a, str>,
    find: fn(&str) -> Vec<(usize, usize)>,
    with: &str,
) -> Cow<'a, str> {
    let spans = find(&text);
    if spans.is_empty() {
        return text;
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (s, e) in spans {
        if s < at {
            continue; // overlaps the previous match
        }
        out.push_str(&text[at..s]);
        out.push_str(with);
        at = e;
    }
    out.push_str(&text[at..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> RedactionConfig {
        RedactionConfig {
            emails: true,
            phone_numbers: true,
            card_numbers: true,
            national_ids: true,
            postcodes: true,
            id_patterns: vec![r"\bS\d{7}\b".into()],
            custom: vec![CustomRule {
                pattern: r"(?i)\bproject\s+falcon\b".into(),
                replacement: "[CODENAME]".into(),
            }],
        }
    }

    #[test]
    fn every_rule_in_one_text() {
        let r = Redactor::new(&all()).unwrap();
        let text = "Jane (jane@uni.ac.uk, student S1234567, SSN 123-45-6789, NINO AB123456C) \
                    paid 4111 1111 1111 1111 from SW1A 1AA / 90210-1234, phone +44 20 7946 0958, \
                    about Project Falcon. Order 4111 1111 1111 1112 stays.";
        assert_eq!(
            r.redact(text),
            "Jane ([EMAIL], student [ID], SSN [NATIONAL_ID], NINO [NATIONAL_ID]) \
             paid [CARD] from [POSTCODE] / [POSTCODE], phone [PHONE], \
             about [CODENAME]. Order 4111 1111 1111 1112 stays."
        );
    }

    #[test]
    fn off_by_default_with_an_empty_fingerprint() {
        let text = "jane@example.com +1 555 123 4567";
        let off = Redactor::new(&RedactionConfig::default()).unwrap();
        assert!(!off.enabled());
        assert_eq!(off.fingerprint(), "");
        assert!(matches!(off.redact(text), Cow::Borrowed(_)));
        let emails_only = Redactor::new(&RedactionConfig {
            emails: true,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(emails_only.redact(text), "[EMAIL] +1 555 123 4567");
    }

    #[test]
    fn fingerprint_changes_with_the_settings() {
        let a = Redactor::new(&all()).unwrap();
        let mut other = all();
        other.id_patterns.push(r"\bT\d{6}\b".into());
        let b = Redactor::new(&other).unwrap();
        assert!(!a.fingerprint().is_empty());
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(
            a.fingerprint(),
            Redactor::new(&all()).unwrap().fingerprint()
        );
    }

    #[test]
    fn bad_patterns_are_reported_at_start_up() {
        let config = RedactionConfig {
            id_patterns: vec!["(unclosed".into(), "x*".into()],
            custom: vec![CustomRule {
                pattern: "ok".into(),
                replacement: "a\u{0}b".into(),
            }],
            ..Default::default()
        };
        let mut errors = Vec::new();
        config.validate(&mut errors);
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].starts_with("redaction.id_patterns[0]"));
        assert!(errors[1].contains("empty string"));
        assert!(Redactor::new(&config).is_err());
    }

    #[test]
    fn replacement_is_literal() {
        let r = Redactor::new(&RedactionConfig {
            custom: vec![CustomRule {
                pattern: "secret".into(),
                replacement: "$0-$1".into(),
            }],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(r.redact("a secret"), "a $0-$1");
    }
}
