//! Reading what a turn needs, building its prompt, and storing its question while the model
//! is already asked.

use std::time::{Duration, Instant};

use super::deadline::{Deadline, deadline_exceeded, turn_timeout};
use super::generation::{Opened, round_request};
use super::outcome::{discard_answer, release_hold};
use super::question::{Place, StoredQuestionOf, beside_the_question, store_question};
use super::{ChatInput, Delivery, Turn};
use crate::AppState;
use crate::documents::{self, RetrievalQuery};
use crate::domain::{
    Conversation, Message, MessageDraft, MessageRole, MessageWindow, NewConversation, Parent,
    QuotaClaim, StoredQuestion, Workflow,
};
use crate::error::{ServiceError, ServiceResult};
use crate::llm::CompletionRequest;
use crate::service::chat::branching::{Placed, TURN_WINDOW};
use crate::service::chat::prompt;
use crate::service::chat::titles::PendingTitle;
use crate::service::sessions;
use crate::store::{ChatRecord, ConversationRecord, PendingCount, StoreError};
use crate::tools::Toolset;

/// How many earlier messages a prompt carries at most when neither its chat nor its
/// template says.
const HISTORY_FETCH: usize = 100;
const TITLE_CHARS: usize = 50;
/// How much longer than the longest turn a quota hold counts.
const QUOTA_HOLD_MARGIN_SECS: u64 = 60;
/// Tool calls a turn may make when neither the request nor its template says.
const DEFAULT_MAX_TOOL_CALLS: u32 = 10;

/// Waits for the request's rate-limit count, if it is still running: over a limit, the
/// turn ends with the 429 before it writes anything or calls the model.
pub async fn within_rate_limit(count: Option<&PendingCount>) -> ServiceResult<()> {
    let Some(count) = count else { return Ok(()) };
    match count.status().await?.retry_after_secs {
        Some(retry_after_secs) => Err(ServiceError::RateLimited { retry_after_secs }),
        None => Ok(()),
    }
}

fn title_from(message: &str) -> String {
    let trimmed = message.trim();
    let mut title: String = trimmed.chars().take(TITLE_CHARS).collect();
    if trimmed.chars().count() > TITLE_CHARS {
        title.push_str("...");
    }
    title
}

impl Turn {
    pub(super) async fn prepare(
        state: &AppState,
        user_id: &str,
        mut input: ChatInput,
        started: Instant,
        workflow: &mut Workflow,
    ) -> ServiceResult<Self> {
        let template = input.template;
        let session = input.session.take();
        let target = session
            .as_ref()
            .map(|s| s.chat.id().to_owned())
            .or(input.conversation_id.clone());
        let resumed = input.resume.take().filter(|question| {
            target
                .as_ref()
                .is_none_or(|id| *id == question.conversation_id)
        });
        let target = target.or(resumed.as_ref().map(|q| q.conversation_id.clone()));
        // The rate-limit count and the reads the prompt needs go out together: one DynamoDB
        // step before the question is stored and the model called, side by side. The
        // conversation's newest messages are read (one query) and the path the prompt carries
        // walked in memory, however many branches there are; a path longer than they hold
        // costs a second query, for every message.
        let admitted = within_rate_limit(input.count.as_ref());
        let reads = async {
            Ok::<_, ServiceError>(match (session, &target) {
                (Some(mut session), _) => {
                    let window = match session.messages.take() {
                        Some(window) => window,
                        None => {
                            let chat = session.chat.id();
                            state.store.newest_messages_in(chat, TURN_WINDOW).await?
                        }
                    };
                    (session.chat.record.clone(), window, Some(session))
                }
                (None, Some(id)) => {
                    let (record, window) = state
                        .store
                        .conversation_window(user_id, id, TURN_WINDOW)
                        .await
                        .map_err(|e| match e {
                            StoreError::NotFound => {
                                ServiceError::NotFound("Conversation not found.".into())
                            }
                            other => other.into(),
                        })?;
                    (record, window, None)
                }
                (None, None) => (
                    ConversationRecord::new(Conversation::create(
                        user_id,
                        NewConversation {
                            title: title_from(&input.message),
                            llm_provider: input.provider.clone(),
                            ..Default::default()
                        },
                    )),
                    MessageWindow::default(),
                    None,
                ),
            })
        };
        let (admitted, reads) = tokio::join!(admitted, reads);
        admitted?;
        let (record, window, mut session) = reads?;
        let place = match target {
            None => Place::NewConversation,
            Some(_) => Place::Existing,
        };
        if let Some(chat_session) = record.session.clone()
            && session.is_none()
        {
            // A Chatter turn may not skip what FreeChat's send enforces on the same chat.
            let chat = ChatRecord {
                record: record.clone(),
                session: chat_session,
            };
            session = Some(sessions::ready(state, user_id, chat).await?.turn());
        }
        let history_limit = session.as_ref().map(|s| s.history_window);
        let (quota, snapshot) = session.map(|s| (s.backend, s.snapshot)).unzip();
        let conversation = &record.conversation;
        let memory = if conversation.memory_enabled {
            history_limit
                .or(template.map(|t| t.memory_window as usize))
                .unwrap_or(HISTORY_FETCH)
        } else {
            0
        };
        let (
            Placed {
                parent,
                history,
                asked,
                answer_after,
            },
            tree,
        ) = Placed::in_conversation(
            &state.store,
            &conversation.id,
            window,
            (conversation.active_message_id.as_deref(), &input.branching),
            resumed,
            memory,
        )
        .await?;
        if let Some(question) = &asked {
            input.message.clone_from(&question.content);
        }
        let siblings = answer_after
            .as_deref()
            .map(|parent| tree.child_ids(Some(parent)))
            .unwrap_or_default();
        let retrieval = input
            .enable_retrieval
            .unwrap_or(conversation.enable_retrieval);
        *workflow = match (*workflow, retrieval) {
            (Workflow::Plain, true) => Workflow::Rag,
            (Workflow::Tools, true) => Workflow::Full,
            (workflow, _) => workflow,
        };
        let workflow = *workflow;
        let provider_name = input
            .provider
            .as_deref()
            .or(conversation.llm_provider.as_deref());
        let provider = state.llm.get(provider_name).ok_or_else(|| {
            ServiceError::invalid(
                ["body".into(), "provider".into()],
                format!("Unknown provider '{}'.", provider_name.unwrap_or_default()),
                "unknown_provider",
            )
        })?;
        // The conversation's model belongs to the conversation's provider (the default one
        // when it names none); a request that picks another provider gets that one's model.
        let conversation_provider = state
            .llm
            .get(conversation.llm_provider.as_deref())
            .map(|p| p.name.clone());
        let model = conversation
            .llm_model
            .clone()
            .filter(|_| conversation_provider.as_deref() == Some(provider.name.as_str()))
            .unwrap_or_else(|| provider.config.default_model.clone());
        let system_prompt = input
            .system_prompt_override
            .clone()
            .or_else(|| conversation.system_prompt.clone())
            .or_else(|| template.map(|t| t.system_message.to_owned()));
        let budget = input.context_limit.unwrap_or(conversation.context_window) as usize;
        let temperature = input
            .temperature
            .or(conversation.temperature)
            .or(template.map(|t| t.temperature));
        let max_tokens = input
            .max_tokens
            .or(conversation.max_tokens)
            .or(template.and_then(|t| t.max_tokens));
        let retrieval_limit = template
            .and_then(|t| t.max_documents)
            .unwrap_or(conversation.retrieval_limit) as usize;
        let score_threshold = conversation.retrieval_score_threshold;
        let max_tool_calls = input
            .max_tool_calls
            .or(template.and_then(|t| t.max_tool_calls))
            .unwrap_or(DEFAULT_MAX_TOOL_CALLS) as usize;

        // The question's store runs to its end whatever retrieval, discovery or the model do:
        // neither an embedding provider nor an MCP server that fails may lose it.
        let message = input.message;
        let question_lineage = tree.lineage_below(&parent);
        let mut user = MessageDraft::new(MessageRole::User, message.clone()).after(parent);
        user.lineage = question_lineage;
        user.metadata = input.user_metadata;
        // The answer follows its question: the one stored with it, or one stored before (a
        // regenerated answer follows what the answer it replaces followed).
        let answer_follows = match (&answer_after, &asked) {
            (Some(parent), _) => tree.get(parent),
            (None, Some(question)) => Some(question),
            (None, None) => None,
        };
        let answer = (input.delivery == Delivery::Streamed).then(|| {
            let draft = MessageDraft::streaming_answer();
            match (answer_follows, &answer_after) {
                (Some(parent), _) => draft.following(parent),
                (None, Some(parent)) => draft.after(Parent::Message(parent.clone())),
                (None, None) => draft,
            }
        });
        // `None` when the answer follows the question this turn is about to store.
        let answer_lineage = answer_follows.map(Message::lineage_below);
        // A hold outlives the longest turn, so that it counts for as long as its turn runs.
        let claim = quota.as_ref().and_then(|quota| {
            let expires_at = crate::domain::now()
                + turn_timeout(state, Delivery::Streamed)
                + Duration::from_secs(QUOTA_HOLD_MARGIN_SECS);
            QuotaClaim::of(quota, prompt::estimate_tokens(&message) as u64, expires_at)
        });
        let deadline = Deadline::of(state, started, input.delivery);
        let title_model = model.clone();
        // A claim on a chat's quota was admitted by the chat's usage as read; parallel sends
        // race in the store, beside their model calls. A turn whose claim the store refuses
        // has started a model request and drops it at once (its 429 is today's), the price
        // of not waiting for the claim before asking the model.
        let storing = async {
            let stored = store_question(
                state,
                (record, place),
                (user, answer),
                (claim, snapshot),
                asked,
            )
            .await?;
            // Written beside the answer, from the question the new conversation starts with.
            let title = (place == Place::NewConversation)
                .then(|| {
                    let conversation = &stored.record.conversation;
                    PendingTitle::start(state, &provider, &title_model, conversation, &message)
                })
                .flatten();
            Ok((stored, title))
        };
        // Retrieval and tool discovery need no stored question, and the model needs only the
        // prompt: all of it goes out while the question is being stored.
        let preparing = async {
            let discovery = async {
                if matches!(workflow, Workflow::Tools | Workflow::Full) {
                    let discovered = Toolset::discover(&state.mcp).await;
                    match template.filter(|t| !t.required_tools.is_empty()) {
                        Some(t) => discovered.only(t.required_tools),
                        None => discovered,
                    }
                } else {
                    Toolset::default()
                }
            };
            let retrieval_started = Instant::now();
            let retrieval = async {
                if matches!(workflow, Workflow::Rag | Workflow::Full) {
                    documents::retrieve(
                        state,
                        RetrievalQuery {
                            user_id,
                            query: &message,
                            limit: retrieval_limit,
                            score_threshold,
                            document_ids: input.document_ids.as_deref(),
                        },
                    )
                    .await
                } else {
                    Ok(Vec::new())
                }
            };
            let (toolset, sources, retrieval_ms) = tokio::time::timeout_at(
                (started + turn_timeout(state, Delivery::Whole)).into(),
                async {
                    tokio::join!(discovery, async {
                        let sources = retrieval.await;
                        (sources, retrieval_started.elapsed().as_millis() as u64)
                    })
                },
            )
            .await
            .map_err(|_| deadline_exceeded(turn_timeout(state, Delivery::Whole)))
            .and_then(|(toolset, (sources, ms))| Ok((toolset, sources?, ms)))?;
            let system = if matches!(workflow, Workflow::Rag | Workflow::Full) {
                Some(prompt::with_sources(system_prompt.as_deref(), &sources))
            } else {
                system_prompt
            };
            let request = CompletionRequest {
                model,
                messages: prompt::build(system.as_deref(), &history, memory, &message, budget),
                temperature,
                max_tokens,
                tools: toolset.specs(),
            };
            let opened = Opened::open(
                &provider,
                &round_request(&request, request.messages.clone(), max_tool_calls),
                input.delivery,
                deadline,
            )
            .await;
            Ok::<_, ServiceError>((toolset, sources, retrieval_ms, request, opened))
        };
        // Boxed: the two together would make the handler's future too large for a thread's stack.
        let (stored, prepared) =
            beside_the_question(Box::pin(storing), Box::pin(preparing)).await?;
        let (
            StoredQuestionOf {
                record,
                question: user_message,
                answer,
                held,
            },
            title,
        ) = stored;
        let (toolset, sources, retrieval_ms, request, opened) = match prepared {
            Ok(prepared) => prepared,
            Err(error) => {
                let question = StoredQuestion {
                    conversation_id: record.conversation.id.clone(),
                    message_id: user_message.id.clone(),
                };
                release_hold(state, &record.conversation.id, held).await;
                let user_id = &record.conversation.user_id;
                discard_answer(state, user_id, answer.as_ref()).await;
                return Err(error.after_question(question));
            }
        };
        Ok(Self {
            record,
            answer_lineage: answer_lineage.unwrap_or_else(|| user_message.lineage_below()),
            answer_parent: answer_after.unwrap_or_else(|| user_message.id.clone()),
            siblings,
            user_message,
            answer,
            provider,
            request,
            workflow,
            toolset,
            max_tool_calls,
            sources,
            retrieval_ms,
            started,
            held,
            dialect: input.dialect,
            opened: Some(opened),
            title,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_title_is_the_first_fifty_characters_of_the_message() {
        assert_eq!(title_from("  Short question  "), "Short question");
        let long = "x".repeat(60);
        assert_eq!(title_from(&long), format!("{}...", "x".repeat(50)));
        assert_eq!(title_from(&"é".repeat(50)), "é".repeat(50));
    }
}
