//! The embedded DynamoDB (dynoxide) that the local run and the tests use in place of AWS.
//! The API reaches it over HTTP with the real SDK, so there is one storage implementation.

use std::path::Path;

use anyhow::Context;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A DynamoDB-compatible endpoint on a random loopback port, stopped when dropped or shut down.
pub struct EmbeddedDynamoDb {
    endpoint: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl EmbeddedDynamoDb {
    /// Starts the emulator, in memory or persisting to the SQLite file at `path`.
    pub async fn start(path: Option<&Path>) -> anyhow::Result<Self> {
        let db = match path {
            Some(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                }
                dynoxide::Database::new(&path.to_string_lossy())
            }
            None => dynoxide::Database::memory(),
        }
        .map_err(|e| anyhow::anyhow!("starting the embedded DynamoDB: {e}"))?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = dynoxide::server::serve_with_shutdown(listener, db, async {
                let _ = stopped.await;
            })
            .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "embedded DynamoDB stopped");
            }
        });
        Ok(Self {
            endpoint,
            stop: Some(stop),
            task: Some(task),
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Stops accepting, lets running requests finish, and releases the database.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for EmbeddedDynamoDb {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
