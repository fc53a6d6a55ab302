//! Loading and validating agents repositories: every manifest file, every document, with compiler-style
//! diagnostics (`file:line:column: error: field.path: message`).
//!
//! `validate_files` is pure (file contents in, report out) so that the GitSource reconciler can run it
//! on a git tree; `load_dir` is the one place that reads a directory. `fetch` reads a revision from git
//! (libgit2) and `plan` decides, purely, what a GitSource applies and prunes.

pub mod diagnostics;
pub mod fetch;
pub mod plan;
pub mod policy_tests;
pub mod semantics;
pub mod source;
pub mod validate;
pub mod yaml;

pub use diagnostics::{Diagnostic, Severity};
pub use source::{SourceFile, load_dir};
pub use validate::{LoadedObject, Object, Report, validate_files, validate_files_in};
