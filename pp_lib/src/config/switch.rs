//! On/off settings: `on`/`off`, also `true`/`false`, `yes`/`no`, `1`/`0`.

/// `on` or `off` (also true/false, yes/no, 1/0), any case; anything else is refused with the
/// reason.
pub fn parse_switch(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        _ => Err(format!("`{text}` is neither on nor off")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_on_and_off_is_taken_and_nothing_else() {
        for on in ["on", "ON", " true", "yes", "1"] {
            assert_eq!(parse_switch(on), Ok(true), "{on:?}");
        }
        for off in ["off", "False", "no", "0 "] {
            assert_eq!(parse_switch(off), Ok(false), "{off:?}");
        }
        for neither in ["", "2", "maybe", "o n"] {
            assert!(parse_switch(neither).is_err(), "{neither:?}");
        }
    }
}
