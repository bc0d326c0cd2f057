//! The difference between a posted manifest and the apps as they are, as
//! Cloud Foundry's `manifest_diff` computes it: JSON-patch-like entries
//! `{"op","path","was","value"}` whose paths point into the posted manifest
//! (`/applications/<index>/<key>/…`), which is how the cf CLI renders them.
//!
//! CF's rules, kept here: only the keys a manifest may carry are compared
//! (`path`, for one, is not); process, sidecar and route lists are first cut
//! down to the entries and fields the posted manifest names, so what it
//! leaves out is not shown as removed; sizes are compared in `<n>M`; and the
//! top-level `memory` and `disk_quota` are never compared (CF skips them for
//! backwards compatibility; the same settings under `processes` are).

use serde_json::{json, Map, Value};

use crate::manifest::parse_megabytes;

/// The top-level keys of an app in a manifest that CF compares.
const RECOGNIZED: &[&str] = &[
    "buildpack",
    "buildpacks",
    "command",
    "default-route",
    "docker",
    "env",
    "features",
    "health-check-http-endpoint",
    "health-check-interval",
    "health-check-invocation-timeout",
    "health-check-type",
    "instances",
    "lifecycle",
    "log-rate-limit-per-second",
    "metadata",
    "name",
    "no-route",
    "processes",
    "random-route",
    "readiness-health-check-http-endpoint",
    "readiness-health-check-interval",
    "readiness-health-check-invocation-timeout",
    "readiness-health-check-type",
    "routes",
    "services",
    "sidecars",
    "stack",
    "timeout",
];

/// Top-level sizes CF never compares (see the module doc).
const NEVER_COMPARED: &[&str] = &["memory", "disk_quota", "disk-quota"];

/// The fields of a process entry CF compares.
const PROCESS_FIELDS: &[&str] = &[
    "type",
    "command",
    "disk_quota",
    "log-rate-limit-per-second",
    "health-check-http-endpoint",
    "health-check-invocation-timeout",
    "health-check-interval",
    "health-check-type",
    "readiness-health-check-http-endpoint",
    "readiness-health-check-invocation-timeout",
    "readiness-health-check-interval",
    "readiness-health-check-type",
    "instances",
    "memory",
    "timeout",
];

/// The fields of a sidecar entry CF compares.
const SIDECAR_FIELDS: &[&str] = &["name", "command", "process_types", "memory"];

/// The field that identifies an entry of each nested list.
fn identifier(list: &str) -> Option<&'static str> {
    match list {
        "processes" => Some("type"),
        "routes" => Some("route"),
        "sidecars" => Some("name"),
        _ => None,
    }
}

/// One entry of the diff.
fn change(op: &str, path: &str, was: Option<&Value>, value: Option<&Value>) -> Value {
    let mut entry = json!({"op": op, "path": path});
    if let Some(w) = was {
        entry["was"] = w.clone();
    }
    if let Some(v) = value {
        entry["value"] = v.clone();
    }
    entry
}

/// A JSON pointer segment (RFC 6901 escaping).
fn segment(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// `256`, `256MB`, `1G` → `"256M"`, `"1024M"`, as CF writes sizes; a value
/// that is not a size is left as it is (validation has refused it already).
fn normalize_size(value: &mut Value) {
    if let Some(mb) = parse_megabytes(value) {
        *value = Value::String(format!("{mb}M"));
    }
}

fn normalize_sizes(entry: &mut Map<String, Value>) {
    for key in NEVER_COMPARED {
        if let Some(v) = entry.get_mut(*key) {
            normalize_size(v);
        }
    }
}

/// Keeps only `fields` of every object in the list at `key`; drops the list
/// when that leaves a single empty entry (as CF does).
fn slice_list(app: &mut Map<String, Value>, key: &str, fields: &[&str]) {
    let Some(Value::Array(items)) = app.get_mut(key) else {
        return;
    };
    for item in items.iter_mut() {
        if let Value::Object(map) = item {
            map.retain(|k, _| fields.contains(&k.as_str()));
            normalize_sizes(map);
        }
    }
    if items.len() == 1 && items[0].as_object().is_some_and(Map::is_empty) {
        app.remove(key);
    }
}

/// The posted app cut down to what CF compares.
fn filter_posted(posted: &Map<String, Value>) -> Map<String, Value> {
    let mut app = posted.clone();
    normalize_sizes(&mut app);
    slice_list(&mut app, "processes", PROCESS_FIELDS);
    slice_list(&mut app, "sidecars", SIDECAR_FIELDS);
    if let Some(Value::Array(services)) = app.get_mut("services") {
        for s in services.iter_mut() {
            if let Value::Object(map) = s {
                map.retain(|k, _| k == "name" || k == "parameters");
            }
        }
    }
    if let Some(Value::Object(md)) = app.get_mut("metadata") {
        md.retain(|k, _| k == "labels" || k == "annotations");
        if md.is_empty() {
            app.remove("metadata");
        }
    }
    app
}

/// Cuts an existing list down to the entries the posted list names (by the
/// list's identifier), and each entry to the fields its posted twin has.
fn prune(existing: &mut Value, posted: &Value, id: &str) {
    let (Value::Array(old), Value::Array(new)) = (existing, posted) else {
        return;
    };
    old.retain_mut(|entry| {
        let twin = new
            .iter()
            .find(|n| n.get(id).is_some() && n.get(id) == entry.get(id));
        match (twin, entry) {
            (Some(Value::Object(twin)), Value::Object(fields)) => {
                fields.retain(|k, _| twin.get(k).is_some_and(|v| !v.is_null()));
                true
            }
            _ => false,
        }
    });
}

/// The differences of one app of the posted manifest (at `index`) from the
/// app as it is (`existing`, its generated manifest entry; `None` for an
/// app that does not exist yet, compared against nothing).
pub(crate) fn diff_app(
    index: usize,
    existing: Option<&Map<String, Value>>,
    posted: &Map<String, Value>,
) -> Vec<Value> {
    let posted = filter_posted(posted);
    let mut current = existing.cloned().unwrap_or_default();
    // The web process's settings are also the app's top-level settings.
    let web = current
        .get("processes")
        .and_then(Value::as_array)
        .and_then(|ps| ps.iter().find(|p| p["type"] == "web"))
        .and_then(Value::as_object)
        .cloned();
    if let Some(web) = web {
        current.extend(web);
    }
    let mut out = Vec::new();
    for (key, value) in &posted {
        if !RECOGNIZED.contains(&key.as_str()) || NEVER_COMPARED.contains(&key.as_str()) {
            continue;
        }
        let mut before = current.get(key).cloned();
        if let (Some(old), Some(id)) = (before.as_mut(), identifier(key)) {
            prune(old, value, id);
        }
        if key == "features" {
            if let (Some(Value::Object(old)), Value::Object(new)) = (before.as_mut(), value) {
                old.retain(|k, _| new.contains_key(k));
            }
        }
        let path = format!("/applications/{index}/{}", segment(key));
        diff_value(before.as_ref(), value, &path, &mut out);
    }
    out
}

/// Appends the differences between `old` and `new` at `path`.
fn diff_value(old: Option<&Value>, new: &Value, path: &str, out: &mut Vec<Value>) {
    let Some(old) = old.filter(|o| !o.is_null()) else {
        if !new.is_null() {
            out.push(change("add", path, None, Some(new)));
        }
        return;
    };
    if old == new {
        return;
    }
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            for (k, was) in o {
                if !n.contains_key(k) {
                    out.push(change(
                        "remove",
                        &format!("{path}/{}", segment(k)),
                        Some(was),
                        None,
                    ));
                }
            }
            for (k, v) in n {
                diff_value(o.get(k), v, &format!("{path}/{}", segment(k)), out);
            }
        }
        (Value::Array(o), Value::Array(n)) => diff_array(o, n, path, out),
        _ => out.push(change("replace", path, Some(old), Some(new))),
    }
}

/// The field that identifies a list entry, and its value, if it has one.
fn identity(v: &Value) -> Option<(&'static str, &Value)> {
    ["type", "name", "route"]
        .into_iter()
        .find_map(|k| v.get(k).map(|id| (k, id)))
}

/// Lists: entries are paired by identity (`type`, `name` or `route`) or, for
/// entries without one, by equality, then by position; unpaired old entries
/// are removed (highest index first, so the entries apply in order), new ones
/// added at their place in the posted list, and pairs compared.
fn diff_array(old: &[Value], new: &[Value], path: &str, out: &mut Vec<Value>) {
    let mut twin_of: Vec<Option<usize>> = vec![None; new.len()];
    let mut taken = vec![false; old.len()];
    for (j, n) in new.iter().enumerate() {
        let found = old.iter().enumerate().position(|(i, o)| {
            !taken[i]
                && match (identity(o), identity(n)) {
                    (Some(a), Some(b)) => a == b,
                    (None, None) => o == n,
                    _ => false,
                }
        });
        if let Some(i) = found {
            taken[i] = true;
            twin_of[j] = Some(i);
        }
    }
    for (j, n) in new.iter().enumerate() {
        let positional = j < old.len() && !taken[j] && identity(n).is_none();
        if twin_of[j].is_none() && positional && identity(&old[j]).is_none() {
            taken[j] = true;
            twin_of[j] = Some(j);
        }
    }
    for i in (0..old.len()).rev().filter(|i| !taken[*i]) {
        out.push(change(
            "remove",
            &format!("{path}/{i}"),
            Some(&old[i]),
            None,
        ));
    }
    for (j, n) in new.iter().enumerate() {
        let at = format!("{path}/{j}");
        match twin_of[j] {
            Some(i) => diff_value(Some(&old[i]), n, &at, out),
            None => out.push(change("add", &at, None, Some(n))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().expect("object").clone()
    }

    #[test]
    fn a_new_app_is_all_additions_but_top_level_sizes() {
        let posted = obj(json!({
            "name": "site", "instances": 2, "memory": "64M", "path": ".",
            "routes": [{"route": "site.apps.localhost"}],
        }));
        let diff = diff_app(1, None, &posted);
        assert_eq!(
            diff,
            vec![
                json!({"op": "add", "path": "/applications/1/instances", "value": 2}),
                json!({"op": "add", "path": "/applications/1/name", "value": "site"}),
                json!({"op": "add", "path": "/applications/1/routes", "value": [{"route": "site.apps.localhost"}]}),
            ]
        );
    }

    #[test]
    fn an_unchanged_app_has_no_diff() {
        let existing = obj(json!({
            "name": "site", "stack": "ingot-default", "env": {"A": "1"},
            "routes": [{"route": "a.apps.localhost"}, {"route": "b.apps.localhost"}],
            "processes": [
                {"type": "web", "instances": 1, "memory": "256M", "disk_quota": "1024M", "health-check-type": "port"},
                {"type": "worker", "instances": 0, "memory": "256M", "disk_quota": "1024M", "health-check-type": "process"},
            ],
        }));
        let posted = obj(json!({
            "name": "site", "instances": 1, "memory": "1G", "env": {"A": "1"},
            "routes": [{"route": "b.apps.localhost"}],
            "processes": [{"type": "web", "memory": 256}],
        }));
        assert_eq!(diff_app(0, Some(&existing), &posted), Vec::<Value>::new());
    }

    #[test]
    fn changes_are_replacements_additions_and_removals() {
        let existing = obj(json!({
            "name": "site", "stack": "ingot-default", "env": {"A": "1", "GONE": "x"},
            "buildpacks": ["staticfile_buildpack"],
            "processes": [
                {"type": "web", "instances": 1, "memory": "256M", "disk_quota": "1024M", "health-check-type": "port"},
            ],
        }));
        let posted = obj(json!({
            "name": "site", "instances": 3, "env": {"A": "2", "NEW": "y"},
            "buildpacks": ["python_buildpack"],
            "routes": [{"route": "x.apps.localhost"}],
            "processes": [{"type": "web", "memory": "512MB"}, {"type": "worker", "instances": 1}],
        }));
        let diff = diff_app(0, Some(&existing), &posted);
        let expected = vec![
            json!({"op": "replace", "path": "/applications/0/buildpacks/0", "was": "staticfile_buildpack", "value": "python_buildpack"}),
            json!({"op": "remove", "path": "/applications/0/env/GONE", "was": "x"}),
            json!({"op": "replace", "path": "/applications/0/env/A", "was": "1", "value": "2"}),
            json!({"op": "add", "path": "/applications/0/env/NEW", "value": "y"}),
            json!({"op": "replace", "path": "/applications/0/instances", "was": 1, "value": 3}),
            json!({"op": "replace", "path": "/applications/0/processes/0/memory", "was": "256M", "value": "512M"}),
            json!({"op": "add", "path": "/applications/0/processes/1", "value": {"type": "worker", "instances": 1}}),
            json!({"op": "add", "path": "/applications/0/routes", "value": [{"route": "x.apps.localhost"}]}),
        ];
        assert_eq!(diff, expected);
    }

    #[test]
    fn lists_pair_by_identity_and_remove_from_the_end() {
        let mut out = Vec::new();
        diff_value(
            Some(&json!(["a", "b", "c"])),
            &json!(["c", "a"]),
            "/x",
            &mut out,
        );
        assert_eq!(
            out,
            vec![json!({"op": "remove", "path": "/x/1", "was": "b"})]
        );
        let mut out = Vec::new();
        diff_value(Some(&json!({"a/b": 1})), &json!({}), "/e", &mut out);
        assert_eq!(
            out,
            vec![json!({"op": "remove", "path": "/e/a~1b", "was": 1})]
        );
    }
}
