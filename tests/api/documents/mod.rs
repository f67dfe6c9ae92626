//! The Chatter documents API: uploads, the caller's library, search and retrieval, processing.

use api_tests::{FakeLlm, Reply, TestApp};
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::documents::{RetrievalQuery, retrieve};

mod library;
mod processing;
/// Documents under parallel processing from two instances.
mod races;
mod search;
mod uploads;

const DOCUMENTS: &str = "/api/v1/documents";
const EMBEDDING_MODEL: &str = "fake-embed";

/// One part of a multipart form: (name, file name, content type, bytes).
type Part<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a [u8]);

/// A `multipart/form-data` body, written out by hand so tests can also send broken ones.
fn multipart(parts: &[Part]) -> (String, Vec<u8>) {
    let boundary = "----test-boundary-7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, filename, content_type, bytes) in parts {
        body.extend(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"").bytes(),
        );
        if let Some(filename) = filename {
            body.extend(format!("; filename=\"{filename}\"").bytes());
        }
        body.extend(b"\r\n");
        if let Some(content_type) = content_type {
            body.extend(format!("Content-Type: {content_type}\r\n").bytes());
        }
        body.extend(b"\r\n");
        body.extend(*bytes);
        body.extend(b"\r\n");
    }
    body.extend(format!("--{boundary}--\r\n").bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn send_form(app: &TestApp, user: &str, parts: &[Part<'_>]) -> Reply {
    let (content_type, body) = multipart(parts);
    let request = app
        .request(reqwest::Method::POST, &format!("{DOCUMENTS}/upload"), user)
        .header("content-type", content_type)
        .body(body);
    Reply::from(request.send().await.unwrap()).await
}

/// Uploads a file with extra text fields and returns the reply.
async fn upload_with(
    app: &TestApp,
    user: &str,
    filename: &str,
    content_type: &str,
    bytes: &[u8],
    fields: &[(&str, &str)],
) -> Reply {
    let mut parts: Vec<Part> = vec![("file", Some(filename), Some(content_type), bytes)];
    parts.extend(fields.iter().map(|(k, v)| (*k, None, None, v.as_bytes())));
    send_form(app, user, &parts).await
}

/// Uploads a text file titled `title` and returns the created document.
async fn upload_text(app: &TestApp, user: &str, title: &str, text: &str) -> Value {
    let reply = upload_with(
        app,
        user,
        "notes.txt",
        "text/plain",
        text.as_bytes(),
        &[("title", title)],
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body
}

/// Uploads `bytes` as alice's plain-text file `filename`, cut with the given
/// (`chunk_size`, `chunk_overlap`); returns the reply.
async fn upload_chunked(
    app: &TestApp,
    filename: &str,
    bytes: &[u8],
    (size, overlap): (&str, &str),
) -> Reply {
    let fields = [("chunk_size", size), ("chunk_overlap", overlap)];
    upload_with(app, "alice", filename, "text/plain", bytes, &fields).await
}

/// The `chunk_index` of each chunk on a page of chunks, in order.
fn chunk_indexes(page: &Value) -> Vec<u64> {
    page["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["chunk_index"].as_u64().unwrap())
        .collect()
}

/// The id of a document.
fn id(document: &Value) -> String {
    document["id"].as_str().unwrap().to_owned()
}

/// A one-page PDF whose page shows `lines` in Helvetica, with a correct cross-reference
/// table, written out byte by byte.
fn pdf(lines: &[&str]) -> Vec<u8> {
    let mut content = String::from("BT /F1 12 Tf 72 720 Td 14 TL\n");
    for line in lines {
        content.push_str(&format!("({line}) Tj T*\n"));
    }
    content.push_str("ET");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R \
         /Resources << /Font << /F1 5 0 R >> >> >>"
            .to_owned(),
        format!(
            "<< /Length {} >>\nstream\n{content}\nendstream",
            content.len()
        ),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned(),
    ];
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend(format!("{} 0 obj\n{object}\nendobj\n", i + 1).bytes());
    }
    let xref = out.len();
    out.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).bytes());
    for offset in offsets {
        out.extend(format!("{offset:010} 00000 n \n").bytes());
    }
    out.extend(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .bytes(),
    );
    out
}

async fn chunks(app: &TestApp, user: &str, document_id: &str) -> Vec<Value> {
    let reply = app
        .get(&format!("{DOCUMENTS}/{document_id}/chunks?limit=100"), user)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["chunks"].as_array().unwrap().clone()
}

async fn search(app: &TestApp, user: &str, body: Value) -> Value {
    let reply = app.post(&format!("{DOCUMENTS}/search"), user, &body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body
}

/// A stack whose model server is the fake, with embeddings on.
async fn with_embeddings() -> (TestApp, FakeLlm) {
    let fake = FakeLlm::start().await;
    let app = TestApp::spawn_with(&[
        ("LLM_BASE_URL", &fake.base_url),
        ("EMBEDDING_MODEL", EMBEDDING_MODEL),
    ])
    .await;
    (app, fake)
}

const BREAD: &str = "Bread baking needs flour, water, yeast and salt. Knead the dough, let the dough rise, then bake the bread in a hot oven until the crust is golden.";
const STARS: &str = "Stars are giant balls of plasma. A telescope collects starlight so astronomers can study distant galaxies, nebulae and planets.";
const GARDEN: &str = "Tomatoes grow best in full sun. Water the garden in the morning and add compost to the soil every spring.";

fn long_text(paragraphs: usize) -> String {
    (0..paragraphs)
        .map(|p| {
            format!("Paragraph {p} talks about topic {p}. It has a second sentence about item {p}.")
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}
