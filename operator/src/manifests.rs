//! Reading Kubernetes manifests from files, directories and stdin: the file reads around
//! [`netfence_core::manifests`], which parses them.
//!
//! A path is a file, a directory (its `.yaml`, `.yml` and `.json` files, recursively, in name
//! order) or `-` for stdin.

use std::{
    io::Read,
    path::{Path, PathBuf},
};

pub use netfence_core::manifests::*;

/// Read every document under `paths`, in order. `-` reads stdin (once).
pub fn load(paths: &[PathBuf]) -> Result<Vec<Document>, LoadError> {
    let mut documents = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .take(MAX_FILE_BYTES + 1)
                .read_to_string(&mut text)
                .map_err(|source| read_error(path, source))?;
            if text.len() as u64 > MAX_FILE_BYTES {
                return Err(LoadError::TooLarge { path: "-".into() });
            }
            documents.extend(parse("-", &text)?);
        } else if path.is_dir() {
            let files = manifest_files(path)?;
            if files.is_empty() {
                return Err(LoadError::EmptyDirectory {
                    path: path.display().to_string(),
                });
            }
            for file in files {
                documents.extend(load_file(&file)?);
            }
        } else {
            documents.extend(load_file(path)?);
        }
    }
    Ok(documents)
}

fn read_error(path: &Path, source: std::io::Error) -> LoadError {
    LoadError::Read {
        path: path.display().to_string(),
        source,
    }
}

fn load_file(path: &Path) -> Result<Vec<Document>, LoadError> {
    let source = path.display().to_string();
    let size = std::fs::metadata(path)
        .map_err(|error| read_error(path, error))?
        .len();
    if size > MAX_FILE_BYTES {
        return Err(LoadError::TooLarge { path: source });
    }
    let bytes = std::fs::read(path).map_err(|error| read_error(path, error))?;
    let text = String::from_utf8(bytes).map_err(|_| LoadError::NotText {
        path: source.clone(),
    })?;
    parse(&source, &text)
}

/// The manifest files below a directory, recursively, sorted by path. Hidden entries (`.git`)
/// are skipped.
fn manifest_files(directory: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let mut files = Vec::new();
    let mut pending = vec![directory.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries = std::fs::read_dir(&current).map_err(|error| read_error(&current, error))?;
        for entry in entries {
            let path = entry.map_err(|error| read_error(&current, error))?.path();
            let hidden = path
                .file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with('.'));
            if hidden {
                continue;
            }
            if path.is_dir() {
                pending.push(path);
            } else if path
                .extension()
                .and_then(|extension| extension.to_str())
                .is_some_and(|extension| matches!(extension, "yaml" | "yml" | "json"))
            {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}
