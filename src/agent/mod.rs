//! The Claude Code driver: argv, executable discovery, the stream-json parser, accounting, prices,
//! and the simulated agent that stands in for `claude`.

pub mod accounting;
pub mod prices;
pub mod simulate;
pub mod stream;
