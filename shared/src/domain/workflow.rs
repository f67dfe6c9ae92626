//! What a turn may do besides answering: retrieve documents, call tools, or both.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Workflow {
    Plain,
    Rag,
    Tools,
    Full,
}

impl Workflow {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Rag => "rag",
            Self::Tools => "tools",
            Self::Full => "full",
        }
    }
}
