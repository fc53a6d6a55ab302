//! Whether each ref update of a push is a fast-forward, from the objects: the pushed pack goes into a
//! quarantine repository that borrows the mirror's objects (`objects/info/alternates`), and `old` must be the
//! remote's current value and an ancestor of `new` there. Whatever cannot be shown is not a fast-forward.

use std::io::{Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

use paddock_policy::RefUpdate;

use super::commands::is_oid;
use super::git::{Git, GitError};
use super::mirror::Mirror;

const INDEX_LIMIT: Duration = Duration::from_secs(600);
const CHECK_LIMIT: Duration = Duration::from_secs(60);

/// The pushed pack: a file holding it from `offset` to its end.
pub struct Pack {
    pub file: std::fs::File,
    pub offset: u64,
}

/// Sets `fast_forward` on every update: true for a creation; false for a deletion; otherwise true only when
/// `old` is the mirror's current value of the ref and an ancestor of `new` in the mirror plus `pack`.
/// The quarantine is made under `scratch` and removed before returning.
pub async fn judge(
    git: &Git,
    mirror: &Mirror,
    pack: Option<Pack>,
    scratch: &Path,
    updates: &mut [RefUpdate],
) -> Result<(), GitError> {
    for u in updates.iter_mut() {
        u.fast_forward = u.is_create();
    }
    let Ok(refs) = &mirror.refs else { return Ok(()) };
    let candidates: Vec<usize> = (0..updates.len())
        .filter(|&i| {
            let u = &updates[i];
            // Object ids only (never an option git would read): the command parser checks them too.
            let ids = is_oid(&u.old) && is_oid(&u.new);
            ids && !u.is_create() && !u.is_delete() && refs.get(&u.git_ref) == Some(&u.old)
        })
        .collect();
    if candidates.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(scratch).map_err(GitError::Home)?;
    let quarantine = tempfile::Builder::new().prefix("push-").tempdir_in(scratch).map_err(GitError::Home)?;
    let q = quarantine.path();
    git.ok(q, &["init", "--bare", "--quiet", "."], &[], None, CHECK_LIMIT).await?;
    let objects = std::fs::canonicalize(mirror.path.join("objects")).map_err(GitError::Home)?;
    std::fs::write(q.join("objects/info/alternates"), format!("{}\n", objects.display())).map_err(GitError::Home)?;
    if let Some(mut pack) = pack {
        pack.file.seek(SeekFrom::Start(pack.offset)).map_err(GitError::Home)?;
        let indexed =
            git.run(q, &["index-pack", "--stdin", "--fix-thin", "--strict"], &[], Some(pack.file), INDEX_LIMIT).await?;
        if !indexed.success {
            tracing::info!(error = %indexed.stderr.trim(), "the pushed pack does not index; no update is fast-forward");
            return Ok(());
        }
    }
    for i in candidates {
        let u = &updates[i];
        let checked = git.run(q, &["merge-base", "--is-ancestor", &u.old, &u.new], &[], None, CHECK_LIMIT).await?;
        updates[i].fast_forward = checked.success;
    }
    Ok(())
}
