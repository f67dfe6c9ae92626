//! FreeChat's wire shapes of a chat session: what starting and updating one takes, and what
//! listing one and its memory usage answer.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::freechat::characters::CharacterSummaryDto;
use crate::api::freechat::{ChatMessageRecordDto, TokenUsageDto};
use crate::config::ProviderApi;
use crate::domain::{Backend, Character, ChatSession, QuotaType, Visibility};
use crate::error::ServiceResult;
use crate::http::extract::{MAX_ID_CHARS, is_id};
use crate::http::validate::Violations;
use crate::llm::Providers;
use crate::store::ChatRecord;

const MAX_NICKNAME_CHARS: usize = 100;
const MAX_TEXT_CHARS: usize = 4_000;
const MAX_EXT_CHARS: usize = 32_000;

/// How the user appears in a chat. FreeChat's `apiKeyName` and `apiKeyValue` are ignored:
/// a backend names its provider, whose key the deployment holds.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ChatCreateDTO)]
pub struct ChatCreateDto {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub character_uid: String,
    /// The character's default backend when absent.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub backend_id: Option<String>,
    #[schema(max_length = 100)]
    pub user_nickname: Option<String>,
    #[schema(max_length = 4000)]
    pub user_profile: Option<String>,
    #[schema(max_length = 100)]
    pub character_nickname: Option<String>,
    /// The scene of the chat.
    #[schema(max_length = 4000)]
    pub about: Option<String>,
    #[schema(max_length = 32000)]
    pub ext: Option<String>,
}

impl ChatCreateDto {
    pub(super) fn validate(&self) -> ServiceResult<()> {
        let mut v = Violations::new();
        // Ids are bounded as in a path, so an id that passes here cannot fail there.
        let id_rule = format!("must be 1 to {MAX_ID_CHARS} letters, digits, '-' or '_'");
        v.check(
            is_id(&self.character_uid),
            &["body", "characterUid"],
            &id_rule,
            "value_error",
        );
        v.check(
            self.backend_id.as_deref().is_none_or(is_id),
            &["body", "backendId"],
            &id_rule,
            "value_error",
        );
        for (value, max, field) in [
            (&self.user_nickname, MAX_NICKNAME_CHARS, "userNickname"),
            (
                &self.character_nickname,
                MAX_NICKNAME_CHARS,
                "characterNickname",
            ),
            (&self.user_profile, MAX_TEXT_CHARS, "userProfile"),
            (&self.about, MAX_TEXT_CHARS, "about"),
            (&self.ext, MAX_EXT_CHARS, "ext"),
        ] {
            v.length(value.as_deref(), 0, max, &["body", field]);
        }
        v.finish()
    }

    /// Writes the fields present over the session; an empty text clears one.
    pub(super) fn apply(self, session: &mut ChatSession) {
        let set = |field: &mut Option<String>, value: Option<String>| {
            if let Some(value) = value {
                *field = Some(value).filter(|v| !v.trim().is_empty());
            }
        };
        set(&mut session.user_nickname, self.user_nickname);
        set(&mut session.user_profile, self.user_profile);
        set(&mut session.character_nickname, self.character_nickname);
        set(&mut session.about, self.about);
        set(&mut session.ext, self.ext);
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ChatUpdateDTO)]
pub struct ChatUpdateDto {
    /// Must be the chat's character: a chat never changes character.
    #[serde(flatten)]
    pub chat: ChatCreateDto,
    /// When the user read the chat; chats list most recently read first.
    pub gmt_read: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ChatContextDTO)]
pub struct ChatContextDto {
    pub chat_id: String,
    pub gmt_create: DateTime<Utc>,
    pub gmt_modified: DateTime<Utc>,
    pub gmt_read: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_nickname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_profile: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub character_nickname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub about: Option<String>,
    pub backend_id: String,
    /// The backend's quota, counted in `quotaType` units.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota_type: Option<QuotaType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ext: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ChatSessionDTO)]
pub struct ChatSessionDto {
    pub context: ChatContextDto,
    pub character: CharacterSummaryDto,
    /// The kind of service the chat's model runs on, in FreeChat's terms: `open_ai`,
    /// `azure_open_ai`, `dash_scope`, `hugging_face`, or `unknown` for a provider this
    /// deployment no longer has.
    pub provider: &'static str,
    /// The newest message, or the character's greeting before there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_message_record: Option<ChatMessageRecordDto>,
    pub proactive_chat_waiting_time: u32,
    /// `online` (a public character), `invisible` (the caller's own private one) or
    /// `offline` (the backend is gone).
    pub sender_status: &'static str,
    /// Whether the caller owns the character, and so may list debug messages with `ext`.
    pub is_debug_enabled: bool,
    /// Always false: keys belong to the deployment's providers.
    pub is_customized_api_key_enabled: bool,
}

impl ChatSessionDto {
    pub(super) fn of(
        chat: &ChatRecord,
        character: &Character,
        backend: Option<&Backend>,
        latest: Option<ChatMessageRecordDto>,
        user_id: &str,
        provider: &'static str,
    ) -> Self {
        let conversation = chat.conversation();
        let session = chat.session.clone();
        let is_debug_enabled = character.is_owned_by(user_id);
        let sender_status = match (backend, character.info.visibility) {
            (None, _) => "offline",
            (Some(_), Visibility::Public) => "online",
            (Some(_), _) => "invisible",
        };
        Self {
            context: ChatContextDto {
                chat_id: conversation.id.clone(),
                gmt_create: conversation.created_at,
                gmt_modified: conversation.updated_at,
                gmt_read: session.read_at,
                user_nickname: session.user_nickname,
                user_profile: session.user_profile,
                character_nickname: session.character_nickname,
                about: session.about,
                backend_id: session.backend_id,
                quota: backend.map(|b| b.settings.init_quota),
                quota_type: backend.map(|b| b.settings.quota_type),
                ext: session.ext,
            },
            character: character.into(),
            provider,
            latest_message_record: latest,
            proactive_chat_waiting_time: backend
                .map_or(0, |b| b.settings.proactive_chat_waiting_time),
            sender_status,
            is_debug_enabled,
            is_customized_api_key_enabled: false,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = MemoryUsageDTO)]
pub struct MemoryUsageDto {
    /// The character's replies over the chat's whole life.
    pub message_usage: u64,
    pub token_usage: TokenUsageDto,
}

/// FreeChat's name for the kind of service behind a configured provider. An OpenAI-compatible
/// provider is `open_ai` unless its host is one of the services FreeChat names that also
/// serve that API.
pub(super) fn provider_kind(providers: &Providers, name: Option<&str>) -> &'static str {
    let Some(provider) = providers.get(name) else {
        return "unknown";
    };
    let ProviderApi::OpenAiCompatible { base_url, .. } = &provider.config.api else {
        // Bedrock is none of the kinds FreeChat names.
        return "unknown";
    };
    let host = reqwest::Url::parse(base_url)
        .ok()
        .and_then(|url| url.host_str().map(str::to_ascii_lowercase))
        .unwrap_or_default();
    if host.ends_with(".openai.azure.com") || host.ends_with(".azure-api.net") {
        "azure_open_ai"
    } else if host.starts_with("dashscope") && host.ends_with(".aliyuncs.com") {
        "dash_scope"
    } else if host == "huggingface.co" || host.ends_with(".huggingface.co") {
        "hugging_face"
    } else {
        "open_ai"
    }
}
