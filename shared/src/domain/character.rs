//! FreeChat's characters, the backends that give them a model, and the system prompt a
//! character speaks from.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Who may see a character. Only `public` opens it to other users; `public_org` and `hidden`
/// are kept as FreeChat clients send them and behave as `private`, as there are no
/// organisations here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    #[default]
    Private,
    Public,
    PublicOrg,
    Hidden,
}

/// What a chat's usage is limited by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum QuotaType {
    /// The character's replies.
    Messages,
    /// The tokens of every exchange, prompt and answer.
    Tokens,
    #[default]
    None,
}

/// The fields of a character its owner writes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CharacterInfo {
    pub visibility: Visibility,
    pub parent_uid: Option<String>,
    pub name: String,
    pub description: Option<String>,
    pub nickname: Option<String>,
    pub avatar: Option<String>,
    pub picture: Option<String>,
    pub gender: Option<String>,
    pub profile: Option<String>,
    pub greeting: Option<String>,
    pub chat_style: Option<String>,
    pub chat_example: Option<String>,
    pub default_scene: Option<String>,
    pub lang: Option<String>,
    pub ext: Option<String>,
    pub draft: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Character {
    /// Immutable identifier (UUIDv7).
    pub uid: String,
    /// FreeChat's numeric identifier, allocated from a counter.
    pub id: u64,
    pub owner: String,
    pub version: u32,
    pub priority: i32,
    #[serde(flatten)]
    pub info: CharacterInfo,
    /// The backend a chat gets when it names none; kept here, on one item, so that there is
    /// only ever one. Left out when absent, so that the store can set it if it is missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_backend_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub modified_at: DateTime<Utc>,
}

/// Who speaks with whom in a chat, as the character's system prompt names them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Persona<'a> {
    /// What the character is called in this chat (its nickname or name otherwise).
    pub character_nickname: Option<&'a str>,
    pub user_nickname: Option<&'a str>,
    pub user_profile: Option<&'a str>,
    /// The scene of the chat (the character's default scene otherwise).
    pub about: Option<&'a str>,
    /// Information for this exchange only (FreeChat's per-message `context`).
    pub context: Option<&'a str>,
}

/// A present, non-blank text.
fn text(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

impl Character {
    pub const INITIAL_VERSION: u32 = 1;
    pub const DEFAULT_PRIORITY: i32 = 1;

    pub fn create(owner: &str, id: u64, info: CharacterInfo) -> Self {
        let now = super::now();
        Self {
            uid: super::new_id(),
            id,
            owner: owner.to_owned(),
            version: Self::INITIAL_VERSION,
            priority: Self::DEFAULT_PRIORITY,
            info,
            default_backend_id: None,
            created_at: now,
            modified_at: now,
        }
    }

    pub fn is_owned_by(&self, user_id: &str) -> bool {
        self.owner == user_id
    }

    /// Private characters exist only for their owner.
    pub fn is_visible_to(&self, user_id: &str) -> bool {
        self.is_owned_by(user_id) || self.info.visibility == Visibility::Public
    }

    /// The name the character goes by, without a chat's nickname for it.
    pub fn display_name(&self) -> &str {
        text(self.info.nickname.as_deref()).unwrap_or(&self.info.name)
    }

    /// The character's system prompt: who it is, how it speaks, the scene and whom it talks to.
    /// Empty parts are left out.
    pub fn system_prompt(&self, persona: &Persona<'_>) -> String {
        let info = &self.info;
        let name = text(persona.character_nickname).unwrap_or(self.display_name());
        let mut prompt = format!(
            "You are {name}. Stay in character and answer as {name} would, in the first person."
        );
        let mut section = |title: &str, body: Option<&str>| {
            if let Some(body) = text(body) {
                prompt.push_str(&format!("\n\n## {title}\n{body}"));
            }
        };
        section("Description", info.description.as_deref());
        section("Profile", info.profile.as_deref());
        section("Chat style", info.chat_style.as_deref());
        section("Example dialogue", info.chat_example.as_deref());
        section("Your greeting", info.greeting.as_deref());
        section(
            "Scene",
            text(persona.about).or(text(info.default_scene.as_deref())),
        );
        let user = match (text(persona.user_nickname), text(persona.user_profile)) {
            (None, None) => None,
            (Some(nickname), None) => Some(format!("You are talking with {nickname}.")),
            (None, Some(profile)) => Some(profile.to_owned()),
            (Some(nickname), Some(profile)) => {
                Some(format!("You are talking with {nickname}.\n{profile}"))
            }
        };
        section("The user", user.as_deref());
        section("Relevant information", persona.context);
        if let Some(lang) = text(info.lang.as_deref()).filter(|l| *l != "en") {
            prompt.push_str(&format!("\n\nAnswer in the language with code '{lang}'."));
        }
        prompt
    }
}

/// How a backend runs its character: the memory window, the quota, and (in place of
/// FreeChat's prompt tasks) the provider and model it calls directly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendSettings {
    pub message_window_size: u32,
    pub init_quota: u64,
    pub quota_type: QuotaType,
    pub proactive_chat_waiting_time: u32,
    /// A configured provider's name; `None` is the deployment's default provider.
    pub provider: Option<String>,
    /// `None` is the provider's default model.
    pub model: Option<String>,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u32>,
}

impl BackendSettings {
    pub const MIN_MESSAGE_WINDOW: u32 = 10;
    pub const MAX_MESSAGE_WINDOW: u32 = 500;
    pub const DEFAULT_MESSAGE_WINDOW: u32 = 50;
}

impl Default for BackendSettings {
    fn default() -> Self {
        Self {
            message_window_size: Self::DEFAULT_MESSAGE_WINDOW,
            init_quota: 0,
            quota_type: QuotaType::None,
            proactive_chat_waiting_time: 0,
            provider: None,
            model: None,
            temperature: None,
            max_tokens: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backend {
    pub id: String,
    pub character_uid: String,
    #[serde(flatten)]
    pub settings: BackendSettings,
    pub created_at: DateTime<Utc>,
    pub modified_at: DateTime<Utc>,
}

impl Backend {
    pub fn create(character_uid: &str, settings: BackendSettings) -> Self {
        let now = super::now();
        Self {
            id: super::new_id(),
            character_uid: character_uid.to_owned(),
            settings,
            created_at: now,
            modified_at: now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn character() -> Character {
        Character::create(
            "owner",
            7,
            CharacterInfo {
                name: "Jack".into(),
                nickname: Some("Captain".into()),
                profile: Some("A sailor of the northern seas.".into()),
                chat_style: Some("Short and salty.".into()),
                default_scene: Some("On deck, at dawn.".into()),
                description: Some("   ".into()),
                ..Default::default()
            },
        )
    }

    #[test]
    fn the_prompt_holds_the_profile_style_scene_and_user_and_leaves_out_blank_parts() {
        let prompt = character().system_prompt(&Persona {
            user_nickname: Some("Ann"),
            user_profile: Some("A curious traveller."),
            ..Default::default()
        });
        assert!(prompt.starts_with("You are Captain."));
        assert!(prompt.contains("## Profile\nA sailor of the northern seas."));
        assert!(prompt.contains("## Chat style\nShort and salty."));
        assert!(prompt.contains("## Scene\nOn deck, at dawn."));
        assert!(prompt.contains("## The user\nYou are talking with Ann.\nA curious traveller."));
        assert!(!prompt.contains("Description"));
        assert!(!prompt.contains("Relevant information"));
    }

    #[test]
    fn a_chat_names_the_character_and_sets_the_scene_over_the_defaults() {
        let prompt = character().system_prompt(&Persona {
            character_nickname: Some("Jacky"),
            about: Some("In a harbour tavern."),
            context: Some("It is raining."),
            ..Default::default()
        });
        assert!(prompt.starts_with("You are Jacky."));
        assert!(prompt.contains("## Scene\nIn a harbour tavern."));
        assert!(!prompt.contains("On deck"));
        assert!(prompt.ends_with("## Relevant information\nIt is raining."));
    }

    #[test]
    fn only_public_characters_are_visible_to_other_users() {
        let mut c = character();
        assert!(c.is_visible_to("owner"));
        for visibility in [
            Visibility::Private,
            Visibility::PublicOrg,
            Visibility::Hidden,
        ] {
            c.info.visibility = visibility;
            assert!(!c.is_visible_to("someone"), "{visibility:?}");
        }
        c.info.visibility = Visibility::Public;
        assert!(c.is_visible_to("someone"));
    }
}
