//! The host tests' stand-in for the engine's TCP capability: `std::net::TcpStream`, rustls for
//! the TLS upgrade and a native SCRAM client, plus fault injection (cut a connection after some
//! bytes, act between connections).

use super::scram::Scram;
use postgres_addon::conn::{Connector, PasswordMethod, PgStream, TlsMode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};

/// What a read hook decides.
pub enum ReadAction {
    /// Go on.
    Continue,
    /// Cut the connection now (the read fails with `ConnectionReset`).
    Cut,
}

/// Called before every read with (connection number from 0, bytes read so far on it).
pub type ReadHook = Arc<Mutex<dyn FnMut(usize, u64) -> ReadAction + Send>>;
/// Called before every new connection with its number (from 0).
pub type ConnectHook = Arc<Mutex<dyn FnMut(usize) + Send>>;

/// Opens connections to one server as one user.
#[derive(Clone)]
pub struct NativeConnector {
    /// `127.0.0.1:port`.
    pub addr: String,
    /// The user.
    pub user: String,
    /// The password (only here, in the test's "engine").
    pub password: String,
    /// TLS mode.
    pub tls: TlsMode,
    /// The CA that signed the server certificate (TLS servers).
    pub ca_pem: Option<Vec<u8>>,
    /// Fault injection on reads.
    pub read_hook: Option<ReadHook>,
    /// Fault injection between connections.
    pub connect_hook: Option<ConnectHook>,
    connections: Arc<Mutex<usize>>,
}

impl NativeConnector {
    /// A connector without TLS.
    pub fn new(addr: &str, user: &str, password: &str) -> Self {
        NativeConnector {
            addr: addr.to_string(),
            user: user.to_string(),
            password: password.to_string(),
            tls: TlsMode::Disable,
            ca_pem: None,
            read_hook: None,
            connect_hook: None,
            connections: Arc::new(Mutex::new(0)),
        }
    }

    /// How many connections were opened.
    pub fn connections(&self) -> usize {
        *self.connections.lock().unwrap()
    }
}

enum Inner {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
    Gone,
}

/// One native connection.
pub struct NativeStream {
    inner: Inner,
    password: String,
    ca_pem: Option<Vec<u8>>,
    scram: Scram,
    index: usize,
    read: u64,
    hook: Option<ReadHook>,
    user: String,
}

impl Connector for NativeConnector {
    type Stream = NativeStream;

    fn connect(&mut self) -> io::Result<NativeStream> {
        let index = {
            let mut n = self.connections.lock().unwrap();
            let i = *n;
            *n += 1;
            i
        };
        if let Some(h) = &self.connect_hook {
            (h.lock().unwrap())(index);
        }
        let tcp = TcpStream::connect(&self.addr)?;
        tcp.set_nodelay(true)?;
        Ok(NativeStream {
            inner: Inner::Plain(tcp),
            password: self.password.clone(),
            ca_pem: self.ca_pem.clone(),
            scram: Scram::default(),
            index,
            read: 0,
            hook: self.read_hook.clone(),
            user: self.user.clone(),
        })
    }

    fn user(&self) -> String {
        self.user.clone()
    }

    fn tls_mode(&self) -> TlsMode {
        self.tls
    }
}

impl Read for NativeStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(h) = &self.hook {
            let action = (h.lock().unwrap())(self.index, self.read);
            if let ReadAction::Cut = action {
                if let Inner::Plain(t) = &self.inner {
                    let _ = t.shutdown(std::net::Shutdown::Both);
                }
                if let Inner::Tls(t) = &self.inner {
                    let _ = t.sock.shutdown(std::net::Shutdown::Both);
                }
                self.inner = Inner::Gone;
            }
        }
        let n = match &mut self.inner {
            Inner::Plain(t) => t.read(buf)?,
            Inner::Tls(t) => t.read(buf)?,
            Inner::Gone => {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "connection cut by the test",
                ))
            }
        };
        self.read += n as u64;
        Ok(n)
    }
}

impl Write for NativeStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Plain(t) => t.write(buf),
            Inner::Tls(t) => t.write(buf),
            Inner::Gone => Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "connection cut by the test",
            )),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Plain(t) => t.flush(),
            Inner::Tls(t) => t.flush(),
            Inner::Gone => Ok(()),
        }
    }
}

impl PgStream for NativeStream {
    fn start_tls(&mut self) -> io::Result<()> {
        let pem = self
            .ca_pem
            .clone()
            .ok_or_else(|| io::Error::other("no CA configured for TLS"))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            roots
                .add(cert.map_err(|e| io::Error::other(format!("CA PEM: {e:?}")))?)
                .map_err(|e| io::Error::other(format!("CA: {e}")))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| io::Error::other(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from("localhost").expect("server name");
        let conn = rustls::ClientConnection::new(Arc::new(config), name)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let tcp = match std::mem::replace(&mut self.inner, Inner::Gone) {
            Inner::Plain(t) => t,
            _ => return Err(io::Error::other("TLS already started")),
        };
        let mut s = rustls::StreamOwned::new(conn, tcp);
        // Complete the handshake now so certificate errors surface here.
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock)?;
        }
        self.inner = Inner::Tls(Box::new(s));
        Ok(())
    }

    fn sasl_start(&mut self, mechanisms: &[String]) -> Result<(String, Vec<u8>), String> {
        if !mechanisms.iter().any(|m| m == "SCRAM-SHA-256") {
            return Err(format!("no supported SASL mechanism in {mechanisms:?}"));
        }
        Ok(("SCRAM-SHA-256".to_string(), self.scram.client_first()))
    }

    fn sasl_continue(&mut self, server_first: &[u8]) -> Result<Vec<u8>, String> {
        let pw = self.password.clone();
        self.scram.client_final(&pw, server_first)
    }

    fn sasl_finish(&mut self, server_final: &[u8]) -> Result<(), String> {
        self.scram.verify(server_final)
    }

    fn send_password(&mut self, method: PasswordMethod) -> Result<(), String> {
        let pw = match method {
            PasswordMethod::Cleartext => self.password.clone(),
            PasswordMethod::Md5 { .. } => {
                return Err(format!(
                    "md5 authentication for {} is not implemented by the test transport",
                    self.user
                ))
            }
        };
        let mut msg = vec![b'p'];
        msg.extend_from_slice(&((pw.len() + 5) as i32).to_be_bytes());
        msg.extend_from_slice(pw.as_bytes());
        msg.push(0);
        self.write_all(&msg).map_err(|e| e.to_string())?;
        self.flush().map_err(|e| e.to_string())
    }
}
