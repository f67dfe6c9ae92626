//! Where a turn's question goes in its conversation's tree, and the path its prompt carries.

use crate::domain::{Message, MessageRole, MessageWindow, Parent, StoredQuestion, Tree};
use crate::error::{ServiceError, ServiceResult};
use crate::store::Store;

/// How many of its conversation's newest messages a turn reads: the longest default history
/// (100) with room for the branches beside it. A turn that needs more of its path, or names a
/// message older than these, reads that path by the lineage its messages keep.
pub const TURN_WINDOW: usize = 128;

/// How many more reads a turn makes to follow its path back before it reads every message
/// instead (which only a path stored before messages kept their lineage needs).
const PATH_READS: usize = 3;

/// Ancestors read beyond the history a turn sends: room for what lies between a regenerated
/// answer and its question (tool results).
const PATH_MARGIN: usize = 28;

/// Where a turn's question goes in its conversation's tree. Its prompt history is always the
/// path to the question's parent, whatever the other branches hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Branching {
    /// After the active leaf.
    #[default]
    FollowActive,
    /// A new version of this user message: its sibling, answered from the history before it.
    Edit(String),
    /// A new answer beside this assistant message, from the same history: no new question.
    Regenerate(String),
}

/// Where a turn's question goes, and the path its prompt carries before it.
pub(super) struct Placed {
    pub parent: Parent,
    pub history: Vec<Message>,
    /// The question when it is stored already: regenerated, or asked by an earlier try.
    pub asked: Option<Message>,
    /// What a regenerated answer follows: what the answer it replaces followed.
    pub answer_after: Option<String>,
}

impl Placed {
    /// Places the question of a turn among its conversation's newest messages, `window`, with
    /// `needed` messages of history before it. When a message the turn names is older, it is
    /// read by its id; when the path goes back past what was read, the nearest ancestors of
    /// where it is cut are read by the sequence numbers that message keeps (its lineage). So
    /// a turn reads the window, its path and nothing else, whatever the branches beside it.
    /// Only a path whose messages keep no lineage (stored before they did) makes it read
    /// every message. The tree it was placed in comes back too.
    pub(super) async fn in_conversation(
        store: &Store,
        conversation_id: &str,
        window: MessageWindow,
        (active, branching): (Option<&str>, &Branching),
        resumed: Option<StoredQuestion>,
        needed: usize,
    ) -> ServiceResult<(Self, Tree)> {
        let mut tree = Tree::of(window);
        if tree.is_whole() {
            return Self::in_tree(&tree, active, branching, resumed).map(|placed| (placed, tree));
        }
        let anchors = anchors(active, branching, &resumed);
        for _ in 0..=PATH_READS {
            match Self::search(&tree, &anchors, (active, branching), &resumed, needed) {
                Search::Found(placed) => return Ok((*placed, tree)),
                Search::ReadMore => {
                    let more =
                        more_of_the_path(store, conversation_id, &tree, &anchors, needed).await?;
                    if more.is_empty() {
                        break;
                    }
                    tree = tree.with(more);
                }
                Search::ReadChildren(id) => {
                    // Only a message that keeps its lineage has every fork of it indexed.
                    let Some(parent) = tree.get(&id).filter(|m| m.lineage.is_some()) else {
                        break;
                    };
                    let children = store.children_of(conversation_id, parent).await?;
                    tree = tree.with_children_of(&id, children);
                }
            }
        }
        let tree = Tree::new(store.every_message(conversation_id).await?);
        Self::in_tree(&tree, active, branching, resumed).map(|placed| (placed, tree))
    }

    /// What a tree of some of the conversation's messages tells of the turn's place.
    fn search(
        tree: &Tree,
        anchors: &[&str],
        (active, branching): (Option<&str>, &Branching),
        resumed: &Option<StoredQuestion>,
        needed: usize,
    ) -> Search {
        if anchors.iter().any(|id| tree.get(id).is_none()) {
            return Search::ReadMore;
        }
        // Whether a stored question was answered is known only where every child was read.
        let resumed_id = resumed.as_ref().map(|q| q.message_id.as_str());
        if let Some(id) = resumed_id.filter(|id| !tree.knows_children_of(id)) {
            return Search::ReadChildren(id.to_owned());
        }
        let Ok(placed) = Self::in_tree(tree, active, branching, resumed.clone()) else {
            return Search::ReadMore;
        };
        // A regenerated answer lists its siblings: every answer to the same question.
        if let Some(parent) = &placed.answer_after
            && !tree.knows_children_of(parent)
        {
            return Search::ReadChildren(parent.clone());
        }
        let parent = match &placed.parent {
            Parent::Message(id) => Some(id.as_str()),
            Parent::Root | Parent::Unrecorded => None,
        };
        if tree.reaches_back(parent, needed) {
            Search::Found(Box::new(placed))
        } else {
            Search::ReadMore
        }
    }

    /// Places the question of a turn in `tree`; an unknown message is a 404, a message of the
    /// wrong role for what is asked of it a 422 naming the field.
    pub(super) fn in_tree(
        tree: &Tree,
        active: Option<&str>,
        branching: &Branching,
        resumed: Option<StoredQuestion>,
    ) -> ServiceResult<Self> {
        let history_to = |parent: Option<&str>| -> Vec<Message> {
            parent
                .map(|id| tree.path_to(id).into_iter().cloned().collect())
                .unwrap_or_default()
        };
        // A question an earlier try stored is answered where it is, while nothing follows it.
        let resumed = resumed
            .and_then(|q| tree.get(&q.message_id))
            .filter(|q| q.role == MessageRole::User && tree.child_ids(Some(&q.id)).is_empty());
        if let Some(question) = resumed {
            return Ok(Self {
                parent: Parent::of(tree.parent_id(&question.id)),
                history: history_to(tree.parent_id(&question.id)),
                asked: Some(question.clone()),
                answer_after: None,
            });
        }
        let named = |id: &str, role: MessageRole, field: &str| -> ServiceResult<&Message> {
            let message = tree
                .get(id)
                .ok_or_else(|| ServiceError::NotFound("Message not found.".into()))?;
            if message.role != role {
                return Err(ServiceError::invalid(
                    ["body".into(), field.into()],
                    format!("Message '{id}' is not a {} message.", role_name(role)),
                    "wrong_role",
                ));
            }
            Ok(message)
        };
        match branching {
            Branching::FollowActive => {
                // The recorded active message is the last answer: a question stored after it
                // by a turn still running is not followed (the two become siblings).
                let leaf = active
                    .filter(|id| tree.get(id).is_some())
                    .or_else(|| tree.active_leaf(None));
                Ok(Self {
                    parent: Parent::of(leaf),
                    history: history_to(leaf),
                    asked: None,
                    answer_after: None,
                })
            }
            Branching::Edit(id) => {
                let edited = named(id, MessageRole::User, "edit_message_id")?;
                let parent = tree.parent_id(&edited.id);
                Ok(Self {
                    parent: Parent::of(parent),
                    history: history_to(parent),
                    asked: None,
                    answer_after: None,
                })
            }
            Branching::Regenerate(id) => {
                let answer = named(id, MessageRole::Assistant, "regenerate_message_id")?;
                // The question answered is the last user message on the answer's path; tool
                // results between them stay on the path, as the answer had them.
                let mut path = history_to(tree.parent_id(&answer.id));
                let at = path
                    .iter()
                    .rposition(|m| m.role == MessageRole::User)
                    .ok_or_else(|| {
                        ServiceError::invalid(
                            ["body".into(), "regenerate_message_id".into()],
                            format!("Message '{id}' answers no question."),
                            "wrong_role",
                        )
                    })?;
                let question = path.remove(at);
                path.truncate(at);
                Ok(Self {
                    parent: Parent::of(tree.parent_id(&question.id)),
                    history: path,
                    asked: Some(question),
                    answer_after: tree.parent_id(&answer.id).map(str::to_owned),
                })
            }
        }
    }
}

/// What a tree of some of a conversation's messages tells of a turn's place.
enum Search {
    Found(Box<Placed>),
    /// The path goes back past what was read, or a message the turn names was not read.
    ReadMore,
    /// Every child of this message older than the newest ones (a regenerated answer lists
    /// its siblings; a stored question is resumed only while nothing follows it).
    ReadChildren(String),
}

/// The messages a turn's placement starts from: the question it resumes, and the active leaf
/// or the message it edits or regenerates.
fn anchors<'a>(
    active: Option<&'a str>,
    branching: &'a Branching,
    resumed: &'a Option<StoredQuestion>,
) -> Vec<&'a str> {
    let named = match branching {
        Branching::FollowActive => active,
        Branching::Edit(id) | Branching::Regenerate(id) => Some(id.as_str()),
    };
    resumed
        .as_ref()
        .map(|q| q.message_id.as_str())
        .into_iter()
        .chain(named)
        .collect()
}

/// What a turn reads next to find its path in `tree`: the anchors it has not read, by id; or,
/// once it has them all, the nearest ancestors of where each one's path is cut, by the lineage
/// the oldest message read on it keeps. Nothing when neither tells more.
async fn more_of_the_path(
    store: &Store,
    conversation_id: &str,
    tree: &Tree,
    anchors: &[&str],
    needed: usize,
) -> ServiceResult<Vec<Message>> {
    let unread: Vec<&str> = anchors
        .iter()
        .copied()
        .filter(|id| tree.get(id).is_none())
        .collect();
    if !unread.is_empty() {
        let found = futures_util::future::try_join_all(
            unread
                .into_iter()
                .map(|id| store.message_by_id(conversation_id, id)),
        )
        .await?;
        return Ok(found.into_iter().flatten().collect());
    }
    let runs: Vec<_> = anchors
        .iter()
        .filter_map(|id| tree.path_to(id).first().copied())
        .filter_map(|cut| cut.lineage.as_ref())
        .flat_map(|lineage| lineage.nearest(needed + PATH_MARGIN))
        .collect();
    let mut read = store.messages_in_runs(conversation_id, &runs).await?;
    read.retain(|m| tree.get(&m.id).is_none());
    Ok(read)
}

fn role_name(role: MessageRole) -> &'static str {
    match role {
        MessageRole::User => "user",
        MessageRole::Assistant => "assistant",
        MessageRole::System => "system",
        MessageRole::Tool => "tool",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::MessageDraft;

    /// Messages `m1`.. in order, each with its role and parent.
    fn tree(messages: &[(MessageRole, Parent)]) -> Tree {
        Tree::new(
            messages
                .iter()
                .zip(1..)
                .map(|((role, parent), seq)| {
                    let mut m = MessageDraft::new(*role, format!("m{seq}")).into_message(
                        "c",
                        seq,
                        parent.clone(),
                    );
                    m.id = format!("m{seq}");
                    m
                })
                .collect(),
        )
    }

    fn after(id: &str) -> Parent {
        Parent::Message(id.into())
    }

    fn contents(messages: &[Message]) -> Vec<&str> {
        messages.iter().map(|m| m.content.as_str()).collect()
    }

    #[test]
    fn a_regenerated_answer_after_tool_results_asks_the_same_question_on_the_same_path() {
        use MessageRole::{Assistant, Tool, User};
        let tree = tree(&[
            (User, Parent::Root),
            (Assistant, after("m1")),
            (User, after("m2")),
            (Tool, after("m3")),
            (Assistant, after("m4")),
        ]);
        let regenerate = Branching::Regenerate("m5".into());
        let placed = Placed::in_tree(&tree, Some("m5"), &regenerate, None).unwrap();
        assert_eq!(placed.asked.unwrap().id, "m3");
        assert_eq!(contents(&placed.history), ["m1", "m2"]);
        assert_eq!(placed.answer_after.as_deref(), Some("m4"));
    }

    #[test]
    fn a_stored_question_is_resumed_only_while_nothing_follows_it() {
        use MessageRole::{Assistant, User};
        let tree = tree(&[
            (User, Parent::Root),
            (Assistant, after("m1")),
            (User, after("m2")),
        ]);
        let question = |id: &str| StoredQuestion {
            conversation_id: "c".into(),
            message_id: id.into(),
        };
        let follow = Branching::FollowActive;
        let resumed = Placed::in_tree(&tree, Some("m2"), &follow, Some(question("m3"))).unwrap();
        assert_eq!(resumed.asked.unwrap().id, "m3");
        assert_eq!(contents(&resumed.history), ["m1", "m2"]);
        let answered = Placed::in_tree(&tree, Some("m2"), &follow, Some(question("m1"))).unwrap();
        assert!(answered.asked.is_none());
        assert_eq!(
            answered.parent,
            after("m2"),
            "the active answer, not m3 still unanswered"
        );
    }
}
