//! A small Elasticsearch client over [`Host`]: retries, error decoding, progress.

use crate::error::{AddonError, Result};
use crate::host::{Host, Level, Method, Request, Response};
use crate::retry::{permanent_circuit_breaker, retryable_status, Backoff};
use serde_json::Value;

/// Client state for one task.
pub struct Es<'h> {
    host: &'h mut dyn Host,
    /// Retry policy for whole requests and bulk items.
    pub backoff: Backoff,
    /// Requests sent (including retries).
    pub requests: u64,
    /// Retries performed.
    pub retries: u64,
}

impl<'h> Es<'h> {
    /// Wrap a host.
    pub fn new(host: &'h mut dyn Host) -> Self {
        Es {
            host,
            backoff: Backoff::default(),
            requests: 0,
            retries: 0,
        }
    }

    /// The underlying host (streams, logs, progress).
    pub fn host(&mut self) -> &mut dyn Host {
        self.host
    }

    /// Log a line.
    pub fn log(&mut self, level: Level, msg: impl AsRef<str>) {
        self.host.log(level, msg.as_ref());
    }

    /// Send with retries on transport errors, 429 (unless a permanent circuit breaker) and 5xx.
    /// Returns the final response whatever its status. Only for requests that may be repeated
    /// after the server processed them (reads, PIT searches, idempotent writes); see
    /// [`Es::send_unrepeatable`] for the others.
    pub fn send(&mut self, req: &Request) -> Result<Response> {
        self.send_with(req, Repeat::Always)
    }

    /// Send a request that must not be repeated once the server may have processed it: a scroll
    /// continuation moves the server's cursor, so asking again after its answer was lost returns
    /// the next page and silently skips the lost one. Retried only when the answer says the
    /// request was not executed (429 other than a permanent circuit breaker, 503) or the
    /// transport failed before the request reached the server (connection refused, DNS, TLS,
    /// connect timeout). Otherwise the first failure is returned: a transport error that may
    /// have been processed as [`AddonError::Connect`] saying so, another status as the response.
    pub fn send_unrepeatable(&mut self, req: &Request) -> Result<Response> {
        self.send_with(req, Repeat::OnlyIfUnprocessed)
    }

    fn send_with(&mut self, req: &Request, repeat: Repeat) -> Result<Response> {
        let mut attempt = 1;
        loop {
            self.requests += 1;
            let reason = match self.host.send(req) {
                Ok(r) if !should_retry(&r) => return Ok(r),
                Ok(r) if repeat == Repeat::OnlyIfUnprocessed && !matches!(r.status, 429 | 503) => {
                    return Ok(r)
                }
                Ok(r) => {
                    if attempt >= self.backoff.max_attempts {
                        return Ok(r);
                    }
                    format!("HTTP {}: {}", r.status, error_reason(&r.body))
                }
                Err(e) if repeat == Repeat::OnlyIfUnprocessed && e.maybe_processed => {
                    return Err(AddonError::Connect {
                        method: req.method.as_str().to_string(),
                        path: req.path.clone(),
                        reason: format!(
                            "{} (the server may have processed the request, so it is not sent again)",
                            e.message
                        ),
                    });
                }
                Err(e) => {
                    if !e.retryable || attempt >= self.backoff.max_attempts {
                        return Err(AddonError::Connect {
                            method: req.method.as_str().to_string(),
                            path: req.path.clone(),
                            reason: format!("{} (after {attempt} attempts)", e.message),
                        });
                    }
                    e.message
                }
            };
            let r = self.host.random();
            let d = self.backoff.delay(attempt, r);
            self.host.log(
                Level::Debug,
                &format!(
                    "{} {}: {reason}; retry {attempt} in {d:?}",
                    req.method.as_str(),
                    req.path
                ),
            );
            self.host.sleep(d);
            self.retries += 1;
            attempt += 1;
        }
    }

    /// Send and require a 2xx answer; returns the body bytes.
    pub fn ok(&mut self, req: &Request) -> Result<Vec<u8>> {
        let r = self.send(req)?;
        if (200..300).contains(&r.status) {
            Ok(r.body)
        } else {
            Err(remote_error(req, &r))
        }
    }

    /// Send, require 2xx, and parse the body as JSON.
    pub fn ok_json(&mut self, req: &Request) -> Result<Value> {
        let body = self.ok(req)?;
        parse_json(req, &body)
    }
}

/// Which failures [`Es::send_with`] repeats a request after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repeat {
    /// Every transport error, 429 and 5xx.
    Always,
    /// Only failures that prove the server did not execute the request.
    OnlyIfUnprocessed,
}

fn should_retry(r: &Response) -> bool {
    retryable_status(r.status) && !(r.status == 429 && permanent_circuit_breaker(&r.body))
}

/// Parse a 2xx body as JSON, naming the request on failure.
pub fn parse_json(req: &Request, body: &[u8]) -> Result<Value> {
    serde_json::from_slice(body).map_err(|e| AddonError::Protocol {
        what: format!("{} {}", req.method.as_str(), req.path),
        reason: format!("body is not JSON: {e}"),
    })
}

/// Build an [`AddonError::Remote`] from an error answer, using ES's error envelope if present.
pub fn remote_error(req: &Request, r: &Response) -> AddonError {
    AddonError::Remote {
        method: req.method.as_str().to_string(),
        path: req.path.clone(),
        status: r.status,
        reason: error_reason(&r.body),
    }
}

/// `type: reason` from Elasticsearch's error envelope, or the (truncated) body.
pub fn error_reason(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        if let Some(e) = v.get("error") {
            return reason_of(e);
        }
    }
    let s = String::from_utf8_lossy(body);
    let mut s = s.trim().to_string();
    if s.len() > 300 {
        let mut cut = 300;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    if s.is_empty() {
        "(empty body)".to_string()
    } else {
        s
    }
}

/// `type: reason` of one ES error object (or its string form).
pub fn reason_of(e: &Value) -> String {
    match e {
        Value::String(s) => s.clone(),
        Value::Object(_) => {
            let t = e.get("type").and_then(Value::as_str).unwrap_or("error");
            let r = e.get("reason").and_then(Value::as_str).unwrap_or("");
            format!("{t}: {r}")
        }
        other => other.to_string(),
    }
}

/// The error `type` of an ES error body, if any.
pub fn error_type(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.get("error")?.get("type")?.as_str().map(str::to_string)
}

/// A request without body.
pub fn get(path: impl Into<String>) -> Request {
    Request::new(Method::Get, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{Level, OutputStream, TransportError};
    use std::collections::VecDeque;
    use std::time::Duration;

    /// Answers requests from a script; records sleeps.
    struct Scripted {
        answers: VecDeque<Result<Response, TransportError>>,
        sent: usize,
        sleeps: Vec<Duration>,
    }

    impl Host for Scripted {
        fn send(&mut self, _req: &Request) -> Result<Response, TransportError> {
            self.sent += 1;
            self.answers.pop_front().expect("script exhausted")
        }
        fn sleep(&mut self, d: Duration) {
            self.sleeps.push(d);
        }
        fn log(&mut self, _: Level, _: &str) {}
        fn progress(&mut self, _: u64, _: Option<u64>, _: &str) {}
        fn create_output(&mut self, _: &str) -> std::io::Result<Box<dyn OutputStream>> {
            unreachable!("not used")
        }
        fn input_names(&mut self) -> std::io::Result<Vec<String>> {
            Ok(vec![])
        }
        fn open_input(&mut self, _: &str) -> std::io::Result<Box<dyn std::io::Read>> {
            unreachable!("not used")
        }
        fn random(&mut self) -> u64 {
            999
        }
    }

    fn status(s: u16, body: &str) -> Result<Response, TransportError> {
        Ok(Response {
            status: s,
            body: body.as_bytes().to_vec(),
        })
    }

    fn host(answers: Vec<Result<Response, TransportError>>) -> Scripted {
        Scripted {
            answers: answers.into(),
            sent: 0,
            sleeps: vec![],
        }
    }

    #[test]
    fn retries_429_5xx_and_resets_then_succeeds() {
        let reset = Err(TransportError {
            message: "connection reset".into(),
            retryable: true,
            maybe_processed: true,
        });
        let mut h = host(vec![
            status(429, "{}"),
            status(503, "{}"),
            reset,
            status(200, "{\"ok\":true}"),
        ]);
        let mut es = Es::new(&mut h);
        let v = es.ok_json(&get("/x")).unwrap();
        assert_eq!(v["ok"], true);
        assert_eq!((es.requests, es.retries), (4, 3));
        assert_eq!(h.sleeps.len(), 3);
        assert!(
            h.sleeps[0] < h.sleeps[1] && h.sleeps[1] < h.sleeps[2],
            "{:?}",
            h.sleeps
        );
    }

    #[test]
    fn gives_up_after_max_attempts_with_the_last_error() {
        let mut h = host(
            (0..10)
                .map(|_| {
                    status(
                        503,
                        r#"{"error":{"type":"unavailable","reason":"busy"},"status":503}"#,
                    )
                })
                .collect(),
        );
        let mut es = Es::new(&mut h);
        let e = es.ok(&get("/x")).unwrap_err().to_string();
        assert_eq!(h.sent, 10);
        assert!(
            e.contains("HTTP 503") && e.contains("unavailable: busy"),
            "{e}"
        );
    }

    #[test]
    fn does_not_retry_client_errors_denials_or_permanent_breakers() {
        let mut h = host(vec![status(
            400,
            r#"{"error":{"type":"illegal_argument_exception","reason":"bad"},"status":400}"#,
        )]);
        let e = Es::new(&mut h).ok(&get("/x")).unwrap_err();
        assert!(matches!(e, AddonError::Remote { status: 400, .. }));
        let denied = Err(TransportError {
            message: "denied".into(),
            retryable: false,
            maybe_processed: false,
        });
        let mut h = host(vec![denied]);
        assert!(matches!(
            Es::new(&mut h).ok(&get("/x")).unwrap_err(),
            AddonError::Connect { .. }
        ));
        assert_eq!(h.sent, 1);
        let mut h = host(vec![status(
            429,
            r#"{"error":{"type":"circuit_breaking_exception","durability":"PERMANENT"},"status":429}"#,
        )]);
        assert!(Es::new(&mut h).ok(&get("/x")).is_err());
        assert_eq!(h.sent, 1);
    }

    #[test]
    fn unrepeatable_requests_are_only_repeated_when_surely_not_executed() {
        let refused = || {
            Err(TransportError {
                message: "ErrorCode::ConnectionRefused".into(),
                retryable: true,
                maybe_processed: false,
            })
        };
        let cut = || {
            Err(TransportError {
                message: "ErrorCode::HttpProtocolError".into(),
                retryable: true,
                maybe_processed: true,
            })
        };
        // Rejections and refused connections: repeated.
        let mut h = host(vec![
            status(429, "{}"),
            status(503, "{}"),
            refused(),
            status(200, "{}"),
        ]);
        let r = Es::new(&mut h)
            .send_unrepeatable(&get("/_search/scroll"))
            .unwrap();
        assert_eq!((r.status, h.sent), (200, 4));
        // A cut connection after sending: not repeated, and the error says why.
        let mut h = host(vec![cut(), status(200, "{}")]);
        let e = Es::new(&mut h)
            .send_unrepeatable(&get("/_search/scroll"))
            .unwrap_err()
            .to_string();
        assert_eq!(h.sent, 1);
        assert!(e.contains("may have processed"), "{e}");
        // A gateway timeout may hide an executed request: returned as it is.
        let mut h = host(vec![status(504, "{}"), status(200, "{}")]);
        let r = Es::new(&mut h)
            .send_unrepeatable(&get("/_search/scroll"))
            .unwrap();
        assert_eq!((r.status, h.sent), (504, 1));
        // The ordinary send repeats the cut request.
        let mut h = host(vec![cut(), status(200, "{}")]);
        assert_eq!(Es::new(&mut h).send(&get("/x")).unwrap().status, 200);
        assert_eq!(h.sent, 2);
    }

    #[test]
    fn error_reason_uses_the_envelope_or_the_body() {
        assert_eq!(
            error_reason(br#"{"error":{"type":"t","reason":"r"},"status":400}"#),
            "t: r"
        );
        assert_eq!(
            error_reason(br#"{"error":"alias [x] missing","status":404}"#),
            "alias [x] missing"
        );
        assert_eq!(error_reason(b""), "(empty body)");
        assert!(error_reason("é".repeat(400).as_bytes()).ends_with('…'));
    }
}
