//! Host tests of the PostgreSQL addon against real PostgreSQL servers.

mod support;

use postgres_addon::client::Client;
use postgres_addon::conn::TlsMode;
use support::native::NativeConnector;
use support::server::{Server, ServerOptions, SUPERUSER_PASSWORD};

#[test]
fn connects_with_scram_and_tls() {
    let plain = Server::start(ServerOptions::default());
    let mut c = NativeConnector::new(&plain.addr(), "postgres", SUPERUSER_PASSWORD);
    let mut client = Client::connect(&mut c, "postgres").expect("connect");
    let rows = client.query("version", "SELECT current_setting('server_version_num') AS v, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").unwrap();
    assert!(rows.first().unwrap().i64("v") >= 130000);
    assert!(!rows.first().unwrap().bool("ssl"));
    client.close();

    let tls = Server::start(ServerOptions { tls: true });
    let mut c = NativeConnector::new(&tls.addr(), "postgres", SUPERUSER_PASSWORD);
    c.tls = TlsMode::Require;
    c.ca_pem = tls.ca_pem.clone();
    let mut client = Client::connect(&mut c, "postgres").expect("connect over TLS");
    let rows = client.query("ssl", "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").unwrap();
    assert!(rows.first().unwrap().bool("ssl"));
    client.close();

    let mut bad = NativeConnector::new(&plain.addr(), "postgres", "wrong");
    let err = Client::connect(&mut bad, "postgres").err().expect("wrong password fails");
    let msg = err.to_string();
    assert!(msg.contains("authentication of user \"postgres\"") && msg.contains("28P01"), "{msg}");
}
