//! Why a file cannot become a document, in the documents' own words.

#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    /// Not a kind of file documents are made from; says which kinds are.
    #[error("{0}")]
    Unsupported(String),
    /// Its text is longer than a document may be.
    #[error("{0}")]
    TooLarge(String),
    /// The file holds no text that can be read; says why.
    #[error("{0}")]
    Unreadable(String),
    /// The text would make more chunks than a document may have with these settings.
    #[error("{0}")]
    TooManyChunks(String),
}
