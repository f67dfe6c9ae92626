//! FreeChat's chat sessions. A session is a conversation: these are the fields FreeChat adds
//! to it, and the lifetime usage its quotas count.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    Backend, BackendSettings, Character, Conversation, Message, MessageRole, Persona, QuotaType,
};

/// Who talks to which character through which backend, and how they present themselves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatSession {
    pub character_uid: String,
    pub backend_id: String,
    pub user_nickname: Option<String>,
    pub user_profile: Option<String>,
    pub character_nickname: Option<String>,
    pub about: Option<String>,
    pub ext: Option<String>,
    /// When the user last read the chat (FreeChat's `gmtRead`); chats list by it.
    pub read_at: DateTime<Utc>,
}

impl ChatSession {
    pub fn persona<'a>(&'a self, context: Option<&'a str>) -> Persona<'a> {
        Persona {
            character_nickname: self.character_nickname.as_deref(),
            user_nickname: self.user_nickname.as_deref(),
            user_profile: self.user_profile.as_deref(),
            about: self.about.as_deref(),
            context,
        }
    }
}

/// What a chat's turns need from its character and backend, kept on the chat's item so that
/// the one read of the chat finds it: the character's prompt fields (name, nickname,
/// description, profile, chat style, example, greeting, default scene, language), its owner
/// and visibility, and the backend's settings (window, quota, provider, model, sampling), each
/// with the `modified_at` of the item it was copied from. It stays true because every
/// question stored in the chat checks, in the same transaction, that both items still have
/// those `modified_at`; a turn that finds them changed is run again on a fresh snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatSnapshot {
    pub character: Character,
    pub backend: Backend,
}

impl ChatSnapshot {
    /// The snapshot of a chat's character and backend, without what no turn reads (pictures,
    /// drafts, tags, the parent, the free-form extension, the default backend).
    pub fn of(character: &Character, backend: &Backend) -> Self {
        let mut character = character.clone();
        character.default_backend_id = None;
        let info = &mut character.info;
        (
            info.avatar,
            info.picture,
            info.draft,
            info.ext,
            info.parent_uid,
        ) = (None, None, None, None, None);
        info.tags.clear();
        Self {
            character,
            backend: backend.clone(),
        }
    }

    /// Whether both are the versions `other` has (what a question's transaction checks).
    pub fn same_versions(&self, other: &Self) -> bool {
        fn version(s: &ChatSnapshot) -> (&str, DateTime<Utc>, &str, DateTime<Utc>) {
            let (character, backend) = (&s.character, &s.backend);
            (
                &character.uid,
                character.modified_at,
                &backend.id,
                backend.modified_at,
            )
        }
        version(self) == version(other)
    }

    /// Whether it is of the character and backend this session talks to.
    pub fn is_of(&self, session: &ChatSession) -> bool {
        self.character.uid == session.character_uid && self.backend.id == session.backend_id
    }
}

/// What a conversation has consumed over its whole life. Deleting, rolling back or clearing
/// messages never lowers it, so a quota cannot be reset by editing the history.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifetimeUsage {
    /// The model's answers.
    pub replies: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl LifetimeUsage {
    /// What these messages add: the model's answers and the tokens they took.
    pub fn of(messages: &[Message]) -> Self {
        messages
            .iter()
            .filter(|m| m.role == MessageRole::Assistant && !m.is_streaming())
            .fold(Self::default(), |usage, m| Self {
                replies: usage.replies + 1,
                input_tokens: usage.input_tokens + u64::from(m.prompt_tokens.unwrap_or(0)),
                output_tokens: usage.output_tokens + u64::from(m.completion_tokens.unwrap_or(0)),
            })
    }

    pub fn total_tokens(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }

    /// The usage (counting what running turns hold) and the limit when the backend's quota
    /// is used up.
    pub fn exhausts(&self, backend: &BackendSettings, held: QuotaHold) -> Option<(u64, u64)> {
        let used = match backend.quota_type {
            QuotaType::Messages => self.replies + held.replies,
            QuotaType::Tokens => self.total_tokens() + held.tokens,
            QuotaType::None => return None,
        };
        (used >= backend.init_quota).then_some((used, backend.init_quota))
    }
}

/// What a turn holds of its chat's quota from its admission until its answer is stored (or
/// it fails without one): one reply, and the tokens of the user's message. Turns running in
/// parallel count each other's holds, so together they cannot pass a quota that each of
/// them alone would have.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaHold {
    pub replies: u64,
    pub tokens: u64,
}

/// A turn's claim on its chat's quota: admitted only while the chat's usage and what other
/// running turns hold leave room under the backend's limit.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaClaim {
    pub quota: BackendSettings,
    pub hold: QuotaHold,
    /// By when the turn has ended, whatever happened to it: past this, its hold no longer
    /// counts, so a turn whose function died cannot keep quota forever.
    pub expires_at: DateTime<Utc>,
}

impl QuotaClaim {
    /// The claim of a turn that sends `message_tokens` to a chat on `backend`; none when the
    /// backend has no quota.
    pub fn of(
        backend: &BackendSettings,
        message_tokens: u64,
        expires_at: DateTime<Utc>,
    ) -> Option<Self> {
        (backend.quota_type != QuotaType::None).then(|| Self {
            quota: backend.clone(),
            hold: QuotaHold {
                replies: 1,
                tokens: message_tokens,
            },
            expires_at,
        })
    }
}

/// The settings a chat's conversation carries from its character and backend, so that a
/// Chatter turn in the same conversation speaks as the character with the same model.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatSettings {
    pub system_prompt: String,
    pub provider: String,
    pub model: String,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u32>,
}

impl ChatSettings {
    pub fn differ_from(&self, conversation: &Conversation) -> bool {
        conversation.system_prompt.as_deref() != Some(self.system_prompt.as_str())
            || conversation.llm_provider.as_deref() != Some(self.provider.as_str())
            || conversation.llm_model.as_deref() != Some(self.model.as_str())
            || conversation.temperature != self.temperature
            || conversation.max_tokens != self.max_tokens
    }

    /// The conversation as it is once these settings are saved on it.
    pub fn apply_to(&self, conversation: &mut Conversation) {
        conversation.system_prompt = Some(self.system_prompt.clone());
        conversation.llm_provider = Some(self.provider.clone());
        conversation.llm_model = Some(self.model.clone());
        conversation.temperature = self.temperature;
        conversation.max_tokens = self.max_tokens;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(quota_type: QuotaType, init_quota: u64) -> BackendSettings {
        BackendSettings {
            quota_type,
            init_quota,
            ..Default::default()
        }
    }

    #[test]
    fn a_quota_is_used_up_once_usage_reaches_it() {
        let usage = LifetimeUsage {
            replies: 2,
            input_tokens: 30,
            output_tokens: 10,
        };
        let none = QuotaHold::default();
        assert_eq!(usage.exhausts(&backend(QuotaType::Messages, 3), none), None);
        assert_eq!(
            usage.exhausts(&backend(QuotaType::Messages, 2), none),
            Some((2, 2))
        );
        assert_eq!(usage.exhausts(&backend(QuotaType::Tokens, 41), none), None);
        assert_eq!(
            usage.exhausts(&backend(QuotaType::Tokens, 40), none),
            Some((40, 40))
        );
        assert_eq!(usage.exhausts(&backend(QuotaType::None, 0), none), None);
    }

    #[test]
    fn what_running_turns_hold_counts_against_the_quota() {
        let usage = LifetimeUsage {
            replies: 1,
            input_tokens: 10,
            output_tokens: 5,
        };
        let held = QuotaHold {
            replies: 2,
            tokens: 20,
        };
        assert_eq!(
            usage.exhausts(&backend(QuotaType::Messages, 3), held),
            Some((3, 3))
        );
        assert_eq!(usage.exhausts(&backend(QuotaType::Messages, 4), held), None);
        assert_eq!(
            usage.exhausts(&backend(QuotaType::Tokens, 35), held),
            Some((35, 35))
        );
        assert_eq!(usage.exhausts(&backend(QuotaType::Tokens, 36), held), None);
    }
}
