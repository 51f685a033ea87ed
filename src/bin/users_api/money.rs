//! Amounts of money: whole cents in an `i64`, never floats, so that a
//! transfer moves exactly what it says and the sum of balances stays put.
//! JSON shows them as numbers with up to two decimals (`12.5` is 1250 cents).

use serde::{Serialize, Serializer};

/// The largest amount accepted (a trillion): keeps every amount exact in the
/// `f64` that JSON numbers become, and sums far from `i64` overflow.
const MAX_CENTS: i64 = 100_000_000_000_000;

/// An amount in cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cents(pub i64);

/// Why a number is not an amount; each maps to a FastAPI-style error type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("Input should be a valid number")]
    NotANumber,
    #[error("Input should have no more than 2 decimal places")]
    TooPrecise,
    #[error("Input should be less than or equal to 1000000000000")]
    TooLarge,
}

impl AmountError {
    /// The pydantic error type of this error.
    pub fn kind(self) -> &'static str {
        match self {
            AmountError::NotANumber => "float_parsing",
            AmountError::TooPrecise => "decimal_max_places",
            AmountError::TooLarge => "less_than_equal",
        }
    }
}

impl Cents {
    /// From a JSON number or a query-string value like `"25"` or `"25.50"`.
    /// Negative amounts parse (the caller decides whether they are allowed).
    pub fn from_f64(value: f64) -> Result<Cents, AmountError> {
        if !value.is_finite() {
            return Err(AmountError::NotANumber);
        }
        let scaled = value * 100.0;
        let rounded = scaled.round();
        // 12.345 * 100 is 1234.4999...; a true two-decimal input lands within
        // a tiny fraction of a cent of a whole cent.
        if (scaled - rounded).abs() > 1e-6 {
            return Err(AmountError::TooPrecise);
        }
        if rounded.abs() > MAX_CENTS as f64 {
            return Err(AmountError::TooLarge);
        }
        Ok(Cents(rounded as i64))
    }

    /// Parses query-string text (FastAPI's `float` query parameter).
    pub fn parse(text: &str) -> Result<Cents, AmountError> {
        let value: f64 = text.trim().parse().map_err(|_| AmountError::NotANumber)?;
        Cents::from_f64(value)
    }

    pub fn as_f64(self) -> f64 {
        self.0 as f64 / 100.0
    }
}

impl Serialize for Cents {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.as_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_parse_to_exact_cents() {
        assert_eq!(Cents::parse("25"), Ok(Cents(2500)));
        assert_eq!(Cents::parse("0.1"), Ok(Cents(10)));
        assert_eq!(Cents::parse("19.99"), Ok(Cents(1999)));
        assert_eq!(Cents::parse("-3.5"), Ok(Cents(-350)));
        assert_eq!(Cents::parse("1.005"), Err(AmountError::TooPrecise));
        assert_eq!(Cents::parse("abc"), Err(AmountError::NotANumber));
        assert_eq!(Cents::parse("NaN"), Err(AmountError::NotANumber));
        assert_eq!(Cents::parse("inf"), Err(AmountError::NotANumber));
        assert_eq!(Cents::parse("1e13"), Err(AmountError::TooLarge));
    }

    #[test]
    fn cents_show_as_decimal_numbers() {
        assert_eq!(serde_json::to_string(&Cents(1250)).unwrap(), "12.5");
        assert_eq!(serde_json::to_string(&Cents(0)).unwrap(), "0.0");
    }
}
