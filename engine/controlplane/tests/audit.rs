//! The opt-in audit log: a kube-rs client's requests come back as RBAC-named records, and a
//! control plane without auditing records nothing.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kstash_controlplane::{AuditRecord, ControlPlane, ServerConfig};
use kstash_testkit::cluster::client_with_user_agent;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchParams};
use serde_json::json;

fn rec(
    verb: &str,
    group: &str,
    resource: &str,
    ns: Option<&str>,
    name: Option<&str>,
) -> AuditRecord {
    AuditRecord {
        verb: verb.into(),
        api_group: group.into(),
        resource: resource.into(),
        subresource: None,
        namespace: ns.map(Into::into),
        name: name.map(Into::into),
        user_agent: Some("audit-test/1".into()),
    }
}

#[tokio::test]
async fn records_every_resource_request_with_its_rbac_verb() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServerConfig::new(dir.path(), "127.0.0.1:0".parse().unwrap());
    cfg.audit = true;
    let cp = ControlPlane::start(cfg).await.unwrap();
    // A client that names itself, as the operator under test does.
    let client = client_with_user_agent(&cp.kubeconfig_path, "audit-test/1").await;

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "a"}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    cms.get("a").await.unwrap();
    cms.list(&ListParams::default()).await.unwrap();
    cms.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "v"}})),
    )
    .await
    .unwrap();
    let _ = cms
        .watch(&WatchParams::default().timeout(1), "0")
        .await
        .unwrap();
    cms.delete("a", &DeleteParams::default()).await.unwrap();
    cms.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .unwrap();
    // A request for a kind this server does not serve is still recorded (RBAC runs first).
    let leases: Api<Lease> = Api::all(client.clone());
    leases.list(&ListParams::default()).await.unwrap();
    let _ = client
        .request_text(
            http::Request::get("/apis/apps/v1/namespaces/default/deployments/x")
                .body(vec![])
                .unwrap(),
        )
        .await;
    // A status subresource.
    let _ = client
        .request_text(
            http::Request::get("/api/v1/namespaces/default/configmaps/a/status")
                .body(vec![])
                .unwrap(),
        )
        .await;

    let got = cp.audit();
    let d = Some("default");
    let expected = vec![
        rec("create", "", "configmaps", d, None),
        rec("get", "", "configmaps", d, Some("a")),
        rec("list", "", "configmaps", d, None),
        rec("patch", "", "configmaps", d, Some("a")),
        rec("watch", "", "configmaps", d, None),
        rec("delete", "", "configmaps", d, Some("a")),
        rec("deletecollection", "", "configmaps", d, None),
        rec("list", "coordination.k8s.io", "leases", None, None),
        rec("get", "apps", "deployments", d, Some("x")),
        AuditRecord {
            subresource: Some("status".into()),
            ..rec("get", "", "configmaps", d, Some("a"))
        },
    ];
    // kube's client does not do discovery for typed APIs, so the log is exactly these requests.
    assert_eq!(got, expected);
    cp.shutdown().await;
}

#[tokio::test]
async fn audit_is_off_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(ServerConfig::new(
        dir.path(),
        "127.0.0.1:0".parse().unwrap(),
    ))
    .await
    .unwrap();
    let client = cp.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    cms.list(&ListParams::default()).await.unwrap();
    assert!(cp.audit().is_empty());
    cp.shutdown().await;
}
