//! Reads: one object, a list with label and field selectors and `limit`/`continue` pages over
//! one consistent snapshot, and the revision a list or watch is served at.
//!
//! ```text
//! resourceVersion (+ match) --read_revision--> revision --store.view_at--> snapshot --> page + continue token
//! ```

use std::{fmt::Write as _, ops::Bound};

use serde_json::{Value, json};

use super::super::{
    resources::ResourceInfo,
    status::ApiError,
    store::{Expired, ObjectKey},
};
use super::{ListOptions, State, present};

impl State {
    /// One object.
    pub fn get(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        self.store
            .get(&info.store_key(), &ObjectKey::new(namespace, name))
            .map(|object| present(info, object))
            .ok_or_else(|| ApiError::not_found(info, name))
    }

    /// The revision a list or watch is served at, from `resourceVersion` and its match rule.
    pub fn read_revision(
        &self,
        resource_version: Option<&str>,
        version_match: Option<&str>,
    ) -> Result<u64, ApiError> {
        let current = self.store.revision();
        match resource_version.unwrap_or_default() {
            "" | "0" => Ok(current),
            text => {
                let requested: u64 = text.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid resource version \"{text}\""))
                })?;
                if requested > current {
                    let mut error = ApiError::injected(504, None, None);
                    error.message =
                        format!("Too large resource version: {requested}, current: {current}");
                    error.details = Some(
                        json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1}),
                    );
                    return Err(error);
                }
                if version_match == Some("Exact") {
                    Ok(requested)
                } else {
                    Ok(current)
                }
            }
        }
    }

    /// A list, with selectors and pagination.
    pub fn list(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        options: &ListOptions,
    ) -> Result<Value, ApiError> {
        let (revision, start) = match &options.continue_token {
            Some(token) => decode_continue(token)?,
            None => (
                self.read_revision(
                    options.resource_version.as_deref(),
                    options.version_match.as_deref(),
                )?,
                None,
            ),
        };
        let view = self.store.view_at(&info.store_key(), revision).map_err(|expired: Expired| {
            if options.continue_token.is_some() {
                ApiError::gone("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.")
            } else {
                ApiError::gone(format!("too old resource version: {} ({})", expired.requested, expired.oldest))
            }
        })?;
        let mut items = Vec::new();
        let mut next = None;
        let mut remaining = 0_usize;
        let selective = !options.labels.is_empty() || !options.fields.is_empty();
        // Keys are ordered by namespace first: a namespaced list reads only its namespace's range
        // (etcd reads a key prefix), and a continued list starts after its token's key, not at
        // the first object of the resource.
        let namespace_start = namespace.map(|namespace| ObjectKey::new(Some(namespace), ""));
        let from = match (namespace_start, &start) {
            (Some(first), Some(after)) if *after < first => Bound::Included(first),
            (_, Some(after)) => Bound::Excluded(after.clone()),
            (Some(first), None) => Bound::Included(first),
            (None, None) => Bound::Unbounded,
        };
        let objects = view
            .range((from, Bound::Unbounded))
            .take_while(|(key, _)| namespace.is_none_or(|namespace| key.namespace == namespace));
        for (key, object) in objects {
            if start.as_ref().is_some_and(|start| key <= start) {
                continue;
            }
            if !options.labels.matches(object) || !options.fields.matches(object) {
                continue;
            }
            if let Some(limit) = options.limit.filter(|limit| *limit > 0)
                && items.len() == limit
            {
                if next.is_none() {
                    next = items
                        .last()
                        .map(|(key, _): &(ObjectKey, Value)| key.clone());
                }
                // With a selector the real server leaves remainingItemCount unset (it would have
                // to match every remaining object); counting them made every page of a relist
                // scan the rest of the resource.
                if selective {
                    break;
                }
                remaining += 1;
                continue;
            }
            let item = if options.metadata_only {
                json!({
                    "apiVersion": info.api_version(),
                    "kind": info.kind,
                    "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
                })
            } else {
                present(info, object)
            };
            items.push((key.clone(), item));
        }
        let mut metadata = json!({"resourceVersion": revision.to_string()});
        if let Some(last) = next {
            metadata["continue"] = json!(encode_continue(revision, &last));
            if !selective {
                metadata["remainingItemCount"] = json!(remaining);
            }
        }
        Ok(json!({
            "kind": info.list_kind,
            "apiVersion": info.api_version(),
            "metadata": metadata,
            "items": items.into_iter().map(|(_, object)| object).collect::<Vec<_>>(),
        }))
    }
}

fn encode_continue(revision: u64, last: &ObjectKey) -> String {
    let token =
        json!({"v": "meta.k8s.io/v1", "rv": revision, "start": [last.namespace, last.name]})
            .to_string();
    let mut hex = String::with_capacity(token.len() * 2);
    for byte in token.bytes() {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

fn decode_continue(token: &str) -> Result<(u64, Option<ObjectKey>), ApiError> {
    let invalid = || ApiError::bad_request("continue key is not valid: the token is malformed");
    if !token.len().is_multiple_of(2) || token.len() > 8192 {
        return Err(invalid());
    }
    let bytes: Result<Vec<u8>, _> = (0..token.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(token.get(at..at + 2).unwrap_or("zz"), 16))
        .collect();
    let bytes = bytes.map_err(|_| invalid())?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    let revision = value
        .get("rv")
        .and_then(Value::as_u64)
        .ok_or_else(invalid)?;
    let start = value
        .get("start")
        .and_then(Value::as_array)
        .ok_or_else(invalid)?;
    let part = |index: usize| start.get(index).and_then(Value::as_str).map(str::to_owned);
    match (part(0), part(1)) {
        (Some(namespace), Some(name)) => Ok((revision, Some(ObjectKey { namespace, name }))),
        _ => Err(invalid()),
    }
}
