//! Who is calling, and what they may do.
//!
//! - Hub tokens come from the `--tokens` file: one `TOKEN USER read|write` per line (`#`
//!   comments and blank lines allowed). Tokens are kept only as BLAKE3 digests in memory and are
//!   never logged.
//! - Access rules: public repos are readable by anyone; a private repo is visible only to a
//!   token of its namespace's user or of its creator, or to any token when its namespace is a
//!   shared one (not the name of a user in the token file). Writing needs a write token and the
//!   same relation to the repo (any write token in a shared namespace).
//! - The server hands out its own short-lived credentials, signed with a per-data-dir secret:
//!   Xet CAS tokens (repo + read/write scope + expiry) and presigned URLs (xorb fetches, LFS
//!   uploads).

use std::collections::{HashMap, HashSet};

use axum::http::HeaderMap;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::db::RepoKey;
use super::error::ApiError;

/// What a Hub token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Read public repos and the user's private ones.
    Read,
    /// Read, plus create repos and commit.
    Write,
}

/// A malformed `--tokens` file.
#[derive(Debug, thiserror::Error)]
#[error("tokens file line {line}: {reason}")]
pub struct TokenFileError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong (never the token itself).
    pub reason: &'static str,
}

#[derive(Debug, Clone)]
struct TokenEntry {
    user: String,
    scope: Scope,
}

/// The known Hub tokens, by digest.
#[derive(Debug, Clone, Default)]
pub struct TokenTable {
    by_digest: HashMap<[u8; 32], TokenEntry>,
    users: HashSet<String>,
}

impl TokenTable {
    /// Parses the tokens file format.
    pub fn parse(text: &str) -> Result<Self, TokenFileError> {
        let mut table = Self::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |reason| TokenFileError { line: i + 1, reason };
            let parts: Vec<&str> = line.split_whitespace().collect();
            let [token, user, scope] = parts[..] else {
                return Err(err("expected TOKEN USER read|write"));
            };
            let scope = match scope {
                "read" => Scope::Read,
                "write" => Scope::Write,
                _ => return Err(err("scope must be read or write")),
            };
            if tessera_protocol::RepoId::new(user, "x").is_err() {
                return Err(err("invalid user name"));
            }
            table.users.insert(user.to_ascii_lowercase());
            table.by_digest.insert(digest(token), TokenEntry { user: user.to_owned(), scope });
        }
        Ok(table)
    }

    /// True if `name` is a user of some token (a personal namespace). Namespaces are
    /// case-insensitive, as on the Hub, so `Alice` is alice's namespace too.
    pub fn is_user(&self, name: &str) -> bool {
        self.users.contains(&name.to_ascii_lowercase())
    }

    /// Identifies the caller from `Authorization: Bearer ...`.
    pub fn caller(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
            return Ok(Caller::Anonymous);
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .ok_or_else(|| ApiError::unauthorized("Invalid credentials in Authorization header"))?;
        match self.by_digest.get(&digest(token)) {
            Some(e) => Ok(Caller::User { name: e.user.clone(), scope: e.scope }),
            None => Err(ApiError::unauthorized("Invalid credentials in Authorization header")),
        }
    }
}

fn digest(token: &str) -> [u8; 32] {
    *blake3::hash(token.as_bytes()).as_bytes()
}

/// The authenticated identity of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No Authorization header.
    Anonymous,
    /// A known token.
    User {
        /// The token's user.
        name: String,
        /// The token's scope.
        scope: Scope,
    },
}

impl Caller {
    /// The user name, if any.
    pub fn user(&self) -> Option<&str> {
        match self {
            Caller::Anonymous => None,
            Caller::User { name, .. } => Some(name),
        }
    }

    /// True when a token was presented.
    pub fn is_authenticated(&self) -> bool {
        !matches!(self, Caller::Anonymous)
    }

    /// True for a write token.
    pub fn can_write(&self) -> bool {
        matches!(self, Caller::User { scope: Scope::Write, .. })
    }
}

/// Access decisions on one repo.
pub fn is_member(caller: &Caller, namespace: &str, owner: &str, tokens: &TokenTable) -> bool {
    match caller.user() {
        None => false,
        Some(user) => {
            user.eq_ignore_ascii_case(namespace) || user == owner || !tokens.is_user(namespace)
        }
    }
}

/// Claims of a Xet CAS access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CasClaims {
    /// Repo key (`model/ns/name`).
    pub repo: RepoKey,
    /// Write scope (includes read).
    pub write: bool,
    /// Expiry, unix seconds.
    pub exp: u64,
}

/// Signs and verifies the server's own credentials with a secret key.
#[derive(Clone)]
pub struct Signer {
    key: [u8; 32],
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)")
    }
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

impl Signer {
    /// A signer with this secret.
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    /// Hex MAC of a message in a domain.
    pub fn sign(&self, domain: &str, message: &str) -> String {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(domain.as_bytes());
        h.update(&[0]);
        h.update(message.as_bytes());
        hex::encode(&h.finalize().as_bytes()[..20])
    }

    /// Constant-time check of a MAC made by [`Signer::sign`].
    pub fn verify(&self, domain: &str, message: &str, mac: &str) -> bool {
        let expected = self.sign(domain, message);
        expected.len() == mac.len()
            && expected.bytes().zip(mac.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }

    /// Issues a CAS token.
    pub fn cas_token(&self, claims: &CasClaims) -> String {
        let payload = B64.encode(serde_json::to_vec(claims).unwrap_or_default());
        let mac = self.sign("cas-token", &payload);
        format!("xet_{payload}.{mac}")
    }

    /// Checks a CAS token's signature and expiry.
    pub fn check_cas_token(&self, token: &str, now: u64) -> Option<CasClaims> {
        let (payload, mac) = token.strip_prefix("xet_")?.split_once('.')?;
        if !self.verify("cas-token", payload, mac) {
            return None;
        }
        let claims: CasClaims = serde_json::from_slice(&B64.decode(payload).ok()?).ok()?;
        (claims.exp > now).then_some(claims)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn token_file() {
        let t = TokenTable::parse("# c\n\nhf_a alice write\nhf_b bob read\n").unwrap();
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer hf_a".parse().unwrap());
        assert_eq!(
            t.caller(&h).unwrap(),
            Caller::User { name: "alice".into(), scope: Scope::Write }
        );
        h.insert("authorization", "Bearer nope".parse().unwrap());
        assert!(t.caller(&h).is_err());
        assert_eq!(t.caller(&HeaderMap::new()).unwrap(), Caller::Anonymous);
        assert!(TokenTable::parse("tok alice admin").is_err());
        assert!(TokenTable::parse("tok").is_err());
        let e = TokenTable::parse("hf_secret alice admin").unwrap_err().to_string();
        assert!(!e.contains("hf_secret"));
    }

    #[test]
    fn membership() {
        let t = TokenTable::parse("a alice write\nb bob write").unwrap();
        let alice = Caller::User { name: "alice".into(), scope: Scope::Write };
        assert!(is_member(&alice, "alice", "alice", &t));
        assert!(!is_member(&alice, "bob", "bob", &t));
        assert!(is_member(&alice, "team", "bob", &t));
        assert!(!is_member(&Caller::Anonymous, "team", "bob", &t));
        // Namespaces are case-insensitive: `Bob` is bob's, not an open organisation.
        assert!(!is_member(&alice, "Bob", "bob", &t));
        assert!(is_member(&alice, "ALICE", "alice", &t));
    }

    #[test]
    fn cas_tokens() {
        let s = Signer::new([7; 32]);
        let c =
            CasClaims { repo: RepoKey::from_trusted("model/a/b".into()), write: true, exp: 100 };
        let tok = s.cas_token(&c);
        let payload = tok.strip_prefix("xet_").and_then(|t| t.split_once('.')).unwrap().0;
        let json = B64.decode(payload).unwrap();
        assert_eq!(json, br#"{"repo":"model/a/b","write":true,"exp":100}"#, "the token's form");
        assert_eq!(s.check_cas_token(&tok, 99), Some(c));
        assert_eq!(s.check_cas_token(&tok, 100), None);
        let forged = tok.replace("xet_e", "xet_f");
        assert_eq!(s.check_cas_token(&forged, 0), None);
        assert_eq!(Signer::new([8; 32]).check_cas_token(&tok, 0), None);
    }
}
