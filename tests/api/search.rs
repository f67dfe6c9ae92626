use api_tests::TestApp;
use reqwest::StatusCode;
use serde_json::Value;

fn titles(body: &Value) -> Vec<&str> {
    body["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["title"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_search_finds_the_callers_titles_containing_the_text_ignoring_case_newest_first() {
    let app = TestApp::spawn().await;
    for title in [
        "Paris trip",
        "Groceries",
        "A PARIS museum list",
        "Été à Paris",
    ] {
        app.create_conversation("alice", title).await;
    }
    app.create_conversation("bob", "Paris for bob").await;

    let found = app.get("/api/v1/chat/conversations?q=paris", "alice").await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.body);
    assert_eq!(
        titles(&found.body),
        ["Été à Paris", "A PARIS museum list", "Paris trip"]
    );
    assert_eq!(found.body["total"], 3);

    let accented = app
        .get("/api/v1/chat/conversations?q=%C3%89T%C3%89", "alice")
        .await;
    assert_eq!(titles(&accented.body), ["Été à Paris"]);
    let none = app.get("/api/v1/chat/conversations?q=tokyo", "alice").await;
    assert_eq!(titles(&none.body), Vec::<&str>::new());
    assert_eq!(none.body["total"], 0);
}

#[tokio::test]
async fn a_search_pages_through_its_matches_and_counts_them_all() {
    let app = TestApp::spawn().await;
    for i in 1..=5 {
        app.create_conversation("alice", &format!("Notes {i}"))
            .await;
        app.create_conversation("alice", &format!("Other {i}"))
            .await;
    }
    let page = app
        .get(
            "/api/v1/chat/conversations?q=NOTES&limit=2&offset=1",
            "alice",
        )
        .await;
    assert_eq!(titles(&page.body), ["Notes 4", "Notes 3"]);
    assert_eq!(page.body["total"], 5);
    assert_eq!(page.body["limit"], 2);
    assert_eq!(page.body["offset"], 1);

    let everything = app.get("/api/v1/chat/conversations?q=%20", "alice").await;
    assert_eq!(everything.body["total"], 10, "a blank search lists all");
}

#[tokio::test]
async fn a_search_longer_than_any_title_is_refused() {
    let app = TestApp::spawn().await;
    let long = "x".repeat(256);
    let refused = app
        .get(&format!("/api/v1/chat/conversations?q={long}"), "alice")
        .await;
    refused.assert_problem(422);
    assert_eq!(
        refused.body["errors"][0]["loc"],
        serde_json::json!(["query", "q"])
    );
}
