//! The paths as they were at a git revision, read with the `git` command (the one every CI
//! checkout has): `git ls-tree` lists the files, `git cat-file` reads each.
//!
//! ```text
//! REV, PATH... --rev-parse--> commit --ls-tree -r--> manifest files below each path --cat-file--> Documents ("REV:path")
//! ```
//!
//! A path that did not exist at REV has no documents there (everything in it is new).

use std::{
    path::{Component, Path, PathBuf},
    process::Command,
};

use crate::manifests::{self, Document, MAX_FILE_BYTES};

/// Run git with `args` in the current directory; its stdout, or what it said on stderr.
fn git(args: &[&str]) -> Result<Vec<u8>, String> {
    let output = Command::new("git")
        .args(args)
        .output()
        .map_err(|error| format!("--git: cannot run git: {error}; install git, or compare two paths (netfence diff OLD NEW)"))?;
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

/// Whether a listed file is one `netfence render` reads below a directory: `.yaml`, `.yml` or
/// `.json`, and no hidden directory or file below the path asked for.
fn is_manifest(listed: &str, asked: &Path) -> bool {
    let depth = asked
        .components()
        .filter(|component| matches!(component, Component::Normal(_) | Component::ParentDir))
        .count();
    let below_hidden = Path::new(listed).components().skip(depth).any(|component| {
        component
            .as_os_str()
            .to_str()
            .is_some_and(|name| name.starts_with('.'))
    });
    let extension = Path::new(listed)
        .extension()
        .and_then(|extension| extension.to_str());
    !below_hidden && matches!(extension, Some("yaml" | "yml" | "json"))
}

/// Every document under `paths` as they were at `rev`, in path order; a note in `notes` for each
/// path that did not exist there.
pub fn documents(
    rev: &str,
    paths: &[PathBuf],
    notes: &mut Vec<String>,
) -> Result<Vec<Document>, String> {
    let commit = git(&["rev-parse", "--verify", "--quiet", &format!("{rev}^{{commit}}")])
        .map_err(|error| {
            let said = if error.is_empty() {
                String::new()
            } else {
                format!(" ({error})")
            };
            format!(
                "--git {rev}: not a commit of the repository in the current directory{said}; fetch it first (such as `git fetch origin main`), or name a branch, tag or commit"
            )
        })?;
    let commit = String::from_utf8_lossy(&commit).trim().to_owned();
    let mut documents = Vec::new();
    for path in paths {
        let shown = path.display().to_string();
        let listing = git(&["ls-tree", "-r", "-z", "--name-only", &commit, "--", &shown])
            .map_err(|error| format!("--git {rev}: cannot list {shown}: {error}"))?;
        let mut files: Vec<String> = listing
            .split(|byte| *byte == 0)
            .filter(|name| !name.is_empty())
            .map(|name| String::from_utf8_lossy(name).into_owned())
            .filter(|name| is_manifest(name, path))
            .collect();
        files.sort();
        if files.is_empty() {
            notes.push(format!(
                "{shown} has no manifest at {rev}: everything in it is new"
            ));
        }
        for file in files {
            // `./` makes the path relative to the current directory, as ls-tree listed it.
            let relative = if file.starts_with("../") {
                file.clone()
            } else {
                format!("./{file}")
            };
            let bytes = git(&["cat-file", "blob", &format!("{commit}:{relative}")])
                .map_err(|error| format!("--git {rev}: cannot read {file}: {error}"))?;
            let source = format!("{rev}:{file}");
            if bytes.len() as u64 > MAX_FILE_BYTES {
                return Err(manifests::LoadError::TooLarge { path: source }.to_string());
            }
            let text = String::from_utf8(bytes).map_err(|_| {
                manifests::LoadError::NotText {
                    path: source.clone(),
                }
                .to_string()
            })?;
            documents.extend(manifests::parse(&source, &text).map_err(|error| error.to_string())?);
        }
    }
    Ok(documents)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// If this fails, `diff --git` reads files `render` would not (a workflow under `.github/`)
    /// or misses manifests below the path.
    #[test]
    fn manifests_below_the_path_only() {
        assert!(is_manifest("policies/shop.yaml", Path::new("policies")));
        assert!(is_manifest("policies/team/a.json", Path::new("policies/")));
        assert!(!is_manifest("policies/README.md", Path::new("policies")));
        assert!(!is_manifest(".github/workflows/ci.yml", Path::new(".")));
        assert!(!is_manifest(
            "policies/.hidden/a.yaml",
            Path::new("policies")
        ));
        assert!(is_manifest(".netfence/a.yaml", Path::new(".netfence")));
    }
}
