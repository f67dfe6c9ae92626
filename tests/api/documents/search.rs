//! Search and retrieval over the caller's documents, with and without an embedding model.

use super::*;

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
