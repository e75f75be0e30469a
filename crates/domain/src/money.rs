//! Money as integer minor units with an ISO 4217 currency: never floating point.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidMoney {
    #[error("currency must be three ASCII letters, got {0:?}")]
    Currency(String),
}

/// An ISO 4217 currency code, stored upper case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    pub fn parse(s: &str) -> Result<Self, InvalidMoney> {
        let b = s.as_bytes();
        if b.len() == 3 && b.iter().all(u8::is_ascii_alphabetic) {
            Ok(Currency([b[0].to_ascii_uppercase(), b[1].to_ascii_uppercase(), b[2].to_ascii_uppercase()]))
        } else {
            Err(InvalidMoney::Currency(s.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("ASCII by construction")
    }
}

impl TryFrom<String> for Currency {
    type Error = InvalidMoney;
    fn try_from(s: String) -> Result<Self, InvalidMoney> {
        Currency::parse(&s)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.as_str().to_owned()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    /// Amount in the currency's minor unit (cents for USD).
    pub minor: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(minor: i64, currency: Currency) -> Self {
        Money { minor, currency }
    }

    /// The amount in the currency's major unit (dollars for USD, yen for JPY).
    pub fn major(&self) -> f64 {
        self.minor as f64 / 10f64.powi(self.currency.decimals() as i32)
    }
}

impl Currency {
    /// Digits after the decimal point of the currency's minor unit, as ISO 4217 has them.
    pub fn decimals(&self) -> u32 {
        match self.as_str() {
            "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX" | "VND" | "VUV"
            | "XAF" | "XOF" | "XPF" => 0,
            "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
            _ => 2,
        }
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.minor, self.currency.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_in_major_units_follow_the_currency() {
        let in_ = |minor, c: &str| Money::new(minor, Currency::parse(c).unwrap()).major();
        assert_eq!(in_(12_345, "usd"), 123.45);
        assert_eq!(in_(12_345, "JPY"), 12_345.0);
        assert_eq!(in_(12_345, "KWD"), 12.345);
    }

    #[test]
    fn currencies_are_normalised_and_checked() {
        assert_eq!(Currency::parse("usd").unwrap().as_str(), "USD");
        assert!(Currency::parse("US").is_err());
        assert!(Currency::parse("U$D").is_err());
        let m = Money::new(4_900, Currency::parse("EUR").unwrap());
        assert_eq!(m.to_string(), "4900 EUR");
        assert_eq!(serde_json::to_value(m).unwrap(), serde_json::json!({"minor": 4900, "currency": "EUR"}));
    }
}
