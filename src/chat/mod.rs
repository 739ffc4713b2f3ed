//! The pieces of the interactive chat that need no model: slash commands, reading input (terminal or pipe), the
//! conversation as commands and answers change it, saving and loading conversations. `commands/chat.rs` drives
//! them with the engine.

pub mod command;
pub mod input;
pub mod state;
pub mod transcript;
