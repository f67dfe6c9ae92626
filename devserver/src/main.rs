//! The whole API on one local port, over an embedded DynamoDB (or the one `DYNAMODB_ENDPOINT`
//! names), with the playground and the API reference: `cargo run --profile local -p devserver`.
//! It prints a ready token when it starts; `cargo run --profile local -p devserver -- token
//! <user-id>` prints one for another user.

use std::path::{Path, PathBuf};

use anyhow::Context;
use axum::serve::ListenerExt;
use devserver::{DEFAULT_USER, DEV_TOKEN_TTL};
use shared::config::{Config, Secret};
use shared::local::EmbeddedDynamoDb;
use shared::store::Store;

const DEFAULT_PORT: u16 = 8000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::logging::init_tracing();
    let data_dir = PathBuf::from(std::env::var("DATA_DIR").unwrap_or_else(|_| ".data".into()));
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => serve(&data_dir).await,
        [command, user_id] if command == "token" => {
            let secret = jwt_secret(&data_dir)?;
            println!(
                "{}",
                shared::auth::issue_token(&secret, user_id, DEV_TOKEN_TTL)
            );
            Ok(())
        }
        _ => anyhow::bail!("usage: devserver [token <user-id>]"),
    }
}

/// `JWT_SECRET` if set; otherwise a secret generated once and kept under the data directory,
/// so tokens from `devserver token` stay valid across restarts.
fn jwt_secret(data_dir: &Path) -> anyhow::Result<Secret> {
    if let Ok(secret) = std::env::var("JWT_SECRET") {
        return Ok(Secret::new(secret));
    }
    let path = data_dir.join("dev-jwt-secret");
    if let Ok(secret) = std::fs::read_to_string(&path) {
        return Ok(Secret::new(secret.trim()));
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let secret = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    std::fs::write(&path, &secret).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("Generated a development JWT secret in {}", path.display());
    Ok(Secret::new(secret))
}

async fn serve(data_dir: &Path) -> anyhow::Result<()> {
    let secret = jwt_secret(data_dir)?;
    let mut vars: std::collections::HashMap<String, String> = std::env::vars().collect();
    // Another DynamoDB (DynamoDB Local, LocalStack, moto, a real table) when one is named;
    // otherwise the embedded one, persisting under the data directory.
    let embedded = match vars
        .get("DYNAMODB_ENDPOINT")
        .filter(|e| !e.trim().is_empty())
    {
        Some(_) => None,
        None => {
            let dynamodb = EmbeddedDynamoDb::start(Some(&data_dir.join("dynamodb.sqlite"))).await?;
            vars.insert("DYNAMODB_ENDPOINT".into(), dynamodb.endpoint().to_owned());
            Some(dynamodb)
        }
    };
    vars.entry("TABLE_NAME".into())
        .or_insert_with(|| "chat".into());
    vars.insert("JWT_SECRET".into(), secret.expose().to_owned());
    vars.entry("CORS_ALLOW_ORIGINS".into())
        .or_insert_with(|| "*".into());
    let config = Config::from_vars(&vars)?;

    let store = Store::connect(&config).await;
    let endpoint = config.dynamodb_endpoint.as_deref().unwrap_or_default();
    let created = store
        .ensure_table()
        .await
        .with_context(|| format!("reaching table {} at {endpoint}", config.table_name))?;
    if created {
        eprintln!("Created table {} at {endpoint}", config.table_name);
    }
    let storage = match &embedded {
        Some(_) => format!("data in {}", data_dir.display()),
        None => format!("table {} at {endpoint}", config.table_name),
    };
    let state = shared::AppState::with_store(config, store)
        .context("the HTTP client could not be built")?;
    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port.parse().context("PORT must be a port number")?,
        Err(_) => DEFAULT_PORT,
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("binding 127.0.0.1:{port}"))?;
    let url = format!("http://{}", listener.local_addr()?);
    eprintln!("Chat API on {url} ({storage})");
    eprintln!("Playground: {url}/   API reference: {url}/docs");
    eprintln!(
        "Token for user '{DEFAULT_USER}' (valid {} days; another user's: \
         cargo run --profile local -p devserver -- token <user-id>):",
        DEV_TOKEN_TTL.as_secs() / 86_400
    );
    // On stdout alone, so that `TOKEN=$(... | head -1)` can take it.
    println!(
        "{}",
        shared::auth::issue_token(&secret, DEFAULT_USER, DEV_TOKEN_TTL)
    );
    // Streamed answers are many small writes; without TCP_NODELAY each waits for the client's
    // delayed ACK.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, devserver::app(state))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    if let Some(dynamodb) = embedded {
        dynamodb.shutdown().await;
    }
    Ok(())
}

/// Ctrl-C or SIGTERM: stop accepting, finish what is running, then close the database.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
