//! The newest messages of the conversations this instance read or wrote, kept between
//! requests: a warm instance's next turn in a conversation reads the conversation's item and
//! the messages appended since, not its newest messages again.
//!
//! What is kept is only used when the conversation's item, read in the same step, shows that
//! none of it changed: its message count is the one kept plus the messages appended since.
//! Counters are exact and only appends add to them, so a message deleted or moved by another
//! instance is noticed (the kept window is then dropped and read again), and the messages that
//! other instances appended come with the read. A kept window never holds a message still
//! being written by another turn: only its writer knows when it is final.

use std::collections::HashMap;
use std::sync::Mutex;

use super::ConversationRecord;
use crate::domain::{Message, MessageWindow};

/// How many of a conversation's newest messages are kept: a turn's window.
pub const KEPT_MESSAGES: usize = 128;
/// How many conversations an instance keeps: a Lambda instance serves a few users at a time.
const CONVERSATIONS_KEPT: usize = 64;
/// How much of the function's memory what is kept may take, about (a message's content and
/// a fixed share for the rest of it): messages can be long.
const KEPT_BYTES: usize = 16 << 20;
/// What a message takes besides its content, about.
const MESSAGE_OVERHEAD_BYTES: usize = 512;

#[derive(Debug)]
struct Kept {
    /// The conversation item's `last_sequence` and `message_count` when this was true.
    last_sequence: u64,
    message_count: u64,
    /// Its newest messages (at most [`KEPT_MESSAGES`]) in sequence order.
    window: MessageWindow,
    /// When it was last used, to let go of the least recently used first.
    used: u64,
}

#[derive(Debug, Default)]
pub(super) struct RecentWindows {
    kept: Mutex<(HashMap<String, Kept>, u64)>,
}

impl RecentWindows {
    /// The last sequence number of what is kept of a conversation, when it can serve a window
    /// of `count` messages: the read asks only for the messages after it.
    pub fn kept_until(&self, conversation_id: &str, count: usize) -> Option<u64> {
        let kept = self.kept.lock().unwrap();
        let entry = kept.0.get(conversation_id)?;
        let enough = count <= entry.window.messages.len() || !entry.window.older_left_out;
        (enough && count <= KEPT_MESSAGES).then_some(entry.last_sequence)
    }

    /// The newest `count` messages, from what is kept and `newer` (every message after it, or
    /// the newest `count + 1` of them), when `record`, read just now, shows that nothing kept
    /// changed; `None` otherwise, and what was kept is let go.
    pub fn window(
        &self,
        conversation_id: &str,
        count: usize,
        record: &ConversationRecord,
        newer: Vec<Message>,
    ) -> Option<MessageWindow> {
        let mut kept = self.kept.lock().unwrap();
        let (entries, clock) = &mut *kept;
        let entry = entries.remove(conversation_id)?;
        let unchanged =
            record.conversation.message_count == entry.message_count + newer.len() as u64;
        // An answer still streaming (this instance's, whose turn has not settled it yet) is
        // read as it stands now.
        let streaming = entry
            .window
            .messages
            .iter()
            .chain(&newer)
            .any(Message::is_streaming);
        if !unchanged || streaming || newer.len() > count {
            return None;
        }
        let mut entry = entry;
        entry.window.messages.extend(newer);
        entry.last_sequence = record.last_sequence;
        entry.message_count = record.conversation.message_count;
        trim(&mut entry.window);
        *clock += 1;
        entry.used = *clock;
        let window = newest(&entry.window, count);
        entries.insert(conversation_id.to_owned(), entry);
        make_room(entries);
        Some(window)
    }

    /// Keeps `window`, read together with `record`, unless a message in it is still being
    /// written.
    pub fn keep(&self, record: &ConversationRecord, window: &MessageWindow) {
        if window.messages.iter().any(Message::is_streaming) {
            self.forget(&record.conversation.id);
            return;
        }
        self.insert(record, window);
    }

    fn insert(&self, record: &ConversationRecord, window: &MessageWindow) {
        let id = &record.conversation.id;
        // One conversation too large to keep must not push out all the others.
        if bytes(window) > KEPT_BYTES {
            self.forget(id);
            return;
        }
        let mut kept = self.kept.lock().unwrap();
        let (entries, clock) = &mut *kept;
        *clock += 1;
        let mut window = window.clone();
        trim(&mut window);
        entries.insert(
            id.clone(),
            Kept {
                last_sequence: record.last_sequence,
                message_count: record.conversation.message_count,
                window,
                used: *clock,
            },
        );
        make_room(entries);
    }

    /// `messages` were appended to the conversation `before` described, which `after`
    /// describes now. A new conversation is kept from its first messages.
    pub fn appended(
        &self,
        before: &ConversationRecord,
        after: &ConversationRecord,
        messages: &[Message],
    ) {
        let id = &after.conversation.id;
        if before.last_sequence == 0 {
            // Its answer, if it streams, is this instance's to settle.
            self.insert(after, &MessageWindow::every(messages.to_vec()));
            return;
        }
        self.update(id, before, after, |window| {
            window.messages.extend_from_slice(messages);
        });
    }

    /// An answer its turn wrote as it streamed is final: `answer` takes the place of
    /// `placeholder` (at the same sequence number, or moved after its turn's tool results).
    pub fn settled(
        &self,
        before: &ConversationRecord,
        after: &ConversationRecord,
        placeholder: &Message,
        answer: &Message,
    ) {
        let id = &after.conversation.id;
        self.update(id, before, after, |window| {
            window.messages.retain(|m| m.id != placeholder.id);
            window.messages.push(answer.clone());
        });
    }

    /// Lets go of what is kept of a conversation.
    pub fn forget(&self, conversation_id: &str) {
        self.kept.lock().unwrap().0.remove(conversation_id);
    }

    /// Applies a write to what is kept, when it was kept as the write found the conversation;
    /// lets it go otherwise (another write came between, or one of this instance's went
    /// unnoticed).
    fn update(
        &self,
        id: &str,
        before: &ConversationRecord,
        after: &ConversationRecord,
        write: impl FnOnce(&mut MessageWindow),
    ) {
        let mut kept = self.kept.lock().unwrap();
        let (entries, clock) = &mut *kept;
        let Some(entry) = entries.get_mut(id) else {
            return;
        };
        if entry.last_sequence != before.last_sequence
            || entry.message_count != before.conversation.message_count
        {
            entries.remove(id);
            return;
        }
        write(&mut entry.window);
        entry.last_sequence = after.last_sequence;
        entry.message_count = after.conversation.message_count;
        trim(&mut entry.window);
        *clock += 1;
        entry.used = *clock;
        make_room(entries);
    }
}

/// Lets go of the least recently used conversations while more are kept than
/// [`CONVERSATIONS_KEPT`] or they take more than [`KEPT_BYTES`].
fn make_room(entries: &mut HashMap<String, Kept>) {
    let weight = |entry: &Kept| bytes(&entry.window);
    let mut total: usize = entries.values().map(weight).sum();
    while entries.len() > CONVERSATIONS_KEPT || total > KEPT_BYTES {
        let Some(oldest) = entries
            .iter()
            .min_by_key(|(_, e)| e.used)
            .map(|(id, _)| id.clone())
        else {
            return;
        };
        if let Some(entry) = entries.remove(&oldest) {
            total -= weight(&entry);
        }
    }
}

/// What a window takes of the function's memory, about.
fn bytes(window: &MessageWindow) -> usize {
    window
        .messages
        .iter()
        .map(|m| m.content.len() + MESSAGE_OVERHEAD_BYTES)
        .sum()
}

/// In sequence order, and no more than [`KEPT_MESSAGES`].
fn trim(window: &mut MessageWindow) {
    window.messages.sort_by_key(|m| m.sequence_number);
    let over = window.messages.len().saturating_sub(KEPT_MESSAGES);
    if over > 0 {
        window.messages.drain(..over);
        window.older_left_out = true;
    }
}

/// The newest `count` messages of `window`.
fn newest(window: &MessageWindow, count: usize) -> MessageWindow {
    let skip = window.messages.len().saturating_sub(count);
    MessageWindow {
        messages: window.messages[skip..].to_vec(),
        older_left_out: window.older_left_out || skip > 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Conversation, MessageDraft, MessageRole, NewConversation, Parent};

    fn record(id: &str, last_sequence: u64) -> ConversationRecord {
        let mut conversation = Conversation::create("alice", NewConversation::default());
        conversation.id = id.into();
        conversation.message_count = last_sequence;
        ConversationRecord {
            last_sequence,
            ..ConversationRecord::new(conversation)
        }
    }

    fn messages(id: &str, sequences: std::ops::RangeInclusive<u64>) -> Vec<Message> {
        sequences
            .map(|seq| {
                MessageDraft::new(MessageRole::User, format!("m{seq}")).into_message(
                    id,
                    seq,
                    Parent::Unrecorded,
                )
            })
            .collect()
    }

    #[test]
    fn what_was_kept_serves_with_what_came_since_while_the_count_agrees() {
        let recent = RecentWindows::default();
        recent.keep(&record("c", 3), &MessageWindow::every(messages("c", 1..=3)));
        assert_eq!(recent.kept_until("c", 128), Some(3));

        let window = recent.window("c", 128, &record("c", 5), messages("c", 4..=5));
        let contents: Vec<_> = window
            .unwrap()
            .messages
            .into_iter()
            .map(|m| m.content)
            .collect();
        assert_eq!(contents, ["m1", "m2", "m3", "m4", "m5"]);

        // Another instance removed one of them: the count says so, and nothing is kept.
        let mut removed = record("c", 6);
        removed.conversation.message_count = 5;
        assert!(
            recent
                .window("c", 128, &removed, messages("c", 6..=6))
                .is_none()
        );
        assert_eq!(recent.kept_until("c", 128), None);
    }

    #[test]
    fn the_least_recently_used_conversations_are_let_go_first() {
        let recent = RecentWindows::default();
        for i in 0..=CONVERSATIONS_KEPT {
            let id = format!("c{i}");
            recent.keep(&record(&id, 1), &MessageWindow::every(messages(&id, 1..=1)));
        }
        assert_eq!(recent.kept_until("c0", 1), None);
        assert_eq!(recent.kept_until("c1", 1), Some(1));

        let long = "x".repeat(KEPT_BYTES / 2);
        let mut big = messages("big", 1..=3);
        for message in &mut big {
            message.content.clone_from(&long);
        }
        recent.keep(&record("big", 3), &MessageWindow::every(big));
        assert_eq!(
            recent.kept_until("big", 1),
            None,
            "more than the whole budget"
        );
    }
}
