//! Uploads: text and files become chunks; what cannot be read or is too big is refused.

use super::*;

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
