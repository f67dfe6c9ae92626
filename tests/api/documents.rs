use api_tests::{FakeLlm, Reply, TestApp};
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::documents::{RetrievalQuery, retrieve};

/// Documents under parallel processing from two instances.
#[path = "documents_races.rs"]
mod races;

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

#[tokio::test]
async fn uploading_text_stores_it_in_overlapping_chunks() {
    let app = TestApp::spawn().await;
    let text = long_text(20);
    let reply = upload_with(
        &app,
        "alice",
        "dir/notes.txt",
        "text/plain",
        text.as_bytes(),
        &[
            ("title", "Notes"),
            ("description", "Things"),
            ("tags", "work, ideas,work"),
            ("chunk_size", "200"),
            ("chunk_overlap", "40"),
            ("is_public", "true"),
        ],
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let d = &reply.body;
    assert_eq!(d["title"], "Notes");
    assert_eq!(d["description"], "Things");
    assert_eq!(d["tags"], json!(["work", "ideas"]));
    assert_eq!(d["is_public"], true);
    assert_eq!(d["owner_id"], "alice");
    assert_eq!(d["filename"], "notes.txt");
    assert_eq!(d["original_filename"], "notes.txt");
    assert_eq!(d["document_type"], "text");
    assert_eq!(d["mime_type"], "text/plain");
    assert_eq!(d["status"], "processed");
    assert_eq!(d["processing_error"], Value::Null);
    assert_eq!(d["file_size"], text.len());
    assert_eq!(d["file_hash"].as_str().unwrap().len(), 64);
    assert_eq!(d["chunk_size"], 200);
    assert_eq!(d["chunk_overlap"], 40);
    assert_eq!(d["version"], 1);
    assert!(d["processing_completed_at"].is_string());
    let count = d["chunk_count"].as_u64().unwrap();
    assert!(count > 5, "{d}");

    let all = chunks(&app, "alice", &id(d)).await;
    assert_eq!(all.len() as u64, count);
    for (i, chunk) in all.iter().enumerate() {
        assert_eq!(chunk["chunk_index"], i);
        assert_eq!(chunk["document_id"], d["id"]);
        assert!(chunk["content"].as_str().unwrap().chars().count() <= 200);
        assert_eq!(chunk["content_hash"].as_str().unwrap().len(), 64);
        assert_eq!(chunk["embedding_model"], Value::Null);
        assert!(chunk.get("embedding").is_none() && chunk.get("owner_id").is_none());
    }
    // Neighbours share text, and together they hold every paragraph.
    let joined: String = all.iter().map(|c| c["content"].as_str().unwrap()).collect();
    for p in 0..20 {
        assert!(
            joined.contains(&format!("Paragraph {p} talks")),
            "paragraph {p} is lost"
        );
    }
    let first_end = all[0]["end_char"].as_u64().unwrap();
    assert!(all[1]["start_char"].as_u64().unwrap() < first_end);

    let page = app
        .get(
            &format!("{DOCUMENTS}/{}/chunks?limit=2&offset=1", id(d)),
            "alice",
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.body["total_count"], count);
    assert_eq!(page.body["limit"], 2);
    assert_eq!(page.body["offset"], 1);
    let indexes = chunk_indexes(&page.body);
    assert_eq!(indexes, [1, 2]);
    // The last two pages run past the last index the chunk keys keep in order (found by
    // the fuzzer: such a range was a 500).
    for query in [
        "offset=1000",
        "offset=999999&limit=82",
        "offset=1000000&limit=100",
    ] {
        let past_the_end = app
            .get(&format!("{DOCUMENTS}/{}/chunks?{query}", id(d)), "alice")
            .await;
        assert_eq!(past_the_end.status, StatusCode::OK, "{query}");
        assert_eq!(past_the_end.body["chunks"], json!([]), "{query}");
    }
    app.get(&format!("{DOCUMENTS}/{}/chunks?limit=0", id(d)), "alice")
        .await
        .assert_problem(422);
}

#[tokio::test]
async fn markdown_html_and_pdf_uploads_become_their_text() {
    let app = TestApp::spawn().await;
    let markdown = upload_with(
        &app,
        "alice",
        "guide.md",
        "application/octet-stream",
        b"# Guide\n\nUse **bold** words.",
        &[("tags", r#"["docs", "md"]"#)],
    )
    .await;
    assert_eq!(markdown.status, StatusCode::CREATED, "{}", markdown.body);
    assert_eq!(markdown.body["document_type"], "markdown");
    assert_eq!(markdown.body["mime_type"], "text/markdown");
    assert_eq!(markdown.body["tags"], json!(["docs", "md"]));
    let content = chunks(&app, "alice", &id(&markdown.body)).await[0]["content"].clone();
    assert_eq!(content, "# Guide\n\nUse **bold** words.");

    let html = upload_with(
        &app,
        "alice",
        "page",
        "text/html; charset=utf-8",
        b"<html><head><script>alert(1)</script></head><body><h1>Welcome</h1><p>The <i>office</i> opens at nine.</p></body></html>",
        &[],
    )
    .await;
    assert_eq!(html.status, StatusCode::CREATED, "{}", html.body);
    assert_eq!(html.body["document_type"], "html");
    let content = chunks(&app, "alice", &id(&html.body)).await[0]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        content.contains("Welcome") && content.contains("The office opens at nine."),
        "{content}"
    );
    assert!(
        !content.contains('<') && !content.contains("alert"),
        "{content}"
    );

    let bytes = pdf(&["Quarterly report", "Revenue grew by twelve percent."]);
    let pdf = upload_with(&app, "alice", "report.pdf", "application/pdf", &bytes, &[]).await;
    assert_eq!(pdf.status, StatusCode::CREATED, "{}", pdf.body);
    assert_eq!(pdf.body["document_type"], "pdf");
    assert_eq!(pdf.body["mime_type"], "application/pdf");
    assert_eq!(pdf.body["file_size"], bytes.len());
    let content = chunks(&app, "alice", &id(&pdf.body)).await[0]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(content.contains("Quarterly report"), "{content}");
    assert!(
        content.contains("Revenue grew by twelve percent."),
        "{content}"
    );

    // The download is the stored text; a PDF's is its extracted text, named as such.
    let download = app
        .get(&format!("{DOCUMENTS}/{}/download", id(&pdf.body)), "alice")
        .await;
    assert_eq!(download.status, StatusCode::OK);
    assert!(download.header("content-type").starts_with("text/plain"));
    assert_eq!(
        download.header("content-disposition"),
        "attachment; filename=\"report.pdf.txt\""
    );
    assert!(download.text.contains("Revenue grew by twelve percent."));
    let download = app
        .get(
            &format!("{DOCUMENTS}/{}/download", id(&markdown.body)),
            "alice",
        )
        .await;
    assert_eq!(download.text, "# Guide\n\nUse **bold** words.");
}

#[tokio::test]
async fn uploads_that_cannot_be_read_or_are_malformed_are_client_errors() {
    let app = TestApp::spawn().await;
    let unsupported = upload_with(
        &app,
        "alice",
        "sheet.xlsx",
        "application/vnd.ms-excel",
        b"PK\x03\x04",
        &[],
    )
    .await;
    unsupported.assert_problem(415);
    assert!(unsupported.body["detail"].as_str().unwrap().contains("PDF"));

    let broken_pdf = upload_with(
        &app,
        "alice",
        "x.pdf",
        "application/pdf",
        b"%PDF-1.4 nothing else",
        &[],
    )
    .await;
    broken_pdf.assert_problem(422);
    assert_eq!(broken_pdf.body["errors"][0]["loc"], json!(["body", "file"]));

    let not_utf8 = upload_with(
        &app,
        "alice",
        "x.txt",
        "text/plain",
        &[0xff, 0xfe, 0x41],
        &[],
    )
    .await;
    not_utf8.assert_problem(422);
    let empty = upload_with(&app, "alice", "x.txt", "text/plain", b"", &[]).await;
    empty.assert_problem(422);
    let blank = upload_with(&app, "alice", "x.txt", "text/plain", b"  \n\n ", &[]).await;
    blank.assert_problem(422);

    let no_file = send_form(&app, "alice", &[("title", None, None, b"t")]).await;
    no_file.assert_problem(422);
    assert_eq!(no_file.body["errors"][0]["loc"], json!(["body", "file"]));
    assert_eq!(no_file.body["errors"][0]["type"], "missing");

    let bad_fields = upload_with(
        &app,
        "alice",
        "x.txt",
        "text/plain",
        b"hello",
        &[
            ("chunk_size", "50"),
            ("chunk_overlap", "many"),
            ("is_public", "maybe"),
            ("tags", "[1]"),
        ],
    )
    .await;
    bad_fields.assert_problem(422);
    let locs: Vec<&Value> = bad_fields.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["loc"][1])
        .collect();
    for field in ["chunk_size", "chunk_overlap", "is_public", "tags"] {
        assert!(
            locs.contains(&&json!(field)),
            "{field} not named: {}",
            bad_fields.body
        );
    }
    let overlap_too_big = upload_chunked(&app, "x.txt", b"hello", ("100", "100")).await;
    overlap_too_big.assert_problem(422);
    assert_eq!(overlap_too_big.body["errors"][0]["type"], "less_than");

    let json_body = app
        .post(
            &format!("{DOCUMENTS}/upload"),
            "alice",
            &json!({"file": "x"}),
        )
        .await;
    json_body.assert_problem(415);

    // Nothing of these was stored.
    assert_eq!(app.get(DOCUMENTS, "alice").await.body["total_count"], 0);
}

#[tokio::test]
async fn uploads_over_the_size_limits_are_refused() {
    let app = TestApp::spawn_with(&[("MAX_BODY_BYTES", "4096")]).await;
    let big = "word ".repeat(2_000);
    upload_with(&app, "alice", "big.txt", "text/plain", big.as_bytes(), &[])
        .await
        .assert_problem(413);

    // Too many chunks for one request: a 422 that says how to fix it.
    let app = TestApp::spawn().await;
    let many = "abcdefghi ".repeat(25_000);
    let reply = upload_chunked(&app, "many.txt", many.as_bytes(), ("100", "0")).await;
    reply.assert_problem(422);
    assert!(
        reply.body["detail"]
            .as_str()
            .unwrap()
            .contains("chunk_size"),
        "{}",
        reply.body
    );
    assert_eq!(app.get(DOCUMENTS, "alice").await.body["total_count"], 0);
}

#[tokio::test]
async fn listing_filters_sorts_and_pages_the_callers_documents() {
    let app = TestApp::spawn().await;
    let a = upload_with(
        &app,
        "alice",
        "a.txt",
        "text/plain",
        b"alpha text",
        &[("tags", "red,blue"), ("title", "Alpha")],
    )
    .await
    .body;
    let b = upload_with(
        &app,
        "alice",
        "b.md",
        "text/markdown",
        b"beta text",
        &[("tags", "blue"), ("title", "Beta")],
    )
    .await
    .body;
    let c = upload_with(
        &app,
        "alice",
        "c.txt",
        "text/plain",
        b"gamma text",
        &[("title", "Gamma")],
    )
    .await
    .body;
    upload_text(&app, "bob", "Bob's", "bob text").await;

    let ids = |reply: &Reply| -> Vec<String> {
        reply.body["documents"]
            .as_array()
            .unwrap()
            .iter()
            .map(id)
            .collect()
    };
    let all = app.get(DOCUMENTS, "alice").await;
    assert_eq!(all.status, StatusCode::OK);
    assert_eq!(all.body["total_count"], 3);
    assert_eq!(all.body["limit"], 50);
    assert_eq!(all.body["offset"], 0);
    assert_eq!(
        ids(&all),
        [id(&c), id(&b), id(&a)],
        "newest first by default"
    );

    let asc = app
        .get(
            &format!("{DOCUMENTS}?sort_order=asc&limit=2&offset=1"),
            "alice",
        )
        .await;
    assert_eq!(ids(&asc), [id(&b), id(&c)]);
    assert_eq!(asc.body["total_count"], 3);
    let by_title = app
        .get(
            &format!("{DOCUMENTS}?sort_by=title&sort_order=asc"),
            "alice",
        )
        .await;
    assert_eq!(ids(&by_title), [id(&a), id(&b), id(&c)]);

    let blue = app.get(&format!("{DOCUMENTS}?tags=blue"), "alice").await;
    assert_eq!(ids(&blue), [id(&b), id(&a)]);
    assert_eq!(blue.body["total_count"], 2);
    let red_or_none = app
        .get(&format!("{DOCUMENTS}?tags=red&tags=nothing"), "alice")
        .await;
    assert_eq!(ids(&red_or_none), [id(&a)]);
    let markdown = app
        .get(&format!("{DOCUMENTS}?document_type=markdown"), "alice")
        .await;
    assert_eq!(ids(&markdown), [id(&b)]);
    let processed = app
        .get(&format!("{DOCUMENTS}?status=processed"), "alice")
        .await;
    assert_eq!(processed.body["total_count"], 3);
    let failed = app
        .get(&format!("{DOCUMENTS}?status=failed"), "alice")
        .await;
    assert_eq!(failed.body["total_count"], 0);
    let someone_else = app.get(&format!("{DOCUMENTS}?owner_id=bob"), "alice").await;
    assert_eq!(someone_else.body["total_count"], 0);

    for bad in [
        "limit=0",
        "limit=101",
        "offset=-1",
        "sort_by=secret",
        "sort_order=sideways",
        "status=done",
        "document_type=exe",
    ] {
        app.get(&format!("{DOCUMENTS}?{bad}"), "alice")
            .await
            .assert_problem(422);
    }
}

#[tokio::test]
async fn reading_updating_and_deleting_a_document() {
    let app = TestApp::spawn().await;
    let document = upload_with(
        &app,
        "alice",
        "n.txt",
        "text/plain",
        b"some words here",
        &[("title", "Old"), ("tags", "keep")],
    )
    .await
    .body;
    let path = format!("{DOCUMENTS}/{}", id(&document));

    let first = app.get(&path, "alice").await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.body["view_count"], 1);
    assert!(first.body["last_accessed_at"].is_string());
    assert_eq!(app.get(&path, "alice").await.body["view_count"], 2);

    let updated = app
        .put(&path, "alice", &json!({"title": "  New  ", "is_public": true, "extra_metadata": {"k": 1}, "owner_id": "bob", "status": "failed"}))
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(updated.body["title"], "New");
    assert_eq!(updated.body["is_public"], true);
    assert_eq!(updated.body["extra_metadata"], json!({"k": 1}));
    assert_eq!(
        updated.body["tags"],
        json!(["keep"]),
        "absent fields are unchanged"
    );
    assert_eq!(updated.body["owner_id"], "alice");
    assert_eq!(updated.body["status"], "processed");
    let unchanged = app.put(&path, "alice", &json!({})).await;
    assert_eq!(unchanged.body["title"], "New");
    app.put(&path, "alice", &json!({"title": ""}))
        .await
        .assert_problem(422);
    app.put(&path, "alice", &json!({"tags": "not a list"}))
        .await
        .assert_problem(422);
    // 51 tags are over the bound even when blanks would leave fewer (found by the fuzzer).
    let mut tags = vec![""; 50];
    tags.push("one");
    app.put(&path, "alice", &json!({ "tags": tags }))
        .await
        .assert_problem(422);

    let deleted = app.delete(&path, "alice").await;
    assert_eq!(deleted.status, StatusCode::OK);
    assert_eq!(deleted.body["message"], "Document deleted successfully");
    app.get(&path, "alice").await.assert_problem(404);
    app.delete(&path, "alice").await.assert_problem(404);
    app.get(&format!("{path}/chunks"), "alice")
        .await
        .assert_problem(404);
    // Its chunks and text are gone from the table, not only hidden.
    assert!(
        app.store()
            .document_chunks(&id(&document))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(app.store().user_chunks("alice").await.unwrap().is_empty());
    assert_eq!(app.store().document_text(&id(&document)).await.unwrap(), "");
}

#[tokio::test]
async fn another_users_document_is_not_found_on_every_route_and_never_retrieved() {
    let app = TestApp::spawn().await;
    let document = upload_text(
        &app,
        "alice",
        "Secret plans",
        "The secret launch code is swordfish.",
    )
    .await;
    let path = format!("{DOCUMENTS}/{}", id(&document));
    app.get(&path, "bob").await.assert_problem(404);
    app.put(&path, "bob", &json!({"title": "Mine"}))
        .await
        .assert_problem(404);
    app.delete(&path, "bob").await.assert_problem(404);
    app.get(&format!("{path}/chunks"), "bob")
        .await
        .assert_problem(404);
    app.get(&format!("{path}/download"), "bob")
        .await
        .assert_problem(404);
    app.post(
        &format!("{path}/process"),
        "bob",
        &json!({"reprocess": true}),
    )
    .await
    .assert_problem(404);
    app.post(&format!("{path}/reprocess"), "bob", &json!({}))
        .await
        .assert_problem(404);
    assert_eq!(app.get(DOCUMENTS, "bob").await.body["total_count"], 0);

    let found = search(
        &app,
        "bob",
        json!({"query": "secret launch code swordfish", "score_threshold": 0.0}),
    )
    .await;
    assert_eq!(found["results"], json!([]));
    let ids = [id(&document)];
    let sources = retrieve(
        &app.state,
        RetrievalQuery {
            user_id: "bob",
            query: "secret launch code",
            limit: 5,
            score_threshold: 0.0,
            document_ids: Some(&ids),
        },
    )
    .await
    .unwrap();
    assert!(sources.is_empty());
    // Alice's document is untouched and still hers to find.
    let mine = search(
        &app,
        "alice",
        json!({"query": "secret launch code swordfish"}),
    )
    .await;
    assert_eq!(mine["results"][0]["document_id"], json!(id(&document)));
    assert_eq!(app.get(&path, "alice").await.body["title"], "Secret plans");
}

#[tokio::test]
async fn with_an_embedding_model_search_ranks_by_meaning_and_chunks_carry_their_vectors() {
    let (app, fake) = with_embeddings().await;
    let bread = upload_text(&app, "alice", "Baking", BREAD).await;
    let stars = upload_text(&app, "alice", "Astronomy", STARS).await;
    upload_text(&app, "alice", "Gardening", GARDEN).await;
    assert_eq!(bread["status"], "processed");
    let chunk = &chunks(&app, "alice", &id(&bread)).await[0];
    assert_eq!(chunk["embedding_model"], EMBEDDING_MODEL);
    assert_eq!(chunk["embedding_provider"], "default");
    assert!(chunk["embedding_created_at"].is_string());
    // The vector is stored as 4 bytes a dimension in a binary attribute.
    let stored = app.store().document_chunks(&id(&bread)).await.unwrap();
    assert_eq!(
        stored[0].embedding.as_ref().unwrap().0.len(),
        api_tests::fake_llm::EMBEDDING_DIMENSIONS
    );
    let requests = fake.embedding_requests();
    assert_eq!(requests[0]["model"], EMBEDDING_MODEL);
    assert_eq!(requests[0]["input"], json!([BREAD]));

    let found = search(
        &app,
        "alice",
        json!({"query": "how do I bake bread dough with yeast", "score_threshold": 0.2}),
    )
    .await;
    let results = found["results"].as_array().unwrap();
    assert_eq!(results[0]["document_id"], json!(id(&bread)), "{found}");
    assert_eq!(results[0]["metadata"]["ranking"], "embeddings");
    assert_eq!(results[0]["document"]["title"], "Baking");
    assert!(results[0]["chunk_id"].is_string());
    let score = results[0]["score"].as_f64().unwrap();
    assert!(score > 0.2 && score <= 1.0, "{found}");
    assert!(
        results
            .iter()
            .all(|r| r["document_id"] != json!(id(&stars))),
        "{found}"
    );
    assert_eq!(found["total_results"], results.len());
    assert_eq!(found["query"], "how do I bake bread dough with yeast");
    assert_eq!(found["score_threshold"], 0.2);

    let telescope = retrieve(
        &app.state,
        RetrievalQuery {
            user_id: "alice",
            query: "telescope galaxies",
            limit: 1,
            score_threshold: 0.1,
            document_ids: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(telescope.len(), 1);
    assert_eq!(telescope[0].document_id, id(&stars));
    assert_eq!(telescope[0].title, "Astronomy");
    assert_eq!(telescope[0].chunk_index, 0);
    assert_eq!(telescope[0].content, STARS);

    // The search counted for the document it found.
    let read = app
        .get(&format!("{DOCUMENTS}/{}", id(&bread)), "alice")
        .await;
    assert_eq!(read.body["search_count"], 1);
}

#[tokio::test]
async fn without_an_embedding_model_search_ranks_lexically_and_the_threshold_filters() {
    let app = TestApp::spawn().await;
    let bread = upload_with(
        &app,
        "alice",
        "b.txt",
        "text/plain",
        BREAD.as_bytes(),
        &[("tags", "food")],
    )
    .await
    .body;
    let stars = upload_with(
        &app,
        "alice",
        "s.md",
        "text/markdown",
        STARS.as_bytes(),
        &[("tags", "science")],
    )
    .await
    .body;

    let found = search(&app, "alice", json!({"query": "bake the bread"})).await;
    let results = found["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{found}");
    assert_eq!(results[0]["document_id"], json!(id(&bread)));
    assert_eq!(results[0]["metadata"]["ranking"], "lexical");
    let score = results[0]["score"].as_f64().unwrap();
    assert!((0.5..=1.0).contains(&score), "{found}");

    // Half the query's weight is not in any chunk: the default threshold drops the match.
    let partial = search(&app, "alice", json!({"query": "bread quasar"})).await;
    assert_eq!(partial["results"], json!([]));
    let low = search(
        &app,
        "alice",
        json!({"query": "bread quasar", "score_threshold": 0.1}),
    )
    .await;
    assert_eq!(low["results"][0]["document_id"], json!(id(&bread)));

    let by_tag = search(
        &app,
        "alice",
        json!({"query": "bread telescope", "score_threshold": 0.1, "tags": ["science"]}),
    )
    .await;
    let ids: Vec<&Value> = by_tag["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["document_id"])
        .collect();
    assert_eq!(ids, [&json!(id(&stars))]);
    let by_type = search(
        &app,
        "alice",
        json!({"query": "bread telescope", "score_threshold": 0.1, "document_types": ["text"]}),
    )
    .await;
    let ids: Vec<&Value> = by_type["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["document_id"])
        .collect();
    assert_eq!(ids, [&json!(id(&bread))]);

    for bad in [
        json!({"query": ""}),
        json!({"query": "x", "limit": 0}),
        json!({"query": "x", "score_threshold": 1.5}),
        json!({"limit": 3}),
    ] {
        app.post(&format!("{DOCUMENTS}/search"), "alice", &bad)
            .await
            .assert_problem(422);
    }
}

#[tokio::test]
async fn retrieval_is_restricted_to_the_named_documents() {
    let app = TestApp::spawn().await;
    let first = upload_text(
        &app,
        "alice",
        "First",
        "The red fox jumps over the lazy dog.",
    )
    .await;
    let second = upload_text(
        &app,
        "alice",
        "Second",
        "A red fox sleeps under the old tree.",
    )
    .await;
    let query = |ids: Option<&'static [String]>| RetrievalQuery {
        user_id: "alice",
        query: "red fox",
        limit: 10,
        score_threshold: 0.1,
        document_ids: ids,
    };
    let everything = retrieve(&app.state, query(None)).await.unwrap();
    assert_eq!(everything.len(), 2);

    let only: &'static [String] = Vec::leak(vec![id(&second), id(&second), "missing".into()]);
    let restricted = retrieve(&app.state, query(Some(only))).await.unwrap();
    assert_eq!(restricted.len(), 1);
    assert_eq!(restricted[0].document_id, id(&second));
    assert_eq!(restricted[0].title, "Second");
    assert!(restricted[0].score > 0.1 && restricted[0].score <= 1.0);

    assert!(
        retrieve(&app.state, query(Some(&[])))
            .await
            .unwrap()
            .is_empty()
    );
    let deleted: &'static [String] = Vec::leak(vec![id(&first)]);
    app.delete(&format!("{DOCUMENTS}/{}", id(&first)), "alice")
        .await;
    assert!(
        retrieve(&app.state, query(Some(deleted)))
            .await
            .unwrap()
            .is_empty()
    );
    let after = retrieve(&app.state, query(None)).await.unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].document_id, id(&second));
}

#[tokio::test]
async fn an_embedding_failure_marks_the_upload_failed_and_reprocessing_recovers_it() {
    let (app, fake) = with_embeddings().await;
    fake.fail_embeddings(Some(500));
    let reply = upload_with(&app, "alice", "b.txt", "text/plain", BREAD.as_bytes(), &[]).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let document = reply.body;
    assert_eq!(document["status"], "failed");
    assert!(
        document["processing_error"]
            .as_str()
            .unwrap()
            .starts_with("Embedding failed"),
        "{document}"
    );
    assert!(
        !document["processing_error"]
            .as_str()
            .unwrap()
            .contains("scripted"),
        "{document}"
    );
    assert_eq!(
        document["chunk_count"], 1,
        "the text is kept, without vectors"
    );
    assert_eq!(
        chunks(&app, "alice", &id(&document)).await[0]["embedding_model"],
        Value::Null
    );

    // No chunk has a vector of the model: retrieval ranks lexically rather than finding nothing.
    fake.fail_embeddings(None);
    let lexical = retrieve(
        &app.state,
        RetrievalQuery {
            user_id: "alice",
            query: "bake bread",
            limit: 3,
            score_threshold: 0.3,
            document_ids: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(lexical.len(), 1);

    let reprocessed = app
        .post(
            &format!("{DOCUMENTS}/{}/reprocess", id(&document)),
            "alice",
            &json!({}),
        )
        .await;
    assert_eq!(reprocessed.status, StatusCode::OK, "{}", reprocessed.body);
    assert_eq!(reprocessed.body["status"], "processed");
    assert_eq!(reprocessed.body["document_id"], document["id"]);
    let read = app
        .get(&format!("{DOCUMENTS}/{}", id(&document)), "alice")
        .await
        .body;
    assert_eq!(read["status"], "processed");
    assert_eq!(read["processing_error"], Value::Null);
    assert_eq!(read["version"], 2);
    assert_eq!(
        chunks(&app, "alice", &id(&document)).await[0]["embedding_model"],
        EMBEDDING_MODEL
    );

    // A provider that fails at query time: retrieval falls back to the lexical ranking.
    fake.fail_embeddings(Some(503));
    let fallback = retrieve(
        &app.state,
        RetrievalQuery {
            user_id: "alice",
            query: "bake bread",
            limit: 3,
            score_threshold: 0.3,
            document_ids: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(fallback.len(), 1);
    assert_eq!(fallback[0].document_id, id(&document));
}

#[tokio::test]
async fn processing_again_rechunks_the_stored_text() {
    let app = TestApp::spawn().await;
    let text = long_text(30);
    let document = upload_chunked(&app, "l.txt", text.as_bytes(), ("500", "50"))
        .await
        .body;
    let path = format!("{DOCUMENTS}/{}", id(&document));
    let before = document["chunk_count"].as_u64().unwrap();

    let untouched = app
        .post(&format!("{path}/process"), "alice", &json!({}))
        .await;
    assert_eq!(untouched.status, StatusCode::OK, "{}", untouched.body);
    assert!(
        untouched.body["message"]
            .as_str()
            .unwrap()
            .contains("already processed")
    );
    assert_eq!(app.get(&path, "alice").await.body["version"], 1);

    let finer = app
        .post(
            &format!("{path}/process"),
            "alice",
            &json!({"reprocess": true, "chunk_size": 150, "chunk_overlap": 0}),
        )
        .await;
    assert_eq!(finer.status, StatusCode::OK, "{}", finer.body);
    assert_eq!(finer.body["status"], "processed");
    let read = app.get(&path, "alice").await.body;
    assert_eq!(read["chunk_size"], 150);
    assert_eq!(read["chunk_overlap"], 0);
    assert_eq!(read["version"], 2);
    let after = read["chunk_count"].as_u64().unwrap();
    assert!(after > before, "{before} -> {after}");
    let all = chunks(&app, "alice", &id(&document)).await;
    assert_eq!(all.len() as u64, after);
    assert!(
        all.iter()
            .all(|c| c["content"].as_str().unwrap().chars().count() <= 150)
    );

    app.post(
        &format!("{path}/process"),
        "alice",
        &json!({"reprocess": true, "chunk_size": 99}),
    )
    .await
    .assert_problem(422);
}

#[tokio::test]
async fn the_overview_counts_the_callers_documents() {
    let app = TestApp::spawn().await;
    upload_with(&app, "alice", "a.txt", "text/plain", b"one", &[]).await;
    upload_with(&app, "alice", "b.md", "text/markdown", b"two", &[]).await;
    upload_with(&app, "alice", "c.md", "text/markdown", b"three", &[]).await;
    upload_text(&app, "bob", "b", "not counted").await;
    let stats = app
        .get(&format!("{DOCUMENTS}/stats/overview"), "alice")
        .await;
    assert_eq!(stats.status, StatusCode::OK, "{}", stats.body);
    assert_eq!(stats.body["total_documents"], 3);
    assert_eq!(stats.body["total_chunks"], 3);
    assert_eq!(stats.body["total_size_bytes"], 11);
    assert_eq!(stats.body["documents_by_status"], json!({"processed": 3}));
    assert_eq!(
        stats.body["documents_by_type"],
        json!({"markdown": 2, "text": 1})
    );
    assert!(stats.body["processing_stats"]["average_processing_time_ms"].is_number());
    assert_eq!(
        stats.body["processing_stats"]["embedding_model"],
        Value::Null
    );
}

#[tokio::test]
async fn a_document_whose_embedding_failed_is_still_found_among_embedded_ones() {
    let (app, fake) = with_embeddings().await;
    let bread = upload_text(&app, "alice", "Baking", BREAD).await;
    assert_eq!(bread["status"], "processed");
    fake.fail_embeddings(Some(500));
    let stars = upload_text(&app, "alice", "Astronomy", STARS).await;
    assert_eq!(stars["status"], "failed", "{stars}");
    fake.fail_embeddings(None);

    // The query is embedded (the bread chunk has a vector), yet the vector-less chunk that
    // matches its words is ranked too, lexically.
    let found = search(
        &app,
        "alice",
        json!({"query": "telescope galaxies", "score_threshold": 0.1}),
    )
    .await;
    let results = found["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{found}");
    assert_eq!(results[0]["document_id"], json!(id(&stars)));
    assert_eq!(results[0]["metadata"]["ranking"], "lexical");
    let by_meaning = search(
        &app,
        "alice",
        json!({"query": "bake bread dough", "score_threshold": 0.1}),
    )
    .await;
    assert_eq!(
        by_meaning["results"][0]["document_id"],
        json!(id(&bread)),
        "{by_meaning}"
    );
    assert_eq!(
        by_meaning["results"][0]["metadata"]["ranking"],
        "embeddings"
    );

    let sources = retrieve(
        &app.state,
        RetrievalQuery {
            user_id: "alice",
            query: "What can a telescope show of distant galaxies?",
            limit: 3,
            score_threshold: 0.1,
            document_ids: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(sources.len(), 1);
    assert_eq!(sources[0].title, "Astronomy");
}

#[tokio::test]
async fn a_page_of_large_chunks_is_complete_though_it_exceeds_one_query_response() {
    let app = TestApp::spawn_with(&[("MAX_BODY_BYTES", "4194304")]).await;
    // Three-byte characters: 10,000-character chunks of some 25 KB each, so 100 of them
    // are well over the 1 MB DynamoDB returns from one query.
    let text = "数据库 ".repeat(150_000);
    let reply = upload_chunked(&app, "big.txt", text.as_bytes(), ("10000", "0")).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let count = reply.body["chunk_count"].as_u64().unwrap();
    assert!(count > 50 && count <= 100, "{count} chunks");

    let page = app
        .get(
            &format!("{DOCUMENTS}/{}/chunks?limit=100", id(&reply.body)),
            "alice",
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let indexes = chunk_indexes(&page.body);
    assert_eq!(indexes, (0..count).collect::<Vec<_>>());
    assert_eq!(page.body["total_count"], count);

    let tail = app
        .get(
            &format!("{DOCUMENTS}/{}/chunks?limit=45&offset=10", id(&reply.body)),
            "alice",
        )
        .await;
    let tail = chunk_indexes(&tail.body);
    assert_eq!(tail, (10..55).collect::<Vec<_>>());
}
