//! Reflector stores shared by the controllers: one watch per kind, read by every reconcile that
//! would otherwise LIST the cluster.
//!
//! Controllers ask the [`StoreSet`] for the kinds they read while they are built; the set
//! starts one reflector per kind, and [`StoreSet::run`] drives them. Controllers start only once
//! every store has its initial list ([`StoreSet::wait_ready`]). A store lags the API by the
//! watch latency: reconcilers that must not act twice (the executors) still GET their own
//! object before deciding.

use std::any::Any;
use std::collections::HashMap;
use std::fmt::Debug;

use futures::future::BoxFuture;
use futures::StreamExt;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Resource;
use serde::de::DeserializeOwned;

/// The stores of one operator run.
#[derive(Default)]
pub struct StoreSet {
    stores: HashMap<&'static str, Box<dyn Any + Send + Sync>>,
    ready: Vec<BoxFuture<'static, ()>>,
    reflectors: Vec<BoxFuture<'static, ()>>,
}

impl StoreSet {
    /// The store of `K` over `api` (all namespaces, the operator's namespace, or cluster-scoped
    /// objects); the first request for a kind starts its reflector, later ones share it.
    pub fn store<K>(&mut self, api: Api<K>) -> Store<K>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        let kind = std::any::type_name::<K>();
        if let Some(s) = self.stores.get(kind) {
            return s
                .downcast_ref::<Store<K>>()
                .expect("one store type per kind")
                .clone();
        }
        let (reader, writer) = reflector::store();
        let r = reader.clone();
        self.ready.push(Box::pin(async move {
            let _ = r.wait_until_ready().await;
        }));
        self.reflectors.push(Box::pin(
            watcher(api, watcher::Config::default())
                .default_backoff()
                .reflect(writer)
                .for_each(move |ev| {
                    if let Err(e) = ev {
                        tracing::debug!(kind, error = %e, "store watch");
                    }
                    futures::future::ready(())
                }),
        ));
        self.stores.insert(kind, Box::new(reader.clone()));
        reader
    }

    /// Splits the set into the future that drives every reflector and the one that completes
    /// once each store has its initial list.
    pub fn start(self) -> (BoxFuture<'static, ()>, BoxFuture<'static, ()>) {
        let reflectors = futures::future::join_all(self.reflectors);
        let ready = futures::future::join_all(self.ready);
        (
            Box::pin(async move {
                reflectors.await;
            }),
            Box::pin(async move {
                ready.await;
            }),
        )
    }
}
