//! The pieces of the interactive chat that need no model: slash commands, reading input (terminal or pipe),
//! saving and loading conversations. `commands/chat.rs` drives them with the engine.

pub mod command;
pub mod input;
pub mod transcript;
