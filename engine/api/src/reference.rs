//! The CRD reference (`docs/reference/crds.md`), generated from the CRDs of [`crate::crds::all`]:
//! every kind with its group/version, scope, names, categories, printer columns, and every
//! `spec`/`status` field with its type, whether it is required, its default, its allowed values
//! and constraints, and its description (the doc comment of the Rust field).
//!
//! Pure: [`markdown`] returns the document; `tests/reference.rs` compares it with the checked-in
//! file and rewrites it when `KSTASH_UPDATE_REFERENCE=1`.

use std::fmt::Write as _;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

/// The command that regenerates the reference (printed by the staleness test).
pub const REGENERATE: &str = "KSTASH_UPDATE_REFERENCE=1 cargo test -p kstash-api --test reference";

/// One row of a field table.
struct Row {
    path: String,
    ty: String,
    required: bool,
    default: String,
    values: String,
    description: String,
}

/// Markdown for the given CRDs (normally `crds::all()`), in their order.
pub fn markdown(crds: &[CustomResourceDefinition]) -> String {
    let mut out = String::new();
    out.push_str("# CRD reference\n\n");
    let _ = writeln!(
        out,
        "<!-- Generated from the Rust types (engine/api) by `kstash_api::reference::markdown`. \
         Do not edit: run `{REGENERATE}`. -->\n"
    );
    out.push_str(
        "Every kind kstash serves: KubeStash's `core`, `storage` and `addons` groups (all \
         `v1alpha1`) and the external kinds the engine reads (KubeDB `Elasticsearch`, \
         `AppBinding`; only the fields kstash reads are typed, every other field is kept). \
         Field paths use `[]` for list items and `<key>` for map values. **Required** means the \
         API server rejects an object without the field; **Default** is applied by the API \
         server when the field is absent.\n\n",
    );
    out.push_str("| Kind | Group/version | Scope | Short names |\n|---|---|---|---|\n");
    for crd in crds {
        let n = &crd.spec.names;
        let _ = writeln!(
            out,
            "| [{}](#{}) | `{}/{}` | {} | {} |",
            n.kind,
            n.kind.to_lowercase(),
            crd.spec.group,
            version_name(crd),
            crd.spec.scope,
            code_list(n.short_names.as_deref().unwrap_or_default())
        );
    }
    out.push('\n');
    for crd in crds {
        kind_section(&mut out, crd);
    }
    out
}

fn version_name(crd: &CustomResourceDefinition) -> String {
    crd.spec
        .versions
        .iter()
        .find(|v| v.storage)
        .or_else(|| crd.spec.versions.first())
        .map(|v| v.name.clone())
        .unwrap_or_default()
}

fn code_list(items: &[String]) -> String {
    if items.is_empty() {
        return "–".into();
    }
    items
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn kind_section(out: &mut String, crd: &CustomResourceDefinition) {
    let n = &crd.spec.names;
    let Some(version) = crd
        .spec
        .versions
        .iter()
        .find(|v| v.storage)
        .or_else(|| crd.spec.versions.first())
    else {
        return;
    };
    let _ = writeln!(out, "## {}\n", n.kind);
    out.push_str("| | |\n|---|---|\n");
    let _ = writeln!(
        out,
        "| apiVersion | `{}/{}` |",
        crd.spec.group, version.name
    );
    let _ = writeln!(out, "| Scope | {} |", crd.spec.scope);
    let _ = writeln!(
        out,
        "| Plural / singular | `{}` / `{}` |",
        n.plural,
        n.singular.as_deref().unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "| Short names | {} |",
        code_list(n.short_names.as_deref().unwrap_or_default())
    );
    let _ = writeln!(
        out,
        "| Categories | {} |",
        code_list(n.categories.as_deref().unwrap_or_default())
    );
    let status = version
        .subresources
        .as_ref()
        .and_then(|s| s.status.as_ref())
        .is_some();
    let _ = writeln!(
        out,
        "| Status subresource | {} |",
        if status { "yes" } else { "no" }
    );
    let columns: Vec<String> = version
        .additional_printer_columns
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|c| format!("{} (`{}`, {})", c.name, c.json_path, c.type_))
        .collect();
    let _ = writeln!(
        out,
        "| Printer columns | {} |",
        if columns.is_empty() {
            "–".to_string()
        } else {
            columns.join(", ")
        }
    );
    out.push('\n');

    let schema = version
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or(Value::Null);
    for part in ["spec", "status"] {
        let node = &schema["properties"][part];
        if node.is_null() {
            continue;
        }
        let _ = writeln!(out, "### {part}\n");
        let desc = text(node);
        if !desc.is_empty() {
            let _ = writeln!(out, "{desc}\n");
        }
        let mut rows = Vec::new();
        walk(node, part, &mut rows);
        if rows.is_empty() {
            out.push_str("Free-form.\n\n");
            continue;
        }
        out.push_str("| Field | Type | Required | Default | Values | Description |\n");
        out.push_str("|---|---|---|---|---|---|\n");
        for r in rows {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} | {} |",
                r.path,
                r.ty,
                if r.required { "yes" } else { "" },
                r.default,
                r.values,
                r.description
            );
        }
        out.push('\n');
    }
}

/// A schema description as one table-safe line.
fn text(node: &Value) -> String {
    node["description"]
        .as_str()
        .unwrap_or("")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

/// The type of a schema node, as a reader expects it (`[]string`, `map[string]object`, …).
fn type_name(node: &Value) -> String {
    if node["x-kubernetes-int-or-string"] == true {
        return "int-or-string".into();
    }
    match node["type"].as_str() {
        Some("array") => format!("[]{}", type_name(&node["items"])),
        Some("object") => {
            if node["additionalProperties"].is_object() {
                format!("map[string]{}", type_name(&node["additionalProperties"]))
            } else if node["x-kubernetes-preserve-unknown-fields"] == true
                && node["properties"].is_null()
            {
                "object (free-form)".into()
            } else {
                "object".into()
            }
        }
        Some(t) => match node["format"].as_str() {
            Some(f) => format!("{t} ({f})"),
            None => t.to_string(),
        },
        None if node["x-kubernetes-preserve-unknown-fields"] == true => "any (free-form)".into(),
        None => "any".into(),
    }
}

fn inline_json(v: &Value) -> String {
    format!("`{}`", v.to_string().replace('|', "\\|"))
}

/// Allowed values and constraints of a node.
fn constraints(node: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(vals) = node["enum"].as_array() {
        parts.push(
            vals.iter()
                .map(|v| match v {
                    Value::String(s) => format!("`{s}`"),
                    other => inline_json(other),
                })
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    for (key, label) in [
        ("minimum", "min"),
        ("maximum", "max"),
        ("minLength", "min length"),
        ("maxLength", "max length"),
        ("minItems", "min items"),
        ("maxItems", "max items"),
    ] {
        if let Some(v) = node.get(key).and_then(Value::as_f64) {
            // Schema bounds are JSON numbers (`1.0`); print whole numbers as integers.
            if v.fract() == 0.0 && v.abs() < 1e15 {
                parts.push(format!("{label} {}", v as i64));
            } else {
                parts.push(format!("{label} {v}"));
            }
        }
    }
    if let Some(p) = node["pattern"].as_str() {
        parts.push(format!("pattern `{}`", p.replace('|', "\\|")));
    }
    parts.join("; ")
}

/// Appends a row per property below `node` (recursively), paths prefixed with `prefix`.
fn walk(node: &Value, prefix: &str, rows: &mut Vec<Row>) {
    // Lists and maps: describe their items under `[]` / `<key>`.
    if node["type"] == "array" {
        let items = &node["items"];
        if items["type"] == "object" || items["type"] == "array" {
            walk(items, &format!("{prefix}[]"), rows);
        }
        return;
    }
    if node["additionalProperties"].is_object() {
        walk(
            &node["additionalProperties"],
            &format!("{prefix}.<key>"),
            rows,
        );
        return;
    }
    let Some(props) = node["properties"].as_object() else {
        return;
    };
    let required: Vec<&str> = node["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for (name, child) in props {
        let path = format!("{prefix}.{name}");
        let described = if child["type"] == "array" {
            &child["items"]
        } else {
            child
        };
        let mut values = constraints(child);
        if described != child {
            let inner = constraints(described);
            if !inner.is_empty() {
                values = if values.is_empty() {
                    format!("items: {inner}")
                } else {
                    format!("{values}; items: {inner}")
                };
            }
        }
        rows.push(Row {
            path: path.clone(),
            ty: type_name(child),
            required: required.contains(&name.as_str()),
            default: child
                .get("default")
                .filter(|d| !d.is_null())
                .map(inline_json)
                .unwrap_or_default(),
            values,
            description: text(child),
        });
        walk(child, &path, rows);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_and_constraints() {
        let node = serde_json::json!({"type": "array", "items": {"type": "string"}});
        assert_eq!(type_name(&node), "[]string");
        let map = serde_json::json!({"type": "object", "additionalProperties": {"type": "object", "properties": {}}});
        assert_eq!(type_name(&map), "map[string]object");
        let e = serde_json::json!({"type": "string", "enum": ["Delete", "WipeOut"]});
        assert_eq!(constraints(&e), "`Delete`, `WipeOut`");
        let m = serde_json::json!({"type": "integer", "format": "int32", "minimum": 1});
        assert_eq!(type_name(&m), "integer (int32)");
        assert_eq!(constraints(&m), "min 1");
    }
}
