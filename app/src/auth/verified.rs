//! A small memo of signed tokens (access tokens, waiting-room passes) whose signature,
//! algorithm, issuer and audience were already verified (#18): a client sends the same token
//! on every request, and verifying it again (base64, HMAC-SHA256, three JSON parses) was
//! ~12 % of the CPU of a refused order and ~10 % of a waiting-room poll. All that is checked is
//! a property of the token's bytes and of the keys, which never change in a running process,
//! except the expiry: the caller checks it again on every hit, and an expired hit goes back
//! through the full verification (which gives the precise error). Only verified tokens are
//! stored, compared by their full text; one memo per key and validation rule set.
//!
//! Direct-mapped: a token's slot comes from the last bytes of its signature, so a lookup is
//! one uncontended lock and one string comparison, a miss costs one store, and the memory is
//! bounded by `SLOTS` tokens (~2 MB) however many users there are.

use std::sync::Mutex;

const SLOTS: usize = 16384;

struct Entry<C> {
    token: Box<str>,
    claims: C,
}

pub struct VerifiedTokens<C> {
    slots: Box<[Mutex<Option<Entry<C>>>]>,
}

impl<C> Default for VerifiedTokens<C> {
    fn default() -> Self {
        Self {
            slots: (0..SLOTS).map(|_| Mutex::new(None)).collect(),
        }
    }
}

/// The slot of a token: its last 8 bytes (the signature's, uniformly spread for genuine
/// tokens; a crafted one can only evict, never match another token), mixed.
fn slot(token: &str) -> usize {
    let b = token.as_bytes();
    let mut tail = [0u8; 8];
    let n = b.len().min(8);
    tail[..n].copy_from_slice(&b[b.len() - n..]);
    let h = u64::from_le_bytes(tail).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h >> 50) as usize % SLOTS
}

impl<C: Clone> VerifiedTokens<C> {
    /// The claims of `token` if it was verified before and `still_valid` accepts them.
    pub fn get(&self, token: &str, still_valid: impl Fn(&C) -> bool) -> Option<C> {
        let guard = self.slots[slot(token)].lock().ok()?;
        let e = guard.as_ref()?;
        (&*e.token == token && still_valid(&e.claims)).then(|| e.claims.clone())
    }

    /// Remembers a token that passed the full verification.
    pub fn put(&self, token: &str, claims: &C) {
        if let Ok(mut guard) = self.slots[slot(token)].lock() {
            *guard = Some(Entry {
                token: token.into(),
                claims: claims.clone(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Role, jwt::Claims};

    fn claims(sub: &str) -> Claims {
        Claims {
            sub: sub.into(),
            roles: vec![Role::Customer],
            iat: 0,
            exp: 100,
            iss: "i".into(),
            aud: "a".into(),
        }
    }

    #[test]
    fn a_stored_token_is_found_only_by_its_exact_text() {
        let c = VerifiedTokens::<Claims>::default();
        c.put("aaa.bbb.sig1", &claims("1"));
        assert_eq!(c.get("aaa.bbb.sig1", |_| true), Some(claims("1")));
        // same slot bytes (same last 8 bytes), different token: no match
        assert_eq!(c.get("xxx.bbb.sig1", |_| true), None);
        assert_eq!(c.get("aaa.bbb.sig2", |_| true), None);
        assert_eq!(c.get("", |_| true), None);
    }

    #[test]
    fn a_hit_that_is_no_longer_valid_is_a_miss() {
        let c = VerifiedTokens::<Claims>::default();
        c.put("t.o.k", &claims("1"));
        assert_eq!(c.get("t.o.k", |cl| cl.exp > 100), None);
    }

    #[test]
    fn a_colliding_token_replaces_the_slot() {
        let c = VerifiedTokens::<Claims>::default();
        c.put("one.x.sametail", &claims("1"));
        c.put("two.x.sametail", &claims("2"));
        assert_eq!(c.get("one.x.sametail", |_| true), None);
        assert_eq!(c.get("two.x.sametail", |_| true), Some(claims("2")));
    }
}
