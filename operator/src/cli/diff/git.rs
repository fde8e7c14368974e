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

/// Run git with `args` in `directory`; its stdout, or what it said on stderr.
fn git(directory: &Path, args: &[&str]) -> Result<Vec<u8>, String> {
    let output = Command::new("git")
        .current_dir(directory)
        .args(args)
        .output()
        .map_err(|error| format!("--git: cannot run git: {error}; install git, or compare two paths (netfence diff OLD NEW)"))?;
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

/// `path` without `.` and with each `..` taken back (lexically: the path may not exist any more).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Whether a file listed below the asked path is one `netfence render` reads in a directory:
/// `.yaml`, `.yml` or `.json`, and nothing hidden below the asked path. A file asked for by name
/// is read whatever its name, as `render` reads it.
fn is_manifest(listed: &str, asked: &str) -> bool {
    if listed == asked {
        return true;
    }
    let below = listed
        .strip_prefix(asked)
        .map_or(listed, |rest| rest.trim_start_matches('/'));
    let below_hidden = below.split('/').any(|name| name.starts_with('.'));
    let extension = Path::new(listed)
        .extension()
        .and_then(|extension| extension.to_str());
    !below_hidden && matches!(extension, Some("yaml" | "yml" | "json"))
}

/// `path` relative to the repository's top directory `top`, with `/` between names.
fn in_repository(path: &Path, top: &Path) -> Result<String, String> {
    let current = std::env::current_dir()
        .and_then(std::fs::canonicalize)
        .map_err(|error| format!("--git: cannot read the current directory: {error}"))?;
    let absolute = normalize(&current.join(path));
    let relative = absolute.strip_prefix(top).map_err(|_| {
        format!(
            "--git: {} is outside the repository at {}",
            path.display(),
            top.display()
        )
    })?;
    let names: Vec<String> = relative
        .components()
        .map(|component| component.as_os_str().to_string_lossy().into_owned())
        .collect();
    Ok(names.join("/"))
}

/// Every document under `paths` as they were at `rev`, in path order; a note in `notes` for each
/// path that did not exist there.
pub fn documents(
    rev: &str,
    paths: &[PathBuf],
    notes: &mut Vec<String>,
) -> Result<Vec<Document>, String> {
    let here = Path::new(".");
    let commit = git(here, &["rev-parse", "--verify", "--quiet", &format!("{rev}^{{commit}}")])
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
    let top = git(here, &["rev-parse", "--show-toplevel"])
        .map_err(|error| format!("--git: not in a git repository: {error}"))?;
    let top = std::fs::canonicalize(String::from_utf8_lossy(&top).trim())
        .map_err(|error| format!("--git: cannot read the repository's directory: {error}"))?;
    let mut documents = Vec::new();
    for path in paths {
        let shown = path.display().to_string();
        let asked = in_repository(path, &top)?;
        let pathspec = if asked.is_empty() {
            "."
        } else {
            asked.as_str()
        };
        let listing = git(
            &top,
            &[
                "ls-tree",
                "-r",
                "-z",
                "--full-name",
                "--name-only",
                &commit,
                "--",
                pathspec,
            ],
        )
        .map_err(|error| format!("--git {rev}: cannot list {shown}: {error}"))?;
        let mut files: Vec<String> = listing
            .split(|byte| *byte == 0)
            .filter(|name| !name.is_empty())
            .map(|name| String::from_utf8_lossy(name).into_owned())
            .filter(|name| is_manifest(name, &asked))
            .collect();
        files.sort();
        if files.is_empty() {
            notes.push(format!(
                "{shown} has no manifest at {rev}: everything in it is new"
            ));
        }
        for file in files {
            let bytes = git(&top, &["cat-file", "blob", &format!("{commit}:{file}")])
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

    /// If this fails, `diff --git` reads other files at REV than `render` reads in the working
    /// tree: a workflow under `.github/`, a README, or misses a file named directly.
    #[test]
    fn manifests_below_the_path_only() {
        assert!(is_manifest("policies/shop.yaml", "policies"));
        assert!(is_manifest("policies/team/a.json", "policies"));
        assert!(!is_manifest("policies/README.md", "policies"));
        assert!(!is_manifest(".github/workflows/ci.yml", ""));
        assert!(is_manifest("shop.yaml", ""));
        assert!(!is_manifest("policies/.hidden/a.yaml", "policies"));
        assert!(is_manifest(".netfence/a.yaml", ".netfence"));
        assert!(
            is_manifest("policies/shop.txt", "policies/shop.txt"),
            "named directly"
        );
    }

    /// If this fails, `a/../a`, `./a` and `a/.` are not the same path for git.
    #[test]
    fn paths_are_normalized() {
        assert_eq!(
            normalize(Path::new("/r/a/../a/./b")),
            PathBuf::from("/r/a/b")
        );
        assert_eq!(normalize(Path::new("/r/./a/.")), PathBuf::from("/r/a"));
    }
}
