//! Money as integer nano-dollars (10^-9 US$): the unit of the ledger and of every budget sum.
//!
//! Owns the one conversion from Claude Code's floating-point dollars ([`Nanos::from_usd`]) and
//! back for display ([`Nanos::dollars`]). Floats exist only at those two edges; everything in
//! between adds and compares integers, so a sum is exact, associative and never NaN. It must never
//! wrap: every operation saturates.

use std::fmt;

/// A signed amount of nano-dollars (10^-9 US dollars).
///
/// Why nano and not micro: every price in the table is a whole number of milli-dollars per
/// million tokens (the cheapest, $0.03 per million cache reads, is 30 n$ a token), so every token's
/// price is a whole number of nano-dollars and orch's own estimates are exact; in micro-dollars a
/// cache read would cost a fraction of the unit and each estimate would round. An i64 still holds
/// 9.2·10^9 dollars, thousands of times any real budget, and the parser caps a cost at $10^6.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nanos(pub i64);

impl Nanos {
    /// Nothing.
    pub const ZERO: Nanos = Nanos(0);

    /// Dollars to nano-dollars, rounded to the nearest; NaN is zero and anything beyond the
    /// i64 range saturates (the parser has already rejected non-finite and negative costs and
    /// capped large ones; this is the last line of defence, not the rule).
    pub fn from_usd(usd: f64) -> Nanos {
        if usd.is_nan() {
            return Nanos::ZERO;
        }
        // `as` saturates at the i64 bounds.
        Nanos((usd * 1e9).round() as i64)
    }

    /// The amount in dollars, for display and for results.json (which keeps zen's floats).
    pub fn dollars(self) -> f64 {
        self.0 as f64 / 1e9
    }

    /// `self + other`, saturating.
    pub fn saturating_add(self, other: Nanos) -> Nanos {
        Nanos(self.0.saturating_add(other.0))
    }

    /// `self - other`, saturating.
    pub fn saturating_sub(self, other: Nanos) -> Nanos {
        Nanos(self.0.saturating_sub(other.0))
    }

    /// Zero when negative (a spend is never below zero).
    pub fn non_negative(self) -> Nanos {
        Nanos(self.0.max(0))
    }
}

/// Prints dollars, honouring the precision asked for (`{:.4}` gives `1.2000`).
impl fmt::Display for Nanos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.dollars(), f)
    }
}

impl serde::Serialize for Nanos {
    /// As dollars (a float), the unit every JSON output of orch uses.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.dollars())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_and_saturate() {
        assert_eq!(Nanos::from_usd(0.071324), Nanos(71_324_000));
        assert_eq!(Nanos::from_usd(1.0000000004), Nanos(1_000_000_000));
        assert_eq!(
            Nanos::from_usd(0.03 / 1e6),
            Nanos(30),
            "a token at $0.03 per million"
        );
        assert_eq!(Nanos::from_usd(f64::NAN), Nanos::ZERO);
        assert_eq!(Nanos::from_usd(f64::INFINITY), Nanos(i64::MAX));
        assert_eq!(Nanos::from_usd(f64::NEG_INFINITY), Nanos(i64::MIN));
        assert_eq!(Nanos(i64::MAX).saturating_add(Nanos(1)), Nanos(i64::MAX));
        assert_eq!(Nanos(-5).non_negative(), Nanos::ZERO);
        assert_eq!(format!("{:.4}", Nanos(1_200_000_000)), "1.2000");
    }

    #[test]
    fn ten_cents_ten_times_is_exactly_a_dollar() {
        // The float sum is 0.9999999999999999: a $1 limit would not count as reached.
        let float: f64 = (0..10).map(|_| 0.1).sum();
        assert!(float < 1.0);
        let nanos = (0..10).fold(Nanos::ZERO, |a, _| a.saturating_add(Nanos::from_usd(0.1)));
        assert_eq!(nanos, Nanos::from_usd(1.0));
    }
}
