//! [`Rate`]: requests per unit of time, as rate limits and producers take them.

use std::fmt;
use std::str::FromStr;

/// Requests per unit of time, e.g. `50/s`, `3000/m`, `10/h`, `1000/d`, or a bare number (per
/// second). From one a day to a million a second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    per_second: f64,
    text_count: f64,
    unit: char,
}

impl Rate {
    pub const MIN_PER_SECOND: f64 = 1.0 / 86_400.0;
    pub const MAX_PER_SECOND: f64 = 1_000_000.0;

    pub fn per_second(&self) -> f64 {
        self.per_second
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let usage = "use e.g. 50/s, 3000/m, 10/h or 1000/d";
        let (count, unit) = text.trim().split_once('/').unwrap_or((text.trim(), "s"));
        let seconds = match unit {
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3_600.0,
            "d" => 86_400.0,
            _ => return Err(format!("`{text}` has an unknown unit `{unit}`: {usage}")),
        };
        let count: f64 = count
            .parse()
            .map_err(|_| format!("`{text}` is not a rate: {usage}"))?;
        let per_second = count / seconds;
        if !per_second.is_finite()
            || !(Self::MIN_PER_SECOND..=Self::MAX_PER_SECOND).contains(&per_second)
        {
            return Err(format!(
                "`{text}` is out of range: from 1/d to {}/s",
                Self::MAX_PER_SECOND
            ));
        }
        Ok(Rate {
            per_second,
            text_count: count,
            unit: unit.chars().next().unwrap_or('s'),
        })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.text_count, self.unit)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    proptest::proptest! {
        #[test]
        fn any_rate_taken_paces_messages_a_clock_can_schedule(
            text in "-?[0-9]{0,20}(\\.[0-9]{0,10})?(e-?[0-9]{1,3})?(/[smhdx])?|.{0,10}",
        ) {
            if let Ok(rate) = text.parse::<Rate>() {
                let per_second = rate.per_second();
                proptest::prop_assert!(per_second.is_finite());
                proptest::prop_assert!((Rate::MIN_PER_SECOND..=Rate::MAX_PER_SECOND).contains(&per_second));
                proptest::prop_assert!(Duration::try_from_secs_f64(1.0 / per_second).is_ok());
            }
        }
    }
}
