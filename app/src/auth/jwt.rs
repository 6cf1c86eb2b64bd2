//! Access tokens: HS256 JWTs, five minutes, verified statelessly with the algorithm pinned,
//! issuer and audience checked and a few seconds of clock leeway.

use chrono::Utc;
use jsonwebtoken::errors::Error;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::{
    hs256::{Hs256Key, Registered, Rules, Verifier},
    types::{Role, UserId},
};

pub const ISSUER: &str = "floodgate";
pub const AUDIENCE: &str = "floodgate-api";
pub const ACCESS_TTL_SECS: i64 = 300;
/// Clock skew tolerated between replicas and clients.
const LEEWAY_SECS: u64 = 5;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    pub sub: String,
    pub roles: Vec<Role>,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
    pub aud: String,
}

impl Registered for Claims {
    fn registered(&self) -> (i64, &str, &str) {
        (self.exp, &self.iss, &self.aud)
    }
}

/// The service's signing key and the access tokens' verifier.
pub struct JwtKeys {
    key: Hs256Key,
    access: Verifier<Claims>,
}

impl JwtKeys {
    pub fn new(secret: &SecretString) -> Self {
        Self {
            key: Hs256Key::new(secret.expose_secret().as_bytes()),
            access: Verifier::new(Rules::new(ISSUER, AUDIENCE, LEEWAY_SECS)),
        }
    }

    pub fn issue(&self, user: UserId, roles: &[Role]) -> Result<String, Error> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: user.to_string(),
            roles: roles.to_vec(),
            iat: now,
            exp: now + ACCESS_TTL_SECS,
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
        };
        self.sign(&claims)
    }

    pub fn sign(&self, claims: &Claims) -> Result<String, Error> {
        self.key.sign(claims)
    }

    /// Verifies signature, algorithm, expiry, issuer and audience (`auth::hs256`).
    pub fn verify(&self, token: &str) -> Result<Claims, Error> {
        self.access.verify(&self.key, token)
    }

    /// The key, for other signed values (queue passes) derived from the same secret.
    pub fn key(&self) -> &Hs256Key {
        &self.key
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

    fn keys() -> JwtKeys {
        JwtKeys::new(&SecretString::from("0123456789abcdef0123456789abcdef"))
    }

    fn claims(exp_offset: i64) -> Claims {
        let now = Utc::now().timestamp();
        Claims {
            sub: "7".into(),
            roles: vec![Role::Customer],
            iat: now,
            exp: now + exp_offset,
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
        }
    }

    #[test]
    fn round_trip() {
        let k = keys();
        let t = k.issue(UserId(7), &[Role::Seller]).unwrap();
        let c = k.verify(&t).unwrap();
        assert_eq!(c.sub, "7");
        assert_eq!(c.roles, vec![Role::Seller]);
    }

    #[test]
    fn expired_beyond_leeway_is_refused() {
        let k = keys();
        assert!(k.verify(&k.sign(&claims(-30)).unwrap()).is_err());
        // within the leeway it still passes
        assert!(k.verify(&k.sign(&claims(-2)).unwrap()).is_ok());
    }

    #[test]
    fn wrong_audience_issuer_or_key_is_refused() {
        let k = keys();
        let mut c = claims(60);
        c.aud = "someone-else".into();
        assert!(k.verify(&k.sign(&c).unwrap()).is_err());
        let mut c = claims(60);
        c.iss = "evil".into();
        assert!(k.verify(&k.sign(&c).unwrap()).is_err());
        let other = JwtKeys::new(&SecretString::from("another-secret-another-secret-xx"));
        assert!(k.verify(&other.sign(&claims(60)).unwrap()).is_err());
    }

    #[test]
    fn a_token_verified_before_is_refused_once_it_expires() {
        let k = keys();
        // expired 4 s ago: within the 5 s leeway for one more second, from the memo on the
        // second call; two seconds later past the leeway, memo or not
        let t = k.sign(&claims(-4)).unwrap();
        assert!(k.verify(&t).is_ok());
        assert!(k.verify(&t).is_ok());
        std::thread::sleep(std::time::Duration::from_millis(2100));
        let err = k.verify(&t).unwrap_err();
        assert_eq!(
            err.kind(),
            &jsonwebtoken::errors::ErrorKind::ExpiredSignature
        );
    }

    #[test]
    fn a_tampered_copy_of_a_verified_token_is_refused() {
        let k = keys();
        let t = k.issue(UserId(7), &[Role::Customer]).unwrap();
        assert!(k.verify(&t).is_ok());
        // same signature (same memo slot), another payload: full verification, refused
        let (_, sig) = t.rsplit_once('.').unwrap();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let mut c = claims(60);
        c.roles = vec![Role::Admin];
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap());
        assert!(k.verify(&format!("{header}.{body}.{sig}")).is_err());
    }

    #[test]
    fn alg_none_is_refused() {
        let k = keys();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(60)).unwrap());
        assert!(k.verify(&format!("{header}.{body}.")).is_err());
    }
}
