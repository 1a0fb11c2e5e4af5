//! The `fjord` binary: parses the command line, loads the configuration, and hands each command to
//! the library crates. Glue only: the model lives in fjord-core, state in fjord-store, host work in
//! fjord-exec, plans in fjord-plan, the worker pool in fjord-daemon.
#![allow(clippy::print_stdout)]

mod bench;
mod cli;
mod commands;
mod config;
mod output;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    quiet_when_output_closes();
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("FJORD_LOG").unwrap_or_else(|_| {
            // The daemon logs its work; other commands speak only when something is wrong.
            let default = if matches!(cli.command, cli::Command::Serve(_)) { "info" } else { "warn" };
            tracing_subscriber::EnvFilter::new(default)
        }))
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime starts");
    match runtime.block_on(commands::dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A reader that goes away (`fjord task list | head -5`) ends the command quietly, with the status a
/// closed pipe gives other Unix tools (128 + SIGPIPE). Printing is where that is noticed: `println!`
/// panics on a write that fails. SIGPIPE itself stays ignored: with it fatal, a command that went
/// away while Fjord wrote to its stdin would kill Fjord (the daemon, or a CLI mid-change) without a word.
fn quiet_when_output_closes() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload.downcast_ref::<String>().map(String::as_str).or(payload.downcast_ref::<&str>().copied());
        if message.is_some_and(|m| m.starts_with("failed printing to std") && m.contains("Broken pipe")) {
            std::process::exit(141);
        }
        default(info);
    }));
}
