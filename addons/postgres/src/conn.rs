//! What the addon needs from its environment to talk to PostgreSQL: a duplex byte stream to the
//! target that the environment can upgrade to TLS, and authentication done by the environment,
//! so the addon never holds the password.
//!
//! In the component the kstash engine provides both (the TCP capability of the addon contract);
//! the host tests implement them over `std::net::TcpStream`, rustls and a native SCRAM client.

use std::io::{self, Read, Write};

/// How a password-based method wants the password sent (the environment writes the
/// `PasswordMessage` into the stream itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordMethod {
    /// `AuthenticationCleartextPassword`.
    Cleartext,
    /// `AuthenticationMD5Password` with the server's salt.
    Md5 {
        /// The four salt bytes.
        salt: [u8; 4],
    },
}

/// Whether to ask the server for TLS (PostgreSQL's `SSLRequest`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Never: plain TCP.
    Disable,
    /// Ask; continue in plain text when the server answers `N`.
    Prefer,
    /// Ask; fail when the server answers `N`.
    Require,
}

/// One connection to the target: bytes both ways, TLS upgrade and authentication by the
/// environment. Reads and writes block.
pub trait PgStream: Read + Write {
    /// Switches the stream to TLS. Called once, right after the server answered `S` to an
    /// `SSLRequest` and before anything else is sent.
    fn start_tls(&mut self) -> io::Result<()>;

    /// SASL step 1: picks a mechanism from the server's list and returns it with the
    /// client-first-message (SCRAM-SHA-256 computed by the environment).
    fn sasl_start(&mut self, mechanisms: &[String]) -> Result<(String, Vec<u8>), String>;

    /// SASL step 2: given the server-first-message, returns the client-final-message.
    fn sasl_continue(&mut self, server_first: &[u8]) -> Result<Vec<u8>, String>;

    /// SASL step 3: verifies the server-final-message (the server's signature).
    fn sasl_finish(&mut self, server_final: &[u8]) -> Result<(), String>;

    /// Writes a `PasswordMessage` for `method` into the stream (the environment knows the
    /// password; the addon never sees it).
    fn send_password(&mut self, method: PasswordMethod) -> Result<(), String>;
}

/// Opens connections to the task's target. The address is the environment's business; the
/// addon chooses the database in the startup message.
pub trait Connector {
    /// The stream type.
    type Stream: PgStream;
    /// Opens a new TCP connection to the target.
    fn connect(&mut self) -> io::Result<Self::Stream>;
    /// The user name the environment authenticates as.
    fn user(&self) -> String;
    /// Whether TLS is asked for.
    fn tls_mode(&self) -> TlsMode;
}
