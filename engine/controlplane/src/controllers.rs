//! Background controllers: owner-reference garbage collection (background, foreground, orphan),
//! the namespace controller and CRD clean-up.

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::api::{Api, Tx};
use crate::objects::{deleting, finalizers, ns_name};

const CRD_STORAGE: &str = "apiextensions.k8s.io/customresourcedefinitions";

fn owner_uids(o: &Value) -> Vec<String> {
    o["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["uid"].as_str().map(String::from))
        .collect()
}

fn without_finalizer(mut o: Value, f: &str) -> Value {
    let fins: Vec<String> = finalizers(&o).into_iter().filter(|x| x != f).collect();
    o["metadata"]["finalizers"] = json!(fins);
    o
}

/// One reconciliation pass over all objects; returns whether anything changed.
pub fn reconcile(api: &Api) -> bool {
    let mut changed = false;
    let res = api.store.write(|st, rv, batch| {
        let mut tx = Tx { st, rv, batch };
        let mut uids: HashSet<String> = HashSet::new();
        let mut all: Vec<(String, std::sync::Arc<Value>)> = vec![];
        for (storage, m) in &st.objects {
            for o in m.values() {
                if let Some(u) = o["metadata"]["uid"].as_str() {
                    uids.insert(u.to_string());
                }
                all.push((storage.clone(), o.clone()));
            }
        }
        for (storage, o) in &all {
            let (ns, name) = ns_name(o);
            let Some(cur) = tx.get(storage, &ns, &name) else {
                continue;
            };
            let my_uid = cur["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            // Background GC: every owner is gone.
            let owners = owner_uids(&cur);
            if !owners.is_empty() && owners.iter().all(|u| !uids.contains(u)) && !deleting(&cur) {
                tx.delete(storage, cur.clone(), None);
                changed = true;
                continue;
            }
            if !deleting(&cur) {
                continue;
            }
            let fins = finalizers(&cur);
            if fins.iter().any(|f| f == "orphan") {
                for (ds, d) in &all {
                    if owner_uids(d).contains(&my_uid) {
                        let (dn, dname) = ns_name(d);
                        if let Some(mut dep) = tx.get(ds, &dn, &dname) {
                            let refs: Vec<Value> = dep["metadata"]["ownerReferences"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .filter(|r| r["uid"].as_str() != Some(&my_uid))
                                .cloned()
                                .collect();
                            dep["metadata"]["ownerReferences"] = json!(refs);
                            tx.put(ds, dep);
                        }
                    }
                }
                tx.put(storage, without_finalizer(cur.clone(), "orphan"));
                changed = true;
                continue;
            }
            if fins.iter().any(|f| f == "foregroundDeletion") {
                let mut remaining = 0;
                for (ds, d) in &all {
                    if owner_uids(d).contains(&my_uid) {
                        let (dn, dname) = ns_name(d);
                        if let Some(dep) = tx.get(ds, &dn, &dname) {
                            remaining += 1;
                            if !deleting(&dep) {
                                tx.delete(ds, dep, Some("foregroundDeletion"));
                                changed = true;
                            }
                        }
                    }
                }
                if remaining == 0 {
                    tx.put(
                        storage,
                        without_finalizer(cur.clone(), "foregroundDeletion"),
                    );
                    changed = true;
                }
                continue;
            }
            if storage == "core/namespaces"
                && cur["spec"]["finalizers"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|f| f == "kubernetes"))
            {
                let mut remaining = 0;
                for (ds, d) in &all {
                    if d["metadata"]["namespace"].as_str() == Some(name.as_str())
                        && ds != "core/namespaces"
                    {
                        let (dn, dname) = ns_name(d);
                        if let Some(dep) = tx.get(ds, &dn, &dname) {
                            remaining += 1;
                            if !deleting(&dep) {
                                tx.delete(ds, dep, None);
                                changed = true;
                            }
                        }
                    }
                }
                if remaining == 0 {
                    let mut ns_obj = cur.clone();
                    ns_obj["spec"]["finalizers"] = json!([]);
                    tx.put(storage, ns_obj);
                    changed = true;
                }
                continue;
            }
            if storage == CRD_STORAGE
                && fins
                    .iter()
                    .any(|f| f == "customresourcecleanup.apiextensions.k8s.io")
            {
                let target = format!(
                    "{}/{}",
                    cur["spec"]["group"].as_str().unwrap_or_default(),
                    cur["spec"]["names"]["plural"].as_str().unwrap_or_default()
                );
                let mut remaining = 0;
                for (ds, d) in &all {
                    if *ds == target {
                        let (dn, dname) = ns_name(d);
                        if let Some(dep) = tx.get(ds, &dn, &dname) {
                            remaining += 1;
                            if !deleting(&dep) {
                                tx.delete(ds, dep, None);
                                changed = true;
                            }
                        }
                    }
                }
                if remaining == 0 {
                    tx.put(
                        storage,
                        without_finalizer(
                            cur.clone(),
                            "customresourcecleanup.apiextensions.k8s.io",
                        ),
                    );
                    changed = true;
                }
            }
        }
        Ok(())
    });
    if let Err(e) = res {
        tracing::warn!("controller pass failed: {e}");
    }
    if changed {
        api.refresh_registry();
    }
    changed
}
