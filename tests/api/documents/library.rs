//! The caller's documents: listing, reading, updating, deleting, the overview, and other users'.

use super::*;

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
