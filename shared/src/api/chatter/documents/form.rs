//! The upload form: its multipart parts read in order, then checked all at once, in the
//! shape the upload use case takes.

use std::collections::BTreeMap;

use axum::extract::multipart::{Field, Multipart};
use axum::http::StatusCode;
use utoipa::ToSchema;

use super::{MAX_DESCRIPTION_CHARS, MAX_TITLE_CHARS};
use crate::documents::chunking::{
    CHUNK_OVERLAP_RANGE, CHUNK_SIZE_RANGE, DEFAULT_CHUNK_OVERLAP, DEFAULT_CHUNK_SIZE,
};
use crate::error::{ServiceError, ServiceResult};
use crate::http::validate::Violations;
use crate::service::documents::{Upload, clean_tags};

const MAX_FILENAME_CHARS: usize = 255;
const MAX_TAGS: usize = 50;
const MAX_TAG_CHARS: usize = 100;
/// Fields of the upload form other than the file are short; a longer one is refused unread.
const MAX_FORM_FIELD_BYTES: usize = 16 * 1024;

/// The upload form, as the contract describes it (for the OpenAPI document; the handler
/// reads the parts as they come).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct DocumentUploadForm {
    /// The document: text, Markdown, HTML or PDF.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    #[schema(max_length = 255)]
    title: Option<String>,
    #[schema(max_length = 2000)]
    description: Option<String>,
    /// A JSON list (`["a","b"]`) or comma-separated (`a, b`).
    tags: Option<String>,
    /// Characters per chunk, 100 to 10000 (default 1000).
    #[schema(minimum = 100, maximum = 10000)]
    chunk_size: Option<i64>,
    /// Characters repeated between neighbouring chunks, 0 to 2000 (default 200).
    #[schema(minimum = 0, maximum = 2000)]
    chunk_overlap: Option<i64>,
    is_public: Option<bool>,
}

fn multipart_error(err: axum::extract::multipart::MultipartError) -> ServiceError {
    if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ServiceError::PayloadTooLarge("The upload is larger than this API accepts.".into())
    } else {
        ServiceError::BadRequest(format!(
            "The multipart body could not be read: {}.",
            err.body_text()
        ))
    }
}

async fn text_field(field: Field<'_>, name: &str) -> ServiceResult<String> {
    let bytes = field.bytes().await.map_err(multipart_error)?;
    if bytes.len() > MAX_FORM_FIELD_BYTES {
        return Err(ServiceError::invalid(
            ["body".into(), name.into()],
            format!("must be at most {MAX_FORM_FIELD_BYTES} bytes"),
            "string_too_long",
        ));
    }
    String::from_utf8(bytes.to_vec()).map_err(|_| {
        ServiceError::invalid(
            ["body".into(), name.into()],
            "must be UTF-8 text",
            "string_type",
        )
    })
}

/// Tags as a JSON list of strings or comma-separated; trimmed, without blanks or repeats.
fn parse_tags(raw: &str) -> Option<Vec<String>> {
    let raw = raw.trim();
    let tags: Vec<String> = if raw.starts_with('[') {
        serde_json::from_str(raw).ok()?
    } else {
        raw.split(',').map(str::to_owned).collect()
    };
    Some(clean_tags(tags))
}

pub(super) fn check_tags(v: &mut Violations, tags: Option<&[String]>) {
    if let Some(tags) = tags {
        v.check(
            tags.len() <= MAX_TAGS,
            &["body", "tags"],
            format!("must have at most {MAX_TAGS} tags"),
            "too_long",
        );
        v.check(
            tags.iter().all(|t| t.chars().count() <= MAX_TAG_CHARS),
            &["body", "tags"],
            format!("each tag must have at most {MAX_TAG_CHARS} characters"),
            "string_too_long",
        );
    }
}

fn parse_form_int(v: &mut Violations, raw: Option<&str>, name: &str) -> Option<i64> {
    let raw = raw?.trim();
    let parsed = raw.parse().ok();
    v.check(
        parsed.is_some(),
        &["body", name],
        "must be a valid integer",
        "int_parsing",
    );
    parsed
}

fn parse_form_bool(v: &mut Violations, raw: Option<&str>, name: &str) -> Option<bool> {
    let parsed = match raw?.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    };
    v.check(
        parsed.is_some(),
        &["body", name],
        "must be a valid boolean",
        "bool_parsing",
    );
    parsed
}

/// Checks chunking settings the way the contract bounds them.
pub(super) fn check_chunking(
    v: &mut Violations,
    size: Option<i64>,
    overlap: Option<i64>,
) -> (u32, u32) {
    v.range(
        size,
        CHUNK_SIZE_RANGE.0,
        CHUNK_SIZE_RANGE.1,
        &["body", "chunk_size"],
    );
    v.range(
        overlap,
        CHUNK_OVERLAP_RANGE.0,
        CHUNK_OVERLAP_RANGE.1,
        &["body", "chunk_overlap"],
    );
    let size = size.map_or(DEFAULT_CHUNK_SIZE, |s| {
        s.clamp(1, i64::from(u32::MAX)) as u32
    });
    let overlap = overlap.map_or(DEFAULT_CHUNK_OVERLAP.min(size / 2), |o| {
        o.clamp(0, i64::from(u32::MAX)) as u32
    });
    v.check(
        overlap < size,
        &["body", "chunk_overlap"],
        "must be less than chunk_size",
        "less_than",
    );
    (size, overlap)
}

/// A file name without directories or control characters, at most 255 characters.
fn safe_filename(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = base
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_FILENAME_CHARS)
        .collect();
    let clean = clean.trim();
    if clean.is_empty() || clean == "." || clean == ".." {
        "untitled".into()
    } else {
        clean.to_owned()
    }
}

/// Reads the form's parts in order, then checks them all at once.
pub(super) async fn read_upload(mut multipart: Multipart) -> ServiceResult<Upload> {
    let mut file = None;
    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    let mut v = Violations::new();
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        let Some(name) = field.name().map(str::to_owned) else {
            continue;
        };
        match name.as_str() {
            "file" => {
                let filename = safe_filename(field.file_name().unwrap_or_default());
                let content_type = field.content_type().map(str::to_owned);
                let bytes = field.bytes().await.map_err(multipart_error)?;
                v.check(
                    file.is_none(),
                    &["body", "file"],
                    "send one file per upload",
                    "value_error",
                );
                file = Some((filename, content_type, bytes));
            }
            "title" | "description" | "tags" | "chunk_size" | "chunk_overlap" | "is_public" => {
                let value = text_field(field, &name).await?;
                fields.insert(name, value);
            }
            // Parts the contract does not name are skipped, as unknown JSON fields are.
            _ => {}
        }
    }
    let get = |name: &str| fields.get(name).map(String::as_str);
    v.check(
        file.is_some(),
        &["body", "file"],
        "Field required",
        "missing",
    );
    if let Some((_, _, bytes)) = &file {
        v.check(
            !bytes.is_empty(),
            &["body", "file"],
            "the file is empty",
            "value_error",
        );
    }
    // A blank title is none: the file's name stands in for it.
    v.length(get("title"), 0, MAX_TITLE_CHARS, &["body", "title"]);
    let title = get("title").map(str::trim).filter(|t| !t.is_empty());
    v.length(
        get("description"),
        0,
        MAX_DESCRIPTION_CHARS,
        &["body", "description"],
    );
    let description = get("description").filter(|d| !d.trim().is_empty());
    let tags = get("tags").map(parse_tags);
    v.check(
        !matches!(tags, Some(None)),
        &["body", "tags"],
        "must be a JSON list of strings or comma-separated",
        "value_error",
    );
    let tags = tags.flatten().filter(|t| !t.is_empty());
    check_tags(&mut v, tags.as_deref());
    let size = parse_form_int(&mut v, get("chunk_size"), "chunk_size");
    let overlap = parse_form_int(&mut v, get("chunk_overlap"), "chunk_overlap");
    let (chunk_size, chunk_overlap) = check_chunking(&mut v, size, overlap);
    let is_public = parse_form_bool(&mut v, get("is_public"), "is_public").unwrap_or(false);
    v.finish()?;
    let (filename, content_type, bytes) = file.ok_or_else(|| {
        ServiceError::invalid(["body".into(), "file".into()], "Field required", "missing")
    })?;
    Ok(Upload {
        filename,
        content_type,
        bytes,
        title: title.map(str::to_owned),
        description: description.map(str::to_owned),
        tags,
        chunk_size,
        chunk_overlap,
        is_public,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_come_as_a_json_list_or_comma_separated() {
        assert_eq!(
            parse_tags(r#"["a", " b ", "a", ""]"#),
            Some(vec!["a".into(), "b".into()])
        );
        assert_eq!(parse_tags("x, y,,x"), Some(vec!["x".into(), "y".into()]));
        assert_eq!(parse_tags("[1, 2]"), None);
    }

    #[test]
    fn file_names_lose_their_directories_and_control_characters() {
        assert_eq!(safe_filename("../../etc/passwd"), "passwd");
        assert_eq!(safe_filename("C:\\docs\\report.pdf"), "report.pdf");
        assert_eq!(safe_filename("a\u{0}b.txt"), "ab.txt");
        assert_eq!(safe_filename(".."), "untitled");
    }
}
