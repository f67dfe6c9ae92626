//! A conversation's messages as a tree. Each message follows a parent (none for a first
//! message); an edit or a regenerated answer is a sibling of what it replaces, and the active
//! branch is the path from a first message to the conversation's active leaf.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::{Lineage, Message};

/// Where a message hangs in its conversation's tree, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Parent {
    /// Stored before messages recorded their parent. Such a message follows the one before it
    /// by sequence number, so an old conversation's linear history reads as a single branch
    /// and needs no migration.
    #[default]
    Unrecorded,
    /// A first message: of the conversation, or of a branch that edits the first question.
    Root,
    /// The message it follows.
    Message(String),
}

impl Parent {
    pub fn is_unrecorded(&self) -> bool {
        *self == Self::Unrecorded
    }

    /// The parent `id` names (`None`: a first message).
    pub fn of(id: Option<&str>) -> Self {
        id.map_or(Self::Root, |id| Self::Message(id.to_owned()))
    }
}

/// A message's place in its tree, as clients see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    /// The message it follows; `None` for a first message.
    pub parent_id: Option<String>,
    /// Every message with the same parent, oldest first, itself included.
    pub sibling_ids: Vec<String>,
}

/// Which of a conversation's messages a listing shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BranchView {
    /// The active branch, from its first message to its leaf.
    #[default]
    Active,
    /// Every message of every branch, in creation order.
    All,
}

/// A conversation's messages as one read found them: every one, or only its newest when it
/// has more than the read asked for.
#[derive(Debug, Clone, Default)]
pub struct MessageWindow {
    pub messages: Vec<Message>,
    /// Whether older messages exist that the read left out.
    pub older_left_out: bool,
}

impl MessageWindow {
    /// Every message of a conversation.
    pub fn every(messages: Vec<Message>) -> Self {
        Self {
            messages,
            older_left_out: false,
        }
    }
}

/// A conversation's messages in sequence order with each one's parent resolved: all of them,
/// or its newest, whose paths may lead back to messages not read.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    messages: Vec<Message>,
    parents: Vec<Option<usize>>,
    children: Vec<Vec<usize>>,
    index: HashMap<String, usize>,
    /// Whether older messages than these exist. Every child of a message read is newer than
    /// it, so it was read too: only the way back from the oldest messages can be cut.
    older_left_out: bool,
    /// The oldest sequence number from which on every message was read; older messages read
    /// since (a path's) may have children that were not.
    read_from: u64,
    /// Older messages whose every child was read since.
    children_read: HashSet<String>,
}

impl Tree {
    /// The tree of every message of a conversation, in any order. A message whose recorded
    /// parent is gone (a question deleted while its answer was being written) is a first
    /// message.
    pub fn new(messages: Vec<Message>) -> Self {
        Self::of(MessageWindow::every(messages))
    }

    /// The tree of the messages a read found. When older ones were left out, a message whose
    /// parent was not read is cut there, rather than a first message.
    pub fn of(window: MessageWindow) -> Self {
        let MessageWindow {
            mut messages,
            older_left_out,
        } = window;
        messages.sort_by_key(|m| m.sequence_number);
        let read_from = match messages.first() {
            Some(first) if older_left_out => first.sequence_number,
            _ => 0,
        };
        Self::built(messages, older_left_out, read_from)
    }

    /// The tree with `more` of its conversation's messages read: older ones, whose other
    /// children may not have been.
    pub fn with(self, more: Vec<Message>) -> Self {
        let mut messages = self.messages;
        messages.extend(more.into_iter().filter(|m| !self.index.contains_key(&m.id)));
        messages.sort_by_key(|m| m.sequence_number);
        Self {
            children_read: self.children_read,
            ..Self::built(messages, self.older_left_out, self.read_from)
        }
    }

    /// The tree with every child of `parent` read.
    pub fn with_children_of(self, parent: &str, children: Vec<Message>) -> Self {
        let parent = parent.to_owned();
        let mut tree = self.with(children);
        tree.children_read.insert(parent);
        tree
    }

    fn built(messages: Vec<Message>, older_left_out: bool, read_from: u64) -> Self {
        let index: HashMap<String, usize> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| (m.id.clone(), i))
            .collect();
        let parents: Vec<Option<usize>> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| match &m.parent {
                // The one before it, where every message was read (not only a path).
                Parent::Unrecorded if m.sequence_number > read_from => i.checked_sub(1),
                Parent::Unrecorded | Parent::Root => None,
                Parent::Message(id) => index.get(id).copied().filter(|&p| p < i),
            })
            .collect();
        let mut children = vec![Vec::new(); messages.len()];
        for (i, parent) in parents.iter().enumerate() {
            if let Some(p) = parent {
                children[*p].push(i);
            }
        }
        Self {
            messages,
            parents,
            children,
            index,
            older_left_out,
            read_from,
            children_read: HashSet::new(),
        }
    }

    /// Whether every message that follows `id` was read.
    pub fn knows_children_of(&self, id: &str) -> bool {
        self.get(id)
            .is_some_and(|m| m.sequence_number >= self.read_from || self.children_read.contains(id))
    }

    /// Whether the tree holds every message of its conversation.
    pub fn is_whole(&self) -> bool {
        !self.older_left_out
    }

    /// Whether what a turn needs of the way back from `id` was read: the path to it reaches a
    /// first message, or holds at least `needed` messages. `None` (a first message to come)
    /// is known only in a tree of every message: a read of the newest cannot tell which
    /// messages are first.
    pub fn reaches_back(&self, id: Option<&str>, needed: usize) -> bool {
        if self.is_whole() {
            return true;
        }
        let Some(mut at) = id.and_then(|id| self.index.get(id).copied()) else {
            return false;
        };
        let mut read = 1;
        while read < needed {
            match self.parents[at] {
                Some(parent) => {
                    at = parent;
                    read += 1;
                }
                // Without a parent read: a first message, or one whose parent is older.
                None => return is_first(&self.messages[at]),
            }
        }
        true
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Every message, in creation (sequence) order.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    pub fn get(&self, id: &str) -> Option<&Message> {
        self.index.get(id).map(|&i| &self.messages[i])
    }

    /// The lineage of a message that follows `parent`, when it is known.
    pub fn lineage_below(&self, parent: &Parent) -> Option<Lineage> {
        match parent {
            Parent::Root => Some(Lineage::root()),
            Parent::Message(id) => self.get(id)?.lineage_below(),
            Parent::Unrecorded => None,
        }
    }

    /// The id of the message `id` follows (`None` for a first message or an unknown id).
    pub fn parent_id(&self, id: &str) -> Option<&str> {
        let i = *self.index.get(id)?;
        self.parents[i].map(|p| self.messages[p].id.as_str())
    }

    /// Where `id` sits: its parent and its siblings (none for an unknown id).
    pub fn placement(&self, id: &str) -> Placement {
        let parent_id = self.parent_id(id).map(str::to_owned);
        let sibling_ids = if self.index.contains_key(id) {
            self.child_ids(parent_id.as_deref())
        } else {
            Vec::new()
        };
        Placement {
            parent_id,
            sibling_ids,
        }
    }

    /// The messages that follow `parent` (the first messages for `None`), oldest first.
    pub fn child_ids(&self, parent: Option<&str>) -> Vec<String> {
        let indices: Vec<usize> = match parent {
            Some(id) => self
                .index
                .get(id)
                .map_or_else(Vec::new, |&p| self.children[p].clone()),
            None => (0..self.messages.len())
                .filter(|&i| self.parents[i].is_none())
                .collect(),
        };
        indices
            .into_iter()
            .map(|i| self.messages[i].id.clone())
            .collect()
    }

    /// The messages from a first message down to `id`, in that order (empty for an unknown id).
    pub fn path_to(&self, id: &str) -> Vec<&Message> {
        let mut path = Vec::new();
        let mut at = self.index.get(id).copied();
        while let Some(i) = at {
            path.push(&self.messages[i]);
            at = self.parents[i];
        }
        path.reverse();
        path
    }

    /// The newest leaf at or under `id`: where the branch through `id` now ends.
    pub fn newest_leaf_under(&self, id: &str) -> Option<&str> {
        let start = *self.index.get(id)?;
        let leaf = self
            .under(start)
            .into_iter()
            .filter(|&i| self.children[i].is_empty())
            .max()
            .unwrap_or(start);
        Some(self.messages[leaf].id.as_str())
    }

    /// `start` and every message under it.
    fn under(&self, start: usize) -> Vec<usize> {
        let mut found = Vec::new();
        let mut pending = vec![start];
        while let Some(i) = pending.pop() {
            found.push(i);
            pending.extend(&self.children[i]);
        }
        found
    }

    /// The leaf of the active branch: the newest leaf under the conversation's recorded active
    /// message, or (for a conversation that predates branches, or whose active message is
    /// gone) the newest leaf of all.
    pub fn active_leaf(&self, recorded: Option<&str>) -> Option<&str> {
        let anchor = recorded
            .filter(|id| self.index.contains_key(*id))
            .or_else(|| self.messages.last().map(|m| m.id.as_str()))?;
        self.newest_leaf_under(anchor)
    }

    /// The active branch, from its first message to its leaf.
    pub fn active_branch(&self, recorded: Option<&str>) -> Vec<&Message> {
        self.active_leaf(recorded)
            .map(|leaf| self.path_to(leaf))
            .unwrap_or_default()
    }

    /// The messages a listing shows, in order.
    pub fn view(&self, view: BranchView, recorded_active: Option<&str>) -> Vec<&Message> {
        match view {
            BranchView::Active => self.active_branch(recorded_active),
            BranchView::All => self.messages.iter().collect(),
        }
    }

    /// Where the active branch ends once `removed` are gone: `None` when its leaf stays, else
    /// the newest leaf under the parent of the oldest removed message (or of all, when that
    /// was a first message).
    pub fn active_leaf_without(
        &self,
        recorded: Option<&str>,
        removed: &[Message],
    ) -> Option<String> {
        let leaf = self.active_leaf(recorded)?;
        let oldest = removed.iter().min_by_key(|m| m.sequence_number)?;
        if !removed.iter().any(|m| m.id == leaf) {
            return None;
        }
        let gone: std::collections::HashSet<&str> = removed.iter().map(|m| m.id.as_str()).collect();
        let rest = Self::new(
            self.messages
                .iter()
                .filter(|m| !gone.contains(m.id.as_str()))
                .cloned()
                .collect(),
        );
        rest.active_leaf(self.parent_id(&oldest.id))
            .map(str::to_owned)
    }

    /// `id` and every message under it, newest first (children before their parents), so that
    /// removing them in this order never leaves a message whose parent is gone.
    pub fn subtree(&self, id: &str) -> Vec<&Message> {
        let Some(&start) = self.index.get(id) else {
            return Vec::new();
        };
        let mut found = self.under(start);
        found.sort_unstable_by(|a, b| b.cmp(a));
        found.into_iter().map(|i| &self.messages[i]).collect()
    }
}

/// Whether `message` follows nothing, as far as it tells.
fn is_first(message: &Message) -> bool {
    message.parent == Parent::Root || message.lineage == Some(Lineage::root())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{MessageDraft, MessageRole};

    fn message(sequence: u64, parent: Parent) -> Message {
        let mut m = MessageDraft::new(MessageRole::User, format!("m{sequence}"))
            .into_message("c", sequence, parent);
        m.id = format!("m{sequence}");
        m
    }

    fn under(id: &str) -> Parent {
        Parent::Message(id.into())
    }

    fn ids(messages: &[&Message]) -> Vec<String> {
        messages.iter().map(|m| m.id.clone()).collect()
    }

    #[test]
    fn a_tree_of_the_newest_messages_knows_where_its_paths_are_cut() {
        // m1 <- m2 <- m3 <- m4, and m5 a new first message; m1 and m2 were not read.
        let newest = Tree::of(MessageWindow {
            messages: vec![
                message(3, under("m2")),
                message(4, under("m3")),
                message(5, Parent::Root),
            ],
            older_left_out: true,
        });
        assert!(!newest.is_whole());
        assert!(newest.reaches_back(Some("m4"), 2), "m3 and m4 were read");
        assert!(!newest.reaches_back(Some("m4"), 3), "m2 was not");
        assert!(newest.reaches_back(Some("m5"), 10), "m5 is a first message");
        assert!(
            !newest.reaches_back(None, 0),
            "older first messages may exist"
        );
        assert!(!newest.reaches_back(Some("m1"), 0), "m1 was not read");

        let every = Tree::new(vec![message(3, under("m2")), message(4, under("m3"))]);
        assert!(every.is_whole());
        assert!(
            every.reaches_back(Some("m4"), 3),
            "m3's parent is gone: m3 is first"
        );
    }

    #[test]
    fn older_messages_read_along_a_path_join_it_but_not_their_other_children() {
        // m1 <- m2 <- m3, m1 <- m4 (another branch), m3 <- m5; only m5 was read at first.
        let mut m1 = message(1, Parent::Root);
        m1.lineage = Some(Lineage::root());
        let newest = Tree::of(MessageWindow {
            messages: vec![message(5, under("m3"))],
            older_left_out: true,
        });
        assert!(!newest.reaches_back(Some("m5"), 4));
        let path = newest.with(vec![m1, message(2, under("m1")), message(3, under("m2"))]);
        assert_eq!(ids(&path.path_to("m5")), ["m1", "m2", "m3", "m5"]);
        assert!(path.reaches_back(Some("m5"), 10), "m1 keeps no ancestors");
        assert!(path.knows_children_of("m5"));
        assert!(!path.knows_children_of("m1"), "m4 was not read");
    }

    #[test]
    fn messages_stored_before_branches_read_as_one_linear_branch() {
        let tree = Tree::new(vec![
            message(3, Parent::Unrecorded),
            message(1, Parent::Unrecorded),
            message(2, Parent::Unrecorded),
        ]);
        assert_eq!(tree.parent_id("m1"), None);
        assert_eq!(tree.parent_id("m3"), Some("m2"));
        assert_eq!(ids(&tree.active_branch(None)), ["m1", "m2", "m3"]);
        assert_eq!(tree.placement("m2").sibling_ids, ["m2"]);
    }

    #[test]
    fn an_old_history_continued_with_a_branch_keeps_its_messages_on_the_path() {
        let tree = Tree::new(vec![
            message(1, Parent::Unrecorded),
            message(2, Parent::Unrecorded),
            message(3, under("m2")),
            message(4, under("m1")),
        ]);
        assert_eq!(tree.placement("m4").sibling_ids, ["m2", "m4"]);
        assert_eq!(ids(&tree.active_branch(Some("m3"))), ["m1", "m2", "m3"]);
        assert_eq!(ids(&tree.active_branch(None)), ["m1", "m4"]);
    }

    #[test]
    fn the_active_branch_runs_to_the_newest_leaf_under_the_chosen_message() {
        let tree = Tree::new(vec![
            message(1, Parent::Root),
            message(2, under("m1")),
            message(3, under("m1")),
            message(4, under("m2")),
            message(5, Parent::Root),
        ]);
        assert_eq!(tree.active_leaf(Some("m1")), Some("m4"));
        assert_eq!(tree.placement("m5").sibling_ids, ["m1", "m5"]);
        assert_eq!(tree.placement("m5").parent_id, None);
        assert_eq!(ids(&tree.subtree("m2")), ["m4", "m2"]);
        assert_eq!(
            tree.active_leaf_without(Some("m4"), &[tree.get("m4").unwrap().clone()]),
            Some("m2".to_owned())
        );
        assert_eq!(tree.active_leaf_without(Some("m3"), &[]), None);
    }
}
