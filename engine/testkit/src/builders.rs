//! Objects the tests create, as the tutorial and the spec write them.

use k8s_openapi::api::core::v1::Secret;
use kstash_api::core::BackupSession;

use crate::paths::tutorial_yaml;

/// An Opaque Secret `ns/name` with `stringData`.
pub fn secret(ns: &str, name: &str, data: &[(&str, &str)]) -> Secret {
    let string_data: serde_json::Map<String, serde_json::Value> = data
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
        .collect();
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": ns},
        "type": "Opaque", "stringData": string_data}))
    .unwrap()
}

/// A BackupSession of BackupConfiguration `bc`'s session `session` as the scheduler or
/// `kubectl kstash trigger` creates it: the generator's name for `unix`, the invoker, and the
/// `kubestash.com/cleanup` finalizer.
pub fn backup_session(ns: &str, bc: &str, session: &str, unix: i64) -> BackupSession {
    let name = kstash_api::names::backup_session_name(bc, session, unix);
    serde_json::from_value(serde_json::json!({
        "apiVersion": "core.kubestash.com/v1alpha1", "kind": "BackupSession",
        "metadata": {"name": name, "namespace": ns,
                     "finalizers": [kstash_api::constants::FINALIZER_CLEANUP]},
        "spec": {"invoker": {"apiGroup": "core.kubestash.com", "kind": "BackupConfiguration", "name": bc},
                 "session": session}
    }))
    .unwrap()
}

/// The tutorial's BackupStorage (`demo/s3-storage`) pointed at `endpoint`'s `bucket` (endpoint
/// and bucket are the only changes).
pub fn tutorial_backup_storage(endpoint: &str, bucket: &str) -> String {
    tutorial_yaml("backupstorage.yaml")
        .replace(
            "endpoint: us-east-1.linodeobjects.com",
            &format!("endpoint: {endpoint}"),
        )
        .replace("bucket: esbackup", &format!("bucket: {bucket}"))
}

/// The Elasticsearch Addon and its two Functions (KubeStash catalog shape + kstash's `module`),
/// as the Helm chart ships them, with `sha256` as the module digest.
pub fn elasticsearch_addon_yaml(sha256: &str) -> String {
    format!(
        r#"apiVersion: addons.kubestash.com/v1alpha1
kind: Addon
metadata:
  name: elasticsearch-addon
spec:
  backupTasks:
    - name: logical-backup
      function: elasticsearch-backup
      driver: Restic
      executor: Job
      singleton: true
  restoreTasks:
    - name: logical-backup-restore
      function: elasticsearch-restore
      driver: Restic
      executor: Job
      singleton: true
---
apiVersion: addons.kubestash.com/v1alpha1
kind: Function
metadata:
  name: elasticsearch-backup
spec:
  image: ghcr.io/kubedb/elasticsearch-restic-plugin:v0.11.0
  args: ["backup", "--namespace=${{namespace:=default}}", "--es-args=${{args:=}}"]
  module:
    location: builtin:elasticsearch
    sha256: "{sha256}"
---
apiVersion: addons.kubestash.com/v1alpha1
kind: Function
metadata:
  name: elasticsearch-restore
spec:
  image: ghcr.io/kubedb/elasticsearch-restic-plugin:v0.11.0
  args: ["restore", "--namespace=${{namespace:=default}}", "--es-args=${{args:=}}"]
  module:
    location: builtin:elasticsearch
    sha256: "{sha256}"
"#
    )
}

/// `examples/addons/elasticsearch.yaml` renamed (Addon `addon`, Functions `<prefix>-backup` and
/// `<prefix>-restore`) and pinned to `sha256`.
pub fn shipped_addon_yaml(addon: &str, prefix: &str, sha256: &str) -> String {
    crate::paths::example_yaml("addons/elasticsearch.yaml")
        .replace("name: elasticsearch-addon", &format!("name: {addon}"))
        .replace("elasticsearch-backup", &format!("{prefix}-backup"))
        .replace("elasticsearch-restore", &format!("{prefix}-restore"))
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("sha256:") {
                format!("    sha256: \"{sha256}\"")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The AppBinding KubeDB creates for an Elasticsearch (same name/namespace, `appRef` to it),
/// connecting to `url` with credentials Secret `<name>-elastic-cred`.
pub fn appbinding_yaml(ns: &str, name: &str, url: &str, annotations: &[(&str, &str)]) -> String {
    let ann: String = annotations
        .iter()
        .map(|(k, v)| format!("    {k}: {}\n", serde_json::to_string(v).unwrap()))
        .collect();
    let ann = if ann.is_empty() {
        String::new()
    } else {
        format!("  annotations:\n{ann}")
    };
    format!(
        r#"apiVersion: appcatalog.appscode.com/v1alpha1
kind: AppBinding
metadata:
  name: {name}
  namespace: {ns}
{ann}spec:
  appRef:
    apiGroup: kubedb.com
    kind: Elasticsearch
    name: {name}
    namespace: {ns}
  type: kubedb.com/elasticsearch
  version: 8.15.0
  clientConfig:
    url: {url}
  secret:
    name: {name}-elastic-cred
"#
    )
}

/// Base64 (standard alphabet) of `s`.
pub fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}
