//! The accept loop the operator's HTTP servers (metrics, admission webhook) share.

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The next connection on `listener`, or `None` once `shutdown` is cancelled. A failed accept
/// (out of file descriptors, say) is logged under `server` and retried after 100 ms rather
/// than ending the server.
pub(crate) async fn next(
    listener: &TcpListener,
    shutdown: &CancellationToken,
    server: &str,
) -> Option<TcpStream> {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return None,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, _)) => return Some(stream),
            Err(e) => {
                tracing::warn!(error = %e, "{server}: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}
