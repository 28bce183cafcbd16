//! Addon / Function controller (issue #7 item 7): a `Function` without `spec.module` (a
//! container-image Function kstash cannot run) gets a Warning Event `UnsupportedFunction`, an
//! invalid one `InvalidFunction`; an `Addon` whose tasks name missing Functions gets a Warning
//! Event `FunctionNotFound` per task. Both kinds are cluster-scoped and have no status, so
//! Events (in namespace `default`, as for every cluster-scoped object) are the report.

use std::sync::Arc;

use futures::StreamExt;
use kstash_api::addons::{Addon, Function};
use kube::api::{Api, ListParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::ResourceExt;

use crate::control::{self, kube_err, Ctl, Result};
use crate::Context;

/// Event reason for a Function without a WASM module.
pub const REASON_UNSUPPORTED_FUNCTION: &str = "UnsupportedFunction";
/// Event reason for a Function the admission rules refuse.
pub const REASON_INVALID_FUNCTION: &str = "InvalidFunction";
/// Event reason for an Addon task naming a missing Function.
pub const REASON_FUNCTION_NOT_FOUND: &str = "FunctionNotFound";

/// Runs this controller until its watches end.
pub async fn run(ctx: Arc<Context>) {
    let ctl = Ctl::new(&ctx, "addons");
    let functions = Controller::new(
        Api::<Function>::all(ctx.client.clone()),
        watcher::Config::default(),
    )
    .run(reconcile_function, control::error_policy, ctl.clone())
    .for_each(|_| async {});
    let addon_ctl = Controller::new(
        Api::<Addon>::all(ctx.client.clone()),
        watcher::Config::default(),
    );
    let addons = addon_ctl.store();
    let addons = addon_ctl
        .watches(
            Api::<Function>::all(ctx.client.clone()),
            watcher::Config::default(),
            move |_f| {
                addons
                    .state()
                    .into_iter()
                    .map(|a| ObjectRef::new(&a.name_any()))
                    .collect::<Vec<_>>()
            },
        )
        .run(reconcile_addon, control::error_policy, ctl)
        .for_each(|_| async {});
    futures::join!(functions, addons);
}

async fn reconcile_function(f: Arc<Function>, ctl: Arc<Ctl>) -> Result<Action> {
    let name = f.name_any();
    if f.spec.module.is_none() {
        ctl.events
            .publish(
                f.as_ref(),
                true,
                REASON_UNSUPPORTED_FUNCTION,
                "Validate",
                format!(
                    "Function {name} has no spec.module: kstash runs addons as WASM components \
                     (spec.module.location + sha256) and cannot run container image {:?}",
                    f.spec.image.clone().unwrap_or_default()
                ),
            )
            .await;
    } else if let Err(e) = kstash_api::admission::validate_function(&f) {
        ctl.events
            .publish(
                f.as_ref(),
                true,
                REASON_INVALID_FUNCTION,
                "Validate",
                format!("Function {name}: {e}"),
            )
            .await;
    }
    Ok(Action::await_change())
}

async fn reconcile_addon(a: Arc<Addon>, ctl: Arc<Ctl>) -> Result<Action> {
    let functions: Vec<String> = Api::<Function>::all(ctl.ctx.client.clone())
        .list(&ListParams::default())
        .await
        .map_err(kube_err("listing Functions"))?
        .items
        .iter()
        .map(|f| f.name_any())
        .collect();
    let name = a.name_any();
    for t in a.spec.backup_tasks.iter().chain(&a.spec.restore_tasks) {
        let func = t.function.clone().unwrap_or_default();
        if func.is_empty() || !functions.contains(&func) {
            ctl.events
                .publish(
                    a.as_ref(),
                    true,
                    REASON_FUNCTION_NOT_FOUND,
                    "Validate",
                    format!(
                        "Addon {name}: task {} references Function {func:?}, which does not exist",
                        t.name
                    ),
                )
                .await;
        }
    }
    Ok(Action::await_change())
}
