//! The command line's work beyond running the gateway: each subcommand's logic as a library
//! function the thin binary (`main.rs`) calls, so it can be tested without a process.

pub mod cli;
#[cfg(feature = "import")]
pub mod import;
pub mod keys;
pub mod route;
