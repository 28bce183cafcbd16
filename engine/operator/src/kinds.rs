//! Any kind through API discovery: the engine reaches KubeDB database objects (`Postgres`,
//! `Redis`, `MySQL`, `Elasticsearch`, …) and AppBindings without naming a kind in its code.
//!
//! A kind is looked up in its group's discovery document (`/apis/<group>`); a group or kind the
//! server does not serve is `None`, never an error, so a caller can say "not found".

use kube::api::{Api, ApiResource, DynamicObject};
use kube::discovery::Scope;

/// The resource serving `kind` in `group` (preferred version), if the server has it.
pub async fn resource(
    client: &kube::Client,
    group: &str,
    kind: &str,
) -> Result<Option<ApiResource>, kube::Error> {
    let g = match kube::discovery::group(client, group).await {
        Ok(g) => g,
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(None),
        Err(kube::Error::Discovery(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(g.recommended_kind(kind).map(|(ar, _)| ar))
}

/// The object `namespace/name` of `group`/`kind`: `None` when the kind is not served or the
/// object does not exist.
pub async fn get(
    client: &kube::Client,
    group: &str,
    kind: &str,
    namespace: &str,
    name: &str,
) -> Result<Option<DynamicObject>, kube::Error> {
    let Some(ar) = resource(client, group, kind).await? else {
        return Ok(None);
    };
    Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &ar)
        .get_opt(name)
        .await
}

/// Every namespaced kind the server serves in `group` (preferred versions; subresources left
/// out). Empty when the group is not served.
pub async fn namespaced_kinds(
    client: &kube::Client,
    group: &str,
) -> Result<Vec<ApiResource>, kube::Error> {
    let g = match kube::discovery::group(client, group).await {
        Ok(g) => g,
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Vec::new()),
        Err(kube::Error::Discovery(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(g.recommended_resources()
        .into_iter()
        .filter(|(ar, caps)| caps.scope == Scope::Namespaced && !ar.plural.contains('/'))
        .map(|(ar, _)| ar)
        .collect())
}
