//! Shared types: usage policies (spec §1.1 `UsageAllowed`) and condition helpers.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kstash_api::shared::*;
use serde_json::json;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn policy(v: serde_json::Value) -> UsagePolicy {
    serde_json::from_value(v).unwrap()
}

#[test]
fn usage_allowed_follows_the_spec() {
    let none = labels(&[]);
    let all = policy(json!({"allowedNamespaces": {"from": "All"}}));
    assert!(all.allows("demo", "anything", &none));
    let same = policy(json!({"allowedNamespaces": {"from": "Same"}}));
    assert!(same.allows("demo", "demo", &none));
    assert!(!same.allows("demo", "prod", &none));
    let sel = policy(
        json!({"allowedNamespaces": {"from": "Selector", "selector": {
        "matchLabels": {"team": "a"},
        "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "stage"]},
                             {"key": "frozen", "operator": "DoesNotExist"}]}}}),
    );
    assert!(sel.allows("demo", "x", &labels(&[("team", "a"), ("env", "prod")])));
    assert!(!sel.allows("demo", "x", &labels(&[("team", "a"), ("env", "dev")])));
    assert!(!sel.allows(
        "demo",
        "x",
        &labels(&[("team", "a"), ("env", "prod"), ("frozen", "y")])
    ));
    assert!(!sel.allows("demo", "x", &labels(&[("env", "prod")])));
    // Invalid selector -> false; missing selector -> false; missing `from` -> false.
    let bad = policy(
        json!({"allowedNamespaces": {"from": "Selector", "selector": {
        "matchExpressions": [{"key": "env", "operator": "In"}]}}}),
    );
    assert!(!bad.allows("demo", "x", &labels(&[("env", "prod")])));
    let no_sel = policy(json!({"allowedNamespaces": {"from": "Selector"}}));
    assert!(!no_sel.allows("demo", "demo", &none));
    assert!(!policy(json!({})).allows("demo", "demo", &none));
    assert!(!policy(json!({"allowedNamespaces": {}})).allows("demo", "demo", &none));
}

fn cond(t: &str, status: ConditionStatus, at: &str, msg: &str) -> Condition {
    Condition {
        type_: t.into(),
        status,
        last_transition_time: Time(at.parse().unwrap()),
        observed_generation: None,
        severity: None,
        reason: None,
        message: Some(msg.into()),
    }
}

#[test]
fn set_condition_keeps_transition_time_when_status_is_unchanged() {
    let mut conds = vec![];
    set_condition(
        &mut conds,
        cond(
            "SchedulerEnsured",
            ConditionStatus::False,
            "2024-09-19T04:49:38Z",
            "a",
        ),
    );
    set_condition(
        &mut conds,
        cond(
            "SchedulerEnsured",
            ConditionStatus::False,
            "2024-09-19T04:50:00Z",
            "b",
        ),
    );
    assert_eq!(conds.len(), 1);
    assert_eq!(
        conds[0].last_transition_time,
        Time("2024-09-19T04:49:38Z".parse().unwrap())
    );
    assert_eq!(conds[0].message.as_deref(), Some("b"));
    set_condition(
        &mut conds,
        cond(
            "SchedulerEnsured",
            ConditionStatus::True,
            "2024-09-19T04:49:48Z",
            "c",
        ),
    );
    assert_eq!(
        conds[0].last_transition_time,
        Time("2024-09-19T04:49:48Z".parse().unwrap())
    );
    set_condition(
        &mut conds,
        cond(
            "InitialBackupTriggered",
            ConditionStatus::True,
            "2024-09-19T04:49:48Z",
            "d",
        ),
    );
    assert_eq!(conds.len(), 2);
    assert!(
        conds.is_true("SchedulerEnsured")
            && conds.has("InitialBackupTriggered")
            && !conds.is_false("X")
    );
}

#[test]
fn condition_serializes_like_kubestash() {
    let c = cond(
        "ValidationPassed",
        ConditionStatus::True,
        "2024-09-19T04:49:38Z",
        "Validation has been passed successfully.",
    );
    assert_eq!(
        serde_json::to_value(&c).unwrap(),
        json!({"type": "ValidationPassed", "status": "True", "lastTransitionTime": "2024-09-19T04:49:38Z",
               "message": "Validation has been passed successfully."})
    );
}
