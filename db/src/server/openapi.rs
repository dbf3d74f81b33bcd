//! The statuses every route shares, added to the OpenAPI document in one place.
//!
//! Why: a handler's `#[utoipa::path]` lists what its own logic answers (200, its 404
//! or 409); the layers around it (auth, body limits, content-type and origin checks,
//! the JSON extractor, the blocking pool) add statuses to every route, and a spec that
//! leaves them out fails a client generator or a fuzzer on the first 415. The rules
//! below follow the router: which routes authenticate, which take a body, which name
//! a collection, which write.

use utoipa::openapi::path::{HttpMethod, Operation, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, ResponseBuilder};
use utoipa::Modify;

/// Adds each shared status a route can answer, with the JSON error body, where the
/// handler's own annotation does not already list it.
pub struct SharedResponses;

impl Modify for SharedResponses {
    fn modify(&self, doc: &mut OpenApi) {
        for (path, item) in doc.paths.paths.iter_mut() {
            let operations = [
                (HttpMethod::Get, item.get.as_mut()),
                (HttpMethod::Put, item.put.as_mut()),
                (HttpMethod::Post, item.post.as_mut()),
                (HttpMethod::Delete, item.delete.as_mut()),
                (HttpMethod::Patch, item.patch.as_mut()),
            ];
            for (method, op) in operations {
                if let Some(op) = op {
                    for (status, why) in shared_statuses(&method, path, op) {
                        add_error(op, status, why);
                    }
                    name_collections(op);
                }
            }
        }
    }
}

/// Routes that answer without a key (probes and the spec itself).
const OPEN_ROUTES: [&str; 2] = ["/healthz", "/openapi.json"];

/// Routes that embed text with a model (besides those that generate).
const EMBEDS: [&str; 5] = [
    "/documents",
    "/query",
    "/embed",
    "/v1/embeddings",
    "/recontextualize",
];

/// Routes whose well-formed request a collection can refuse for its kind or state
/// (text to a collection of vectors, a vector of another dimension, a context build
/// on a collection that is not contextual): a 409, since the same body suits another
/// collection and no schema can tell them apart.
const COLLECTION_CONFLICTS: [&str; 4] = ["/documents", "/query", "/answer", "/recontextualize"];

/// Routes that run the language model, behind the admission gate.
fn generates(path: &str) -> bool {
    path.ends_with("/answer") || path == "/v1/chat/completions"
}

/// The shared statuses of one operation.
fn shared_statuses(method: &HttpMethod, path: &str, op: &Operation) -> Vec<(u16, &'static str)> {
    let mut out = Vec::new();
    let names_resource = path.contains('{');
    let has_body = op.request_body.is_some();
    let changes_state = matches!(
        method,
        HttpMethod::Post | HttpMethod::Put | HttpMethod::Delete | HttpMethod::Patch
    );
    if names_resource || has_body {
        out.push((
            400,
            "The request is invalid: the message says which field and why.",
        ));
    }
    if !OPEN_ROUTES.contains(&path) {
        out.push((
            401,
            "No API key, or an unknown one (send `Authorization: Bearer KEY`).",
        ));
    }
    out.push((
        403,
        "A foreign `Origin` (see `allowed_origins`), or a key whose scope does not allow this route.",
    ));
    out.push((
        421,
        "A `Host` other than loopback's while bound to loopback (DNS rebinding; see `allowed_hosts`).",
    ));
    if names_resource {
        out.push((
            404,
            "No such collection (or document, audit, promotion, adapter).",
        ));
    }
    if path.starts_with("/collections/{name}/")
        && COLLECTION_CONFLICTS
            .iter()
            .any(|suffix| path.ends_with(suffix))
    {
        out.push((
            409,
            "The collection refuses this request for its kind or state: text sent to a collection of vectors or a vector to one that embeds text, a vector of another dimension, a context build on a collection that is not contextual or holds fewer than 2 documents.",
        ));
    }
    if has_body {
        out.push((413, "The body is larger than `limits.max_body_bytes`."));
    }
    if changes_state {
        out.push((
            415,
            "The body is not `application/json` (a route without a body takes none).",
        ));
    }
    if generates(path) {
        out.push((
            429,
            "The model is busy: `[generation] max_queue` requests already wait. Retry after the `Retry-After` header's seconds.",
        ));
        out.push((
            504,
            "The request's deadline (`[generation] deadline_s`) passed before a first token.",
        ));
    }
    if generates(path) || EMBEDS.iter().any(|suffix| path.ends_with(suffix)) {
        out.push((
            503,
            "A model could not be loaded (its first-use download failed); retry later.",
        ));
    }
    if changes_state {
        out.push((
            507,
            "The disk is full: writes are refused until space is freed; reads keep working.",
        ));
    }
    out.push((500, "An internal error; the message says what failed."));
    out
}

/// Gives the `{name}` path parameter (a collection's name) the rule
/// `validate_name` applies, so a name outside it is schema-invalid, not a surprise 400.
fn name_collections(op: &mut Operation) {
    let rule = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some("^[A-Za-z0-9_-]{1,64}$"))
        .min_length(Some(1))
        .max_length(Some(64))
        .build();
    for p in op.parameters.iter_mut().flatten() {
        if p.name == "name" && p.parameter_in == ParameterIn::Path {
            p.schema = Some(rule.clone().into());
        }
    }
}

fn add_error(op: &mut Operation, status: u16, description: &str) {
    let key = status.to_string();
    if op.responses.responses.contains_key(&key) {
        return;
    }
    let body = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("ErrorBody")))
        .build();
    let response = ResponseBuilder::new()
        .description(description)
        .content("application/json", body)
        .build();
    op.responses.responses.insert(key, response.into());
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_route_lists_the_shared_statuses_it_can_answer() {
        let doc = crate::server::openapi_doc();
        let query = doc.paths.paths["/collections/{name}/query"]
            .post
            .as_ref()
            .unwrap();
        for status in [
            "200", "400", "401", "403", "404", "409", "413", "415", "500",
        ] {
            assert!(
                query.responses.responses.contains_key(status),
                "query lacks {status}"
            );
        }
        let health = doc.paths.paths["/healthz"].get.as_ref().unwrap();
        assert!(!health.responses.responses.contains_key("401"));
        assert!(!health.responses.responses.contains_key("404"));
        assert!(health.responses.responses.contains_key("500"));
    }
}
