//! A shell command line an agent asks to run: tokenized, its git and gh commands read, its opacity
//! judged, its scripts expanded and its writes recorded, as the policy engine does for every shell call.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paddock_policy::git::{gh_command, gh_opaque, git_command, git_elsewhere, git_opaque, push_target_change};
use paddock_policy::opaque::why_opaque;
use paddock_policy::shell::parse_commands;
use paddock_policy::written::WrittenFiles;
use paddock_policy::written::record::{patch_writes, shell_writes};
use paddock_policy::written::scripts::expand;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else { return };
    let _ = patch_writes(line);
    let Ok(cmds) = parse_commands(line) else { return };
    for cmd in &cmds {
        let _ = (git_command(cmd), gh_command(cmd));
        let _ = (git_opaque(cmd), git_elsewhere(cmd), push_target_change(cmd), gh_opaque(cmd));
    }
    let _ = why_opaque(&cmds);
    let _ = shell_writes(line, &cmds);
    let _ = expand(line, &cmds, &WrittenFiles::default());
});
