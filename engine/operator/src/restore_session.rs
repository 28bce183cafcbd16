//! Placeholder: replaced by the owner of this controller.

use std::sync::Arc;

use crate::Context;

/// Runs this controller until its watch ends.
pub async fn run(ctx: Arc<Context>) {
    let _ = ctx;
    std::future::pending::<()>().await
}
