//! Typed account values: an [`Email`] or [`Password`] that exists has passed its rules.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::platform::ids::id_type;

id_type!(UserId);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Customer,
    Seller,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Seller => "seller",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "customer" => Some(Role::Customer),
            "seller" => Some(Role::Seller),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// A normalised email address: trimmed, lower-cased, one `@`, a dotted domain.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let s = raw.trim().to_lowercase();
        if s.len() > 254 {
            return Err("email must be at most 254 characters");
        }
        let Some((local, domain)) = s.split_once('@') else {
            return Err("email must contain '@'");
        };
        if local.is_empty() || local.len() > 64 {
            return Err("email must have 1-64 characters before '@'");
        }
        if domain.contains('@') {
            return Err("email must contain exactly one '@'");
        }
        let labels: Vec<&str> = domain.split('.').collect();
        if labels.len() < 2
            || labels
                .iter()
                .any(|l| l.is_empty() || l.starts_with('-') || l.ends_with('-'))
        {
            return Err("email domain must be a dotted name such as example.com");
        }
        if s.chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>()[],;:\\\"".contains(c))
        {
            return Err("email contains a character that is not allowed");
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password that meets the policy (8–128 characters); never printed.
pub struct Password(SecretString);

impl Password {
    pub fn parse(raw: String) -> Result<Self, &'static str> {
        let n = raw.chars().count();
        if n < 8 {
            return Err("password must be at least 8 characters");
        }
        if n > 128 {
            return Err("password must be at most 128 characters");
        }
        Ok(Self(SecretString::from(raw)))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

/// A display name: 1–100 characters after trimming, no control characters.
pub fn parse_name(raw: &str, field: &'static str) -> Result<String, String> {
    let s = raw.trim();
    let n = s.chars().count();
    if n == 0 || n > 100 {
        return Err(format!("{field} must be 1-100 characters"));
    }
    if s.chars().any(char::is_control) {
        return Err(format!("{field} must not contain control characters"));
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised() {
        assert_eq!(
            Email::parse("  Alice@Example.COM ").unwrap().as_str(),
            "alice@example.com"
        );
    }

    #[test]
    fn bad_emails_are_refused() {
        for bad in [
            "",
            "alice",
            "@example.com",
            "alice@",
            "alice@example",
            "a@b@c.com",
            "al ice@example.com",
            "alice@-x.com",
            "alice@x..com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn password_policy() {
        assert!(Password::parse("short".into()).is_err());
        assert!(Password::parse("x".repeat(129)).is_err());
        assert!(Password::parse("long enough".into()).is_ok());
    }

    #[test]
    fn names() {
        assert_eq!(parse_name("  Kim  ", "name").unwrap(), "Kim");
        assert!(parse_name("   ", "name").is_err());
        assert!(parse_name("a\u{7}b", "name").is_err());
    }
}
