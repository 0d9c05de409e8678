//! Typed readings of metadata values (stored as strings): numbers, dates and booleans, and
//! order-preserving encodings of numbers and dates for index terms.

/// A finite number in plain decimal or exponent notation (`42`, `-1.5`, `2e3`). `inf`, `NaN`,
/// hex and empty strings are not numbers.
pub fn number(value: &str) -> Option<f64> {
    let v = value.trim();
    let plain = !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'))
        && v.bytes().any(|b| b.is_ascii_digit());
    if !plain {
        return None;
    }
    v.parse::<f64>().ok().filter(|n| n.is_finite())
}

/// `true` / `false` (exactly, lower case).
pub fn boolean(value: &str) -> Option<bool> {
    match value {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// Milliseconds since 1970-01-01T00:00:00Z of an RFC 3339 date-time
/// (`2024-05-01T12:30:00Z`, `2024-05-01T12:30:00.250+02:00`, `t`/`z` and a space for `T` are
/// accepted) or a full date (`2024-05-01`, midnight UTC). Years 0000..=9999.
pub fn date_millis(value: &str) -> Option<i64> {
    let b = value.trim().as_bytes();
    let digits = |s: &[u8]| -> Option<i64> {
        if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(s).ok()?.parse().ok()
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (year, month, day) = (digits(&b[0..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    if b.len() == 10 {
        return Some(days * 86_400_000);
    }
    if !matches!(b[10], b'T' | b't' | b' ') || b.len() < 20 || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, m, s) = (
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
    );
    if h > 23 || m > 59 || s > 60 {
        return None;
    }
    let mut rest = &b[19..];
    let mut millis = 0i64;
    if rest.first() == Some(&b'.') {
        let n = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        let frac = &rest[1..1 + n];
        let ms: Vec<u8> = frac.iter().copied().chain(*b"000").take(3).collect();
        millis = digits(&ms)?;
        rest = &rest[1 + n..];
    }
    let offset_secs = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (oh, om) = (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?);
            if oh > 23 || om > 59 {
                return None;
            }
            let secs = oh * 3600 + om * 60;
            if *sign == b'-' { -secs } else { secs }
        }
        _ => return None,
    };
    let secs = days * 86_400 + h * 3600 + m * 60 + s.min(59) - offset_secs;
    Some(secs * 1000 + millis)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// 16 hex digits whose byte order is the numeric order of `value` (negative numbers first).
pub fn sortable_f64(value: f64) -> String {
    // -0.0 and 0.0 are the same number.
    let value = if value == 0.0 { 0.0 } else { value };
    let bits = value.to_bits();
    let key = if value.is_sign_negative() {
        !bits
    } else {
        bits | (1 << 63)
    };
    format!("{key:016x}")
}

/// 16 hex digits whose byte order is the order of `value`.
pub fn sortable_i64(value: i64) -> String {
    format!("{:016x}", (value as u64) ^ (1 << 63))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(number("42"), Some(42.0));
        assert_eq!(number("-1.5"), Some(-1.5));
        assert_eq!(number("2e3"), Some(2000.0));
        for bad in ["", "inf", "NaN", "0x10", "1e999", "12 apples", "-", "."] {
            assert_eq!(number(bad), None, "{bad}");
        }
    }

    #[test]
    fn dates() {
        assert_eq!(date_millis("1970-01-01"), Some(0));
        assert_eq!(date_millis("1970-01-02T00:00:00Z"), Some(86_400_000));
        assert_eq!(
            date_millis("2024-05-01T12:00:00+02:00"),
            date_millis("2024-05-01T10:00:00Z")
        );
        assert_eq!(
            date_millis("2024-05-01T10:00:00.25Z").unwrap()
                - date_millis("2024-05-01T10:00:00Z").unwrap(),
            250
        );
        assert_eq!(date_millis("2000-03-01"), Some(951_868_800_000));
        assert!(date_millis("1969-12-31").unwrap() < 0);
        for bad in [
            "2024-02-30",
            "2023-13-01",
            "2024-05-01T12:00:00",
            "2024-05-01T25:00:00Z",
            "May 1 2024",
            "2024",
            "2024-05-01T12:00Z",
        ] {
            assert_eq!(date_millis(bad), None, "{bad}");
        }
    }

    #[test]
    fn encodings_keep_order() {
        let numbers = [-1e9, -2.5, -0.0, 0.0, 1e-9, 3.0, 2019.0, 1e300];
        for w in numbers.windows(2) {
            assert!(sortable_f64(w[0]) <= sortable_f64(w[1]), "{w:?}");
        }
        let ints = [i64::MIN, -5, 0, 7, i64::MAX];
        for w in ints.windows(2) {
            assert!(sortable_i64(w[0]) < sortable_i64(w[1]), "{w:?}");
        }
    }
}
