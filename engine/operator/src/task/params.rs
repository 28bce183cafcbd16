//! Task parameters: KubeStash's envsubst forms and the parameter map of a task.
//!
//! KubeStash resolves a Function's `args` (`--es-args=${args:=}`) with a map built from the
//! Addon task's parameter defaults, the session's `tasks[].params` (which replace a default
//! entirely) and built-in variables (`namespace`, `backupSession`, …, spec §9.1). kstash builds
//! the same map; the module receives the entries its `describe()` declares for the task as
//! parameters, and the Function's `args` are resolved with the same map so a template error
//! (a `${var}` with no value and no default) fails the session exactly as it would in KubeStash.

use std::collections::BTreeMap;

use kstash_api::shared::ParameterDefinition;
use kstash_runtime::ParamDef;

/// A parameter that cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// `${var}` with no value and no default.
    #[error("{field}: variable ${{{var}}} has no value and no default")]
    Missing {
        /// Where the template is (e.g. `Function elasticsearch-backup args[3]`).
        field: String,
        /// The variable.
        var: String,
    },
    /// A `${` without its `}` or an empty name.
    #[error("{field}: malformed variable reference in {template:?}")]
    Malformed {
        /// Where the template is.
        field: String,
        /// The template text.
        template: String,
    },
    /// A session parameter is not a string, number or boolean.
    #[error("{field}: parameter {name} must be a string, number or boolean")]
    NotScalar {
        /// Where the parameter is.
        field: String,
        /// The parameter.
        name: String,
    },
    /// The addon requires a parameter nobody set.
    #[error("task {task}: required parameter {name} is not set")]
    Required {
        /// The task.
        task: String,
        /// The parameter.
        name: String,
    },
}

/// Expands `${var}`, `${var:=default}`, `${var=default}`, `${var:-default}`, `${var-default}`
/// and `$var` in `template` with `vars`; `$$` is a literal `$`. The `:` forms also use the
/// default when the value is empty. `field` names the template in errors.
pub fn expand(
    template: &str,
    vars: &BTreeMap<String, String>,
    field: &str,
) -> Result<String, ParamError> {
    let malformed = || ParamError::Malformed {
        field: field.to_string(),
        template: template.to_string(),
    };
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('{') {
            let end = r.find('}').ok_or_else(malformed)?;
            let inner = &r[..end];
            let name_end = inner
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(inner.len());
            let (name, op) = inner.split_at(name_end);
            if name.is_empty() {
                return Err(malformed());
            }
            let value = vars.get(name);
            let resolved = if op.is_empty() {
                value.cloned().ok_or_else(|| ParamError::Missing {
                    field: field.to_string(),
                    var: name.to_string(),
                })?
            } else if let Some(d) = op.strip_prefix(":=").or_else(|| op.strip_prefix(":-")) {
                match value {
                    Some(v) if !v.is_empty() => v.clone(),
                    _ => d.to_string(),
                }
            } else if let Some(d) = op.strip_prefix('=').or_else(|| op.strip_prefix('-')) {
                value.cloned().unwrap_or_else(|| d.to_string())
            } else {
                return Err(malformed());
            };
            out.push_str(&resolved);
            rest = &r[end + 1..];
        } else {
            let n = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            if n == 0 {
                out.push('$');
                rest = after;
                continue;
            }
            let name = &after[..n];
            out.push_str(vars.get(name).ok_or_else(|| ParamError::Missing {
                field: field.to_string(),
                var: name.to_string(),
            })?);
            rest = &after[n..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The variable map of a task (spec §9.1): the Addon task's parameter defaults, replaced by
/// the session's `tasks[].params` (a JSON object of scalars), plus `builtins` (which win: they
/// describe the run itself, e.g. `namespace`, `backupSession`).
pub fn variables(
    defaults: &[ParameterDefinition],
    session_params: Option<&serde_json::Value>,
    builtins: &[(&str, String)],
    field: &str,
) -> Result<BTreeMap<String, String>, ParamError> {
    let mut vars: BTreeMap<String, String> = defaults
        .iter()
        .filter_map(|p| p.default.clone().map(|d| (p.name.clone(), d)))
        .collect();
    if let Some(serde_json::Value::Object(m)) = session_params {
        for (k, v) in m {
            let s = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                serde_json::Value::Null => continue,
                _ => {
                    return Err(ParamError::NotScalar {
                        field: field.to_string(),
                        name: k.clone(),
                    })
                }
            };
            vars.insert(k.clone(), s);
        }
    }
    for (k, v) in builtins {
        vars.insert((*k).to_string(), v.clone());
    }
    Ok(vars)
}

/// The parameters handed to the module: the variables the task declares (in its declared
/// order); a declared, required parameter without a value is an error naming it.
pub fn task_params(
    task: &str,
    declared: &[ParamDef],
    vars: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, ParamError> {
    let mut out = Vec::new();
    for p in declared {
        match vars.get(&p.name) {
            Some(v) => out.push((p.name.clone(), v.clone())),
            None if p.required && p.default_value.is_none() => {
                return Err(ParamError::Required {
                    task: task.to_string(),
                    name: p.name.clone(),
                })
            }
            None => {}
        }
    }
    Ok(out)
}

/// Resolves a Function's `args` with `vars` (KubeStash's container command line; kstash logs
/// it and uses it to report template errors exactly as KubeStash would).
pub fn resolve_args(
    function: &str,
    args: &[String],
    vars: &BTreeMap<String, String>,
) -> Result<Vec<String>, ParamError> {
    args.iter()
        .enumerate()
        .map(|(i, a)| expand(a, vars, &format!("Function {function} args[{i}]")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn kubestash_function_args_resolve_as_the_catalog_expects() {
        // The catalog's elasticsearch-backup args (spec §9.1) with the tutorial's params.
        let args: Vec<String> = [
            "backup",
            "--namespace=${namespace:=default}",
            "--backupsession=${backupSession:=}",
            "--wait-timeout=${waitTimeout:=300}",
            "--es-args=${args:=}",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let v = vars(&[
            ("namespace", "demo"),
            (
                "backupSession",
                "appbinding-es-quickstart-frequent-backup-1726722240",
            ),
            ("args", "--ignoreType=template,settings"),
        ]);
        assert_eq!(
            resolve_args("elasticsearch-backup", &args, &v).unwrap(),
            vec![
                "backup",
                "--namespace=demo",
                "--backupsession=appbinding-es-quickstart-frequent-backup-1726722240",
                "--wait-timeout=300",
                "--es-args=--ignoreType=template,settings",
            ]
        );
    }

    #[test]
    fn envsubst_forms() {
        let v = vars(&[("a", "1"), ("e", "")]);
        assert_eq!(expand("${a}-$a-$$a", &v, "f").unwrap(), "1-1-$a");
        assert_eq!(
            expand("${e:=d}|${e=d}|${x:-d}|${x-d}", &v, "f").unwrap(),
            "d||d|d"
        );
        assert_eq!(expand("cost $ 5", &v, "f").unwrap(), "cost $ 5");
        assert_eq!(
            expand("--x=${missing}", &v, "Function f args[1]")
                .unwrap_err()
                .to_string(),
            "Function f args[1]: variable ${missing} has no value and no default"
        );
        assert!(matches!(
            expand("${a", &v, "f"),
            Err(ParamError::Malformed { .. })
        ));
        assert!(matches!(
            expand("${:=x}", &v, "f"),
            Err(ParamError::Malformed { .. })
        ));
    }

    #[test]
    fn session_params_replace_defaults_and_builtins_win() {
        let defaults = vec![
            ParameterDefinition {
                name: "args".into(),
                default: Some(
                    "--match=^(?![.])(?!apm-agent-configuration)(?!kubedb-system).+".into(),
                ),
                ..Default::default()
            },
            ParameterDefinition {
                name: "enableCache".into(),
                default: Some("true".into()),
                ..Default::default()
            },
        ];
        let session =
            serde_json::json!({"args": "--ignoreType=template,settings", "namespace": "x"});
        let v = variables(
            &defaults,
            Some(&session),
            &[("namespace", "demo".into())],
            "f",
        )
        .unwrap();
        assert_eq!(v["args"], "--ignoreType=template,settings");
        assert_eq!(v["enableCache"], "true");
        assert_eq!(v["namespace"], "demo");
        let bad = serde_json::json!({"args": ["a"]});
        assert_eq!(
            variables(&defaults, Some(&bad), &[], "BackupConfiguration demo/x sessions[0].addon.tasks[0].params")
                .unwrap_err()
                .to_string(),
            "BackupConfiguration demo/x sessions[0].addon.tasks[0].params: parameter args must be a string, number or boolean"
        );
    }

    #[test]
    fn only_declared_params_reach_the_module() {
        let declared = vec![
            ParamDef {
                name: "args".into(),
                description: String::new(),
                kind: kstash_runtime::ParamKind::Text,
                required: false,
                default_value: None,
            },
            ParamDef {
                name: "must".into(),
                description: String::new(),
                kind: kstash_runtime::ParamKind::Text,
                required: true,
                default_value: None,
            },
        ];
        let v = vars(&[("args", "--limit=5"), ("must", "1"), ("other", "x")]);
        assert_eq!(
            task_params("t", &declared, &v).unwrap(),
            vec![
                ("args".into(), "--limit=5".into()),
                ("must".into(), "1".into())
            ]
        );
        let v = vars(&[("args", "--limit=5")]);
        assert_eq!(
            task_params("logical-backup", &declared, &v)
                .unwrap_err()
                .to_string(),
            "task logical-backup: required parameter must is not set"
        );
    }
}
