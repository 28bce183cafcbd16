//! Host-side authentication for TCP targets (`kstash:addon/credentials`): the secret is framed
//! into a connection by the host, or used to compute a SCRAM (RFC 5802/7677) or PostgreSQL md5
//! answer. Pure functions; the host calls in `host.rs` do the I/O.

use base64::Engine as _;
use ring::{digest, hmac, pbkdf2, rand::SecureRandom};

/// Largest SCRAM iteration count accepted from a server (the host pays the CPU, unmetered).
pub(crate) const MAX_SCRAM_ITERATIONS: u32 = 1_000_000;

/// How a secret is framed (mirrors the WIT `secret-encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SecretEncoding {
    Raw,
    NulTerminated,
    LengthPrefixedNulTerminated,
    RespBulkString,
}

/// The bytes the host writes for `secret` framed as `encoding`.
pub(crate) fn frame_secret(secret: &[u8], encoding: SecretEncoding) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(secret.len() + 16);
    match encoding {
        SecretEncoding::Raw => out.extend_from_slice(secret),
        SecretEncoding::NulTerminated | SecretEncoding::LengthPrefixedNulTerminated => {
            if secret.contains(&0) {
                return Err("the secret contains a NUL byte and cannot be NUL-terminated".into());
            }
            if encoding == SecretEncoding::LengthPrefixedNulTerminated {
                let len = u32::try_from(4 + secret.len() + 1)
                    .map_err(|_| "the secret is too long".to_string())?;
                out.extend_from_slice(&len.to_be_bytes());
            }
            out.extend_from_slice(secret);
            out.push(0);
        }
        SecretEncoding::RespBulkString => {
            out.extend_from_slice(format!("${}\r\n", secret.len()).as_bytes());
            out.extend_from_slice(secret);
            out.extend_from_slice(b"\r\n");
        }
    }
    Ok(out)
}

/// PostgreSQL's md5 password answer: `md5` + hex(md5(hex(md5(password + user)) + salt)), NUL
/// terminated, with the big-endian length prefix of a `PasswordMessage` body.
pub(crate) fn md5_response(password: &[u8], username: &str, salt: &[u8]) -> Vec<u8> {
    use md5::Digest as _;
    let mut inner = md5::Md5::new();
    inner.update(password);
    inner.update(username.as_bytes());
    let inner = hex::encode(inner.finalize());
    let mut outer = md5::Md5::new();
    outer.update(inner.as_bytes());
    outer.update(salt);
    let answer = format!("md5{}", hex::encode(outer.finalize()));
    frame_secret(
        answer.as_bytes(),
        SecretEncoding::LengthPrefixedNulTerminated,
    )
    .expect("hex has no NUL")
}

/// A SCRAM hash function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScramHash {
    Sha256,
    Sha1,
}

impl ScramHash {
    fn hmac(self) -> hmac::Algorithm {
        match self {
            ScramHash::Sha256 => hmac::HMAC_SHA256,
            ScramHash::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        }
    }
    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            ScramHash::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            ScramHash::Sha1 => pbkdf2::PBKDF2_HMAC_SHA1,
        }
    }
    fn digest(self) -> &'static digest::Algorithm {
        match self {
            ScramHash::Sha256 => &digest::SHA256,
            ScramHash::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
        }
    }
    fn len(self) -> usize {
        match self {
            ScramHash::Sha256 => 32,
            ScramHash::Sha1 => 20,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    First,
    Final,
    Verify,
    Done,
}

/// One SCRAM client exchange; holds the password on the host.
pub struct ScramState {
    hash: ScramHash,
    password: Vec<u8>,
    client_nonce: String,
    client_first_bare: String,
    server_signature: Vec<u8>,
    stage: Stage,
}

impl std::fmt::Debug for ScramState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScramState(..)")
    }
}

fn escape_name(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

impl ScramState {
    /// A new exchange with a random 24-byte nonce.
    pub(crate) fn new(hash: ScramHash, username: &str, password: &[u8]) -> Result<Self, String> {
        let mut raw = [0u8; 24];
        ring::rand::SystemRandom::new()
            .fill(&mut raw)
            .map_err(|_| "no randomness for the SCRAM nonce".to_string())?;
        Ok(Self::with_nonce(
            hash,
            username,
            password,
            &b64().encode(raw),
        ))
    }

    fn with_nonce(hash: ScramHash, username: &str, password: &[u8], nonce: &str) -> Self {
        Self {
            hash,
            password: password.to_vec(),
            client_nonce: nonce.to_string(),
            client_first_bare: format!("n={},r={nonce}", escape_name(username)),
            server_signature: Vec::new(),
            stage: Stage::First,
        }
    }

    /// `n,,` + client-first-message-bare.
    pub(crate) fn client_first(&mut self) -> Vec<u8> {
        if self.stage == Stage::First {
            self.stage = Stage::Final;
        }
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// The client-final-message for `server_first` (`r=…,s=…,i=…`).
    pub(crate) fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, String> {
        if self.stage != Stage::Final {
            return Err("client-final must follow client-first, once".to_string());
        }
        let text = std::str::from_utf8(server_first)
            .map_err(|_| "server-first-message is not UTF-8".to_string())?;
        let (mut nonce, mut salt, mut iterations) = (None, None, None);
        for attr in text.split(',') {
            match attr.split_once('=') {
                Some(("r", v)) => nonce = Some(v),
                Some(("s", v)) => salt = Some(v),
                Some(("i", v)) => iterations = Some(v),
                Some(("m", _)) => {
                    return Err(
                        "server-first-message: mandatory extension `m` is not supported".into(),
                    )
                }
                _ => {}
            }
        }
        let nonce = nonce.ok_or("server-first-message: no nonce (r=)")?;
        if !nonce.starts_with(&self.client_nonce) || nonce.len() == self.client_nonce.len() {
            return Err(
                "server-first-message: the server nonce does not extend the client's".into(),
            );
        }
        let salt = b64()
            .decode(salt.ok_or("server-first-message: no salt (s=)")?)
            .map_err(|_| "server-first-message: salt is not base64".to_string())?;
        let iterations: u32 = iterations
            .ok_or("server-first-message: no iteration count (i=)")?
            .parse()
            .map_err(|_| "server-first-message: iteration count is not a number".to_string())?;
        if iterations == 0 || iterations > MAX_SCRAM_ITERATIONS {
            return Err(format!(
                "server-first-message: iteration count {iterations} outside 1..={MAX_SCRAM_ITERATIONS}"
            ));
        }
        let n = self.hash.len();
        let mut salted = vec![0u8; n];
        pbkdf2::derive(
            self.hash.pbkdf2(),
            std::num::NonZeroU32::new(iterations).expect("checked"),
            &salt,
            &self.password,
            &mut salted,
        );
        let salted_key = hmac::Key::new(self.hash.hmac(), &salted);
        let client_key = hmac::sign(&salted_key, b"Client Key");
        let stored_key = digest::digest(self.hash.digest(), client_key.as_ref());
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{text},{without_proof}", self.client_first_bare);
        let client_sig = hmac::sign(
            &hmac::Key::new(self.hash.hmac(), stored_key.as_ref()),
            auth_message.as_bytes(),
        );
        let proof: Vec<u8> = client_key
            .as_ref()
            .iter()
            .zip(client_sig.as_ref())
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = hmac::sign(&salted_key, b"Server Key");
        self.server_signature = hmac::sign(
            &hmac::Key::new(self.hash.hmac(), server_key.as_ref()),
            auth_message.as_bytes(),
        )
        .as_ref()
        .to_vec();
        self.stage = Stage::Verify;
        Ok(format!("{without_proof},p={}", b64().encode(proof)).into_bytes())
    }

    /// Checks the server-final-message (`v=…` or `e=…`).
    pub(crate) fn verify_server_final(&mut self, server_final: &[u8]) -> Result<(), String> {
        if self.stage != Stage::Verify {
            return Err("verify-server-final must follow client-final, once".to_string());
        }
        self.stage = Stage::Done;
        let text = std::str::from_utf8(server_final)
            .map_err(|_| "server-final-message is not UTF-8".to_string())?;
        if let Some(e) = text.strip_prefix("e=") {
            return Err(format!("the server refused the authentication: {e}"));
        }
        let v = text
            .split(',')
            .find_map(|a| a.strip_prefix("v="))
            .ok_or("server-final-message: no verifier (v=)")?;
        let v = b64()
            .decode(v)
            .map_err(|_| "server-final-message: verifier is not base64".to_string())?;
        if !equal_constant_time(&v, &self.server_signature) {
            return Err("the server's signature is wrong: it does not know the password".into());
        }
        Ok(())
    }
}

fn equal_constant_time(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Drop for ScramState {
    fn drop(&mut self) {
        self.password.iter_mut().for_each(|b| *b = 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scram_sha_256_matches_rfc_7677() {
        let mut s =
            ScramState::with_nonce(ScramHash::Sha256, "user", b"pencil", "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(s.client_first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let fin = s
            .client_final(b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
            .unwrap();
        assert_eq!(
            String::from_utf8(fin).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        s.verify_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
    }

    #[test]
    fn scram_sha_1_matches_rfc_5802_and_wrong_servers_are_caught() {
        let mut s = ScramState::with_nonce(
            ScramHash::Sha1,
            "user",
            b"pencil",
            "fyko+d2lbbFgONRv9qkxdawL",
        );
        s.client_first();
        let fin = s
            .client_final(b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096")
            .unwrap();
        assert!(String::from_utf8(fin)
            .unwrap()
            .ends_with(",p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="));
        let e = s
            .verify_server_final(b"v=AAAAv3Bz2T0CJGbJQyF0X+HI4Ts=")
            .unwrap_err();
        assert!(e.contains("does not know the password"), "{e}");

        let mut s = ScramState::with_nonce(ScramHash::Sha256, "u", b"p", "abc");
        s.client_first();
        assert!(s
            .client_final(b"r=xyz123,s=AAAA,i=4096")
            .unwrap_err()
            .contains("nonce"));
        let mut s = ScramState::with_nonce(ScramHash::Sha256, "u", b"p", "abc");
        s.client_first();
        assert!(s
            .client_final(b"r=abcdef,s=AAAA,i=999999999")
            .unwrap_err()
            .contains("iteration count"));
    }

    #[test]
    fn secrets_are_framed_as_asked() {
        assert_eq!(frame_secret(b"pw", SecretEncoding::Raw).unwrap(), b"pw");
        assert_eq!(
            frame_secret(b"pw", SecretEncoding::NulTerminated).unwrap(),
            b"pw\0"
        );
        assert_eq!(
            frame_secret(b"pw", SecretEncoding::LengthPrefixedNulTerminated).unwrap(),
            b"\0\0\0\x07pw\0"
        );
        assert_eq!(
            frame_secret(b"p w", SecretEncoding::RespBulkString).unwrap(),
            b"$3\r\np w\r\n"
        );
        assert!(frame_secret(b"a\0b", SecretEncoding::NulTerminated).is_err());
        assert_eq!(escape_name("a=b,c"), "a=3Db=2Cc");
    }

    #[test]
    fn md5_answer_matches_postgres() {
        // Expected value computed independently with Python's hashlib.
        let got = md5_response(b"secret", "alice", &[1, 2, 3, 4]);
        assert_eq!(&got[..4], &(4u32 + 35 + 1).to_be_bytes());
        assert_eq!(got.len(), 4 + 35 + 1);
        assert_eq!(&got[4..39], b"md598a0412b9c31436fc53776e863350083");
        assert_eq!(got[39], 0);
    }
}
