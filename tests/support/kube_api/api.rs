//! What each request does, as the API server does it: discovery, lists and gets (as Tables for
//! kubectl), watches, creates that stamp identity, replaces and patches guarded by resourceVersion
//! preconditions, and deletes. Every write goes through the store, so it bumps the resourceVersion
//! and reaches watches.

use serde_json::{Value, json};

use super::discovery;
use super::owners::FieldOwners;
use super::patch::{self, PatchType};
use super::resources::{Endpoint, Kind};
use super::routes::{Query, Route};
use super::scale;
use super::selectors::Selection;
use super::shared::Shared;
use super::status::ApiError;
use super::store::{ObjectKey, Store};
use super::table;
use super::validation::{
    check_name, check_namespace, check_resource_version, keep_status, object_body, text, validate,
};
use super::watch::WatchRequest;

/// How a request is answered.
#[derive(Debug)]
pub(super) enum Reply {
    Json { code: u16, body: Value },
    Watch(WatchRequest),
}

/// One request, as the handlers need it.
#[derive(Debug)]
pub(super) struct Call<'a> {
    pub method: &'a str,
    pub route: Route,
    pub query: Query,
    pub body: &'a [u8],
    pub content_type: Option<&'a str>,
    pub accept: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

impl Call<'_> {
    /// The field manager of a write: `fieldManager`, else the client's name from its user agent, as
    /// real servers default it.
    pub fn manager(&self) -> String {
        self.query
            .get("fieldManager")
            .map(str::to_string)
            .or_else(|| self.user_agent.and_then(|agent| agent.split('/').next()).map(str::to_string))
            .unwrap_or_else(|| "unknown".into())
    }
}

fn ok(body: Value) -> Result<Reply, ApiError> {
    Ok(Reply::Json { code: 200, body })
}

pub(super) fn handle(shared: &Shared, call: Call<'_>) -> Result<Reply, ApiError> {
    let key = |kind, namespace: &str, name: &str| ObjectKey {
        kind,
        namespace: namespace.to_string(),
        name: name.to_string(),
    };
    match &call.route {
        Route::Discovery(document) if call.method == "GET" => ok(discovery::document(document, shared.address)),
        Route::Discovery(_) => Err(ApiError::method_not_allowed()),
        Route::Collection { endpoint, namespace } => collection(shared, endpoint, namespace.as_deref(), &call),
        Route::Object { endpoint, namespace, name } => {
            let key = key(endpoint.kind, namespace, name);
            match call.method {
                "GET" => get(shared, endpoint, &key, &call),
                "PUT" => replace(shared, endpoint, &key, &call),
                "PATCH" => patch(shared, endpoint, &key, &call),
                "DELETE" => delete(shared, endpoint, &key, &call),
                _ => Err(ApiError::method_not_allowed()),
            }
        }
        Route::Scale { endpoint, namespace, name } => {
            scale::handle(shared, endpoint, &key(endpoint.kind, namespace, name), &call)
        }
    }
}

fn collection(
    shared: &Shared,
    endpoint: &'static Endpoint,
    namespace: Option<&str>,
    call: &Call<'_>,
) -> Result<Reply, ApiError> {
    match (call.method, namespace) {
        ("GET", _) if call.query.flag("watch") => {
            let namespace = namespace.map(str::to_string);
            Ok(Reply::Watch(WatchRequest::new(endpoint, namespace, &call.query)?))
        }
        ("GET", _) => list(shared, endpoint, namespace, call),
        ("POST", Some(namespace)) => create(shared, endpoint, namespace, call),
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn list(shared: &Shared, endpoint: &Endpoint, namespace: Option<&str>, call: &Call<'_>) -> Result<Reply, ApiError> {
    let selection = Selection::parse(call.query.get("labelSelector"), call.query.get("fieldSelector"))?;
    let body = shared.read(|store| {
        let selected: Vec<&Value> = store
            .list(endpoint.kind, namespace)
            .into_iter()
            .filter(|object| selection.matches(&endpoint.show(object)))
            .collect();
        if table::wanted(call.accept) {
            return table::render(endpoint, &selected, store.revision());
        }
        // List items carry no kind or apiVersion of their own on a real server either.
        let items: Vec<Value> = selected
            .iter()
            .map(|object| {
                let mut item = endpoint.show(object);
                if let Value::Object(fields) = &mut item {
                    fields.remove("kind");
                    fields.remove("apiVersion");
                }
                item
            })
            .collect();
        json!({
            "kind": format!("{}List", endpoint.kind_name),
            "apiVersion": endpoint.api_version(),
            "metadata": { "resourceVersion": store.revision().to_string() },
            "items": items,
        })
    });
    ok(body)
}

fn get(shared: &Shared, endpoint: &Endpoint, key: &ObjectKey, call: &Call<'_>) -> Result<Reply, ApiError> {
    let body = shared.read(|store| {
        let object = store.get(key).ok_or_else(|| ApiError::not_found(endpoint, &key.name))?;
        Ok(if table::wanted(call.accept) {
            table::render(endpoint, &[object], store.revision())
        } else {
            endpoint.show(object)
        })
    })?;
    ok(body)
}

fn create(shared: &Shared, endpoint: &Endpoint, namespace: &str, call: &Call<'_>) -> Result<Reply, ApiError> {
    let sent = object_body(call.body)?;
    check_namespace(&sent, namespace)?;
    if text(&sent, "/metadata/resourceVersion").is_some() {
        return Err(ApiError::bad_request("resourceVersion should not be set on objects to be created"));
    }
    let mut stored = endpoint.to_stored(&sent);
    let created = shared.write(|store| {
        let name = match (text(&sent, "/metadata/name"), text(&sent, "/metadata/generateName")) {
            (Some(name), _) => name.to_string(),
            (None, Some(prefix)) => generated_name(store, endpoint.kind, namespace, prefix),
            (None, None) => {
                return Err(ApiError::invalid(
                    endpoint,
                    "",
                    "metadata.name: Required value: name or generateName is required",
                ));
            }
        };
        let key = ObjectKey { kind: endpoint.kind, namespace: namespace.to_string(), name };
        if store.get(&key).is_some() {
            return Err(ApiError::already_exists(endpoint, &key.name));
        }
        keep_status(&key, None, &mut stored);
        validate(&key, &stored)?;
        let mut owners = FieldOwners::default();
        owners.record_update(&call.manager(), &Value::Null, &stored);
        Ok(store.create(key, stored, owners))
    })?;
    Ok(Reply::Json { code: 201, body: endpoint.show(&created) })
}

fn replace(shared: &Shared, endpoint: &Endpoint, key: &ObjectKey, call: &Call<'_>) -> Result<Reply, ApiError> {
    let sent = object_body(call.body)?;
    check_namespace(&sent, &key.namespace)?;
    check_name(&sent, &key.name)?;
    let mut stored = endpoint.to_stored(&sent);
    let updated = shared.write(|store| {
        let current = store.get(key).ok_or_else(|| ApiError::not_found(endpoint, &key.name))?;
        check_resource_version(endpoint, key, &sent, current)?;
        keep_status(key, Some(current), &mut stored);
        validate(key, &stored)?;
        let mut owners = store.owners(key).cloned().unwrap_or_default();
        owners.record_update(&call.manager(), current, &stored);
        Ok(store.update(key.clone(), stored, owners))
    })?;
    ok(endpoint.show(&updated))
}

fn patch(shared: &Shared, endpoint: &Endpoint, key: &ObjectKey, call: &Call<'_>) -> Result<Reply, ApiError> {
    let patch_type = PatchType::from_content_type(call.content_type)?;
    let sent = patch::parse_body(patch_type, call.body)?;
    if !sent.is_object() || sent.get("metadata").is_some_and(|metadata| !metadata.is_object()) {
        return Err(ApiError::bad_request("a patch must be an object, and its metadata too"));
    }
    let manager = match patch_type {
        PatchType::Apply => call.query.get("fieldManager").map(str::to_string).ok_or_else(|| {
            ApiError::invalid(endpoint, "", "fieldManager: Required value: is required for apply patch")
        })?,
        PatchType::Merge => call.manager(),
    };
    let config = endpoint.to_stored(&sent);
    let (code, written) = shared.write(|store| {
        let Some(current) = store.get(key) else {
            if patch_type == PatchType::Merge {
                return Err(ApiError::not_found(endpoint, &key.name));
            }
            // Apply creates what does not exist yet.
            check_namespace(&sent, &key.namespace)?;
            check_name(&sent, &key.name)?;
            let mut created = config.clone();
            keep_status(key, None, &mut created);
            validate(key, &created)?;
            let mut owners = FieldOwners::default();
            owners.claim(&manager, &config);
            return Ok((201, store.create(key.clone(), created, owners)));
        };
        check_resource_version(endpoint, key, &sent, current)?;
        let mut owners = store.owners(key).cloned().unwrap_or_default();
        if patch_type == PatchType::Apply && !call.query.flag("force") {
            let conflicts = owners.conflicts(&manager, &config, current);
            if !conflicts.is_empty() {
                return Err(ApiError::apply_conflict(&conflicts));
            }
        }
        let mut updated = current.clone();
        patch::merge(&mut updated, &config);
        keep_status(key, Some(current), &mut updated);
        validate(key, &updated)?;
        match patch_type {
            PatchType::Apply => owners.claim(&manager, &config),
            PatchType::Merge => owners.record_update(&manager, current, &updated),
        }
        Ok((200, store.update(key.clone(), updated, owners)))
    })?;
    Ok(Reply::Json { code, body: endpoint.show(&written) })
}

fn delete(shared: &Shared, endpoint: &Endpoint, key: &ObjectKey, call: &Call<'_>) -> Result<Reply, ApiError> {
    // DeleteOptions are optional; their preconditions guard against deleting a successor of the
    // same name.
    let options: Value = serde_json::from_slice(call.body).unwrap_or_default();
    let deleted = shared.write(|store| {
        let current = store.get(key).ok_or_else(|| ApiError::not_found(endpoint, &key.name))?;
        let current_uid = text(current, "/metadata/uid").unwrap_or_default();
        if let Some(uid) = text(&options, "/preconditions/uid")
            && uid != current_uid
        {
            let message = format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {current_uid}");
            return Err(ApiError::for_code(409, message));
        }
        let wanted = options.pointer("/preconditions/resourceVersion");
        let wanted = json!({ "metadata": { "resourceVersion": wanted } });
        check_resource_version(endpoint, key, &wanted, current)?;
        store.delete(key).ok_or_else(|| ApiError::not_found(endpoint, &key.name))
    })?;
    ok(json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {
            "name": key.name,
            "group": endpoint.group,
            "kind": endpoint.plural,
            "uid": text(&deleted, "/metadata/uid"),
        },
    }))
}

/// `prefix` plus five characters free in the namespace, as the API server completes `generateName`.
fn generated_name(store: &Store, kind: Kind, namespace: &str, prefix: &str) -> String {
    (store.revision()..)
        .map(|seed| format!("{prefix}{}", name_suffix(seed)))
        .find(|name| {
            let key = ObjectKey { kind, namespace: namespace.to_string(), name: name.clone() };
            store.get(&key).is_none()
        })
        .unwrap_or_else(|| prefix.to_string())
}

/// Five characters of the alphabet Kubernetes draws generated names from, spelling `seed`.
fn name_suffix(mut seed: u64) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let base = ALPHABET.len() as u64;
    (0..5)
        .map(|_| {
            let character = ALPHABET[(seed % base) as usize] as char;
            seed /= base;
            character
        })
        .collect()
}
