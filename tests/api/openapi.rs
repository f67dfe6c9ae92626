use std::collections::BTreeSet;

use api_tests::TestApp;
use serde_json::Value;

const CHATTER_CHAT: &str = "chatter-chat-api.json";
const CHATTER_DOCUMENTS: &str = "chatter-documents-api.json";
const FREECHAT_CHAT: &str = "freechat-chat-api.json";
const FREECHAT_CHARACTER: &str = "freechat-character-api.json";

/// The operations of the contracts this code implements so far: (contract, method, path).
const IMPLEMENTED: &[(&str, &str, &str)] = &[
    (CHATTER_CHAT, "post", "/api/v1/chat/conversations"),
    (CHATTER_CHAT, "get", "/api/v1/chat/conversations"),
    (
        CHATTER_CHAT,
        "get",
        "/api/v1/chat/conversations/{conversation_id}",
    ),
    (
        CHATTER_CHAT,
        "put",
        "/api/v1/chat/conversations/{conversation_id}",
    ),
    (
        CHATTER_CHAT,
        "delete",
        "/api/v1/chat/conversations/{conversation_id}",
    ),
    (
        CHATTER_CHAT,
        "get",
        "/api/v1/chat/conversations/{conversation_id}/messages",
    ),
    (
        CHATTER_CHAT,
        "delete",
        "/api/v1/chat/conversations/{conversation_id}/messages/{message_id}",
    ),
    (CHATTER_CHAT, "post", "/api/v1/chat/chat"),
    (CHATTER_CHAT, "post", "/api/v1/chat/streaming"),
    (
        CHATTER_CHAT,
        "post",
        "/api/v1/chat/template/{template_name}",
    ),
    (CHATTER_CHAT, "get", "/api/v1/chat/templates"),
    (CHATTER_DOCUMENTS, "post", "/api/v1/documents/upload"),
    (CHATTER_DOCUMENTS, "get", "/api/v1/documents"),
    (CHATTER_DOCUMENTS, "get", "/api/v1/documents/{document_id}"),
    (CHATTER_DOCUMENTS, "put", "/api/v1/documents/{document_id}"),
    (
        CHATTER_DOCUMENTS,
        "delete",
        "/api/v1/documents/{document_id}",
    ),
    (CHATTER_DOCUMENTS, "post", "/api/v1/documents/search"),
    (
        CHATTER_DOCUMENTS,
        "get",
        "/api/v1/documents/{document_id}/chunks",
    ),
    (
        CHATTER_DOCUMENTS,
        "post",
        "/api/v1/documents/{document_id}/process",
    ),
    (CHATTER_DOCUMENTS, "get", "/api/v1/documents/stats/overview"),
    (
        CHATTER_DOCUMENTS,
        "get",
        "/api/v1/documents/{document_id}/download",
    ),
    (
        CHATTER_DOCUMENTS,
        "post",
        "/api/v1/documents/{document_id}/reprocess",
    ),
    (FREECHAT_CHAT, "delete", "/api/v1/chat/{chatId}"),
    (FREECHAT_CHAT, "put", "/api/v1/chat/{chatId}"),
    (FREECHAT_CHAT, "get", "/api/v1/chat"),
    (FREECHAT_CHAT, "post", "/api/v1/chat"),
    (FREECHAT_CHAT, "post", "/api/v1/chat/send/{chatId}"),
    (FREECHAT_CHAT, "post", "/api/v1/chat/send/stream/{chatId}"),
    (
        FREECHAT_CHAT,
        "post",
        "/api/v1/chat/messages/rollback/{chatId}/{count}",
    ),
    (FREECHAT_CHAT, "get", "/api/v1/chat/{characterId}"),
    (
        FREECHAT_CHAT,
        "get",
        "/api/v1/chat/send/stream/assistant/{chatId}/{assistantUid}",
    ),
    (
        FREECHAT_CHAT,
        "get",
        "/api/v1/chat/send/assistant/{chatId}/{assistantUid}",
    ),
    (FREECHAT_CHAT, "get", "/api/v1/chat/messages/{chatId}"),
    (
        FREECHAT_CHAT,
        "get",
        "/api/v1/chat/messages/{chatId}/{limit}/{offset}",
    ),
    (
        FREECHAT_CHAT,
        "get",
        "/api/v1/chat/messages/{chatId}/{limit}",
    ),
    (
        FREECHAT_CHAT,
        "get",
        "/api/v1/chat/messages/debug/{chatId}/{limit}",
    ),
    (
        FREECHAT_CHAT,
        "get",
        "/api/v1/chat/messages/debug/{chatId}/{limit}/{offset}",
    ),
    (FREECHAT_CHAT, "get", "/api/v1/chat/messages/debug/{chatId}"),
    (FREECHAT_CHAT, "get", "/api/v1/chat/memory/usage/{chatId}"),
    (FREECHAT_CHAT, "delete", "/api/v1/chat/memory/{chatId}"),
    (
        FREECHAT_CHARACTER,
        "delete",
        "/api/v1/character/{characterId}",
    ),
    (FREECHAT_CHARACTER, "put", "/api/v1/character/{characterId}"),
    (
        FREECHAT_CHARACTER,
        "delete",
        "/api/v1/character/backend/{characterBackendId}",
    ),
    (
        FREECHAT_CHARACTER,
        "put",
        "/api/v1/character/backend/{characterBackendId}",
    ),
    (
        FREECHAT_CHARACTER,
        "put",
        "/api/v1/character/backend/default/{characterBackendId}",
    ),
    (FREECHAT_CHARACTER, "post", "/api/v1/character"),
    (
        FREECHAT_CHARACTER,
        "post",
        "/api/v1/character/backend/{characterUid}",
    ),
    (
        FREECHAT_CHARACTER,
        "get",
        "/api/v1/character/summary/{characterId}",
    ),
    (
        FREECHAT_CHARACTER,
        "get",
        "/api/v1/character/details/{characterId}",
    ),
    (
        FREECHAT_CHARACTER,
        "get",
        "/api/v1/character/backends/{characterUid}",
    ),
    (
        FREECHAT_CHARACTER,
        "get",
        "/api/v1/character/backend/default/{characterUid}",
    ),
];

fn contract(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/contracts")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// Follows `$ref`s and merges `allOf`, returning (properties, required) of an object schema;
/// an array schema answers for its items.
fn fields(doc: &Value, schema: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
    if let Some(reference) = schema["$ref"].as_str() {
        let pointer = reference.trim_start_matches('#');
        return fields(
            doc,
            doc.pointer(pointer)
                .unwrap_or_else(|| panic!("dangling {reference}")),
        );
    }
    if schema["type"] == "array" {
        return fields(doc, &schema["items"]);
    }
    let mut properties: BTreeSet<String> = schema["properties"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    let mut required: BTreeSet<String> = schema["required"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    for part in schema["allOf"].as_array().into_iter().flatten() {
        let (p, r) = fields(doc, part);
        properties.extend(p);
        required.extend(r);
    }
    (properties, required)
}

/// The success status and its JSON schema.
fn success(operation: &Value) -> (String, Value) {
    let (status, response) = operation["responses"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(status, _)| status.starts_with('2'))
        .expect("a success response");
    (
        status.clone(),
        response["content"]["application/json"]["schema"].clone(),
    )
}

/// The document the API serves at `/openapi.json`.
async fn served_document(app: &TestApp) -> Value {
    let reply = app
        .http
        .get(format!("{}/openapi.json", app.base_url))
        .send()
        .await
        .unwrap();
    reply.json().await.unwrap()
}

#[tokio::test]
async fn the_served_openapi_document_matches_the_contract_for_every_implemented_operation() {
    let app = TestApp::spawn().await;
    let ours = served_document(&app).await;
    assert!(ours["openapi"].as_str().unwrap().starts_with("3.1"));
    for (file, method, path) in IMPLEMENTED {
        let theirs = contract(file);
        let expected = &theirs["paths"][path][method];
        assert!(expected.is_object(), "{method} {path} is not in {file}");
        let actual = &ours["paths"][path][method];
        assert!(
            actual.is_object(),
            "{method} {path} is missing from /openapi.json"
        );

        let (expected_status, expected_schema) = success(expected);
        let (actual_status, actual_schema) = success(actual);
        assert_eq!(actual_status, expected_status, "{method} {path}");
        let (_, expected_required) = fields(&theirs, &expected_schema);
        let (actual_properties, actual_required) = fields(&ours, &actual_schema);
        for field in &expected_required {
            assert!(
                actual_properties.contains(field),
                "{method} {path}: no field {field}"
            );
            assert!(
                actual_required.contains(field),
                "{method} {path}: {field} is not required"
            );
        }
    }
}

#[tokio::test]
async fn every_route_the_document_lists_is_served() {
    let app = TestApp::spawn().await;
    let ours = served_document(&app).await;
    for (path, operations) in ours["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys() {
            let concrete = path
                .replace("{conversation_id}", "c")
                .replace("{message_id}", "m")
                .replace("{document_id}", "d");
            let request = app.request(method.to_uppercase().parse().unwrap(), &concrete, "alice");
            let status = request.send().await.unwrap().status();
            assert_ne!(status, 405, "{method} {path}");
            assert!(
                status != 404 || path.contains('{'),
                "{method} {path} answered 404"
            );
        }
    }
}

#[tokio::test]
async fn every_event_stream_describes_its_events_one_by_one() {
    let app = TestApp::spawn().await;
    let ours = served_document(&app).await;
    let mut streams = 0;
    for (path, operations) in ours["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let stream = &operation["responses"]["200"]["content"]["text/event-stream"];
            if stream.is_object() {
                streams += 1;
                assert_eq!(
                    stream["schema"]["$ref"], "#/components/schemas/ServerSentEvent",
                    "{method} {path}"
                );
            }
        }
    }
    assert_eq!(
        streams, 4,
        "/streaming, its resumed /stream and FreeChat's two stream routes"
    );
}

#[tokio::test]
async fn the_document_describes_branches_fields_and_parameters() {
    let app = TestApp::spawn().await;
    let ours = served_document(&app).await;
    let schemas = &ours["components"]["schemas"];
    let has = |schema: &str, field: &str| {
        assert!(
            schemas[schema]["properties"][field].is_object(),
            "{schema}.{field} is not documented"
        );
    };
    has("MessageResponse", "parent_id");
    has("MessageResponse", "sibling_ids");
    has("ConversationResponse", "active_message_id");
    has("ConversationUpdate", "active_message_id");
    has("ChatRequest", "edit_message_id");
    has("ChatRequest", "regenerate_message_id");
    for path in [
        "/api/v1/chat/conversations/{conversation_id}",
        "/api/v1/chat/conversations/{conversation_id}/messages",
    ] {
        let parameters = ours["paths"][path]["get"]["parameters"].as_array().unwrap();
        assert!(
            parameters.iter().any(|p| p["name"] == "branch"),
            "GET {path} documents no branch parameter"
        );
    }
}
