//! Durations as settings take them: `500ms`, `4s`, `2m`, `1h`, `1d`, `1h30m`, every one bounded so
//! a clock can always add it, and written back the same way ([`format_duration`]).

use std::time::Duration;

/// Parses a duration such as `250ms`, `4s`, `2m`, `1h`, `1d` or `1h30m`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration: use e.g. 500ms, 4s, 2m, 1h".to_owned());
    }
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit_len = rest[digits..]
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len() - digits);
        let (number, unit) = (&rest[..digits], &rest[digits..digits + unit_len]);
        let number: u64 = number
            .parse()
            .map_err(|_| format!("`{text}` is not a duration: use e.g. 500ms, 4s, 2m, 1h"))?;
        let part = match unit {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number.saturating_mul(60)),
            "h" => Duration::from_secs(number.saturating_mul(3_600)),
            "d" => Duration::from_secs(number.saturating_mul(86_400)),
            _ => {
                return Err(format!(
                    "`{text}` has an unknown unit `{unit}`: use ms, s, m, h or d"
                ));
            }
        };
        total = total.saturating_add(part);
        rest = &rest[digits + unit_len..];
    }
    Ok(total)
}

/// The longest any duration setting may be: a century. Far beyond any real timeout, window or
/// interval, and short enough that a clock, a timer or a deadline can always add it (a larger
/// one makes `Instant + duration` overflow and panic).
pub const MAX_DURATION_SETTING: Duration = Duration::from_secs(100 * 365 * 86_400);

/// The longest statement timeout PostgreSQL takes: `statement_timeout` is a 32-bit count of
/// milliseconds (about 24.8 days).
pub const MAX_STATEMENT_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);

/// The longest connect timeout: a day. libpq takes whole seconds in a 32-bit integer, and no
/// one waits a day for a connection.
pub const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(86_400);

/// A duration setting ([`parse_duration`]'s syntax) from zero to [`MAX_DURATION_SETTING`].
/// Flags use this, never the unbounded parser.
pub fn duration_setting(text: &str) -> Result<Duration, String> {
    duration_within(text, Duration::ZERO, MAX_DURATION_SETTING)
}

/// A duration setting that must be more than zero (a period, a timeout): from 1ms to
/// [`MAX_DURATION_SETTING`].
pub fn positive_duration_setting(text: &str) -> Result<Duration, String> {
    duration_within(text, Duration::from_millis(1), MAX_DURATION_SETTING)
}

/// `text` as a duration from `least` to `most`, or a one-line error that gives the range.
pub fn duration_within(text: &str, least: Duration, most: Duration) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration < least || duration > most {
        return Err(format!(
            "`{}` is out of range: from {} to {}",
            text.trim(),
            format_duration(least),
            format_duration(most)
        ));
    }
    Ok(duration)
}

/// A duration in [`parse_duration`]'s syntax, largest units first (`36500d`, `1h30m`,
/// `250ms`, `0s`).
pub fn format_duration(duration: Duration) -> String {
    let mut millis = duration.as_millis();
    if millis == 0 {
        return "0s".to_owned();
    }
    let mut text = String::new();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if millis >= size {
            text.push_str(&format!("{}{unit}", millis / size));
            millis %= size;
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::database::{parse_connect_timeout, parse_statement_timeout};

    #[test]
    fn durations_parse() {
        let cases = [
            ("4", Duration::from_secs(4)),
            ("4s", Duration::from_secs(4)),
            ("250ms", Duration::from_millis(250)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3_600)),
            ("1h30m", Duration::from_secs(5_400)),
            ("1d", Duration::from_secs(86_400)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text), Ok(expected), "parsing {text:?}");
        }
        for bad in ["", "s", "4x", "-1s", "1.5s", "ms4"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn duration_settings_refuse_what_no_clock_or_server_takes() {
        assert_eq!(duration_setting("36500d"), Ok(MAX_DURATION_SETTING));
        let refused = duration_setting("999999999d").expect_err("beyond a century");
        assert_eq!(refused, "`999999999d` is out of range: from 0s to 36500d");
        assert!(positive_duration_setting("0").is_err());
        assert_eq!(
            parse_statement_timeout("24d"),
            Ok(Duration::from_secs(24 * 86_400))
        );
        assert_eq!(
            parse_statement_timeout("25d"),
            Err("`25d` is out of range: from 0s to 24d20h31m23s647ms".to_owned())
        );
        assert!(parse_connect_timeout("0").is_err());
        assert_eq!(
            format_duration(Duration::from_millis(5_400_250)),
            "1h30m250ms"
        );
    }

    proptest::proptest! {
        #[test]
        fn any_duration_setting_taken_is_one_a_clock_can_add(
            text in "[0-9]{1,25}(ms|s|m|h|d)?([0-9]{1,25}(ms|s|m|h|d))?|.{0,12}",
        ) {
            if let Ok(duration) = duration_setting(&text) {
                proptest::prop_assert!(duration <= MAX_DURATION_SETTING);
                // What the programs do with it: a deadline from now.
                proptest::prop_assert!(std::time::Instant::now().checked_add(duration).is_some());
            }
            if let Ok(duration) = parse_statement_timeout(&text) {
                proptest::prop_assert!(duration.as_millis() <= i32::MAX as u128);
            }
        }
    }
}
