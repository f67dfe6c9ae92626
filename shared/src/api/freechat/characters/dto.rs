//! FreeChat's wire shapes of a character and its backends, with the limits each field obeys.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::{Backend, BackendSettings, Character, CharacterInfo, QuotaType, Visibility};
use crate::error::ServiceResult;
use crate::http::validate::Violations;
use crate::llm::Providers;

const MAX_NAME_CHARS: usize = 100;
const MAX_SHORT_TEXT_CHARS: usize = 4_000;
const MAX_LONG_TEXT_CHARS: usize = 32_000;
const MAX_URL_CHARS: usize = 2_048;
const MAX_TAGS: usize = 20;
const MAX_TAG_CHARS: usize = 50;
/// Chatter's own limit on `max_tokens` for one answer.
const MAX_ANSWER_TOKENS: i64 = 8_192;

/// A character to create, or the fields of one to change: absent fields keep their value,
/// an empty text clears it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = CharacterCreateDTO)]
pub struct CharacterInput {
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    pub visibility: Option<Visibility>,
    #[schema(max_length = 100)]
    pub parent_uid: Option<String>,
    #[schema(max_length = 4000)]
    pub description: Option<String>,
    #[schema(max_length = 100)]
    pub nickname: Option<String>,
    #[schema(max_length = 2048)]
    pub avatar: Option<String>,
    #[schema(max_length = 2048)]
    pub picture: Option<String>,
    /// `male` | `female` | `other`.
    #[schema(max_length = 100)]
    pub gender: Option<String>,
    #[schema(max_length = 32000)]
    pub profile: Option<String>,
    #[schema(max_length = 4000)]
    pub greeting: Option<String>,
    #[schema(max_length = 4000)]
    pub chat_style: Option<String>,
    #[schema(max_length = 32000)]
    pub chat_example: Option<String>,
    #[schema(max_length = 4000)]
    pub default_scene: Option<String>,
    /// `en` (the default) | `zh` | ...
    #[schema(max_length = 100)]
    pub lang: Option<String>,
    /// Anything the client keeps with the character, as JSON text.
    #[schema(max_length = 32000)]
    pub ext: Option<String>,
    #[schema(max_length = 32000)]
    pub draft: Option<String>,
    #[schema(max_items = 20)]
    pub tags: Option<Vec<String>>,
}

/// Replaces `field` unless `value` is absent; an empty text clears it.
fn set(field: &mut Option<String>, value: Option<String>) {
    if let Some(value) = value {
        *field = Some(value).filter(|v| !v.trim().is_empty());
    }
}

impl CharacterInput {
    fn validate(&self) -> ServiceResult<()> {
        let mut v = Violations::new();
        v.text(Some(&self.name), MAX_NAME_CHARS, &["body", "name"]);
        for (value, max, field) in [
            (&self.parent_uid, MAX_NAME_CHARS, "parentUid"),
            (&self.nickname, MAX_NAME_CHARS, "nickname"),
            (&self.gender, MAX_NAME_CHARS, "gender"),
            (&self.lang, MAX_NAME_CHARS, "lang"),
            (&self.avatar, MAX_URL_CHARS, "avatar"),
            (&self.picture, MAX_URL_CHARS, "picture"),
            (&self.description, MAX_SHORT_TEXT_CHARS, "description"),
            (&self.greeting, MAX_SHORT_TEXT_CHARS, "greeting"),
            (&self.chat_style, MAX_SHORT_TEXT_CHARS, "chatStyle"),
            (&self.default_scene, MAX_SHORT_TEXT_CHARS, "defaultScene"),
            (&self.profile, MAX_LONG_TEXT_CHARS, "profile"),
            (&self.chat_example, MAX_LONG_TEXT_CHARS, "chatExample"),
            (&self.ext, MAX_LONG_TEXT_CHARS, "ext"),
            (&self.draft, MAX_LONG_TEXT_CHARS, "draft"),
        ] {
            v.length(value.as_deref(), 0, max, &["body", field]);
        }
        if let Some(tags) = &self.tags {
            v.check(
                tags.len() <= MAX_TAGS,
                &["body", "tags"],
                format!("must have at most {MAX_TAGS} tags"),
                "too_long",
            );
            v.check(
                tags.iter()
                    .all(|t| (1..=MAX_TAG_CHARS).contains(&t.trim().chars().count())),
                &["body", "tags"],
                format!("each tag must have 1 to {MAX_TAG_CHARS} characters"),
                "string_too_long",
            );
        }
        v.finish()
    }

    /// Validates the input and writes it over `info`.
    pub(super) fn apply(self, info: &mut CharacterInfo) -> ServiceResult<()> {
        self.validate()?;
        info.name = self.name.trim().to_owned();
        if let Some(visibility) = self.visibility {
            info.visibility = visibility;
        }
        set(&mut info.parent_uid, self.parent_uid);
        set(&mut info.description, self.description);
        set(&mut info.nickname, self.nickname);
        set(&mut info.avatar, self.avatar);
        set(&mut info.picture, self.picture);
        set(&mut info.gender, self.gender);
        set(&mut info.profile, self.profile);
        set(&mut info.greeting, self.greeting);
        set(&mut info.chat_style, self.chat_style);
        set(&mut info.chat_example, self.chat_example);
        set(&mut info.default_scene, self.default_scene);
        set(&mut info.lang, self.lang);
        set(&mut info.ext, self.ext);
        set(&mut info.draft, self.draft);
        if let Some(tags) = self.tags {
            info.tags = tags.into_iter().map(|t| t.trim().to_owned()).collect();
        }
        Ok(())
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = CharacterSummaryDTO)]
pub struct CharacterSummaryDto {
    pub character_id: u64,
    pub character_uid: String,
    pub gmt_create: DateTime<Utc>,
    pub gmt_modified: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_uid: Option<String>,
    pub visibility: Visibility,
    pub version: u32,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nickname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avatar: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub picture: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gender: Option<String>,
    pub lang: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub greeting: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_scene: Option<String>,
    pub priority: i32,
    /// The owner's user id.
    pub username: String,
    pub tags: Vec<String>,
}

impl From<&Character> for CharacterSummaryDto {
    fn from(c: &Character) -> Self {
        let info = c.info.clone();
        Self {
            character_id: c.id,
            character_uid: c.uid.clone(),
            gmt_create: c.created_at,
            gmt_modified: c.modified_at,
            parent_uid: info.parent_uid,
            visibility: info.visibility,
            version: c.version,
            name: info.name,
            description: info.description,
            nickname: info.nickname,
            avatar: info.avatar,
            picture: info.picture,
            gender: info.gender,
            lang: info.lang.unwrap_or_else(|| "en".into()),
            greeting: info.greeting,
            default_scene: info.default_scene,
            priority: c.priority,
            username: c.owner.clone(),
            tags: info.tags,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = CharacterDetailsDTO)]
pub struct CharacterDetailsDto {
    #[serde(flatten)]
    pub summary: CharacterSummaryDto,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chat_style: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chat_example: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ext: Option<String>,
    /// The owner's working copy; only the owner sees it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub draft: Option<String>,
    pub backends: Vec<CharacterBackendDetailsDto>,
}

/// A backend to add, or the fields of one to change (absent fields keep their value). The
/// model is named directly instead of through FreeChat's prompt tasks, whose fields
/// (`chatPromptTaskId` and the like) are accepted and ignored.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = CharacterBackendDTO)]
pub struct BackendInput {
    pub is_default: Option<bool>,
    /// Messages of history in the prompt, 10 to 500 (default 50).
    #[schema(minimum = 10, maximum = 500)]
    pub message_window_size: Option<i64>,
    /// What a chat may use: replies or tokens, by `quotaType`.
    #[schema(minimum = 0)]
    pub init_quota: Option<i64>,
    pub quota_type: Option<QuotaType>,
    /// Minutes to wait for a proactive chat.
    #[schema(minimum = 0, maximum = 4_294_967_295_f64)]
    pub proactive_chat_waiting_time: Option<i64>,
    /// A configured provider (the deployment's default when absent).
    pub provider: Option<String>,
    /// The provider's default model when absent.
    #[schema(min_length = 1, max_length = 100)]
    pub model: Option<String>,
    #[schema(minimum = 0.0, maximum = 2.0)]
    pub temperature: Option<f64>,
    #[schema(minimum = 1, maximum = 8192)]
    pub max_tokens: Option<i64>,
}

impl BackendInput {
    /// Validates the input and writes it over `settings`.
    pub(super) fn apply(
        self,
        providers: &Providers,
        settings: &mut BackendSettings,
    ) -> ServiceResult<()> {
        let mut v = Violations::new();
        v.range(
            self.message_window_size,
            i64::from(BackendSettings::MIN_MESSAGE_WINDOW),
            i64::from(BackendSettings::MAX_MESSAGE_WINDOW),
            &["body", "messageWindowSize"],
        );
        v.range(self.init_quota, 0, i64::MAX, &["body", "initQuota"]);
        v.range(
            self.proactive_chat_waiting_time,
            0,
            i64::from(u32::MAX),
            &["body", "proactiveChatWaitingTime"],
        );
        v.temperature(self.temperature, &["body", "temperature"]);
        v.range(
            self.max_tokens,
            1,
            MAX_ANSWER_TOKENS,
            &["body", "maxTokens"],
        );
        v.length(self.model.as_deref(), 1, MAX_NAME_CHARS, &["body", "model"]);
        if let Some(name) = &self.provider {
            v.check(
                providers.get(Some(name)).is_some(),
                &["body", "provider"],
                format!("Unknown provider '{name}'."),
                "unknown_provider",
            );
        }
        v.finish()?;
        // The ranges above make these conversions exact.
        let narrow = |value: i64| u32::try_from(value).unwrap_or(u32::MAX);
        if let Some(size) = self.message_window_size {
            settings.message_window_size = narrow(size);
        }
        if let Some(quota) = self.init_quota {
            settings.init_quota = quota.unsigned_abs();
        }
        if let Some(kind) = self.quota_type {
            settings.quota_type = kind;
        }
        if let Some(minutes) = self.proactive_chat_waiting_time {
            settings.proactive_chat_waiting_time = narrow(minutes);
        }
        if self.provider.is_some() {
            settings.provider = self.provider;
        }
        if self.model.is_some() {
            settings.model = self.model;
        }
        if self.temperature.is_some() {
            settings.temperature = self.temperature;
        }
        if let Some(tokens) = self.max_tokens {
            settings.max_tokens = Some(narrow(tokens));
        }
        Ok(())
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = CharacterBackendDetailsDTO)]
pub struct CharacterBackendDetailsDto {
    pub backend_id: String,
    pub gmt_create: DateTime<Utc>,
    pub gmt_modified: DateTime<Utc>,
    pub character_uid: String,
    pub is_default: bool,
    pub message_window_size: u32,
    pub init_quota: u64,
    pub quota_type: QuotaType,
    pub proactive_chat_waiting_time: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
}

impl CharacterBackendDetailsDto {
    pub(super) fn of(character: &Character, backend: &Backend) -> Self {
        let s = backend.settings.clone();
        Self {
            backend_id: backend.id.clone(),
            gmt_create: backend.created_at,
            gmt_modified: backend.modified_at,
            character_uid: backend.character_uid.clone(),
            is_default: character.default_backend_id.as_deref() == Some(backend.id.as_str()),
            message_window_size: s.message_window_size,
            init_quota: s.init_quota,
            quota_type: s.quota_type,
            proactive_chat_waiting_time: s.proactive_chat_waiting_time,
            provider: s.provider,
            model: s.model,
            temperature: s.temperature,
            max_tokens: s.max_tokens,
        }
    }
}
