//! kube-rs client tests against a real in-process control plane over HTTPS: CRUD, conflicts,
//! validation, status subresource + SSA, finalizers, GC, namespaces, selectors, pagination,
//! watch resume across restarts, bad input, and durability across `kill -9`.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kstash_controlplane::{ControlPlane, RunningControlPlane, ServerConfig};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::{Client, ResourceExt};
use serde_json::{json, Value};

fn widget_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.test.kstash.dev"},
        "spec": {
            "group": "test.kstash.dev", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList", "shortNames": ["wd"], "categories": ["kstash"]},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                    {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
                ],
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {"type": "object", "required": ["size"], "properties": {
                            "size": {"type": "integer", "minimum": 1},
                            "color": {"type": "string", "enum": ["red", "blue"], "default": "red"},
                            "code": {"type": "string", "pattern": "^[a-z]+$"},
                            "tags": {"type": "array", "items": {"type": "string"}},
                            "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                        }},
                        "status": {"type": "object", "properties": {
                            "phase": {"type": "string"}, "message": {"type": "string"}
                        }}
                    }
                }}
            }]
        }
    })
}

fn widgets(client: &Client, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("test.kstash.dev", "v1", "Widget"),
        "widgets",
    );
    Api::namespaced_with(client.clone(), ns, &ar)
}

fn widget(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({"apiVersion": "test.kstash.dev/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec})).expect("widget")
}

async fn start(dir: &std::path::Path) -> RunningControlPlane {
    let mut cfg = ServerConfig::new(dir, "127.0.0.1:0".parse().expect("addr"));
    cfg.bootstrap_crds = vec![widget_crd()];
    ControlPlane::start(cfg)
        .await
        .expect("control plane starts")
}

async fn mkns(client: &Client, name: &str) {
    let nss: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).expect("ns");
    nss.create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
}

fn api_err(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_conflicts_validation_and_status() {
    let dir = tempfile::tempdir().expect("tmp");
    let cp = start(dir.path()).await;
    let client = cp.client().await.expect("client");
    assert!(client
        .apiserver_version()
        .await
        .expect("version")
        .git_version
        .starts_with("v1."));
    mkns(&client, "t1").await;
    let api = widgets(&client, "t1");

    let mut w = widget("a", json!({"size": 2, "unknown": 1}));
    let created = api
        .create(&PostParams::default(), &w)
        .await
        .expect("create");
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
    assert_eq!(
        created.data["spec"]["color"], "red",
        "schema default applied"
    );
    assert!(
        created.data["spec"].get("unknown").is_none(),
        "unknown field pruned"
    );
    let rv1: u64 = created
        .metadata
        .resource_version
        .clone()
        .expect("rv")
        .parse()
        .expect("int rv");

    // AlreadyExists.
    let e = api_err(api.create(&PostParams::default(), &w).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (409, "AlreadyExists"));

    // Update with the current RV bumps generation; a stale RV is a 409 Conflict.
    let mut upd = created.clone();
    upd.data["spec"]["size"] = json!(3);
    let updated = api
        .replace("a", &PostParams::default(), &upd)
        .await
        .expect("update");
    assert_eq!(updated.metadata.generation, Some(2));
    assert!(
        updated
            .metadata
            .resource_version
            .clone()
            .expect("rv")
            .parse::<u64>()
            .expect("rv")
            > rv1
    );
    let e = api_err(
        api.replace("a", &PostParams::default(), &upd)
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));

    // Status via server-side apply does not bump generation; main updates ignore status.
    let ssa = PatchParams::apply("cntrlr").force();
    let st = api
        .patch_status("a", &ssa, &Patch::Apply(json!({"apiVersion": "test.kstash.dev/v1", "kind": "Widget", "status": {"phase": "Ready", "message": "ok"}})))
        .await
        .expect("status apply");
    assert_eq!(st.data["status"]["phase"], "Ready");
    assert_eq!(st.metadata.generation, Some(2));
    // Re-applying without `message` removes the field this manager no longer applies.
    let st = api
        .patch_status("a", &ssa, &Patch::Apply(json!({"apiVersion": "test.kstash.dev/v1", "kind": "Widget", "status": {"phase": "Ready"}})))
        .await
        .expect("status apply 2");
    assert!(
        st.data["status"].get("message").is_none(),
        "dropped field removed: {}",
        st.data["status"]
    );
    let mut main = st.clone();
    main.data["status"]["phase"] = json!("Hacked");
    let after = api
        .replace("a", &PostParams::default(), &main)
        .await
        .expect("main update");
    assert_eq!(
        after.data["status"]["phase"], "Ready",
        "main endpoint ignores status"
    );

    // SSA conflicts between managers, and force.
    api.patch(
        "a",
        &PatchParams::apply("m1"),
        &Patch::Apply(
            json!({"apiVersion": "test.kstash.dev/v1", "kind": "Widget", "spec": {"size": 5}}),
        ),
    )
    .await
    .expect("m1 apply");
    let e = api_err(
        api.patch(
            "a",
            &PatchParams::apply("m2"),
            &Patch::Apply(
                json!({"apiVersion": "test.kstash.dev/v1", "kind": "Widget", "spec": {"size": 6}}),
            ),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert!(e.message.contains("conflict with \"m1\""), "{}", e.message);
    let forced = api
        .patch(
            "a",
            &PatchParams::apply("m2").force(),
            &Patch::Apply(
                json!({"apiVersion": "test.kstash.dev/v1", "kind": "Widget", "spec": {"size": 6}}),
            ),
        )
        .await
        .expect("forced apply");
    assert_eq!(forced.data["spec"]["size"], 6);

    // SSA upsert creates (201) a missing object.
    let up = api
        .patch("b", &PatchParams::apply("m1"), &Patch::Apply(json!({"apiVersion": "test.kstash.dev/v1", "kind": "Widget", "metadata": {"name": "b"}, "spec": {"size": 1}})))
        .await
        .expect("upsert");
    assert_eq!(up.metadata.generation, Some(1));

    // Validation: enum, minimum, pattern, required → 422 with one cause per field.
    let bad = widget("bad", json!({"size": 0, "color": "green", "code": "ABC"}));
    let e = api_err(api.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    assert!(
        e.message.contains(
            "spec.color: Unsupported value: \"green\": supported values: \"red\", \"blue\""
        ),
        "{}",
        e.message
    );
    assert!(
        e.message.contains(
            "spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1"
        ),
        "{}",
        e.message
    );
    assert!(
        e.message.contains(
            "spec.code: Invalid value: \"ABC\": spec.code in body should match '^[a-z]+$'"
        ),
        "{}",
        e.message
    );
    let e = api_err(
        api.create(&PostParams::default(), &widget("req", json!({})))
            .await
            .unwrap_err(),
    );
    assert!(
        e.message.contains("spec.size: Required value"),
        "{}",
        e.message
    );
    w.metadata.name = Some("Not_DNS".into());
    let e = api_err(api.create(&PostParams::default(), &w).await.unwrap_err());
    assert_eq!(e.code, 422);
    assert!(
        e.message
            .contains("metadata.name: Invalid value: \"Not_DNS\""),
        "{}",
        e.message
    );

    // Create in a missing namespace → 404 namespaces "nope" not found.
    let e = api_err(
        widgets(&client, "nope")
            .create(&PostParams::default(), &widget("x", json!({"size": 1})))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (404, "NotFound"));
    assert_eq!(e.message, "namespaces \"nope\" not found");

    // generateName and dryRun.
    let mut g = widget("", json!({"size": 1}));
    g.metadata.name = None;
    g.metadata.generate_name = Some("gen-".into());
    let gen = api
        .create(&PostParams::default(), &g)
        .await
        .expect("generateName");
    let gname = gen.metadata.name.clone().expect("name");
    assert!(gname.starts_with("gen-") && gname.len() == 9, "{gname}");
    let dry = api
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &widget("dry", json!({"size": 1})),
        )
        .await
        .expect("dry run");
    assert_eq!(dry.metadata.name.as_deref(), Some("dry"));
    assert!(
        api.get_opt("dry").await.expect("get").is_none(),
        "dry run stored nothing"
    );

    // Secret stringData is merged into data and never stored.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "t1");
    let s: Secret =
        serde_json::from_value(json!({"metadata": {"name": "s"}, "stringData": {"k": "v"}}))
            .expect("secret");
    let s = secrets
        .create(&PostParams::default(), &s)
        .await
        .expect("secret");
    assert_eq!(s.data.expect("data")["k"].0, b"v");
    assert!(s.string_data.is_none());
    assert_eq!(s.type_.as_deref(), Some("Opaque"));
    cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalizers_gc_and_namespace_deletion() {
    let dir = tempfile::tempdir().expect("tmp");
    let cp = start(dir.path()).await;
    let client = cp.client().await.expect("client");
    mkns(&client, "t2").await;
    let api = widgets(&client, "t2");

    // Finalizer flow as kube-runtime does it (JSON patch with the test-null quirk).
    api.create(&PostParams::default(), &widget("f", json!({"size": 1})))
        .await
        .expect("create");
    let add = json!([{"op": "test", "path": "/metadata/finalizers", "value": null}, {"op": "add", "path": "/metadata/finalizers", "value": ["kstash.dev/cleanup"]}]);
    let p: Patch<Value> = Patch::Json(serde_json::from_value(add).expect("json patch"));
    api.patch("f", &PatchParams::default(), &p)
        .await
        .expect("add finalizer");
    let d = api
        .delete("f", &DeleteParams::default())
        .await
        .expect("delete");
    let obj = d.left().expect("object returned while finalizers remain");
    assert!(obj.metadata.deletion_timestamp.is_some());
    let e = api_err(
        api.patch(
            "f",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["kstash.dev/cleanup", "new"]}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 422, "no new finalizers while deleting");
    let rm: Patch<Value> = Patch::Json(serde_json::from_value(json!([{"op": "test", "path": "/metadata/finalizers/0", "value": "kstash.dev/cleanup"}, {"op": "remove", "path": "/metadata/finalizers/0"}])).expect("patch"));
    api.patch("f", &PatchParams::default(), &rm)
        .await
        .expect("remove finalizer");
    assert!(
        api.get_opt("f").await.expect("get").is_none(),
        "gone once the last finalizer is removed"
    );

    // Background GC: a ConfigMap owned by a Widget goes away with it.
    let owner = api
        .create(&PostParams::default(), &widget("owner", json!({"size": 1})))
        .await
        .expect("owner");
    let uid = owner.metadata.uid.clone().expect("uid");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "t2");
    let dep: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "dep", "ownerReferences": [
        {"apiVersion": "test.kstash.dev/v1", "kind": "Widget", "name": "owner", "uid": uid, "controller": true, "blockOwnerDeletion": true}]}})).expect("cm");
    cms.create(&PostParams::default(), &dep)
        .await
        .expect("dependent");
    api.delete("owner", &DeleteParams::background())
        .await
        .expect("delete owner");
    eventually("background GC of the dependent", || async {
        cms.get_opt("dep").await.expect("get").is_none()
    })
    .await;

    // Foreground: the owner stays (with foregroundDeletion) until its dependents are gone.
    let owner = api
        .create(&PostParams::default(), &widget("fg", json!({"size": 1})))
        .await
        .expect("owner");
    let dep: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "dep2", "finalizers": ["hold"], "ownerReferences": [
        {"apiVersion": "test.kstash.dev/v1", "kind": "Widget", "name": "fg", "uid": owner.metadata.uid, "blockOwnerDeletion": true}]}})).expect("cm");
    cms.create(&PostParams::default(), &dep)
        .await
        .expect("dependent");
    let d = api
        .delete("fg", &DeleteParams::foreground())
        .await
        .expect("foreground delete");
    assert!(d
        .left()
        .expect("owner kept")
        .finalizers()
        .contains(&"foregroundDeletion".to_string()));
    eventually("dependent marked for deletion", || async {
        cms.get("dep2")
            .await
            .expect("get")
            .metadata
            .deletion_timestamp
            .is_some()
    })
    .await;
    assert!(
        api.get_opt("fg").await.expect("get").is_some(),
        "owner waits for its dependent"
    );
    cms.patch(
        "dep2",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("release");
    eventually("foreground owner deleted", || async {
        api.get_opt("fg").await.expect("get").is_none()
    })
    .await;

    // Namespace deletion removes its objects, then the namespace. `x` holds a finalizer so the
    // namespace stays Terminating (deterministically) while we try to create in it.
    api.create(&PostParams::default(), &widget("x", json!({"size": 1})))
        .await
        .expect("x");
    api.patch(
        "x",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": ["test.kstash.io/hold"]}})),
    )
    .await
    .expect("hold x");
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.delete("t2", &DeleteParams::default())
        .await
        .expect("delete ns");
    let e = api_err(
        api.create(&PostParams::default(), &widget("y", json!({"size": 1})))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 403, "create in a terminating namespace");
    eventually(
        "x marked for deletion by the namespace controller",
        || async {
            api.get("x")
                .await
                .expect("get")
                .metadata
                .deletion_timestamp
                .is_some()
        },
    )
    .await;
    assert!(
        nss.get_opt("t2").await.expect("get").is_some(),
        "the namespace waits for its content"
    );
    api.patch(
        "x",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("release x");
    eventually("namespace gone", || async {
        nss.get_opt("t2").await.expect("get").is_none()
    })
    .await;
    assert!(api.get_opt("x").await.expect("get").is_none());
    cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selectors_pagination_and_watch_resume_across_restart() {
    let dir = tempfile::tempdir().expect("tmp");
    let cp = start(dir.path()).await;
    let client = cp.client().await.expect("client");
    mkns(&client, "t3").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "t3");
    for i in 0..25 {
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": format!("cm-{i:02}"), "labels": {"parity": if i % 2 == 0 { "even" } else { "odd" }}}})).expect("cm");
        cms.create(&PostParams::default(), &cm)
            .await
            .expect("create");
    }
    let even = cms
        .list(&ListParams::default().labels("parity=even"))
        .await
        .expect("list");
    assert_eq!(even.items.len(), 13);
    let notin = cms
        .list(&ListParams::default().labels("parity notin (even)"))
        .await
        .expect("list");
    assert_eq!(notin.items.len(), 12);
    let one = cms
        .list(&ListParams::default().fields("metadata.name=cm-07"))
        .await
        .expect("list");
    assert_eq!(one.items.len(), 1);
    let mut names = vec![];
    let mut lp = ListParams::default().limit(10);
    let mut pages = 0;
    loop {
        let page = cms.list(&lp).await.expect("page");
        pages += 1;
        names.extend(
            page.items
                .iter()
                .map(|c| c.metadata.name.clone().expect("name")),
        );
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => lp = lp.continue_token(&c),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names.len(), 25);
    let mut sorted = names.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), 25, "no duplicates across pages");

    let rv = cms
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("rv");
    cp.shutdown().await;

    // Restart on the same data directory: everything is there; a watch from the old RV sees
    // exactly the changes made after it.
    let cp = start(dir.path()).await;
    let client = cp.client().await.expect("client");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "t3");
    assert_eq!(
        cms.list(&ListParams::default())
            .await
            .expect("list")
            .items
            .len(),
        25
    );
    cms.delete("cm-00", &DeleteParams::default())
        .await
        .expect("delete");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "after"}})).expect("cm");
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("create");
    let mut stream = cms
        .watch(&WatchParams::default().timeout(2), &rv)
        .await
        .expect("watch")
        .boxed();
    let mut seen = vec![];
    while let Some(ev) = stream.try_next().await.expect("event") {
        match ev {
            WatchEvent::Added(c) => seen.push(format!("ADDED {}", c.metadata.name.expect("n"))),
            WatchEvent::Deleted(c) => seen.push(format!("DELETED {}", c.metadata.name.expect("n"))),
            WatchEvent::Modified(c) => {
                seen.push(format!("MODIFIED {}", c.metadata.name.expect("n")))
            }
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(e) => panic!("watch error {e:?}"),
        }
    }
    assert_eq!(
        seen,
        vec!["DELETED cm-00".to_string(), "ADDED after".to_string()]
    );

    // A kube-runtime watcher sees a change made while it runs.
    let w = kube::runtime::watcher(
        cms.clone(),
        kube::runtime::watcher::Config::default().labels("parity=odd"),
    );
    let mut w = w.boxed();
    let cms2 = cms.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cms2.patch(
            "cm-01",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"x": "1"}})),
        )
        .await
        .expect("patch");
    });
    let got = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(ev) = w.try_next().await.expect("watcher") {
            if let kube::runtime::watcher::Event::Apply(c) = ev {
                if c.data
                    .as_ref()
                    .is_some_and(|d| d.get("x").map(String::as_str) == Some("1"))
                {
                    return true;
                }
            }
        }
        false
    })
    .await
    .expect("watcher saw the change in time");
    assert!(got);
    cp.shutdown().await;
}

/// Durability: a child process serves the data directory; acknowledged writes survive `kill -9`.
/// The same test function is the child when `KSTASH_CP_CHILD_DIR` is set.
#[test]
fn durability_across_kill_9() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    if let Ok(dir) = std::env::var("KSTASH_CP_CHILD_DIR") {
        rt.block_on(async move {
            let cp = start(std::path::Path::new(&dir)).await;
            std::fs::write(std::path::Path::new(&dir).join("ready"), cp.url()).expect("ready file");
            std::future::pending::<()>().await;
        });
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let spawn = |dir: &std::path::Path| {
        let _ = std::fs::remove_file(dir.join("ready"));
        let child = Kill(
            std::process::Command::new(std::env::current_exe().expect("exe"))
                .args(["--exact", "durability_across_kill_9", "--nocapture"])
                .env("KSTASH_CP_CHILD_DIR", dir)
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("spawn child control plane"),
        );
        for _ in 0..300 {
            if dir.join("ready").exists() {
                return child;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("child control plane did not become ready");
    };
    let client_for = |dir: &std::path::Path| {
        let kc = kube::config::Kubeconfig::read_from(dir.join("kubeconfig")).expect("kubeconfig");
        async move {
            let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .expect("config");
            Client::try_from(cfg).expect("client")
        }
    };
    let mut child = spawn(dir.path());
    let acked: Vec<String> = rt.block_on(async {
        let client = client_for(dir.path()).await;
        let cms: Api<ConfigMap> = Api::namespaced(client, "default");
        let results = futures::stream::iter(0..60)
            .map(|i| {
                let cms = cms.clone();
                async move {
                    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": format!("d-{i}")}, "data": {"i": i.to_string()}})).expect("cm");
                    cms.create(&PostParams::default(), &cm).await.map(|c| c.metadata.name.expect("name"))
                }
            })
            .buffer_unordered(8)
            .collect::<Vec<_>>()
            .await;
        results.into_iter().map(|r| r.expect("create acknowledged")).collect()
    });
    // kill -9 right after the last acknowledgement.
    child.0.kill().expect("SIGKILL");
    let _ = child.0.wait();
    drop(child);
    let _child = spawn(dir.path());
    rt.block_on(async {
        let client = client_for(dir.path()).await;
        let cms: Api<ConfigMap> = Api::namespaced(client, "default");
        let list = cms
            .list(&ListParams::default())
            .await
            .expect("list after restart");
        let mut have: Vec<String> = list
            .items
            .iter()
            .map(|c| c.metadata.name.clone().expect("name"))
            .collect();
        have.sort();
        let mut want = acked.clone();
        want.sort();
        assert_eq!(have, want, "every acknowledged write survived kill -9");
        // A watch from RV 1 replays the history without gaps: one ADDED per object.
        let mut s = cms
            .watch(&WatchParams::default().timeout(1), "1")
            .await
            .expect("watch")
            .boxed();
        let mut added = 0;
        while let Some(ev) = s.try_next().await.expect("event") {
            if matches!(ev, WatchEvent::Added(_)) {
                added += 1;
            }
        }
        assert_eq!(added, 60);
    });
}

/// Bad input: random methods, paths, query strings, content types and bodies get `Status`
/// errors (code = HTTP status) and never take the server down.
#[test]
fn malformed_requests_get_status_errors() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tmp");
    let (cp, client) = rt.block_on(async {
        let cp = start(dir.path()).await;
        let client = cp.client().await.expect("client");
        mkns(&client, "fz").await;
        (cp, client)
    });
    let methods = prop::sample::select(vec!["GET", "POST", "PUT", "PATCH", "DELETE"]);
    let prefixes = prop::sample::select(vec![
        "/api/v1/namespaces/fz/configmaps",
        "/api/v1/namespaces/fz/secrets/x",
        "/api/v1/namespaces",
        "/apis/test.kstash.dev/v1/namespaces/fz/widgets",
        "/apis/test.kstash.dev/v1/namespaces/fz/widgets/w/status",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        "/apis/nope/v9",
        "/openapi/v3/apis/x",
        "/",
    ]);
    let ctypes = prop::sample::select(vec![
        "application/json",
        "application/yaml",
        "application/merge-patch+json",
        "application/json-patch+json",
        "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
        "application/vnd.kubernetes.protobuf",
        "text/plain",
    ]);
    let bodies = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        "\\PC{0,80}".prop_map(String::into_bytes),
        Just(b"{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"ok\"},\"data\":{\"a\":1}}".to_vec()),
        Just(b"{\"metadata\":{\"name\":\"UPPER\"},\"spec\":{\"size\":\"big\"}}".to_vec()),
        Just(b"[{\"op\":\"move\",\"path\":\"/a\",\"from\":\"/nope\"}]".to_vec()),
        Just(b"k8s\0\x0a\x02\x0a\x00\x12\xff\xff".to_vec()),
        Just(b"{\"apiVersion\":\"test.kstash.dev/v1\",\"kind\":\"Widget\",\"metadata\":{\"name\":\"w\",\"labels\":{\"a\":5}},\"spec\":{\"size\":1}}".to_vec()),
    ];
    let suffix = "[a-zA-Z0-9/%._~-]{0,12}";
    let query = "[a-zA-Z0-9=&%?._,!()-]{0,40}";
    let mut runner = TestRunner::new(Config {
        cases: 300,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(
            &(methods, prefixes, suffix, query, ctypes, bodies),
            |(m, p, s, q, ct, body)| {
                let uri = format!("{p}{s}?{q}");
                let Ok(req) = http::Request::builder()
                    .method(m)
                    .uri(&uri)
                    .header("content-type", ct)
                    .body(body)
                else {
                    return Ok(());
                };
                let (code, text) = rt.block_on(async {
                    let resp = client
                        .send(req.map(kube::client::Body::from))
                        .await
                        .expect("transport");
                    let code = resp.status().as_u16();
                    let bytes = http_body_util::BodyExt::collect(resp.into_body())
                        .await
                        .expect("body")
                        .to_bytes();
                    (code, String::from_utf8_lossy(&bytes).into_owned())
                });
                prop_assert!(code != 500, "{m} {uri}: internal error {text}");
                if code >= 400 {
                    let v: Value = serde_json::from_str(&text).map_err(|e| {
                        TestCaseError::fail(format!(
                            "{m} {uri}: {code} body is not JSON ({e}): {text}"
                        ))
                    })?;
                    prop_assert_eq!(&v["kind"], "Status", "{} {}: {}", m, uri, text);
                    prop_assert_eq!(v["code"].as_u64(), Some(code as u64));
                }
                Ok(())
            },
        )
        .expect("every malformed request got a Status error");
    rt.block_on(async {
        assert_eq!(
            client
                .apiserver_version()
                .await
                .expect("server still up")
                .major,
            "1"
        );
        cp.shutdown().await;
    });
}

/// Wrong shapes: every field the handlers index into (the object itself, `metadata` and its
/// fields, `spec`, `spec.finalizers`, `status`, `data`) is replaced in turn by each JSON type it
/// is not, and sent through every write verb and patch type to collections, objects and the
/// `/status` and `/finalize` subresources. Each reply is a `Status` with a 4xx code, never a 500,
/// and the server keeps serving.
#[test]
fn wrong_shaped_fields_get_status_errors() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tmp");
    let (cp, client) = rt.block_on(async {
        let cp = start(dir.path()).await;
        let client = cp.client().await.expect("client");
        mkns(&client, "fz").await;
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "fz");
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": "cm"}, "data": {"a": "b"}}))
                .expect("cm");
        cms.create(&PostParams::default(), &cm).await.expect("cm");
        widgets(&client, "fz")
            .create(&PostParams::default(), &widget("w", json!({"size": 1})))
            .await
            .expect("widget");
        (cp, client)
    });
    // (collection, object, apiVersion, kind, object name)
    let targets = [
        (
            "/api/v1/namespaces",
            "/api/v1/namespaces/fz",
            "v1",
            "Namespace",
            "fz",
        ),
        (
            "/api/v1/namespaces/fz/configmaps",
            "/api/v1/namespaces/fz/configmaps/cm",
            "v1",
            "ConfigMap",
            "cm",
        ),
        (
            "/apis/test.kstash.dev/v1/namespaces/fz/widgets",
            "/apis/test.kstash.dev/v1/namespaces/fz/widgets/w",
            "test.kstash.dev/v1",
            "Widget",
            "w",
        ),
    ];
    let fields: &[&[&str]] = &[
        &[],
        &["metadata"],
        &["metadata", "name"],
        &["metadata", "generateName"],
        &["metadata", "namespace"],
        &["metadata", "labels"],
        &["metadata", "annotations"],
        &["metadata", "finalizers"],
        &["metadata", "managedFields"],
        &["metadata", "resourceVersion"],
        &["metadata", "ownerReferences"],
        &["spec"],
        &["spec", "finalizers"],
        &["status"],
        &["data"],
    ];
    let wrong = [
        json!("s"),
        json!(5),
        json!([1, {"a": 2}]),
        json!(true),
        json!(null),
        json!({"x": [null]}),
    ];
    let send = |method: &str, uri: &str, ctype: &str, body: Vec<u8>| -> (u16, String) {
        let req = http::Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", ctype)
            .body(body)
            .expect("request");
        rt.block_on(async {
            let resp = client
                .send(req.map(kube::client::Body::from))
                .await
                .expect("transport: the server answered");
            let code = resp.status().as_u16();
            let bytes = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .expect("body")
                .to_bytes();
            (code, String::from_utf8_lossy(&bytes).into_owned())
        })
    };
    let mut sent = 0;
    let mut refused = 0;
    for (coll, item, av, kind, name) in targets {
        for path in fields {
            for w in &wrong {
                let mut body = json!({"apiVersion": av, "kind": kind, "metadata": {"name": name}, "spec": {"size": 1}});
                if path.is_empty() {
                    body = w.clone();
                } else {
                    let mut at = &mut body;
                    for (i, seg) in path.iter().enumerate() {
                        if !at.is_object() {
                            *at = json!({});
                        }
                        if i + 1 == path.len() {
                            at[*seg] = w.clone();
                        } else {
                            at = &mut at[*seg];
                        }
                    }
                }
                let pointer = format!("/{}", path.join("/"));
                let json_patch = json!([{"op": "add", "path": pointer, "value": w}]);
                let b = serde_json::to_vec(&body).expect("json");
                let requests = [
                    ("POST", coll.to_string(), "application/json", b.clone()),
                    ("PUT", item.to_string(), "application/json", b.clone()),
                    (
                        "PUT",
                        format!("{item}/status"),
                        "application/json",
                        b.clone(),
                    ),
                    (
                        "PUT",
                        format!("{item}/finalize"),
                        "application/json",
                        b.clone(),
                    ),
                    (
                        "PATCH",
                        item.to_string(),
                        "application/merge-patch+json",
                        b.clone(),
                    ),
                    (
                        "PATCH",
                        item.to_string(),
                        "application/strategic-merge-patch+json",
                        b.clone(),
                    ),
                    (
                        "PATCH",
                        format!("{item}/status"),
                        "application/merge-patch+json",
                        b.clone(),
                    ),
                    (
                        "PATCH",
                        format!("{item}?fieldManager=fz"),
                        "application/apply-patch+yaml",
                        b.clone(),
                    ),
                    (
                        "PATCH",
                        item.to_string(),
                        "application/json-patch+json",
                        serde_json::to_vec(&json_patch).expect("json"),
                    ),
                    (
                        "PATCH",
                        format!("{item}/status"),
                        "application/json-patch+json",
                        serde_json::to_vec(&json_patch).expect("json"),
                    ),
                ];
                for (m, uri, ct, body) in requests {
                    let (code, text) = send(m, &uri, ct, body);
                    sent += 1;
                    assert_ne!(code, 500, "{m} {uri} {ct} with {pointer} = {w}: {text}");
                    if code >= 400 {
                        refused += 1;
                        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
                            panic!("{m} {uri}: {code} body is not JSON ({e}): {text}")
                        });
                        assert_eq!(v["kind"], "Status", "{m} {uri}: {text}");
                        assert_eq!(v["code"].as_u64(), Some(code as u64), "{m} {uri}: {text}");
                    }
                }
            }
        }
    }
    assert_eq!(sent, targets.len() * fields.len() * wrong.len() * 10);
    assert!(
        refused > sent / 2,
        "most wrong shapes are refused ({refused} of {sent})"
    );
    rt.block_on(async {
        let raw = client
            .request_text(
                http::Request::get("/api/v1/namespaces/fz/configmaps/cm")
                    .body(vec![])
                    .expect("req"),
            )
            .await
            .expect("raw get");
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "fz");
        cms.get("cm")
            .await
            .unwrap_or_else(|e| panic!("the stored object stays well-shaped ({e}): {raw}"));
        cp.shutdown().await;
    });
}
