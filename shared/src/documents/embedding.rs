//! Embeddings through the configured provider's OpenAI-compatible `/embeddings` endpoint.

use std::sync::Arc;
use std::time::Duration;

use crate::AppState;
use crate::llm::{LlmError, Provider};

/// Inputs per `/embeddings` request: well within what OpenAI-compatible servers accept.
const BATCH_SIZE: usize = 64;
/// Requests in flight at once while embedding a document.
const CONCURRENT_REQUESTS: usize = 2;
/// Longest a document's embedding may take: processing runs inside the upload request, and
/// API Gateway ends a request at 30 s.
const DOCUMENT_BUDGET: Duration = Duration::from_secs(20);

/// The embedding model and the provider that serves it.
#[derive(Clone)]
pub struct Embedder {
    pub provider: Arc<Provider>,
    pub model: String,
}

/// Why a set of texts has no embeddings.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddingError {
    #[error(transparent)]
    Provider(#[from] LlmError),
    #[error("embedding took longer than {0:?}")]
    OutOfTime(Duration),
    #[error("the provider returned unusable vectors: {0}")]
    Malformed(String),
}

impl EmbeddingError {
    /// What a document's `processing_error` may say: never a provider's credentials or body.
    pub fn client_message(&self) -> String {
        match self {
            Self::Provider(e) => e.client_message(),
            other => format!("{other}."),
        }
    }
}

impl Embedder {
    /// The configured embedder: `EMBEDDING_MODEL` on `EMBEDDING_PROVIDER` (else the default
    /// provider). `None` without a model; retrieval then ranks lexically.
    pub fn from_state(state: &AppState) -> Option<Self> {
        let llm = &state.config.llm;
        let model = llm.embedding_model.clone()?;
        match state.llm.get(llm.embedding_provider.as_deref()) {
            Some(provider) => Some(Self { provider, model }),
            None => {
                tracing::warn!(
                    provider = ?llm.embedding_provider,
                    "EMBEDDING_PROVIDER names no configured provider; ranking lexically"
                );
                None
            }
        }
    }

    /// One vector per text, in order, all of one non-zero dimension.
    pub async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbeddingError> {
        let all = async {
            let mut vectors = Vec::with_capacity(texts.len());
            // A few requests at a time, in order.
            for group in texts.chunks(BATCH_SIZE * CONCURRENT_REQUESTS) {
                let batches = group
                    .chunks(BATCH_SIZE)
                    .map(|batch| self.provider.client.embed(&self.model, batch));
                for batch in futures_util::future::try_join_all(batches).await? {
                    vectors.extend(batch);
                }
            }
            Ok::<_, LlmError>(vectors)
        };
        let vectors = tokio::time::timeout(DOCUMENT_BUDGET, all)
            .await
            .map_err(|_| EmbeddingError::OutOfTime(DOCUMENT_BUDGET))??;
        let dimension = vectors.first().map_or(0, Vec::len);
        if vectors.len() != texts.len() {
            return Err(EmbeddingError::Malformed(format!(
                "{} vectors for {} texts",
                vectors.len(),
                texts.len()
            )));
        }
        if !texts.is_empty() && (dimension == 0 || vectors.iter().any(|v| v.len() != dimension)) {
            return Err(EmbeddingError::Malformed(
                "the vectors are empty or differ in dimension".into(),
            ));
        }
        Ok(vectors)
    }
}

/// Cosine similarity, in 0..=1 (opposed vectors score 0, as unrelated ones do); 0 when the
/// dimensions differ or a vector is all zeros.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    if a.len() != b.len() {
        return 0.0;
    }
    let (mut dot, mut norm_a, mut norm_b) = (0.0_f64, 0.0_f64, 0.0_f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        norm_a += x * x;
        norm_b += y * y;
    }
    if norm_a == 0.0 || norm_b == 0.0 {
        return 0.0;
    }
    (dot / (norm_a.sqrt() * norm_b.sqrt())).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::cosine;

    #[test]
    fn cosine_is_one_for_the_same_direction_and_zero_for_orthogonal_or_opposed() {
        assert!((cosine(&[1.0, 2.0], &[2.0, 4.0]) - 1.0).abs() < 1e-9);
        assert_eq!(cosine(&[1.0, 0.0], &[0.0, 1.0]), 0.0);
        assert_eq!(cosine(&[1.0, 0.0], &[-1.0, 0.0]), 0.0);
        assert_eq!(cosine(&[1.0], &[1.0, 0.0]), 0.0);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
        let c = cosine(&[1.0, 1.0], &[1.0, 0.0]);
        assert!((c - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-6);
    }
}
