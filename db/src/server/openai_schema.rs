//! Schemas of the OpenAI-compatible request fields whose Rust types are looser than
//! what the server takes (a message, an embeddings `input`): the spec states the
//! rules the handlers check, so generated clients and fuzzers send what is accepted.

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
