//! The work pp does: add up the numbers `1..=n`.
//!
//! The original project looped and slept; we use the closed form `n(n+1)/2`, computed in `i64` with
//! checked arithmetic. `add_up_to` is an `i32`, so the largest input, `i32::MAX`, gives
//! 2,305,843,008,139,952,128, well inside `i64`; the checks make that a proof rather than a hope.

use crate::error::InputError;

/// Returns `1 + 2 + … + n`, or an error for a negative `n`.
pub fn sum_up_to(n: i32) -> Result<i64, InputError> {
    if n < 0 {
        return Err(InputError::NegativeAddUpTo(i64::from(n)));
    }
    let n = i64::from(n);
    // One of n and n + 1 is even, so halving it first keeps the product exact.
    let (even, other) = if n % 2 == 0 { (n, n + 1) } else { (n + 1, n) };
    (even / 2)
        .checked_mul(other)
        .ok_or_else(|| InputError::AddUpToTooLarge(n.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_at_the_edges() {
        let cases: [(i32, i64); 6] = [
            (0, 0),
            (1, 1),
            (2, 3),
            (4, 10),
            (100, 5050),
            (i32::MAX, 2_305_843_008_139_952_128),
        ];
        for (n, expected) in cases {
            assert_eq!(sum_up_to(n), Ok(expected), "sum_up_to({n})");
        }
    }

    #[test]
    fn closed_form_matches_the_loop() {
        for n in 0..=2_000 {
            let looped: i64 = (1..=i64::from(n)).sum();
            assert_eq!(sum_up_to(n), Ok(looped), "sum_up_to({n})");
        }
    }

    #[test]
    fn negative_input_is_rejected() {
        assert_eq!(sum_up_to(-1), Err(InputError::NegativeAddUpTo(-1)));
        assert_eq!(
            sum_up_to(i32::MIN),
            Err(InputError::NegativeAddUpTo(i64::from(i32::MIN)))
        );
    }
}
