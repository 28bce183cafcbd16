//! A native SCRAM-SHA-256 client (RFC 5802/7677, no channel binding) for the host tests. In
//! production the kstash engine computes these messages; the addon never sees the password.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = HmacSha256::new_from_slice(key).expect("hmac key");
    m.update(data);
    m.finalize().into_bytes().into()
}

/// The client side of one SCRAM exchange.
#[derive(Default)]
pub struct Scram {
    nonce: String,
    client_first_bare: String,
    server_signature: Option<[u8; 32]>,
}

impl Scram {
    /// `client-first-message`.
    pub fn client_first(&mut self) -> Vec<u8> {
        let mut raw = [0u8; 18];
        getrandom::getrandom(&mut raw).expect("random");
        self.nonce = B64.encode(raw);
        self.client_first_bare = format!("n=,r={}", self.nonce);
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// `client-final-message` for `server_first`.
    pub fn client_final(&mut self, password: &str, server_first: &[u8]) -> Result<Vec<u8>, String> {
        let sf = std::str::from_utf8(server_first).map_err(|_| "server-first is not UTF-8")?;
        let mut nonce = None;
        let mut salt = None;
        let mut iters = None;
        for part in sf.split(',') {
            if let Some(v) = part.strip_prefix("r=") {
                nonce = Some(v.to_string());
            } else if let Some(v) = part.strip_prefix("s=") {
                salt = Some(B64.decode(v).map_err(|e| format!("salt: {e}"))?);
            } else if let Some(v) = part.strip_prefix("i=") {
                iters = Some(v.parse::<u32>().map_err(|e| format!("iterations: {e}"))?);
            }
        }
        let (nonce, salt, iters) = match (nonce, salt, iters) {
            (Some(n), Some(s), Some(i)) => (n, s, i),
            _ => return Err(format!("malformed server-first-message {sf:?}")),
        };
        if !nonce.starts_with(&self.nonce) {
            return Err("server nonce does not extend the client nonce".into());
        }
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, iters, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{},{}", self.client_first_bare, sf, without_proof);
        let client_sig = hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(client_sig.iter())
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = hmac(&salted, b"Server Key");
        self.server_signature = Some(hmac(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Verifies `server-final-message`.
    pub fn verify(&self, server_final: &[u8]) -> Result<(), String> {
        let sf = std::str::from_utf8(server_final).map_err(|_| "server-final is not UTF-8")?;
        if let Some(e) = sf.strip_prefix("e=") {
            return Err(format!("server error {e}"));
        }
        let v = sf
            .strip_prefix("v=")
            .ok_or_else(|| format!("malformed server-final-message {sf:?}"))?;
        let got = B64.decode(v).map_err(|e| format!("signature: {e}"))?;
        match self.server_signature {
            Some(want) if want.as_slice() == got.as_slice() => Ok(()),
            _ => Err("the server's signature does not verify".into()),
        }
    }
}
