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
