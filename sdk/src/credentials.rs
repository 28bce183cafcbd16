//! The target's credentials, used by the host for the guest (`kstash:addon/credentials`).
//!
//! The guest learns the user name and whether a secret is configured, never the secret. Either
//! the host writes the secret into a connection ([`crate::TcpStream::write_secret`], for
//! protocols that send it, e.g. Redis `AUTH`), or it computes a challenge response:
//! [`Scram`] (SCRAM-SHA-256, e.g. PostgreSQL, MongoDB) or the PostgreSQL `md5` answer
//! ([`crate::TcpStream::write_md5_response`]).
//!
//! ```text
//! let mut scram = Scram::start()?;
//! send_sasl_initial(conn, "SCRAM-SHA-256", &scram.client_first())?;
//! let server_first = read_sasl_continue(conn)?;
//! send_sasl_response(conn, &scram.client_final(&server_first)?)?;
//! scram.verify_server_final(&read_sasl_final(conn)?)?;   // the server proved it knows the password
//! ```

use crate::bindings::kstash::addon::credentials::{self, ScramClient, ScramMechanism};

pub use crate::bindings::kstash::addon::credentials::SecretEncoding;

/// The target's user name, if one is configured (user names are not secret).
pub fn username() -> Option<String> {
    credentials::username()
}

/// Whether a secret (password) is configured for the target.
pub fn has_secret() -> bool {
    credentials::has_secret()
}

/// One SCRAM-SHA-256 exchange computed by the host (RFC 5802 / RFC 7677, no channel binding).
pub struct Scram {
    client: ScramClient,
}

impl std::fmt::Debug for Scram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scram(..)")
    }
}

impl Scram {
    /// Starts an exchange with the target's user name and secret; fails without a secret.
    pub fn start() -> Result<Self, String> {
        credentials::scram_start(ScramMechanism::ScramSha256).map(|client| Self { client })
    }

    /// The SASL mechanism name, `SCRAM-SHA-256`.
    pub fn mechanism(&self) -> &'static str {
        "SCRAM-SHA-256"
    }

    /// The client-first-message to send.
    pub fn client_first(&self) -> Vec<u8> {
        self.client.client_first()
    }

    /// The client-final-message (carrying the proof) for the server-first-message.
    pub fn client_final(&self, server_first: &[u8]) -> Result<Vec<u8>, String> {
        self.client.client_final(server_first)
    }

    /// Checks the server-final-message: the server proves it knows the password.
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<(), String> {
        self.client.verify_server_final(server_final)
    }
}
