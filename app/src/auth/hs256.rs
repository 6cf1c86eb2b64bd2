//! HS256 tokens signed with the service's secret: access tokens (`auth::jwt`) and waiting-room
//! passes (`queue::pass`). One key, and per kind of token one [`Verifier`]: its rules (issuer,
//! audience, leeway) and its memo of tokens already verified (`auth::verified`).
//!
//! **The fast path (#18).** A coupon drop's users each send a token the process has not seen,
//! and `jsonwebtoken::decode` spent ~16 % of such a request's CPU: it parses the header's JSON
//! twice, makes a new HMAC from the key, and parses the claims' JSON twice (into the caller's
//! type and into its own validation view). A token this service signed has exactly the header
//! [`Hs256Key::sign`] writes, so the fast path compares that segment's bytes, checks the MAC
//! with the key state prepared once, parses the claims once and checks them by the same rules.
//!
//! **Guarantee:** the fast path only ever accepts, and only what `jsonwebtoken::decode` with
//! [`Rules::validation`] accepts, with the same claims: the same split of the token, the same
//! base64 engine, the same constant-time MAC check, the same serde parse into `C` (so the same
//! refusal of duplicate or missing fields), and the expiry, issuer and audience rules of
//! `jsonwebtoken::validation` for single-string `iss`/`aud`. Any other token (another header,
//! a bad MAC, an expired or foreign one) goes through `jsonwebtoken::decode`, whose error is
//! the precise answer. `the_fast_path_agrees_with_jsonwebtoken` checks this on valid and
//! tampered tokens.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::Error};
use serde::{Serialize, de::DeserializeOwned};
use sha2::Sha256;

use super::verified::VerifiedTokens;

/// The registered claims the rules check, for any claims type: `(exp, iss, aud)`.
pub trait Registered: DeserializeOwned + Clone {
    fn registered(&self) -> (i64, &str, &str);
}

/// The service's HMAC key, for signing and both verification paths.
pub struct Hs256Key {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// The key's HMAC state after the inner pad, cloned per verification.
    mac: Hmac<Sha256>,
    /// The base64url header segment [`Self::sign`] writes.
    header: Box<str>,
}

impl Hs256Key {
    pub fn new(secret: &[u8]) -> Self {
        let encoding = EncodingKey::from_secret(secret);
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({}),
            &encoding,
        )
        .expect("an empty object serializes");
        let header = token.split('.').next().unwrap_or_default().into();
        Self {
            encoding,
            decoding: DecodingKey::from_secret(secret),
            mac: Hmac::new_from_slice(secret).expect("HMAC takes a key of any length"),
            header,
        }
    }

    pub fn sign(&self, claims: &impl Serialize) -> Result<String, Error> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
    }

    /// The claims of `token` if it has this service's header and MAC, parses as `C` and meets
    /// `rules` at `now` (seconds); `None` means "ask `jsonwebtoken`", not "invalid".
    fn fast<C: Registered>(&self, token: &str, rules: &Rules, now: u64) -> Option<C> {
        // split as jsonwebtoken does: the signature after the last dot, the payload before it
        let (message, signature) = token.rsplit_once('.')?;
        let (header, payload) = message.rsplit_once('.')?;
        if header != &*self.header {
            return None;
        }
        // an HS256 signature is 32 bytes: a longer one fails to decode here, as its MAC would
        let mut mac_bytes = [0u8; 32];
        let len = URL_SAFE_NO_PAD
            .decode_slice(signature, &mut mac_bytes)
            .ok()?;
        let mut mac = self.mac.clone();
        mac.update(message.as_bytes());
        mac.verify_slice(&mac_bytes[..len]).ok()?;
        let claims: C = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        rules.accepts(&claims, now).then_some(claims)
    }

    fn full<C: Registered>(&self, token: &str, rules: &Rules) -> Result<C, Error> {
        jsonwebtoken::decode::<C>(token, &self.decoding, &rules.validation).map(|d| d.claims)
    }
}

/// What a kind of token must carry: HS256, `exp`, `iat`, `iss`, `aud` and `sub`, this issuer
/// and audience, unexpired within `leeway` seconds.
pub struct Rules {
    issuer: &'static str,
    audience: &'static str,
    leeway: u64,
    validation: Validation,
}

impl Rules {
    pub fn new(issuer: &'static str, audience: &'static str, leeway: u64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = leeway;
        Self {
            issuer,
            audience,
            leeway,
            validation,
        }
    }

    /// `jsonwebtoken::validation`'s rule: expired when `exp < now - leeway`.
    fn unexpired(&self, exp: i64, now: u64) -> bool {
        u64::try_from(exp).is_ok_and(|exp| exp >= now.saturating_sub(self.leeway))
    }

    fn accepts(&self, claims: &impl Registered, now: u64) -> bool {
        let (exp, iss, aud) = claims.registered();
        self.unexpired(exp, now) && iss == self.issuer && aud == self.audience
    }
}

/// Verifies one kind of token: the memo first (only the expiry is checked again), then the
/// fast path, then `jsonwebtoken`.
pub struct Verifier<C> {
    rules: Rules,
    verified: VerifiedTokens<C>,
}

impl<C: Registered> Verifier<C> {
    pub fn new(rules: Rules) -> Self {
        Self {
            rules,
            verified: VerifiedTokens::default(),
        }
    }

    pub fn verify(&self, key: &Hs256Key, token: &str) -> Result<C, Error> {
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(claims) = self
            .verified
            .get(token, |c: &C| self.rules.unexpired(c.registered().0, now))
        {
            return Ok(claims);
        }
        let claims = match key.fast(token, &self.rules, now) {
            Some(claims) => claims,
            None => key.full(token, &self.rules)?,
        };
        self.verified.put(token, &claims);
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Token {
        sub: String,
        iat: i64,
        exp: i64,
        iss: String,
        aud: String,
    }

    impl Registered for Token {
        fn registered(&self) -> (i64, &str, &str) {
            (self.exp, &self.iss, &self.aud)
        }
    }

    fn b64(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    /// `header.payload` signed with `secret`, whatever the header and payload say.
    fn raw(secret: &[u8], header: &str, payload: &str) -> String {
        let message = format!("{}.{}", b64(header), b64(payload));
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(message.as_bytes());
        format!(
            "{message}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    /// Tokens the fast path must get right: genuine ones and every way one can be wrong.
    fn cases(key: &Hs256Key, now: i64) -> Vec<(&'static str, String)> {
        let secret = b"0123456789abcdef0123456789abcdef";
        let ours = Header::new(Algorithm::HS256);
        let header = serde_json::to_string(&ours).unwrap();
        let claims = |exp: i64, iss: &str, aud: &str| {
            format!(r#"{{"sub":"7","iat":{now},"exp":{exp},"iss":"{iss}","aud":"{aud}"}}"#)
        };
        let good = claims(now + 60, "floodgate", "api");
        let signed = |c: &str| raw(secret, &header, c);
        let genuine = key
            .sign(&Token {
                sub: "7".into(),
                iat: now,
                exp: now + 60,
                iss: "floodgate".into(),
                aud: "api".into(),
            })
            .unwrap();
        let (message, _) = genuine.rsplit_once('.').unwrap();
        vec![
            ("genuine", genuine.clone()),
            ("raw genuine", signed(&good)),
            (
                "within leeway",
                signed(&claims(now - 4, "floodgate", "api")),
            ),
            ("expired", signed(&claims(now - 6, "floodgate", "api"))),
            ("negative exp", signed(&claims(-1, "floodgate", "api"))),
            (
                "float exp",
                signed(&good.replace(&format!("{}", now + 60), &format!("{}.5", now + 60))),
            ),
            ("wrong issuer", signed(&claims(now + 60, "evil", "api"))),
            (
                "wrong audience",
                signed(&claims(now + 60, "floodgate", "web")),
            ),
            (
                "audience list",
                signed(&good.replace(r#""aud":"api""#, r#""aud":["api"]"#)),
            ),
            ("missing sub", signed(&good.replace(r#""sub":"7","#, ""))),
            (
                "duplicate aud",
                signed(&good.replace(r#""aud":"api""#, r#""aud":"web","aud":"api""#)),
            ),
            (
                "extra claim",
                signed(&good.replace(r#""sub":"7""#, r#""sub":"7","nbf":1"#)),
            ),
            (
                "other key",
                raw(b"another-secret-another-secret-xx", &header, &good),
            ),
            (
                "alg none",
                format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#), b64(&good)),
            ),
            (
                "HS384 header",
                raw(secret, r#"{"typ":"JWT","alg":"HS384"}"#, &good),
            ),
            (
                "header with kid",
                raw(secret, r#"{"typ":"JWT","alg":"HS256","kid":"1"}"#, &good),
            ),
            (
                "reordered header",
                raw(secret, r#"{"alg":"HS256","typ":"JWT"}"#, &good),
            ),
            (
                "truncated signature",
                genuine[..genuine.len() - 2].to_owned(),
            ),
            ("padded signature", format!("{genuine}=")),
            ("no signature", format!("{message}.")),
            ("two parts", message.to_owned()),
            ("four parts", format!("{}.{genuine}", b64("{}"))),
            (
                "payload not base64",
                format!("{}.!!.{}", key.header, genuine.rsplit_once('.').unwrap().1),
            ),
            ("payload not json", signed("not json")),
            ("empty", String::new()),
        ]
    }

    #[test]
    fn the_fast_path_agrees_with_jsonwebtoken() {
        let key = Hs256Key::new(b"0123456789abcdef0123456789abcdef");
        let rules = Rules::new("floodgate", "api", 5);
        let now = jsonwebtoken::get_current_timestamp();
        let mut fast_accepted = Vec::new();
        for (name, token) in cases(&key, now as i64) {
            let full = key.full::<Token>(&token, &rules).ok();
            let fast = key.fast::<Token>(&token, &rules, now);
            if let Some(claims) = &fast {
                assert_eq!(
                    Some(claims),
                    full.as_ref(),
                    "{name}: fast accepted what jsonwebtoken refused"
                );
                fast_accepted.push(name);
            }
        }
        // the fast path is not vacuous: it takes the tokens this service signs
        assert_eq!(
            fast_accepted,
            ["genuine", "raw genuine", "within leeway", "extra claim"]
        );
    }

    #[test]
    fn the_verifier_refuses_with_jsonwebtokens_error() {
        use jsonwebtoken::errors::ErrorKind;
        let key = Hs256Key::new(b"0123456789abcdef0123456789abcdef");
        let verifier = Verifier::<Token>::new(Rules::new("floodgate", "api", 5));
        let now = jsonwebtoken::get_current_timestamp() as i64;
        let all = cases(&key, now);
        let case = |name: &str| &all.iter().find(|(n, _)| *n == name).unwrap().1;
        let kind = |name: &str| verifier.verify(&key, case(name)).unwrap_err().into_kind();
        assert_eq!(verifier.verify(&key, case("genuine")).unwrap().sub, "7");
        assert_eq!(kind("expired"), ErrorKind::ExpiredSignature);
        assert_eq!(kind("wrong issuer"), ErrorKind::InvalidIssuer);
        assert_eq!(kind("wrong audience"), ErrorKind::InvalidAudience);
        assert_eq!(kind("other key"), ErrorKind::InvalidSignature);
        assert_eq!(kind("HS384 header"), ErrorKind::InvalidAlgorithm);
    }
}
