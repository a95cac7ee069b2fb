//! The reconcile safeguard's threshold (R-REC-3): how many users one delta round may block,
//! suspend or remove (group member removals included) before it is held for an admin. Written
//! `10%` (a share of the tenant's bound users, the default) or `500` (a number of changes); the
//! same text is what `M365_RECONCILE_SAFEGUARD` takes and what a held plan shows.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Safeguard {
    /// A share (0–1) of the tenant's bound users (`10%` is `Share(0.10)`).
    Share(f64),
    /// A number of destructive changes.
    Absolute(usize),
}

impl Default for Safeguard {
    fn default() -> Self {
        Self::Share(0.10)
    }
}

/// Why a threshold text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "safeguard {0:?} is not a percentage from 0% to 100% (e.g. `10%`) or a whole number of changes (e.g. `500`)"
)]
pub struct InvalidSafeguard(pub String);

impl Safeguard {
    /// A share from a ratio 0–1 (the former `M365_RECONCILE_SAFEGUARD_RATIO`).
    ///
    /// # Errors
    /// A ratio outside 0–1 or not a number.
    pub fn from_ratio(text: &str) -> Result<Self, InvalidSafeguard> {
        text.trim()
            .parse::<f64>()
            .ok()
            .filter(|r| (0.0..=1.0).contains(r))
            .map(Self::Share)
            .ok_or_else(|| InvalidSafeguard(text.to_owned()))
    }

    /// The most destructive changes a round may make in a tenant of `bound` bound users;
    /// more trips the safeguard.
    #[must_use]
    pub fn allowed(self, bound: usize) -> usize {
        match self {
            // Counts of users, far below f64's exact integer range; the floor keeps "more than
            // 10%" exact (`d > 0.1 × bound` ⇔ `d > ⌊0.1 × bound⌋` for a whole `d`).
            #[allow(
                clippy::cast_precision_loss,
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss
            )]
            Self::Share(share) => (share * bound as f64).floor() as usize,
            Self::Absolute(n) => n,
        }
    }
}

impl FromStr for Safeguard {
    type Err = InvalidSafeguard;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidSafeguard(text.to_owned());
        let t = text.trim();
        if let Some(percent) = t.strip_suffix('%') {
            let p: f64 = percent.trim().parse().map_err(|_| bad())?;
            if !(0.0..=100.0).contains(&p) {
                return Err(bad());
            }
            return Ok(Self::Share(p / 100.0));
        }
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        t.parse().map(Self::Absolute).map_err(|_| bad())
    }
}

impl fmt::Display for Safeguard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Share(share) => {
                // 0.1 → "10%", 0.125 → "12.5%" (no float noise such as 10.000000000000002).
                let percent = (share * 100.0 * 1000.0).round() / 1000.0;
                write!(f, "{percent}%")
            }
            Self::Absolute(n) => write!(f, "{n}"),
        }
    }
}

impl Serialize for Safeguard {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Safeguard {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_percentage_is_a_share_of_the_bound_users_and_more_than_it_trips() {
        // R-REC-3
        let ten: Safeguard = "10%".parse().unwrap();
        assert_eq!(ten, Safeguard::Share(0.10));
        assert_eq!(ten.allowed(10), 1);
        assert_eq!(ten.allowed(25), 2);
        assert_eq!(ten.allowed(5), 0);
        assert_eq!(ten.to_string(), "10%");
        assert_eq!(
            " 12.5 % ".parse::<Safeguard>().unwrap().to_string(),
            "12.5%"
        );
        assert_eq!(Safeguard::default(), ten);
    }

    #[test]
    fn a_whole_number_is_an_absolute_count_whatever_the_tenant_size() {
        // R-REC-3
        let n: Safeguard = "500".parse().unwrap();
        assert_eq!(n, Safeguard::Absolute(500));
        assert_eq!(n.allowed(10), 500);
        assert_eq!(n.allowed(100_000), 500);
        assert_eq!(n.to_string(), "500");
    }

    #[test]
    fn anything_else_is_refused_with_the_text_in_the_message() {
        // R-REC-3
        for bad in [
            "", "%", "ten", "-1", "101%", "-5%", "1.5", "0.1", "10 users", "1e3",
        ] {
            let e = bad.parse::<Safeguard>().unwrap_err();
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
        assert!(Safeguard::from_ratio("1.5").is_err());
        assert_eq!(
            Safeguard::from_ratio("0.25").unwrap(),
            Safeguard::Share(0.25)
        );
    }

    #[test]
    fn the_threshold_round_trips_through_json_as_its_text() {
        let json = serde_json::to_string(&Safeguard::Absolute(3)).unwrap();
        assert_eq!(json, "\"3\"");
        let back: Safeguard = serde_json::from_str("\"7%\"").unwrap();
        assert_eq!(back, Safeguard::Share(0.07));
    }
}
