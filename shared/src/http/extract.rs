//! Extractors that turn every way a request can be malformed into the API's problem responses.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::auth::Caller;
use crate::error::{FieldError, LocPart, ServiceError};

/// The caller the authentication middleware found; only protected routes ask for it.
impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ServiceError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ServiceError::MissingCredentials("Authentication is required.".into()))
    }
}

/// A JSON body: 415 without a JSON content type, 413 over the body limit, 400 when it does not
/// parse, 422 when it parses but does not fit the expected shape.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ServiceError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_json_media_type);
        if !is_json {
            return Err(ServiceError::UnsupportedMediaType(
                "Send the body as application/json.".into(),
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ServiceError::PayloadTooLarge("The request body is too large.".into())
            } else {
                ServiceError::BadRequest("The request body could not be read.".into())
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ServiceError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let inner = err.inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                ServiceError::Validation(vec![field_error("body", err.path(), &inner.to_string())])
            }
            _ => not_json(inner),
        }
    })?;
    deserializer.end().map_err(|e| not_json(&e))?;
    Ok(value)
}

fn not_json(err: &serde_json::Error) -> ServiceError {
    ServiceError::BadRequest(format!("The request body is not valid JSON: {err}."))
}

/// `application/json` or any `application/*+json`, whatever the parameters.
fn is_json_media_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Query parameters, with a 422 naming the parameter when one does not parse.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ServiceError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(ApiQuery)
            .map_err(|err| {
                let message = err.inner().to_string();
                ServiceError::Validation(vec![field_error("query", err.path(), &message)])
            })
    }
}

/// Longest id any route takes: UUIDs are 36 characters, numbers and template names fewer.
pub const MAX_ID_CHARS: usize = 64;

/// Whether `value` can be an id of this API: 1 to [`MAX_ID_CHARS`] ASCII letters, digits, `-`
/// or `_`. Anything else names no resource, and must not reach DynamoDB, which refuses keys
/// over 1 KB or 2 KB with an error that would otherwise be a 500.
pub fn is_id(value: &str) -> bool {
    (1..=MAX_ID_CHARS).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Path parameters; a path whose parameters are not ids or do not parse names no resource,
/// so it is a 404.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ServiceError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let not_found = || ServiceError::NotFound("No resource matches this path.".into());
        let raw = axum::extract::RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| not_found())?;
        if !raw.iter().all(|(_, value)| is_id(value)) {
            return Err(not_found());
        }
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| ApiPath(value))
            .map_err(|_| not_found())
    }
}

/// Builds a FastAPI-style error from serde's: `missing field` becomes a `missing` error at the
/// field itself, the rest a type error at the path serde stopped on.
fn field_error(origin: &str, path: &serde_path_to_error::Path, message: &str) -> FieldError {
    let mut loc = vec![LocPart::from(origin)];
    loc.extend(path.iter().filter_map(|segment| match segment {
        serde_path_to_error::Segment::Map { key } => Some(LocPart::Key(key.clone())),
        serde_path_to_error::Segment::Seq { index } => Some(LocPart::Index(*index)),
        serde_path_to_error::Segment::Enum { .. } | serde_path_to_error::Segment::Unknown => None,
    }));
    let message = message.split(" at line ").next().unwrap_or(message);
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        loc.push(LocPart::Key(field.to_owned()));
        return FieldError::new(loc, "Field required", "missing");
    }
    let kind = if message.starts_with("invalid type") {
        "type_error"
    } else {
        "value_error"
    };
    FieldError::new(loc, message, kind)
}

/// What a chat turn's handler is handed beside its body: the question an earlier try stored
/// (an idempotent retry), and the request's rate-limit count, still running.
pub type Resumed = (
    Option<axum::Extension<crate::domain::StoredQuestion>>,
    Option<axum::Extension<crate::store::PendingCount>>,
);

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Body {
        title: String,
        limits: Option<Vec<u32>>,
    }

    fn validation_errors(err: ServiceError) -> Vec<FieldError> {
        match err {
            ServiceError::Validation(errors) => errors,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn a_missing_field_is_named() {
        let errors = validation_errors(parse_json::<Body>(b"{}").unwrap_err());
        assert_eq!(
            errors[0].loc,
            vec![LocPart::from("body"), LocPart::from("title")]
        );
        assert_eq!(errors[0].kind, "missing");
    }

    #[test]
    fn a_wrong_type_points_at_the_value() {
        let errors = validation_errors(
            parse_json::<Body>(br#"{"title":"t","limits":[1,"x"]}"#).unwrap_err(),
        );
        assert_eq!(
            errors[0].loc,
            vec![
                LocPart::from("body"),
                LocPart::from("limits"),
                LocPart::from(1)
            ]
        );
        assert_eq!(errors[0].kind, "type_error");
    }

    #[test]
    fn ids_are_short_and_plain() {
        assert!(is_id("0192f3a4-5b6c-7d8e-9f00-112233445566"));
        assert!(is_id("42"));
        assert!(is_id("code_assistant"));
        assert!(!is_id(""));
        assert!(!is_id(&"a".repeat(MAX_ID_CHARS + 1)));
        assert!(!is_id("a b"));
        assert!(!is_id("a#b"));
        assert!(!is_id("é"));
    }

    #[test]
    fn broken_json_is_a_bad_request() {
        assert!(matches!(
            parse_json::<Body>(b"{\"title\":").unwrap_err(),
            ServiceError::BadRequest(_)
        ));
        assert!(matches!(
            parse_json::<Body>(b"{\"title\":\"a\"} trailing").unwrap_err(),
            ServiceError::BadRequest(_)
        ));
    }
}
