//! SCRAM-SHA-256 (RFC 5802 / RFC 7677) verifiers in the Postgres format
//! `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64), and the
//! server's half of an exchange. The proxy never holds a password: a verifier lets it
//! check a proof, not produce one. The wire layer runs the exchange; the configuration
//! checks the verifiers it is given.

use std::num::NonZeroU32;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::{digest, hmac, pbkdf2};

/// Iterations for verifiers made by `vectorgate password` (Postgres' default).
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// A SCRAM-SHA-256 verifier.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: [u8; 32],
    pub server_key: [u8; 32],
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

pub(crate) fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Equal in time independent of where the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn key32(bytes: &[u8]) -> Result<[u8; 32], String> {
    bytes
        .try_into()
        .map_err(|_| "a SCRAM-SHA-256 key has 32 bytes".to_string())
}

impl Verifier {
    /// The verifier of `password` with `salt`.
    pub fn new(password: &str, salt: &[u8], iterations: u32) -> Verifier {
        let normalized = stringprep::saslprep(password)
            .map(|c| c.into_owned())
            .unwrap_or_else(|_| password.to_string());
        let mut salted = [0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            NonZeroU32::new(iterations.max(1)).expect("at least one iteration"),
            salt,
            normalized.as_bytes(),
            &mut salted,
        );
        let client_key = hmac_sha256(&salted, b"Client Key");
        Verifier {
            iterations,
            salt: salt.to_vec(),
            stored_key: sha256(&client_key),
            server_key: hmac_sha256(&salted, b"Server Key"),
        }
    }

    /// The verifier of `password` with a fresh random salt.
    pub fn generate(password: &str) -> Verifier {
        let salt: [u8; 16] = rand_bytes();
        Verifier::new(password, &salt, DEFAULT_ITERATIONS)
    }

    pub fn parse(text: &str) -> Result<Verifier, String> {
        let bad = || "not a SCRAM-SHA-256 verifier".to_string();
        let rest = text.strip_prefix("SCRAM-SHA-256$").ok_or_else(bad)?;
        let (params, keys) = rest.split_once('$').ok_or_else(bad)?;
        let (iterations, salt) = params.split_once(':').ok_or_else(bad)?;
        let (stored, server) = keys.split_once(':').ok_or_else(bad)?;
        let decode = |s: &str| B64.decode(s).map_err(|_| bad());
        let iterations: u32 = iterations.parse().map_err(|_| bad())?;
        if iterations == 0 {
            return Err(bad());
        }
        Ok(Verifier {
            iterations,
            salt: decode(salt)?,
            stored_key: key32(&decode(stored)?)?,
            server_key: key32(&decode(server)?)?,
        })
    }

    /// Does `password` match (the cleartext method)?
    pub fn check_password(&self, password: &str) -> bool {
        let other = Verifier::new(password, &self.salt, self.iterations);
        same(&other.stored_key, &self.stored_key) & same(&other.server_key, &self.server_key)
    }
}

impl std::fmt::Display for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
    }
}

pub(crate) fn rand_bytes<const N: usize>() -> [u8; N] {
    use ring::rand::SecureRandom;
    let mut out = [0u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut out)
        .expect("the system random generator works");
    out
}

/// Why an exchange failed. Every variant reaches the client as the same 28P01.
#[derive(Debug, PartialEq, Eq)]
pub enum ScramError {
    /// The message does not follow RFC 5802.
    Malformed(&'static str),
    /// The proof does not match.
    WrongProof,
}

/// The server's half of one SCRAM-SHA-256 exchange, after the client's first message.
#[derive(Debug)]
pub struct ScramServer {
    verifier: Verifier,
    /// client-first-message-bare
    client_first_bare: String,
    server_first: String,
    gs2_header: String,
    nonce: String,
}

impl ScramServer {
    /// Answer the client-first-message; `server_nonce` is fresh randomness.
    pub fn start(
        client_first: &[u8],
        verifier: Verifier,
        server_nonce: &str,
    ) -> Result<ScramServer, ScramError> {
        let text = std::str::from_utf8(client_first)
            .map_err(|_| ScramError::Malformed("client-first is not UTF-8"))?;
        // gs2-header: cbind-flag "," [authzid] ","
        let mut parts = text.splitn(3, ',');
        let cbind = parts.next().ok_or(ScramError::Malformed("no gs2 header"))?;
        let authzid = parts.next().ok_or(ScramError::Malformed("no gs2 header"))?;
        let bare = parts
            .next()
            .ok_or(ScramError::Malformed("no client-first-bare"))?;
        match cbind {
            // The client can bind a channel but the server offered no -PLUS: fine.
            "n" | "y" => {}
            _ => return Err(ScramError::Malformed("channel binding is not offered")),
        }
        if !authzid.is_empty() {
            return Err(ScramError::Malformed("authzid is not supported"));
        }
        let client_nonce = bare
            .split(',')
            .find_map(|a| a.strip_prefix("r="))
            .filter(|n| !n.is_empty())
            .ok_or(ScramError::Malformed("no client nonce"))?;
        if bare.starts_with("m=") {
            return Err(ScramError::Malformed(
                "mandatory extensions are not supported",
            ));
        }
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&verifier.salt),
            verifier.iterations
        );
        Ok(ScramServer {
            verifier,
            client_first_bare: bare.to_string(),
            server_first,
            gs2_header: format!("{cbind},{authzid},"),
            nonce,
        })
    }

    pub fn server_first(&self) -> &str {
        &self.server_first
    }

    /// Check the client-final-message; on success, the server-final-message.
    pub fn finish(&self, client_final: &[u8]) -> Result<String, ScramError> {
        let text = std::str::from_utf8(client_final)
            .map_err(|_| ScramError::Malformed("client-final is not UTF-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let mut channel = None;
        let mut nonce = None;
        for attr in without_proof.split(',') {
            if let Some(c) = attr.strip_prefix("c=") {
                channel = Some(c);
            } else if let Some(r) = attr.strip_prefix("r=") {
                nonce = Some(r);
            }
        }
        let channel = channel.ok_or(ScramError::Malformed("no channel binding"))?;
        if B64.decode(channel).ok().as_deref() != Some(self.gs2_header.as_bytes()) {
            return Err(ScramError::Malformed("channel binding does not match"));
        }
        if nonce != Some(self.nonce.as_str()) {
            return Err(ScramError::Malformed("nonce does not match"));
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("proof is not base64"))?;
        if proof.len() != 32 {
            return Err(ScramError::WrongProof);
        }
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let client_signature = hmac_sha256(&self.verifier.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof
            .iter()
            .zip(client_signature.iter())
            .map(|(p, s)| p ^ s)
            .collect();
        if !same(&sha256(&client_key), &self.verifier.stored_key) {
            return Err(ScramError::WrongProof);
        }
        let server_signature = hmac_sha256(&self.verifier.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's half of the exchange, written from RFC 5802 for the test.
    fn client_final(password: &str, client_first_bare: &str, server_first: &str) -> String {
        let mut salt = None;
        let mut iterations = None;
        let mut nonce = None;
        for a in server_first.split(',') {
            if let Some(s) = a.strip_prefix("s=") {
                salt = Some(B64.decode(s).expect("salt"));
            } else if let Some(i) = a.strip_prefix("i=") {
                iterations = Some(i.parse::<u32>().expect("iterations"));
            } else if let Some(r) = a.strip_prefix("r=") {
                nonce = Some(r.to_string());
            }
        }
        let (salt, iterations, nonce) =
            (salt.expect("s"), iterations.expect("i"), nonce.expect("r"));
        let mut salted = [0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            NonZeroU32::new(iterations).expect("nonzero"),
            &salt,
            password.as_bytes(),
            &mut salted,
        );
        let client_key = hmac_sha256(&salted, b"Client Key");
        let stored = sha256(&client_key);
        let without_proof = format!("c={},r={nonce}", B64.encode("n,,"));
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let sig = hmac_sha256(&stored, auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(sig).map(|(a, b)| a ^ b).collect();
        format!("{without_proof},p={}", B64.encode(proof))
    }

    #[test]
    fn verifiers_round_trip_and_check_passwords() {
        let v = Verifier::new("pencil", b"0123456789abcdef", 4096);
        let text = v.to_string();
        assert!(text.starts_with("SCRAM-SHA-256$4096:"));
        assert_eq!(Verifier::parse(&text).expect("parse"), v);
        assert!(v.check_password("pencil"));
        assert!(!v.check_password("pencil2"));
        assert!(Verifier::parse("md5abc").is_err());
        assert!(Verifier::parse("SCRAM-SHA-256$0:AA==$AA==:AA==").is_err());
        assert_ne!(Verifier::generate("x").salt, Verifier::generate("x").salt);
    }

    #[test]
    fn scram_exchange_accepts_the_right_password_only() {
        let v = Verifier::new("secret", b"salt-salt-salt-1", 4096);
        for (password, ok) in [("secret", true), ("Secret", false), ("", false)] {
            let bare = "n=,r=abcdefghijkl";
            let server = ScramServer::start(format!("n,,{bare}").as_bytes(), v.clone(), "XYZ")
                .expect("start");
            assert!(server.server_first().starts_with("r=abcdefghijklXYZ,s="));
            let last = client_final(password, bare, server.server_first());
            let res = server.finish(last.as_bytes());
            assert_eq!(res.is_ok(), ok, "{password}");
            if let Ok(v_msg) = res {
                assert!(v_msg.starts_with("v="));
            } else {
                assert_eq!(res, Err(ScramError::WrongProof));
            }
        }
        // A replayed or altered nonce is refused before the proof is looked at.
        let server = ScramServer::start(b"n,,n=,r=abc", v.clone(), "S").expect("start");
        let last =
            client_final("secret", "n=,r=abc", server.server_first()).replace("r=abcS", "r=abcT");
        assert!(matches!(
            server.finish(last.as_bytes()),
            Err(ScramError::Malformed(_))
        ));
        assert!(ScramServer::start(b"p=tls-server-end-point,,n=,r=a", v.clone(), "S").is_err());
        assert!(ScramServer::start(b"garbage", v, "S").is_err());
    }
}
