//! The playground in a real browser: Debian's Chromium, headless, driven through chromedriver.
//! The test installs both with apt-get when they are missing (CI runs as root).

mod support;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use api_tests::{FakeLlm, Script};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use support::{DataDir, Devserver};

/// The user the page mints its token for, unless told another.
const DEFAULT_USER: &str = "dev";

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Installs Debian's chromium and chromium-driver unless both are there: once, whichever test
/// comes first, since the tests run in parallel and apt takes one lock at a time.
fn install_chromium() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(install_chromium_now);
}

fn install_chromium_now() {
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        return;
    }
    let apt = |args: &[&str]| {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .expect("apt-get runs");
        assert!(status.success(), "apt-get {args:?} failed (it needs root)");
    };
    apt(&["update", "-qq"]);
    apt(&[
        "install",
        "-y",
        "-qq",
        "--no-install-recommends",
        "chromium",
        "chromium-driver",
    ]);
}

/// chromedriver on a free loopback port, killed when dropped.
struct ChromeDriver {
    child: Child,
    url: String,
}

impl ChromeDriver {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        // Its own process group, so that the browsers it starts go with it (see `drop`).
        let child = Command::new(CHROMEDRIVER)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while reqwest::get(format!("{url}/status")).await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self { child, url }
    }
}

impl Drop for ChromeDriver {
    /// Kills chromedriver's process group: the browser too, also when a test failed before
    /// closing its session.
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// Where the browser saves downloads, inside its profile.
fn downloads(profile: &Path) -> std::path::PathBuf {
    profile.join("downloads")
}

/// A headless Chromium session with a fresh profile, which nothing outside loopback reaches.
async fn browser(driver: &ChromeDriver, profile: &Path) -> Client {
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1200,900",
    ]
    .iter()
    .map(ToString::to_string)
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect::<Vec<_>>();
    let prefs = json!({
        "download.default_directory": downloads(profile),
        "download.prompt_for_download": false,
    });
    let capabilities =
        json!({"goog:chromeOptions": {"binary": CHROMIUM, "args": args, "prefs": prefs}});
    let serde_json::Value::Object(capabilities) = capabilities else {
        unreachable!()
    };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

async fn text_of(client: &Client, css: &str) -> String {
    match client.find(Locator::Css(css)).await {
        Ok(element) => element.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Waits until `css` shows `expected`, failing after 15 s with what it showed.
async fn wait_for_text(client: &Client, css: &str, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let shown = text_of(client, css).await;
        if shown.contains(expected) {
            return;
        }
        if Instant::now() >= deadline {
            screenshot(client, "timed-out").await;
            panic!("{css} shows {shown:?}, not {expected:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Saves what the browser shows when `SCREENSHOTS` names a folder (to look at the page).
async fn screenshot(client: &Client, name: &str) {
    if let Ok(folder) = std::env::var("SCREENSHOTS") {
        let png = client.screenshot().await.expect("a screenshot");
        std::fs::write(Path::new(&folder).join(format!("{name}.png")), png).unwrap();
    }
}

/// Everything a browser test runs against, stopped when dropped: the fake model, the local
/// run, chromedriver, and a Chromium session on the playground with a minted token.
struct Playground {
    fake: FakeLlm,
    client: Client,
    _driver: ChromeDriver,
    server: Devserver,
    /// The local run's data and the browser's profile.
    dirs: (DataDir, DataDir),
}

impl Playground {
    async fn open() -> Self {
        install_chromium();
        shared::install_crypto_provider();
        let fake = FakeLlm::start().await;
        let data = DataDir::new("playground");
        let profile = DataDir::new("chromium-profile");
        // The fake's embeddings rank document passages, as a deployment's model would.
        let server = Devserver::start(
            &data.0,
            &[
                ("LLM_BASE_URL", &fake.base_url),
                ("EMBEDDING_MODEL", "fake-embed"),
            ],
        );
        let driver = ChromeDriver::start().await;
        let client = browser(&driver, &profile.0).await;
        client.goto(&format!("{}/", server.url)).await.unwrap();
        client
            .find(Locator::Id("mint-token"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_for_text(&client, "#status", "Connected").await;
        Self {
            fake,
            client,
            _driver: driver,
            server,
            dirs: (data, profile),
        }
    }

    /// What the API answers `path` for the user whose token the page minted.
    async fn api_get(&self, path: &str) -> serde_json::Value {
        let reply = reqwest::Client::new()
            .get(format!("{}{path}", self.server.url))
            .bearer_auth(support::token(DEFAULT_USER))
            .send()
            .await
            .unwrap();
        assert!(reply.status().is_success(), "{path}: {}", reply.status());
        reply.json().await.unwrap()
    }

    /// Sends `text` from the composer and waits for the answer the fake model gives.
    async fn ask(&self, text: &str, answer: &str) {
        self.fake.push(Script::reply(answer));
        self.type_into("message", text).await;
        self.click("send").await;
        wait_for_text(&self.client, "#status", "Answered").await;
    }

    /// Presses the button `css` finds from the keyboard: focused, then Enter.
    async fn press(&self, css: &str) {
        let button = self.client.find(Locator::Css(css)).await.unwrap();
        button.send_keys("\u{E007}").await.unwrap();
    }

    async fn click(&self, id: &str) {
        self.client
            .find(Locator::Id(id))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    async fn type_into(&self, id: &str, text: &str) {
        let field = self.client.find(Locator::Id(id)).await.unwrap();
        field.send_keys(text).await.unwrap();
    }
}

#[tokio::test]
async fn a_message_sent_from_the_playground_is_answered_token_by_token() {
    let playground = Playground::open().await;
    let (fake, client) = (&playground.fake, &playground.client);

    let answer = "The answer arrives one word after another, as it is generated.";
    fake.push(Script::slow_reply(answer, Duration::from_millis(150)));
    let message = client.find(Locator::Id("message")).await.unwrap();
    message
        .send_keys("Tell me how answers arrive")
        .await
        .unwrap();
    message.send_keys("\u{E007}").await.unwrap(); // Enter sends.

    // Every different text the answer shows until it is whole.
    let mut seen: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while seen.last().map(String::as_str) != Some(answer) {
        assert!(Instant::now() < deadline, "the answer stopped at {seen:?}");
        let shown = text_of(client, "#messages li.assistant .text").await;
        if !shown.is_empty() && seen.last() != Some(&shown) {
            seen.push(shown);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    screenshot(client, "playground-answered").await;
    assert!(
        seen.len() >= 4,
        "the answer appeared in {} step(s): {seen:?}",
        seen.len()
    );
    assert!(
        seen.windows(2).all(|w| w[1].starts_with(&w[0])),
        "each step extends the last: {seen:?}"
    );

    // The new conversation is listed, titled from the message.
    wait_for_text(client, "#conversations", "Tell me how answers arrive").await;

    // The API reference renders from the served document with nothing but loopback.
    client
        .find(Locator::LinkText("API reference"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_text(client, ".swagger-ui", "/api/v1/chat/streaming").await;
    screenshot(client, "docs").await;
    client.clone().close().await.unwrap();
}

#[tokio::test]
async fn a_character_made_in_the_playground_greets_and_answers_as_a_stream() {
    let playground = Playground::open().await;
    let client = &playground.client;
    playground.click("tab-freechat").await;
    playground.type_into("character-name", "Jack").await;
    playground
        .type_into("character-profile", "A sailor of the northern seas.")
        .await;
    playground
        .type_into("character-greeting", "Ahoy there!")
        .await;
    client
        .find(Locator::Css("#new-character button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_text(client, "#chat-title", "Chat with Jack").await;
    wait_for_text(client, "#messages", "Ahoy there!").await;
    wait_for_text(client, "#chats", "Jack").await;
    let chatter_options = client.find(Locator::Id("chatter-options")).await.unwrap();
    assert!(
        !chatter_options.is_displayed().await.unwrap(),
        "Chatter's workflow and template are not offered for a character"
    );

    let answer = "Fair winds and following seas to you.";
    playground
        .fake
        .push(Script::slow_reply(answer, Duration::from_millis(100)));
    playground.type_into("message", "Good morning").await;
    playground.click("send").await;
    wait_for_text(client, "#messages li:last-child .text", answer).await;
    wait_for_text(client, "#status", "Answered").await;
    screenshot(client, "playground-character").await;
    client.clone().close().await.unwrap();
}

#[tokio::test]
async fn an_answer_from_an_uploaded_document_lists_its_sources() {
    let playground = Playground::open().await;
    let client = &playground.client;
    let folder = DataDir::new("upload");
    std::fs::create_dir_all(&folder.0).unwrap();
    let notes = folder.0.join("lighthouse-notes.txt");
    std::fs::write(&notes, "Agnes Thorne keeps the lighthouse of Skerry Point").unwrap();

    playground
        .type_into("document-file", notes.to_str().unwrap())
        .await;
    client
        .find(Locator::Css("#upload button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_text(client, "#documents", "lighthouse-notes.txt").await;
    wait_for_text(client, "#status", "Uploaded").await;

    playground
        .fake
        .push(Script::reply("Agnes Thorne keeps it [1]."));
    playground
        .type_into("message", "who keeps the lighthouse of Skerry Point")
        .await;
    playground.click("send").await;
    wait_for_text(client, "#messages .sources", "lighthouse-notes.txt").await;
    screenshot(client, "playground-sources").await;
    client.clone().close().await.unwrap();
}

#[tokio::test]
async fn an_answer_rated_in_the_playground_is_stored_with_its_rating() {
    let playground = Playground::open().await;
    let client = &playground.client;
    playground.ask("What is 2 + 2?", "Four.").await;

    let good = r#"#messages li.assistant button[aria-label="Good answer"]"#;
    playground.press(good).await;
    wait_for_text(client, "#status", "Rated up").await;
    let listed = playground.api_get("/api/v1/chat/conversations").await;
    let id = listed["conversations"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let messages_path = format!("/api/v1/chat/conversations/{id}/messages");
    let messages = playground.api_get(&messages_path).await;
    assert_eq!(messages[1]["feedback"]["rating"], "up", "{messages}");

    // Opened again, the answer shows the stored rating; pressed again, it is withdrawn.
    playground.click("tab-freechat").await;
    playground.click("tab-chatter").await;
    let pressed = format!(r#"{good}[aria-pressed="true"]"#);
    wait_for_text(client, &pressed, "Good").await;
    screenshot(client, "playground-rated").await;
    playground.press(good).await;
    wait_for_text(client, "#status", "Rating withdrawn").await;
    let messages = playground.api_get(&messages_path).await;
    assert!(messages[1].get("feedback").is_none(), "{messages}");
    client.clone().close().await.unwrap();
}

#[tokio::test]
async fn a_conversation_exported_from_the_playground_downloads_and_imports_again() {
    let playground = Playground::open().await;
    let client = &playground.client;
    playground
        .ask("Tell me about lighthouses", "They guide ships.")
        .await;
    wait_for_text(client, "#conversations", "Tell me about lighthouses").await;

    playground
        .press(r#"#conversations button[aria-label="Export Tell me about lighthouses"]"#)
        .await;
    wait_for_text(client, "#status", "Exported Tell_me_about_lighthouses.json").await;
    let file = downloads(&playground.dirs.1.0).join("Tell_me_about_lighthouses.json");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !file.exists() {
        assert!(Instant::now() < deadline, "nothing was saved as {file:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let contents: Vec<&str> = saved["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["Tell me about lighthouses", "They guide ships."]);

    playground
        .type_into("import-file", file.to_str().unwrap())
        .await;
    client
        .find(Locator::Css("#import button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_text(client, "#status", "Imported").await;
    wait_for_text(client, "#messages", "They guide ships.").await;
    let listed = playground.api_get("/api/v1/chat/conversations").await;
    assert_eq!(listed["total"], 2, "{listed}");
    screenshot(client, "playground-imported").await;
    client.clone().close().await.unwrap();
}

/// A long answer, a word every 150 ms: time enough to act while it is written.
fn long_answer() -> String {
    (1..=60).map(|i| format!("word{i} ")).collect()
}

impl Playground {
    /// The id of the conversation the page made, the newest one listed.
    async fn newest_conversation(&self) -> String {
        let listed = self.api_get("/api/v1/chat/conversations").await;
        listed["conversations"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Waits until the answer being written shows at least a few words.
    async fn wait_for_words(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let shown = text_of(&self.client, "#messages li.assistant .text").await;
            if shown.split_whitespace().count() >= 3 {
                return shown;
            }
            assert!(Instant::now() < deadline, "no answer came: {shown:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn a_long_answer_stopped_from_the_playground_keeps_what_was_said() {
    let playground = Playground::open().await;
    let client = &playground.client;
    let answer = long_answer();
    playground
        .fake
        .push(Script::slow_reply(&answer, Duration::from_millis(150)));
    playground.type_into("message", "Talk for a while").await;
    playground.click("send").await;
    playground.wait_for_words().await;

    playground.press("#stop").await;

    wait_for_text(client, "#status", "Stopped").await;
    let id = playground.newest_conversation().await;
    let messages = playground
        .api_get(&format!("/api/v1/chat/conversations/{id}/messages"))
        .await;
    assert_eq!(messages[1]["finish_reason"], "cancelled", "{messages}");
    let kept = messages[1]["content"].as_str().unwrap();
    assert!(!kept.is_empty() && answer.starts_with(kept) && kept.len() < answer.len());
    screenshot(client, "playground-stopped").await;
    client.clone().close().await.unwrap();
}

#[tokio::test]
async fn a_page_reloaded_mid_answer_resumes_the_stream_to_its_end() {
    let playground = Playground::open().await;
    let client = &playground.client;
    let answer = long_answer();
    playground
        .fake
        .push(Script::slow_reply(&answer, Duration::from_millis(150)));
    playground.type_into("message", "Talk for a while").await;
    playground.click("send").await;
    playground.wait_for_words().await;

    client.refresh().await.unwrap();

    // The reloaded page follows the running answer: it grows again, then is whole.
    let mut seen: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.last().map(|s| s.trim()) != Some(answer.trim()) {
        assert!(Instant::now() < deadline, "the answer stopped at {seen:?}");
        let shown = text_of(client, "#messages li.assistant .text").await;
        if !shown.is_empty() && seen.last() != Some(&shown) {
            seen.push(shown);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen.len() >= 3, "the resumed answer came in {seen:?}");
    screenshot(client, "playground-resumed").await;
    client.clone().close().await.unwrap();
}

#[tokio::test]
async fn a_regenerated_answer_is_a_second_version_to_switch_back_from() {
    let playground = Playground::open().await;
    let client = &playground.client;
    playground.ask("Name a colour", "Blue.").await;
    playground.fake.push(Script::reply("Red."));

    playground
        .press(r#"#messages li.assistant button[aria-label="Regenerate this answer"]"#)
        .await;

    wait_for_text(client, "#messages li.assistant .version", "2/2").await;
    wait_for_text(client, "#messages li.assistant .text", "Red.").await;
    playground
        .press(r#"#messages li.assistant button[aria-label="Previous version"]"#)
        .await;
    wait_for_text(client, "#messages li.assistant .version", "1/2").await;
    wait_for_text(client, "#messages li.assistant .text", "Blue.").await;
    let id = playground.newest_conversation().await;
    let conversation = playground
        .api_get(&format!("/api/v1/chat/conversations/{id}"))
        .await;
    let messages = playground
        .api_get(&format!("/api/v1/chat/conversations/{id}/messages"))
        .await;
    assert_eq!(conversation["active_message_id"], messages[1]["id"]);
    assert_eq!(messages[1]["content"], "Blue.");
    screenshot(client, "playground-branches").await;
    client.clone().close().await.unwrap();
}

#[tokio::test]
async fn an_edited_question_is_a_second_version_with_its_own_answer() {
    let playground = Playground::open().await;
    let client = &playground.client;
    playground.ask("Name a colour", "Blue.").await;
    playground.fake.push(Script::reply("Pear."));

    client
        .find(Locator::Css(
            r#"#messages li.user button[aria-label="Edit this message"]"#,
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client.send_alert_text("Name a fruit").await.unwrap();
    client.accept_alert().await.unwrap();

    wait_for_text(client, "#messages li.user .version", "2/2").await;
    wait_for_text(client, "#messages li.user .text", "Name a fruit").await;
    wait_for_text(client, "#messages li.assistant .text", "Pear.").await;
    let id = playground.newest_conversation().await;
    let every = playground
        .api_get(&format!(
            "/api/v1/chat/conversations/{id}/messages?branch=all"
        ))
        .await;
    let contents: Vec<&str> = every
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        contents,
        ["Name a colour", "Blue.", "Name a fruit", "Pear."]
    );
    assert_eq!(
        every[2]["parent_id"],
        serde_json::Value::Null,
        "a sibling of the first question"
    );
    client.clone().close().await.unwrap();
}
