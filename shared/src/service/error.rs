//! What a use case can fail with, in domain words; `crate::error` turns it into a response.

use crate::documents::DocumentError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Missing, or someone else's: the two are one answer.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The input breaks a rule of the domain; `input` is the path to the input that does
    /// (`["path", "message_id"]`), as validation errors name fields.
    #[error("invalid {input:?}: {message}")]
    Invalid {
        input: &'static [&'static str],
        message: String,
        kind: &'static str,
    },
    /// The entity is busy with something that must finish first.
    #[error("busy: {0}")]
    Busy(String),
    /// A file that cannot become a document.
    #[error(transparent)]
    Document(#[from] DocumentError),
    #[error(transparent)]
    Storage(StoreError),
}

impl ServiceError {
    /// The store's `NotFound` as this entity missing; other storage errors as they are.
    pub fn missing(entity: &'static str) -> impl Fn(StoreError) -> Self {
        move |err| match err {
            StoreError::NotFound => Self::NotFound(entity),
            other => Self::Storage(other),
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(err: StoreError) -> Self {
        Self::Storage(err)
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;
