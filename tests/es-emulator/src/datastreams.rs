//! Data streams: creation from a data-stream index template, backing indices, rollover, deletion.

use serde_json::{json, Value};

use crate::error::{EsError, EsResult};
use crate::store::{DataStream, Store};
use crate::util::now_millis;

/// `yyyy.MM.dd` of a Unix time in milliseconds (UTC), as in backing index names.
pub fn date_stamp(ms: u64) -> String {
    // Civil-from-days (Howard Hinnant), valid for the whole u64 range we care about.
    let days = (ms / 86_400_000) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}.{m:02}.{d:02}")
}

/// `.ds-<name>-<yyyy.MM.dd>-<generation, 6 digits>`.
pub fn backing_index_name(name: &str, generation: u64, ms: u64) -> String {
    format!(".ds-{name}-{}-{generation:06}", date_stamp(ms))
}

impl Store {
    /// `PUT /_data_stream/<name>` (and the implicit creation by a first `create`): needs a
    /// matching composable template with `data_stream`.
    pub fn create_data_stream(&mut self, name: &str) -> EsResult<()> {
        Store::validate_index_name(name).map_err(|e| {
            EsError::new(
                400,
                "invalid_index_name_exception",
                e.reason.replace("index name", "data stream name"),
            )
            .with("index", name)
        })?;
        if self.data_streams.contains_key(name) {
            return Err(EsError::new(
                400,
                "resource_already_exists_exception",
                format!("data_stream [{name}] already exists"),
            ));
        }
        if self.indices.contains_key(name) || self.is_alias(name) {
            return Err(EsError::new(
                400,
                "resource_already_exists_exception",
                format!("[{name}] already exists as an index or alias"),
            ));
        }
        let (template, tpl) = match self.best_index_template(name) {
            Some((t, v)) if v.get("data_stream").is_some() => (t.clone(), v.clone()),
            Some((t, _)) => {
                return Err(EsError::illegal_argument(format!(
                    "matching index template [{t}] for data stream [{name}] has no data stream template"
                )))
            }
            None => {
                return Err(EsError::illegal_argument(format!(
                    "no matching index template found for data stream [{name}]"
                )))
            }
        };
        let ds = &tpl["data_stream"];
        let stream = DataStream {
            name: name.to_string(),
            template,
            indices: Vec::new(),
            generation: 0,
            hidden: ds.get("hidden").and_then(Value::as_bool).unwrap_or(false),
            allow_custom_routing: ds
                .get("allow_custom_routing")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            meta: tpl.get("_meta").cloned(),
        };
        self.data_streams.insert(name.to_string(), stream);
        if let Err(e) = self.roll_over(name) {
            self.data_streams.remove(name);
            return Err(e);
        }
        Ok(())
    }

    /// Adds a new backing index (generation + 1) that becomes the write index; returns
    /// `(old write index, new write index)`.
    pub fn roll_over(&mut self, name: &str) -> EsResult<(Option<String>, String)> {
        let ds = self
            .data_streams
            .get(name)
            .ok_or_else(|| EsError::index_not_found(name))?
            .clone();
        let generation = ds.generation + 1;
        let backing = backing_index_name(name, generation, now_millis());
        let body = json!({
            "settings": {"index": {"hidden": "true"}},
            "mappings": {
                "_data_stream_timestamp": {"enabled": true},
                "properties": {"@timestamp": {"type": "date"}}
            }
        });
        self.create_index_from(&backing, name, &body)?;
        let idx = self.indices.get_mut(&backing).expect("just created");
        idx.data_stream = Some(name.to_string());
        idx.settings
            .insert("index.hidden".into(), Value::String("true".into()));
        let ds = self.data_streams.get_mut(name).expect("present");
        let old = ds.indices.last().cloned();
        ds.indices.push(backing.clone());
        ds.generation = generation;
        Ok((old, backing))
    }

    /// Deletes data streams matching `expr` (names or `*` patterns) with their backing indices.
    pub fn delete_data_streams(&mut self, expr: &str) -> EsResult<Vec<String>> {
        let mut doomed = Vec::new();
        for item in expr.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let found: Vec<String> = self
                .data_streams
                .keys()
                .filter(|n| crate::util::glob(item, n))
                .cloned()
                .collect();
            if found.is_empty() && !item.contains('*') {
                return Err(EsError::index_not_found(item));
            }
            doomed.extend(found);
        }
        for d in &doomed {
            if let Some(ds) = self.data_streams.remove(d) {
                for b in ds.indices {
                    self.indices.remove(&b);
                }
            }
        }
        Ok(doomed)
    }

    /// The data stream `name` is, if any.
    pub fn data_stream_of_name(&self, name: &str) -> Option<&DataStream> {
        self.data_streams.get(name)
    }

    /// Whether a write to `name` would auto-create a data stream (a data-stream template
    /// matches and nothing of that name exists).
    pub fn would_create_data_stream(&self, name: &str) -> bool {
        !self.indices.contains_key(name)
            && !self.data_streams.contains_key(name)
            && !self.is_alias(name)
            && self
                .best_index_template(name)
                .is_some_and(|(_, t)| t.get("data_stream").is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backing_index_names() {
        assert_eq!(date_stamp(0), "1970.01.01");
        assert_eq!(date_stamp(1_709_251_200_000), "2024.03.01");
        assert_eq!(
            backing_index_name("logs-app", 3, 1_709_251_200_000),
            ".ds-logs-app-2024.03.01-000003"
        );
    }

    #[test]
    fn create_roll_over_and_delete() {
        let mut s = Store::new(1);
        assert!(s.create_data_stream("logs-x").is_err(), "needs a template");
        s.index_templates.insert(
            "t".into(),
            json!({"index_patterns": ["logs-*"], "data_stream": {}, "composed_of": []}),
        );
        assert_eq!(
            s.create_index("logs-y", &Value::Null).unwrap_err().kind,
            "illegal_argument_exception"
        );
        s.create_data_stream("logs-x").unwrap();
        let (old, new) = s.roll_over("logs-x").unwrap();
        assert!(old.unwrap().ends_with("-000001") && new.ends_with("-000002"));
        let ds = &s.data_streams["logs-x"];
        assert_eq!(ds.indices.len(), 2);
        assert!(s.indices[&ds.indices[0]].hidden());
        assert_eq!(s.delete_data_streams("logs-*").unwrap(), ["logs-x"]);
        assert!(s.indices.is_empty());
    }
}
