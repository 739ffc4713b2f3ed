//! The chat's conversation as messages, answers and slash commands change it: what `/undo`, `/retry`, `/drop`,
//! `/clear`, `/system`, `/load`, `/image` and `/set` do, and when the model must answer.
//!
//! Owns: the [`Conversation`], the images (and series) waiting for the next message, the sampling settings `/set` changes and
//! the retry count that varies the seed of a sampled `/retry`. Each transition returns what happened: an
//! [`Answer`] to produce, how many turns are left, or a [`ChatStateError`] when there is nothing to do.
//! Must not: touch the model or the KV cache, read files or print; `commands/chat.rs` does that with what the
//! transitions return.

use std::path::PathBuf;

use crate::chat::command::Setting;
use crate::conversation::{Conversation, Part, Role, Turn};
use crate::settings::SamplingSettings;

/// A command that had nothing to act on; the chat goes on unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[allow(clippy::enum_variant_names)] // each names what there was nothing of, in the user's words
pub enum ChatStateError {
    #[error("nothing to undo")]
    NothingToUndo,
    #[error("nothing to retry: no answer yet")]
    NothingToRetry,
    #[error("no earlier exchange to drop")]
    NothingToDrop,
}

/// The model must answer the conversation's last user message. Hand it back with [`ChatState::answered`] or
/// [`ChatState::answer_failed`].
#[derive(Debug, Clone, PartialEq)]
#[must_use = "the model must answer the last user message"]
pub struct Answer {
    sampling: SamplingSettings,
    /// The message was just sent: if the answer fails, it is taken back and its images wait again.
    sent: bool,
}

impl Answer {
    /// The settings to answer with: the chat's, with the seed moved on by each `/retry` when sampling.
    pub fn sampling(&self) -> &SamplingSettings {
        &self.sampling
    }
}

/// A chat's conversation and settings, between engine calls.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatState {
    conversation: Conversation,
    /// Images attached with `/image` (or `--image`) that the next message will carry before its text, in order;
    /// also the images and series of a message taken back.
    pending: Vec<Part>,
    sampling: SamplingSettings,
    show_thinking: bool,
    retries: u32,
}

impl ChatState {
    /// A chat with no turns yet.
    pub fn new(system: Option<String>, sampling: SamplingSettings) -> Self {
        ChatState {
            conversation: Conversation {
                system,
                turns: Vec::new(),
            },
            pending: Vec::new(),
            sampling,
            show_thinking: false,
            retries: 0,
        }
    }

    pub fn conversation(&self) -> &Conversation {
        &self.conversation
    }

    pub fn sampling(&self) -> &SamplingSettings {
        &self.sampling
    }

    /// Whether the thinking block is shown (`/set thinking on`).
    pub fn shows_thinking(&self) -> bool {
        self.show_thinking
    }

    /// A message: it becomes the user's turn, the pending images first, then the text. Nothing to answer for a
    /// blank message without images. A message left unanswered (its `/retry` or a loaded chat's answer failed) is
    /// taken back first, as a failed answer takes back a message just sent, and its images (and series) go with
    /// this one: turns must alternate.
    pub fn send(&mut self, text: String) -> Option<Answer> {
        if text.trim().is_empty() && self.pending.is_empty() {
            return None;
        }
        let mut parts = std::mem::take(&mut self.pending);
        if self.conversation.turns.last().is_some_and(|t| t.role == Role::User) {
            if let Some(unanswered) = self.conversation.turns.pop() {
                parts.splice(0..0, unanswered.media().cloned());
            }
        }
        parts.push(Part::Text(text));
        self.conversation.turns.push(Turn::user_parts(parts));
        self.retries = 0;
        Some(self.answer(true))
    }

    /// The model answered: its answer (kept even when `interrupted`, and marked so) becomes the model's turn.
    pub fn answered(&mut self, _answer: Answer, text: &str, tokens: Vec<i32>, interrupted: bool) {
        self.conversation
            .turns
            .push(Turn::model(text.trim(), Some(tokens), interrupted));
    }

    /// The answer could not be produced: a message just sent is taken back and its images wait again; a retried
    /// or loaded conversation stays as it is.
    pub fn answer_failed(&mut self, answer: Answer) {
        if answer.sent && self.conversation.turns.last().is_some_and(|t| t.role == Role::User) {
            if let Some(turn) = self.conversation.turns.pop() {
                self.pending = turn.media().cloned().collect();
            }
        }
    }

    /// `/image`: these images go with the next message. Returns how many were attached.
    pub fn attach(&mut self, paths: Vec<PathBuf>) -> usize {
        let n = paths.len();
        self.pending.extend(paths.into_iter().map(Part::Image));
        n
    }

    /// `/series DIR`: this series goes with the next message (after any images attached before it).
    pub fn attach_series(&mut self, path: PathBuf) {
        self.pending.push(Part::Series(path));
    }

    /// `/system TEXT`: sets the system prompt, or removes it when `text` is empty. Returns whether one is set.
    pub fn set_system(&mut self, text: String) -> bool {
        self.conversation.system = (!text.is_empty()).then_some(text);
        self.conversation.system.is_some()
    }

    /// `/clear`: forgets every turn and the pending images; the system prompt and settings stay.
    pub fn clear(&mut self) {
        self.conversation.turns.clear();
        self.pending.clear();
    }

    /// `/undo`: removes the last exchange (the last user message and its answer, if any). Returns the turns left.
    pub fn undo(&mut self) -> Result<usize, ChatStateError> {
        if self.conversation.turns.last().is_some_and(|t| t.role == Role::Model) {
            self.conversation.turns.pop();
        }
        match self.conversation.turns.pop() {
            Some(_) => Ok(self.conversation.turns.len()),
            None => Err(ChatStateError::NothingToUndo),
        }
    }

    /// `/retry`: forgets the last answer and asks for a new one to the same message (with the next seed when
    /// sampling).
    pub fn retry(&mut self) -> Result<Answer, ChatStateError> {
        if self.conversation.turns.last().is_none_or(|t| t.role != Role::Model) {
            return Err(ChatStateError::NothingToRetry);
        }
        self.conversation.turns.pop();
        self.retries += 1;
        Ok(self.answer(false))
    }

    /// `/drop`: forgets the oldest exchange to make room in the context; the system prompt stays. Returns the
    /// turns left.
    pub fn drop_oldest(&mut self) -> Result<usize, ChatStateError> {
        if self.conversation.turns.len() < 2 {
            return Err(ChatStateError::NothingToDrop);
        }
        self.conversation.turns.drain(..2);
        Ok(self.conversation.turns.len())
    }

    /// `/load`: the loaded conversation (system prompt included) replaces this one and the pending images are
    /// dropped; settings stay. When it ends with a user message, the model answers it.
    pub fn load(&mut self, conversation: Conversation) -> Option<Answer> {
        self.conversation = conversation;
        self.pending.clear();
        self.retries = 0;
        let ends_with_user = self.conversation.turns.last().is_some_and(|t| t.role == Role::User);
        ends_with_user.then(|| self.answer(false))
    }

    /// `/set`: changes one setting for the next answers.
    pub fn set(&mut self, setting: Setting) {
        match setting {
            Setting::Temperature(v) => self.sampling.temperature = v,
            Setting::TopK(v) => self.sampling.top_k = v,
            Setting::TopP(v) => self.sampling.top_p = v,
            Setting::MinP(v) => self.sampling.min_p = v,
            Setting::Seed(v) => self.sampling.seed = v,
            Setting::MaxTokens(v) => self.sampling.max_tokens = v,
            Setting::Thinking(v) => self.show_thinking = v,
            // Read and checked by the chat, which then calls `set_grammar`.
            Setting::Format(_) => {}
        }
    }

    /// The grammar of the next answers (`/set format`), or none.
    pub fn set_grammar(&mut self, grammar: Option<crate::settings::Grammar>) {
        self.sampling.grammar = grammar;
    }

    fn answer(&self, sent: bool) -> Answer {
        let mut sampling = self.sampling.clone();
        if !sampling.is_greedy() {
            sampling.seed = sampling.seed.wrapping_add(self.retries);
        }
        Answer { sampling, sent }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat() -> ChatState {
        ChatState::new(Some("Be brief.".into()), SamplingSettings::default())
    }

    /// Sends `text` and answers it with `reply`.
    fn exchange(state: &mut ChatState, text: &str, reply: &str) {
        let answer = state.send(text.into()).expect("a message is answered");
        state.answered(answer, reply, vec![1, 2], false);
    }

    fn texts(state: &ChatState) -> Vec<String> {
        state.conversation().turns.iter().map(Turn::text).collect()
    }

    #[test]
    fn a_message_is_answered_and_the_answer_kept_trimmed() {
        let mut s = chat();
        exchange(&mut s, "What is sepsis?", "  An infection response. \n");
        assert_eq!(texts(&s), ["What is sepsis?", "An infection response."]);
        assert_eq!(s.conversation().turns[1].role, Role::Model);
        assert_eq!(s.conversation().turns[1].tokens, Some(vec![1, 2]));
        assert_eq!(s.send("   ".into()), None, "a blank message is not sent");
        assert_eq!(s.conversation().turns.len(), 2);
    }

    #[test]
    fn undo_removes_the_last_exchange() {
        let mut s = chat();
        exchange(&mut s, "q1", "a1");
        exchange(&mut s, "q2", "a2");
        assert_eq!(s.undo(), Ok(2));
        assert_eq!(texts(&s), ["q1", "a1"]);
        assert_eq!(s.undo(), Ok(0));
        assert_eq!(s.conversation().system.as_deref(), Some("Be brief."));
    }

    #[test]
    fn undo_of_an_unanswered_message_removes_just_it() {
        let mut s = chat();
        let saved = Conversation {
            system: None,
            turns: vec![
                Turn::user("l1", vec![]),
                Turn::model("m1", None, false),
                Turn::user("l2", vec![]),
            ],
        };
        let answer = s.load(saved).unwrap();
        s.answer_failed(answer);
        assert_eq!(s.undo(), Ok(2));
        assert_eq!(texts(&s), ["l1", "m1"]);
    }

    #[test]
    fn undo_with_nothing_to_undo() {
        let mut s = chat();
        assert_eq!(s.undo(), Err(ChatStateError::NothingToUndo));
        assert_eq!(ChatStateError::NothingToUndo.to_string(), "nothing to undo");
        assert_eq!(s, chat(), "nothing changed");
    }

    #[test]
    fn retry_answers_the_last_message_again() {
        let mut s = chat();
        exchange(&mut s, "q1", "a1");
        exchange(&mut s, "q2", "a2");
        let answer = s.retry().unwrap();
        assert_eq!(
            texts(&s),
            ["q1", "a1", "q2"],
            "the last answer is forgotten, its message stays"
        );
        s.answered(answer, "a2 again", vec![3], false);
        assert_eq!(texts(&s), ["q1", "a1", "q2", "a2 again"]);
    }

    #[test]
    fn retry_moves_the_seed_on_only_when_sampling() {
        let mut s = chat();
        exchange(&mut s, "q", "a");
        let greedy = s.retry().unwrap();
        assert_eq!(greedy.sampling().seed, 0, "greedy answers do not depend on the seed");
        s.answered(greedy, "a", vec![], false);
        s.set(Setting::Temperature(0.7));
        s.set(Setting::Seed(10));
        let sampled = s.retry().unwrap();
        assert_eq!(sampled.sampling().seed, 12, "the second retry");
        assert_eq!(sampled.sampling().temperature, 0.7);
        s.answered(sampled, "b", vec![], false);
        let next = s.send("q2".into()).unwrap();
        assert_eq!(next.sampling().seed, 10, "a new message starts from the chat's seed");
    }

    #[test]
    fn retry_with_no_answer_to_retry() {
        let mut s = chat();
        assert_eq!(s.retry(), Err(ChatStateError::NothingToRetry));
        let answer = s.send("q".into()).unwrap();
        assert_eq!(
            s.retry(),
            Err(ChatStateError::NothingToRetry),
            "the message is not answered yet"
        );
        s.answer_failed(answer);
        assert_eq!(
            ChatStateError::NothingToRetry.to_string(),
            "nothing to retry: no answer yet"
        );
    }

    #[test]
    fn drop_forgets_the_oldest_exchange_and_keeps_the_system_prompt() {
        let mut s = chat();
        exchange(&mut s, "q1", "a1");
        exchange(&mut s, "q2", "a2");
        assert_eq!(s.drop_oldest(), Ok(2));
        assert_eq!(texts(&s), ["q2", "a2"]);
        assert_eq!(s.conversation().system.as_deref(), Some("Be brief."));
        assert_eq!(s.drop_oldest(), Ok(0));
    }

    #[test]
    fn drop_with_no_earlier_exchange() {
        let mut s = chat();
        assert_eq!(s.drop_oldest(), Err(ChatStateError::NothingToDrop));
        let answer = s.send("q".into()).unwrap();
        assert_eq!(
            s.drop_oldest(),
            Err(ChatStateError::NothingToDrop),
            "one unanswered message"
        );
        s.answered(answer, "a", vec![], false);
        assert_eq!(ChatStateError::NothingToDrop.to_string(), "no earlier exchange to drop");
    }

    #[test]
    fn clear_forgets_turns_and_pending_images_but_keeps_system_and_settings() {
        let mut s = chat();
        s.set(Setting::MaxTokens(7));
        exchange(&mut s, "q", "a");
        s.attach(vec!["x.png".into()]);
        s.clear();
        assert!(s.conversation().turns.is_empty());
        assert!(s.pending.is_empty());
        assert_eq!(s.conversation().system.as_deref(), Some("Be brief."));
        assert_eq!(s.sampling().max_tokens, 7);
    }

    #[test]
    fn system_sets_replaces_and_removes_the_system_prompt() {
        let mut s = chat();
        exchange(&mut s, "q", "a");
        assert!(s.set_system("You are terse.".into()));
        assert_eq!(s.conversation().system.as_deref(), Some("You are terse."));
        assert_eq!(texts(&s), ["q", "a"], "the turns stay");
        assert!(!s.set_system(String::new()));
        assert_eq!(s.conversation().system, None);
    }

    #[test]
    fn load_replaces_the_state_and_answers_a_trailing_message() {
        let mut s = chat();
        s.set(Setting::Temperature(0.5));
        exchange(&mut s, "q", "a");
        let _unanswered = s.retry().unwrap();
        s.attach(vec!["x.png".into()]);
        let saved = Conversation {
            system: Some("Loaded.".into()),
            turns: vec![Turn::user("l1", vec![]), Turn::model("m1", None, false)],
        };
        assert_eq!(s.load(saved.clone()), None, "nothing to answer");
        assert_eq!(s.conversation(), &saved);
        assert!(s.pending.is_empty());
        assert_eq!(s.sampling().temperature, 0.5, "settings stay");

        let mut unanswered = saved.clone();
        unanswered.turns.push(Turn::user("l2", vec![]));
        let answer = s.load(unanswered).expect("the last message is answered");
        assert_eq!(answer.sampling().seed, 0, "the retry count starts over");
        s.answered(answer, "m2", vec![], false);
        assert_eq!(texts(&s), ["l1", "m1", "l2", "m2"]);
    }

    #[test]
    fn an_interrupted_answer_is_kept_and_marked() {
        let mut s = chat();
        let answer = s.send("q".into()).unwrap();
        s.answered(answer, "partial ans", vec![4, 5], true);
        let turn = &s.conversation().turns[1];
        assert_eq!((turn.text().as_str(), turn.interrupted), ("partial ans", true));
        assert!(s.retry().is_ok(), "an interrupted answer can be retried");
    }

    #[test]
    fn pending_images_go_with_the_next_message_only() {
        let mut s = chat();
        assert_eq!(s.attach(vec!["a.png".into(), "b.png".into()]), 2);
        assert_eq!(s.attach(vec!["c.png".into()]), 1);
        exchange(&mut s, "Describe these.", "ok");
        exchange(&mut s, "And now?", "ok");
        let images: Vec<_> = s.conversation().turns.iter().map(|t| t.media().count()).collect();
        assert_eq!(images, [3, 0, 0, 0]);
        assert!(s.pending.is_empty());
        s.attach(vec!["d.png".into()]);
        assert!(s.send(String::new()).is_some(), "images alone are a message");
    }

    #[test]
    fn a_failed_answer_takes_the_message_back_and_keeps_its_images() {
        let mut s = chat();
        exchange(&mut s, "q1", "a1");
        s.attach(vec!["x.png".into()]);
        let answer = s.send("q2".into()).unwrap();
        s.answer_failed(answer);
        assert_eq!(texts(&s), ["q1", "a1"]);
        assert_eq!(s.pending, [Part::Image("x.png".into())]);
    }

    #[test]
    fn a_failed_retry_or_load_keeps_the_conversation() {
        let mut s = chat();
        exchange(&mut s, "q1", "a1");
        let answer = s.retry().unwrap();
        s.answer_failed(answer);
        assert_eq!(texts(&s), ["q1"]);
        let answer = s
            .load(Conversation::single(None, "l".into(), vec!["y.png".into()]))
            .unwrap();
        s.answer_failed(answer);
        assert_eq!(texts(&s), ["l"]);
        assert!(s.pending.is_empty());
    }

    /// Found by fuzzing (fuzz::chat): after a failed `/retry` (or a loaded chat whose answer failed), the next
    /// message made two user turns in a row, a conversation that `/save` wrote and `/load` then refused.
    #[test]
    fn a_message_after_a_failed_retry_takes_the_unanswered_one_back() {
        let mut s = chat();
        exchange(&mut s, "q1", "a1");
        s.attach(vec!["x.png".into()]);
        exchange(&mut s, "q2", "a2");
        let answer = s.retry().unwrap();
        s.answer_failed(answer);
        assert_eq!(texts(&s), ["q1", "a1", "q2"]);
        s.attach(vec!["y.png".into()]);
        let answer = s.send("q3".into()).unwrap();
        s.answered(answer, "a3", vec![], false);
        assert_eq!(texts(&s), ["q1", "a1", "q3", "a3"]);
        assert_eq!(
            s.conversation().images().collect::<Vec<_>>(),
            [&PathBuf::from("x.png"), &PathBuf::from("y.png")]
        );
        assert!(Conversation::from_messages(s.conversation().to_messages()).is_ok());
    }

    #[test]
    fn set_changes_sampling_and_thinking() {
        let mut s = chat();
        s.set(Setting::TopK(5));
        s.set(Setting::TopP(0.5));
        s.set(Setting::MinP(0.1));
        s.set(Setting::Thinking(true));
        assert_eq!(
            (s.sampling().top_k, s.sampling().top_p, s.sampling().min_p),
            (5, 0.5, 0.1)
        );
        assert!(s.shows_thinking());
    }
}
