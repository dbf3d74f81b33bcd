//! Schemas for wire shapes whose Rust types are looser than what the server takes or
//! sends (an OpenAI message, an embeddings `input`, an answer's event stream): the
//! spec states the rules the handlers follow, so generated clients and fuzzers send
//! what is accepted and can check what comes back.

use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use engram_store::api::VisibleText;

/// One chat message: a role and its content (a string, a list of parts whose
/// `text` ones are used, or null).
pub struct ChatMessageSchema;

impl PartialSchema for ChatMessageSchema {
    fn schema() -> RefOr<Schema> {
        let role = ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(["system", "developer", "user", "assistant"]));
        let part = ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("text", ObjectBuilder::new().schema_type(Type::String));
        let content = OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::String))
            .item(ArrayBuilder::new().items(part))
            .item(ObjectBuilder::new().schema_type(Type::Null));
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("role", role)
            .required("role")
            .property("content", content)
            .into()
    }
}

impl ToSchema for ChatMessageSchema {}

/// An embeddings `input`: one text, or a list of one or more texts (token-id
/// inputs are not supported).
pub struct EmbeddingInput;

impl PartialSchema for EmbeddingInput {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(VisibleText::schema())
            .item(
                ArrayBuilder::new()
                    .items(VisibleText::schema())
                    .min_items(Some(1)),
            )
            .into()
    }
}

impl ToSchema for EmbeddingInput {}

/// One embedding as returned: a list of floats, or (`encoding_format: base64`) a
/// base64 string of little-endian f32.
pub struct EmbeddingVector;

impl PartialSchema for EmbeddingVector {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(ArrayBuilder::new().items(ObjectBuilder::new().schema_type(Type::Number)))
            .item(ObjectBuilder::new().schema_type(Type::String))
            .into()
    }
}

impl ToSchema for EmbeddingVector {}

/// One event of a streamed answer, as an SSE event: `event` is `token` (its `data`
/// a JSON `{"text"}` piece of the answer), `done` (the whole
/// [`AnswerResponse`](crate::api_types::AnswerResponse) as JSON) or `error` (the JSON
/// error body).
pub struct AnswerEvent;

impl PartialSchema for AnswerEvent {
    fn schema() -> RefOr<Schema> {
        let event = ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(["token", "done", "error"]));
        let data = ObjectBuilder::new()
            .schema_type(Type::String)
            .content_media_type("application/json");
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("event", event)
            .property("data", data)
            .required("data")
            .into()
    }
}

impl ToSchema for AnswerEvent {}

/// Rules across a request's fields that its Rust type cannot carry, added to the
/// component schemas (each as `allOf: [the derived object, anyOf: [...]]`): which
/// field combinations the handler takes. A combination outside them is a 400; one
/// that suits another collection (text sent to a collection of vectors) is a 409.
pub struct CombinationRules;

impl utoipa::Modify for CombinationRules {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let Some(components) = doc.components.as_mut() else {
            return;
        };
        let parse =
            |v: serde_json::Value| -> Schema { serde_json::from_value(v).expect("a valid schema") };
        components
            .schemas
            .insert("Filter".to_string(), RefOr::T(parse(filter_schema())));
        components
            .schemas
            .insert("Fusion".to_string(), RefOr::T(parse(fusion_schema())));
        for (name, rules) in combination_rules() {
            let Some(derived) = components.schemas.remove(name) else {
                continue;
            };
            let mut all = utoipa::openapi::schema::AllOfBuilder::new().item(derived);
            for rule in rules {
                all = all.item(parse(rule));
            }
            components
                .schemas
                .insert(name.to_string(), RefOr::T(Schema::AllOf(all.build())));
        }
    }
}

/// Hybrid fusion as `engram_store::fusion::Fusion` reads and validates it: the derived
/// schema of a tagged enum leaves out its unknown-field refusal and its ranges.
fn fusion_schema() -> serde_json::Value {
    use serde_json::json;
    let variant = |method: &str, field: &str, range: serde_json::Value| {
        json!({"type": "object", "required": ["method"], "additionalProperties": false,
               "properties": {"method": {"type": "string", "enum": [method]}, field: range}})
    };
    json!({"oneOf": [
        variant("rrf", "k", json!({"type": "number", "minimum": 0, "maximum": 1e30})),
        variant("weighted", "vector_weight", json!({"type": "number", "minimum": 0, "maximum": 1})),
    ]})
}

/// A metadata filter as `engram_store::filter::Filter::parse` takes it: a key and
/// one condition, or one of and / or (lists) / not.
fn filter_schema() -> serde_json::Value {
    use serde_json::json;
    let filter = json!({"$ref": "#/components/schemas/Filter"});
    let one = |required: &[&str], properties: serde_json::Value| {
        json!({"type": "object", "required": required, "properties": properties,
               "additionalProperties": false})
    };
    let key = json!({"type": "string", "minLength": 1});
    let number = json!({"type": "number"});
    let range = json!({"type": "object", "minProperties": 1, "additionalProperties": false,
        "properties": {"gt": number, "gte": number, "lt": number, "lte": number}});
    let list = json!({"type": "array", "items": filter});
    json!({
        "description": "{\"key\": K, \"eq\": V} | {\"key\": K, \"in\": [V, ...]} | {\"key\": K, \"range\": {\"gte\": N, \"lt\": N}} | {\"and\": [F, ...]} | {\"or\": [F, ...]} | {\"not\": F}; keys address nested fields with dots.",
        "oneOf": [
            one(&["key", "eq"], json!({"key": key, "eq": {"type": null}})),
            one(&["key", "in"], json!({"key": key, "in": {"type": "array", "items": {"type": null}}})),
            one(&["key", "range"], json!({"key": key, "range": range})),
            one(&["and"], json!({"and": list})),
            one(&["or"], json!({"or": list})),
            one(&["not"], json!({"not": filter})),
        ]
    })
}

/// The longest window any encoder here takes (MiniLM's), in tokens.
const MAX_WINDOW: usize = 256;

fn combination_rules() -> [(&'static str, Vec<serde_json::Value>); 3] {
    use serde_json::json;
    // utoipa's schema objects need a `type` to parse; each rule's is the type the
    // derived schema already gives.
    let text = json!({"$ref": "#/components/schemas/VisibleText"});
    let none = json!({"type": "null"});
    let array = json!({"type": "array", "items": {"type": "number"}});
    let mode = |modes: &[Option<&str>]| json!({"type": ["string", "null"], "enum": modes});
    let object = |required: &[&str], properties: serde_json::Value| json!({"type": "object", "required": required, "properties": properties});
    let vector_mode = mode(&[None, Some("vector")]);
    [
        // A document brings text, a vector, or both (which suits which collection
        // is the collection's business: a 409).
        (
            "DocumentInput",
            vec![json!({"anyOf": [
                object(&["text"], json!({"text": text})),
                object(&["vector"], json!({"vector": array})),
            ]})],
        ),
        // Vector mode takes text or a vector, not both; keyword mode text alone;
        // hybrid mode text (and a vector on a collection without an embedder);
        // fusion only in hybrid mode.
        (
            "QueryRequest",
            vec![
                object(
                    &[],
                    json!({"filter": {"oneOf": [none, {"$ref": "#/components/schemas/Filter"}]}}),
                ),
                json!({"anyOf": [
                    object(&["text"], json!({"mode": vector_mode, "text": text, "vector": none, "fusion": none})),
                    object(&["vector"], json!({"mode": vector_mode, "vector": array, "text": none, "fusion": none})),
                    object(&["mode", "text"], json!({"mode": mode(&[Some("keyword")]), "text": text, "vector": none, "fusion": none})),
                    object(&["mode", "text"], json!({"mode": mode(&[Some("hybrid")]), "text": text})),
                ]}),
            ],
        ),
        // A collection with an embedder has its encoder's dimension (384 for every
        // encoder here): `dimension` is left out or equal to it. Windows of 8 to 256
        // tokens (every encoder's longest input here), the overlap capped at half a
        // window.
        (
            "CreateCollection",
            vec![
                json!({"anyOf": [
                    object(&[], json!({"embedder": none})),
                    object(&[], json!({"dimension": {"type": ["integer", "null"], "enum": [null, 384]}})),
                ]}),
                object(
                    &[],
                    json!({"chunking": {"oneOf": [none, {
                    "type": "object", "required": ["tokens", "overlap"], "additionalProperties": false,
                    "properties": {
                        "tokens": {"type": "integer", "minimum": 8, "maximum": MAX_WINDOW},
                        "overlap": {"type": "integer", "minimum": 0, "maximum": (MAX_WINDOW - 2) / 2,
                            "description": "Capped at half a window's text tokens, (tokens - 2) / 2."}}}]}}),
                ),
            ],
        ),
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_combination_rules_are_in_the_spec() {
        let doc = serde_json::to_value(crate::server::openapi_doc()).unwrap();
        let schemas = &doc["components"]["schemas"];
        for name in ["DocumentInput", "QueryRequest", "CreateCollection"] {
            let all = schemas[name]["allOf"].as_array().unwrap();
            assert!(
                all[0]["properties"].is_object(),
                "{name}: the derived object"
            );
            assert!(all.len() >= 2, "{name}: the rules");
        }
        let query = &schemas["QueryRequest"]["allOf"][2]["anyOf"];
        assert_eq!(
            query[2]["properties"]["mode"]["enum"],
            serde_json::json!(["keyword"])
        );
        assert_eq!(schemas["Filter"]["oneOf"].as_array().unwrap().len(), 6);
    }
}
