//! From an uploaded file to plain text: which kind of file it is, and its text.
//!
//! Text and Markdown are kept as written; HTML is rendered to text (`html2text`, on
//! html5ever); PDF text is read with `lopdf`, pure Rust, with a bound on how far a page's
//! content may inflate. Parsing runs on a blocking thread and a parser's panic is the
//! client's unreadable file, never a 500.

use crate::domain::DocumentType;
use crate::error::ServiceError;

/// Longest text a document may have once extracted (a PDF can inflate far past its size).
pub const MAX_TEXT_BYTES: usize = 4 * 1024 * 1024;
/// What a PDF page's content streams may inflate to, against decompression bombs.
const MAX_PDF_PAGE_BYTES: usize = 16 * 1024 * 1024;
/// HTML is rendered this wide; wide enough that paragraphs are not wrapped into lines.
const HTML_RENDER_WIDTH: usize = 1_000;

const SUPPORTED: &str = "text (.txt), Markdown (.md), HTML (.html) or PDF (.pdf)";

/// Decides the kind of an upload from its file name, then its declared content type, then
/// its first bytes; anything else is a 415 naming what is accepted.
pub fn detect(filename: &str, content_type: Option<&str>) -> Option<DocumentType> {
    let extension = filename
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase());
    let by_extension = match extension.as_deref() {
        Some("txt" | "text") => Some(DocumentType::Text),
        Some("md" | "markdown") => Some(DocumentType::Markdown),
        Some("html" | "htm" | "xhtml") => Some(DocumentType::Html),
        Some("pdf") => Some(DocumentType::Pdf),
        _ => None,
    };
    let essence = content_type
        .and_then(|t| t.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase());
    by_extension.or(match essence.as_deref() {
        Some("text/plain") => Some(DocumentType::Text),
        Some("text/markdown" | "text/x-markdown") => Some(DocumentType::Markdown),
        Some("text/html" | "application/xhtml+xml") => Some(DocumentType::Html),
        Some("application/pdf") => Some(DocumentType::Pdf),
        _ => None,
    })
}

/// The kind of an upload, or a 415 that says what is accepted.
pub fn document_type(
    filename: &str,
    content_type: Option<&str>,
    bytes: &[u8],
) -> Result<DocumentType, ServiceError> {
    detect(filename, content_type)
        .or_else(|| bytes.starts_with(b"%PDF-").then_some(DocumentType::Pdf))
        .ok_or_else(|| {
            ServiceError::UnsupportedMediaType(format!(
                "The file {filename:?} ({}) is not a supported document; upload {SUPPORTED}.",
                content_type.unwrap_or("no content type")
            ))
        })
}

/// The MIME type recorded for a document of this kind.
pub fn mime_type(kind: DocumentType) -> &'static str {
    match kind {
        DocumentType::Pdf => "application/pdf",
        DocumentType::Markdown => "text/markdown",
        DocumentType::Html => "text/html",
        _ => "text/plain",
    }
}

/// The text of an upload, normalised (`\n` line ends, no control characters, no runs of
/// blank lines). Unreadable or empty files are a 422; text over [`MAX_TEXT_BYTES`] a 413.
pub async fn extract_text(kind: DocumentType, bytes: bytes::Bytes) -> Result<String, ServiceError> {
    let text = tokio::task::spawn_blocking(move || extract_blocking(kind, &bytes))
        .await
        .map_err(|e| {
            // A parser that panics has met a file it cannot read; that is the file's fault.
            tracing::warn!(error = %e, kind = kind.as_str(), "text extraction panicked");
            unreadable(kind, "its structure could not be parsed")
        })??;
    let text = normalise(&text);
    if text.trim().is_empty() {
        return Err(ServiceError::invalid(
            ["body".into(), "file".into()],
            match kind {
                DocumentType::Pdf => {
                    "The PDF has no extractable text (a scanned PDF needs OCR first).".to_owned()
                }
                _ => "The file has no text.".to_owned(),
            },
            "value_error",
        ));
    }
    if text.len() > MAX_TEXT_BYTES {
        return Err(ServiceError::PayloadTooLarge(format!(
            "The document's text is {} bytes; the limit is {MAX_TEXT_BYTES} bytes.",
            text.len()
        )));
    }
    Ok(text)
}

fn unreadable(kind: DocumentType, why: &str) -> ServiceError {
    ServiceError::invalid(
        ["body".into(), "file".into()],
        format!("The {} file could not be read: {why}.", kind.as_str()),
        "value_error",
    )
}

fn extract_blocking(kind: DocumentType, bytes: &[u8]) -> Result<String, ServiceError> {
    match kind {
        DocumentType::Pdf => pdf_text(bytes),
        DocumentType::Html => html2text::config::plain_no_decorate()
            .raw_mode(true)
            .allow_width_overflow()
            .string_from_read(utf8(kind, bytes)?.as_bytes(), HTML_RENDER_WIDTH)
            .map_err(|e| unreadable(kind, &e.to_string())),
        _ => utf8(kind, bytes).map(str::to_owned),
    }
}

fn utf8(kind: DocumentType, bytes: &[u8]) -> Result<&str, ServiceError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|_| unreadable(kind, "it is not UTF-8 text"))
}

/// The text of every page that yields some, in page order. A page whose fonts lopdf cannot
/// decode is skipped rather than failing the whole document.
fn pdf_text(bytes: &[u8]) -> Result<String, ServiceError> {
    let kind = DocumentType::Pdf;
    let document =
        lopdf::Document::load_mem(bytes).map_err(|e| unreadable(kind, &e.to_string()))?;
    let pages: Vec<u32> = document.get_pages().keys().copied().collect();
    if pages.is_empty() {
        return Err(unreadable(kind, "it has no pages"));
    }
    let mut text = String::new();
    let mut failures = 0;
    for page in &pages {
        match document.extract_text_with_limit(&[*page], MAX_PDF_PAGE_BYTES) {
            Ok(page_text) => {
                text.push_str(&page_text);
                text.push_str("\n\n");
            }
            Err(e) => {
                failures += 1;
                tracing::debug!(page, error = %e, "a PDF page yielded no text");
            }
        }
        if text.len() > MAX_TEXT_BYTES {
            break;
        }
    }
    if failures == pages.len() {
        return Err(unreadable(kind, "no page's text could be decoded"));
    }
    Ok(text)
}

/// `\n` line ends, no control characters but tabs and newlines, trailing spaces trimmed,
/// and at most one blank line in a row.
fn normalise(text: &str) -> String {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut out = String::with_capacity(text.len());
    let mut blank_lines = 0;
    for line in text.split('\n') {
        let line: String = line
            .chars()
            .filter(|c| !c.is_control() || *c == '\t')
            .collect();
        let line = line.trim_end();
        if line.trim().is_empty() {
            blank_lines += 1;
            if blank_lines > 1 {
                continue;
            }
            out.push('\n');
        } else {
            blank_lines = 0;
            out.push_str(line);
            out.push('\n');
        }
    }
    out.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_extension_decides_before_the_content_type() {
        assert_eq!(
            detect("notes.MD", Some("application/octet-stream")),
            Some(DocumentType::Markdown)
        );
        assert_eq!(
            detect("page", Some("text/html; charset=utf-8")),
            Some(DocumentType::Html)
        );
        assert_eq!(detect("report.docx", None), None);
    }

    #[test]
    fn an_unknown_file_that_starts_like_a_pdf_is_a_pdf() {
        assert_eq!(
            document_type("scan.bin", None, b"%PDF-1.4\n...").unwrap(),
            DocumentType::Pdf
        );
        let err = document_type("sheet.xlsx", Some("application/zip"), b"PK\x03\x04").unwrap_err();
        assert!(
            matches!(err, ServiceError::UnsupportedMediaType(_)),
            "{err:?}"
        );
    }

    #[test]
    fn normalising_keeps_paragraphs_and_drops_noise() {
        assert_eq!(normalise("a\r\nb  \n\n\n\nc\u{0}d\x07\n"), "a\nb\n\ncd");
    }

    #[tokio::test]
    async fn html_becomes_its_readable_text() {
        let html = "<html><head><title>T</title><style>p{color:red}</style><script>var x=1;</script></head>\
                    <body><h1>Heading</h1><p>First <b>bold</b> paragraph.</p><ul><li>one</li><li>two</li></ul></body></html>";
        let text = extract_text(DocumentType::Html, html.into()).await.unwrap();
        assert!(text.contains("Heading"), "{text}");
        assert!(text.contains("First bold paragraph."), "{text}");
        assert!(text.contains("one") && text.contains("two"), "{text}");
        assert!(
            !text.contains("var x") && !text.contains("color:red"),
            "{text}"
        );
        assert!(!text.contains('<'), "{text}");
    }

    #[tokio::test]
    async fn files_without_text_or_with_broken_bytes_are_client_errors() {
        let empty = extract_text(DocumentType::Text, " \n\t\n".into())
            .await
            .unwrap_err();
        assert!(matches!(empty, ServiceError::Validation(_)), "{empty:?}");
        let binary = extract_text(DocumentType::Text, vec![0xff, 0xfe, 0x00].into())
            .await
            .unwrap_err();
        assert!(matches!(binary, ServiceError::Validation(_)), "{binary:?}");
        let not_pdf = extract_text(DocumentType::Pdf, "%PDF-1.4 garbage".into())
            .await
            .unwrap_err();
        assert!(
            matches!(not_pdf, ServiceError::Validation(_)),
            "{not_pdf:?}"
        );
    }
}
