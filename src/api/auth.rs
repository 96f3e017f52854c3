//! Who is connecting: the [`Authenticator`] trait a program implements to check a
//! request's credential (a session cookie, an API key), [`Jwt`], the one the binary
//! uses, and [`Auth`], which [`Config::auth`](crate::Config::auth) takes.
//!
//! With an `Auth` set, every WebSocket upgrade is checked before
//! [`Handler::on_open`](crate::Handler::on_open), which then sees the identity through
//! [`Context::identity`](crate::Context::identity); a plain request (a Server-Sent
//! Events stream, a long poll) is checked when the handler calls
//! [`Context::authenticate`](crate::Context::authenticate).

use crate::http::Request;
use crate::push::access::Identity;
use crate::server::reply::Refusal;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde::Deserialize;
use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

/// Checks the credential of a request. Runs on the loop thread: it must be quick (no
/// file or network work).
pub trait Authenticator: Send + Sync {
    /// The identity the request proves, `Ok(None)` when it carries no credential (an
    /// anonymous client), or why its credential is not accepted (answered `401`).
    fn authenticate(&self, req: &Request<'_>) -> Result<Option<Identity>, AuthError>;

    /// Verifies a bare token (a `pushloop.v1` `refresh`); `None` (the default) if this
    /// authenticator does not take bare tokens.
    fn verify_token(&self, token: &str) -> Option<Result<Identity, AuthError>> {
        let _ = token;
        None
    }
}

/// Why a credential was not accepted; its text is the `error` of the `401` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthError(pub String);

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AuthError {}

/// An [`Authenticator`] and whether every client needs a credential.
#[derive(Clone)]
pub struct Auth {
    authenticator: Arc<dyn Authenticator>,
    required: bool,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("required", &self.required)
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// `authenticator`; with `required`, requests without a credential are refused
    /// (`401`), else they are anonymous.
    pub fn new(authenticator: impl Authenticator + 'static, required: bool) -> Self {
        Auth {
            authenticator: Arc::new(authenticator),
            required,
        }
    }

    /// Whether every client needs a credential.
    pub fn required(&self) -> bool {
        self.required
    }

    /// Verifies a bare token ([`Authenticator::verify_token`]).
    pub fn verify_token(&self, token: &str) -> Option<Result<Identity, AuthError>> {
        self.authenticator.verify_token(token)
    }

    /// The identity `req` proves (`None`: anonymous), or the `401` refusal.
    pub fn check(&self, req: &Request<'_>) -> Result<Option<Identity>, Refusal> {
        match self.authenticator.authenticate(req) {
            Ok(None) if self.required => Err(unauthorized("a token is required")),
            Ok(identity) => Ok(identity),
            Err(e) => Err(unauthorized(&e.0)),
        }
    }
}

/// The `401` refusal, with `WWW-Authenticate: Bearer`.
pub fn unauthorized(error: &str) -> Refusal {
    Refusal::json(401, error).header("WWW-Authenticate", "Bearer")
}

/// A request's token: `Authorization: Bearer …`, else `?token=…` (browsers cannot set
/// headers on a WebSocket or an EventSource).
pub fn token_of<'a>(req: &Request<'a>) -> Option<Cow<'a, str>> {
    let bearer = req
        .header("authorization")
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| Cow::Borrowed(token.trim()));
    bearer.or_else(|| req.query("token"))
}

/// Where the JWT keys come from (the binary's `--jwt-*` flags).
#[derive(Debug, Clone, Default)]
pub struct JwtSettings {
    /// An HMAC secret (HS256, HS384, HS512).
    pub secret: Option<String>,
    /// A PEM public key file (RSA: RS256/384/512 and PS*; EC: ES256/384; Ed25519: EdDSA).
    pub public_key: Option<PathBuf>,
    /// The `aud` a token must name, if set.
    pub audience: Option<String>,
    /// The `iss` a token must name, if set.
    pub issuer: Option<String>,
    /// Seconds of clock skew allowed for `exp` and `nbf`.
    pub leeway: u64,
}

/// JSON Web Token verification: the algorithm comes from the configured key, never from
/// the token (no `alg: none`, no HMAC with a public key).
pub struct Jwt {
    /// One key per algorithm family, with the validation of that family's algorithms.
    keys: Vec<(AlgorithmFamily, DecodingKey, Validation)>,
}

/// The claims pushloop reads.
#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    #[serde(default)]
    channels: Vec<String>,
    #[serde(default)]
    publish: Vec<String>,
    info: Option<serde_json::Value>,
    exp: Option<u64>,
}

impl Jwt {
    /// Loads the keys `settings` name (reads the public key file): the one place keys are
    /// made, so a reload can call it again.
    pub fn from_settings(settings: &JwtSettings) -> Result<Jwt, String> {
        let mut keys = Vec::new();
        if let Some(secret) = &settings.secret {
            if secret.is_empty() {
                return Err("the JWT secret is empty".into());
            }
            let key = DecodingKey::from_secret(secret.as_bytes()).map_err(|e| e.to_string())?;
            keys.push((AlgorithmFamily::Hmac, key));
        }
        if let Some(path) = &settings.public_key {
            let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let key = if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
                (AlgorithmFamily::Rsa, key)
            } else if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
                (AlgorithmFamily::Ec, key)
            } else if let Ok(key) = DecodingKey::from_ed_pem(&pem) {
                (AlgorithmFamily::Ed, key)
            } else {
                return Err(format!(
                    "{}: not an RSA, EC or Ed25519 public key in PEM",
                    path.display()
                ));
            };
            keys.push(key);
        }
        if keys.is_empty() {
            return Err("no JWT secret or public key".into());
        }
        let keys = keys
            .into_iter()
            .map(|(family, key)| {
                let mut validation = Validation::new_for_family(family);
                validation.required_spec_claims.clear();
                validation.leeway = settings.leeway;
                validation.validate_nbf = true;
                validation.validate_aud = settings.audience.is_some();
                if let Some(aud) = &settings.audience {
                    validation.set_audience(&[aud]);
                }
                if let Some(iss) = &settings.issuer {
                    validation.set_issuer(&[iss]);
                }
                (family, key, validation)
            })
            .collect();
        Ok(Jwt { keys })
    }

    /// Verifies `token` and reads its claims.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| AuthError("malformed token".into()))?;
        let family = family_of(header.alg);
        let (_, key, validation) = self
            .keys
            .iter()
            .find(|(f, _, _)| Some(*f) == family)
            .ok_or_else(|| AuthError("token algorithm not accepted".into()))?;
        let data = jsonwebtoken::decode::<Claims>(token, key, validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            AuthError(
                match e.kind() {
                    K::ExpiredSignature => "token expired",
                    K::ImmatureSignature => "token not valid yet",
                    K::InvalidAudience => "wrong token audience",
                    K::InvalidIssuer => "wrong token issuer",
                    K::InvalidSignature => "bad token signature",
                    K::InvalidAlgorithm => "token algorithm not accepted",
                    _ => "malformed token",
                }
                .into(),
            )
        })?;
        let claims = data.claims;
        Ok(Identity {
            user: claims.sub,
            channels: claims.channels,
            publish: claims.publish,
            info: claims.info.map(|v| v.to_string()),
            expires: claims.exp,
        })
    }
}

/// The family of `alg`, if it is one pushloop accepts.
fn family_of(alg: Algorithm) -> Option<AlgorithmFamily> {
    use Algorithm::*;
    Some(match alg {
        HS256 | HS384 | HS512 => AlgorithmFamily::Hmac,
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => AlgorithmFamily::Rsa,
        ES256 | ES384 => AlgorithmFamily::Ec,
        EdDSA => AlgorithmFamily::Ed,
        _ => return None,
    })
}

/// A [`Jwt`] that can be replaced while the server runs (the binary's SIGHUP): every
/// check uses the keys in force when it starts (an uncontended read lock per check);
/// connections already verified keep their identity.
#[derive(Clone)]
pub struct ReloadableJwt(Arc<RwLock<Arc<Jwt>>>);

impl ReloadableJwt {
    /// Starts with `jwt`.
    pub fn new(jwt: Jwt) -> Self {
        ReloadableJwt(Arc::new(RwLock::new(Arc::new(jwt))))
    }

    /// Replaces the keys: the next checks on every worker use `jwt`.
    pub fn replace(&self, jwt: Jwt) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(jwt);
    }

    fn current(&self) -> Arc<Jwt> {
        Arc::clone(&self.0.read().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Authenticator for ReloadableJwt {
    fn authenticate(&self, req: &Request<'_>) -> Result<Option<Identity>, AuthError> {
        self.current().authenticate(req)
    }

    fn verify_token(&self, token: &str) -> Option<Result<Identity, AuthError>> {
        self.current().verify_token(token)
    }
}

impl Authenticator for Jwt {
    fn authenticate(&self, req: &Request<'_>) -> Result<Option<Identity>, AuthError> {
        match token_of(req) {
            None => Ok(None),
            Some(token) => self.verify(&token).map(Some),
        }
    }

    fn verify_token(&self, token: &str) -> Option<Result<Identity, AuthError>> {
        Some(self.verify(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};

    fn jwt() -> Jwt {
        Jwt::from_settings(&JwtSettings {
            secret: Some("s3cret".into()),
            leeway: 5,
            ..JwtSettings::default()
        })
        .unwrap()
    }

    fn mint(claims: serde_json::Value, secret: &str) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn claims_are_read() {
        let token = mint(
            serde_json::json!({"sub":"alice","channels":["private:a"],"publish":["x*"],"info":{"n":1}}),
            "s3cret",
        );
        let who = jwt().verify(&token).unwrap();
        assert_eq!(who.user.as_deref(), Some("alice"));
        assert_eq!(who.channels, ["private:a"]);
        assert_eq!(who.publish, ["x*"]);
        assert_eq!(who.info.as_deref(), Some(r#"{"n":1}"#));
    }

    #[test]
    fn bad_tokens_are_refused() {
        let other = mint(serde_json::json!({"sub":"a"}), "other");
        assert_eq!(jwt().verify(&other).unwrap_err().0, "bad token signature");
        assert_eq!(jwt().verify("x.y").unwrap_err().0, "malformed token");
        // alg: none
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhIn0.";
        assert_eq!(jwt().verify(none).unwrap_err().0, "malformed token");
        let expired = mint(serde_json::json!({"sub":"a","exp":1000}), "s3cret");
        assert_eq!(jwt().verify(&expired).unwrap_err().0, "token expired");
    }

    #[test]
    fn no_key_is_an_error() {
        assert!(Jwt::from_settings(&JwtSettings::default()).is_err());
    }
}
