//! The README and the pages of `docs/` it links, checked as a reader follows them: every link
//! to a file of the repository names one that exists, and every `#anchor` names a heading of the
//! page it points at (GitHub's anchors: lowercase, punctuation dropped, spaces as hyphens).
//!
//! ```text
//! README.md, docs/*.md --links--> (file, anchor) --> the file exists, the anchor is a heading there
//! ```

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the operator crate sits in the repository")
        .to_path_buf()
}

/// The Markdown pages a reader reaches from the README.
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![repo().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .expect("docs/ is readable")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// GitHub's anchor of a heading's text.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|character| character.is_alphanumeric() || matches!(character, '-' | '_' | ' '))
        .map(|character| if character == ' ' { '-' } else { character })
        .collect()
}

/// The anchors of a page's headings, code blocks left out.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut anchors = BTreeSet::new();
    for line in text.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            anchors.insert(anchor(line.trim_start_matches('#')));
        }
    }
    anchors
}

/// The targets of a page's inline links `[text](target)`, code blocks and spans left out.
fn links(text: &str) -> Vec<String> {
    let mut in_code = false;
    let mut links = Vec::new();
    for line in text.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        // Code spans are not links: drop them before looking.
        let prose: String = line
            .split('`')
            .enumerate()
            .filter(|(index, _)| index % 2 == 0)
            .map(|(_, part)| part)
            .collect::<Vec<_>>()
            .join(" ");
        let mut rest = prose.as_str();
        while let Some(start) = rest.find("](") {
            let after = &rest[start + 2..];
            let Some(end) = after.find(')') else { break };
            links.push(after[..end].to_owned());
            rest = &after[end..];
        }
    }
    links
}

/// If this fails, a reader who follows a link of the README or of a docs/ page lands on a
/// file that does not exist or on a section that is not there (a heading renamed or moved to
/// another page without its links).
#[test]
fn every_link_of_the_readme_and_docs_reaches_its_file_and_section() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).expect("readable page");
        let directory = page.parent().expect("a page sits in a directory");
        for link in links(&text) {
            if link.starts_with("http://") || link.starts_with("https://") {
                continue;
            }
            checked += 1;
            let (file, section) = link.split_once('#').unwrap_or((link.as_str(), ""));
            let target = if file.is_empty() {
                page.clone()
            } else {
                directory.join(file)
            };
            if !target.exists() {
                broken.push(format!("{}: {link}: no such file", page.display()));
                continue;
            }
            if section.is_empty() {
                continue;
            }
            let target_text = std::fs::read_to_string(&target).expect("readable target");
            if !anchors(&target_text).contains(section) {
                broken.push(format!(
                    "{}: {link}: {} has no heading with that anchor",
                    page.display(),
                    target.display()
                ));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    assert!(
        checked > 20,
        "only {checked} links found: the reader is broken"
    );
}

/// If this fails, the README grew back into the reference it was split from: a newcomer has to
/// scroll through every flag and table before finding the next step. Reference material belongs
/// in a docs/ page the README links.
#[test]
fn the_readme_stays_an_entry_point() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    assert!(
        readme.len() < 16_000,
        "README.md is {} bytes: move reference material into docs/",
        readme.len()
    );
    let commands = readme
        .split_once("```sh\n")
        .map(|(_, rest)| rest)
        .and_then(|rest| rest.split_once("```"))
        .map(|(block, _)| block)
        .expect("the README opens with a sh block");
    assert!(
        commands.contains("sandbox --apply examples/ --once") && commands.contains("cargo test"),
        "the README's first block is not the two commands: {commands}"
    );
    for page in pages().iter().skip(1) {
        let name = page
            .strip_prefix(repo())
            .expect("inside the repository")
            .display()
            .to_string();
        assert!(
            readme.contains(&format!("]({name})")),
            "the README does not link {name}"
        );
    }
}

#[test]
fn anchors_follow_github() {
    assert_eq!(
        anchor(" The truth about each namespace: `Isolated`, `DNSReachable` and `netfence doctor`"),
        "the-truth-about-each-namespace-isolated-dnsreachable-and-netfence-doctor"
    );
    assert_eq!(anchor("Real packets: `packets`"), "real-packets-packets");
}
