//! The operator's integration tests: kstash-testkit (the embedded control plane, moto, restic,
//! the Elasticsearch emulator, waits, object builders) plus what only the operator's tests need,
//! the operator itself running in a background task.
//!
//! Use it from a test binary with `mod support;` (file `tests/support/mod.rs`).

#![allow(dead_code, unused_imports)]

use std::sync::Arc;

pub use kstash_testkit::builders::*;
pub use kstash_testkit::cluster::*;
pub use kstash_testkit::es::*;
pub use kstash_testkit::*;

/// The operator on a [`TestCluster`].
#[allow(async_fn_in_trait)]
pub trait StartOperator {
    /// Starts the operator (every controller of this build) on this cluster in a background
    /// task; aborted when the returned handle drops.
    async fn start_operator(&self) -> OperatorHandle;

    /// Like [`StartOperator::start_operator`], with a chance to adjust the config first.
    async fn start_operator_with(
        &self,
        adjust: impl FnOnce(&mut kstash_operator::OperatorConfig),
    ) -> OperatorHandle;
}

impl StartOperator for TestCluster {
    async fn start_operator(&self) -> OperatorHandle {
        self.start_operator_with(|_| {}).await
    }

    async fn start_operator_with(
        &self,
        adjust: impl FnOnce(&mut kstash_operator::OperatorConfig),
    ) -> OperatorHandle {
        let data_dir = self.dir.path().join("operator");
        std::fs::create_dir_all(&data_dir).unwrap();
        let mut config = kstash_operator::OperatorConfig {
            identity: "kstash-test".into(),
            module_dir: None,
            data_dir,
            namespace: None,
        };
        adjust(&mut config);
        let client = self.cp.client().await.expect("operator client");
        let ctx = operator_context(client, config, 2);
        let task = tokio::spawn(kstash_operator::run(ctx.clone()));
        OperatorHandle { ctx, task }
    }
}

/// The operator running in a background task; aborted on drop.
pub struct OperatorHandle {
    /// Its context.
    pub ctx: Arc<kstash_operator::Context>,
    task: tokio::task::JoinHandle<()>,
}

impl OperatorHandle {
    /// Stops the operator and waits until its task has ended.
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for OperatorHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The operator's context as `kstash operator` builds it: an addon runtime running at most
/// `max_tasks` tasks, its module cache under `config.data_dir/cache`.
pub fn operator_context(
    client: kube::Client,
    config: kstash_operator::OperatorConfig,
    max_tasks: u32,
) -> Arc<kstash_operator::Context> {
    operator_context_with(client, config, max_tasks, None)
}

/// [`operator_context`], with session claims (as `kstash operator --leader-elect` runs it).
pub fn operator_context_with(
    client: kube::Client,
    config: kstash_operator::OperatorConfig,
    max_tasks: u32,
    claims: Option<kstash_operator::task::claim::ClaimConfig>,
) -> Arc<kstash_operator::Context> {
    std::fs::create_dir_all(&config.data_dir).unwrap();
    let runtime = kstash_runtime::Runtime::new(kstash_runtime::RuntimeConfig {
        cache_dir: Some(config.data_dir.join("cache")),
        max_concurrent_tasks: max_tasks,
        ..Default::default()
    })
    .expect("addon runtime");
    let ctx = kstash_operator::Context::new(client, Arc::new(runtime), config);
    Arc::new(match claims {
        Some(c) => ctx.with_claims(c),
        None => ctx,
    })
}
