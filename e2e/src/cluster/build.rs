//! The upstream programs, built from the Go modules pinned under `e2e/upstream/` and cached
//! outside the clone, keyed by those modules' go.mod and go.sum.
//!
//! ```text
//! e2e/upstream/kubernetes/go.{mod,sum} --go build--> kube-apiserver, kube-controller-manager
//! e2e/upstream/etcd/go.{mod,sum}       --go build--> etcd
//! e2e/upstream/kube-router/go.{mod,sum} --go build--> kube-router (the packet suite's dataplane)
//! e2e/upstream/helm{3,4}/go.{mod,sum}   --go build--> helm (the chart tests')
//!     => $NETFENCE_UPSTREAM_CACHE (default ~/.cache/netfence/upstream)/<versions>-<sha256 of the pins>/
//! ```
//!
//! A second `up` finds the binaries and starts in seconds; a changed pin builds anew beside the
//! old ones. The build runs `go` with `CGO_ENABLED=0`, `-pgo=off` (kube-apiserver's PGO profile
//! compiles every shared package twice) and `-trimpath`, and `GOTOOLCHAIN=local` so nothing but
//! modules is fetched.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, bail};

/// The built programs.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// `etcd`.
    pub etcd: PathBuf,
    /// `kube-apiserver`.
    pub apiserver: PathBuf,
    /// `kube-controller-manager`.
    pub controller_manager: PathBuf,
    /// The Kubernetes release they are built from (`v1.37.2`).
    pub kubernetes_version: String,
    /// The etcd release (`v3.6.16`).
    pub etcd_version: String,
}

/// The folder of the Go modules that pin the upstream programs.
#[must_use]
pub fn upstream_directory() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("upstream")
}

/// Where built programs are kept: `$NETFENCE_UPSTREAM_CACHE`, else
/// `$XDG_CACHE_HOME/netfence/upstream`, else `~/.cache/netfence/upstream`.
#[must_use]
pub fn cache_root() -> PathBuf {
    if let Some(path) = std::env::var_os("NETFENCE_UPSTREAM_CACHE") {
        return PathBuf::from(path);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("netfence").join("upstream")
}

/// The version a go.mod requires of `module` (`require module vX.Y.Z`, alone or in a block).
fn required_version(go_mod: &str, module: &str) -> Option<String> {
    go_mod.lines().find_map(|line| {
        let mut words = line.trim().trim_start_matches("require").split_whitespace();
        (words.next() == Some(module))
            .then(|| words.next().map(str::to_owned))
            .flatten()
    })
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("failed to read {}", path.display()))
}

/// The first six bytes of a digest, in hex: enough to tell pins apart in a folder name.
fn short_hash(digest: &[u8]) -> String {
    digest.iter().take(6).fold(String::new(), |mut hash, byte| {
        let _ = write!(hash, "{byte:02x}");
        hash
    })
}

/// The cache key of the pins: the versions, then the SHA-256 of every go.mod and go.sum.
fn cache_key(upstream: &Path) -> anyhow::Result<(String, String, String)> {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(RECIPE.as_bytes());
    for module in ["kubernetes", "etcd"] {
        for file in ["go.mod", "go.sum"] {
            context.update(read(&upstream.join(module).join(file))?.as_bytes());
        }
    }
    let hash = short_hash(context.finish().as_ref());
    let kubernetes = required_version(
        &read(&upstream.join("kubernetes/go.mod"))?,
        "k8s.io/kubernetes",
    )
    .context("e2e/upstream/kubernetes/go.mod requires no k8s.io/kubernetes")?;
    let etcd = required_version(
        &read(&upstream.join("etcd/go.mod"))?,
        "go.etcd.io/etcd/server/v3",
    )
    .context("e2e/upstream/etcd/go.mod requires no go.etcd.io/etcd/server/v3")?;
    Ok((
        format!("kubernetes-{kubernetes}-etcd-{etcd}-{hash}"),
        kubernetes,
        etcd,
    ))
}

/// Bumped when the way the programs are built changes (flags), so the cache builds them anew.
const RECIPE: &str = "recipe-2";

/// The linker flags that stamp a Kubernetes binary with its release, as the release build does
/// (`/version` and `kubectl version` report it; without them `v0.0.0-master`).
fn kubernetes_version_flags(version: &str) -> String {
    let mut numbers = version.trim_start_matches('v').split('.');
    let major = numbers.next().unwrap_or_default();
    let minor = numbers.next().unwrap_or_default();
    [
        format!("gitVersion={version}"),
        format!("gitMajor={major}"),
        format!("gitMinor={minor}"),
        "gitTreeState=clean".to_owned(),
    ]
    .iter()
    .map(|setting| format!("-X k8s.io/component-base/version.{setting}"))
    .collect::<Vec<_>>()
    .join(" ")
}

fn go_build(
    module_directory: &Path,
    output: &Path,
    packages: &[&str],
    linker_flags: &str,
) -> anyhow::Result<()> {
    let started = Instant::now();
    eprintln!(
        "cluster: building {} (once per pin; cold on 2 cores: the control plane 15-25 minutes, each other program a few)",
        packages.join(" ")
    );
    let status = Command::new("go")
        .current_dir(module_directory)
        .env("CGO_ENABLED", "0")
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=readonly")
        .args(["build", "-pgo=off", "-trimpath"])
        .arg(format!("-ldflags={linker_flags}"))
        .arg("-o")
        .arg(output)
        .args(packages)
        .status()
        .map_err(|error| {
            anyhow::anyhow!(
                "failed to run go ({error}): Go 1.26 or later is needed to build the upstream programs; install it and put `go` on PATH"
            )
        })?;
    if !status.success() {
        bail!(
            "go build of {} in {} failed ({status}); its output is above",
            packages.join(" "),
            module_directory.display()
        );
    }
    eprintln!(
        "cluster: built {} in {:.0} s",
        packages.join(" "),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `kubectl` of the pinned Kubernetes release, built into the cache the first time, for a
/// machine that has none.
pub fn ensure_kubectl() -> anyhow::Result<PathBuf> {
    let upstream = upstream_directory();
    let (key, kubernetes_version, _) = cache_key(&upstream)?;
    let directory = cache_root().join(format!("{key}-kubectl"));
    let kubectl = directory.join("kubectl");
    if kubectl.is_file() {
        return Ok(kubectl);
    }
    let partial = cache_root().join(format!("{key}-kubectl.partial-{}", std::process::id()));
    std::fs::create_dir_all(&partial)
        .with_context(|| format!("failed to create {}", partial.display()))?;
    go_build(
        &upstream.join("kubernetes"),
        &partial,
        &["k8s.io/kubernetes/cmd/kubectl"],
        &kubernetes_version_flags(&kubernetes_version),
    )?;
    if std::fs::rename(&partial, &directory).is_err() && !kubectl.is_file() {
        anyhow::bail!(
            "failed to move {} to {}",
            partial.display(),
            directory.display()
        );
    }
    let _ = std::fs::remove_dir_all(&partial);
    Ok(kubectl)
}

/// The cached programs, built first when the pins are new.
pub fn ensure() -> anyhow::Result<Binaries> {
    let upstream = upstream_directory();
    let (key, kubernetes_version, etcd_version) = cache_key(&upstream)?;
    let directory = cache_root().join(&key);
    let binaries = Binaries {
        etcd: directory.join("etcd"),
        apiserver: directory.join("kube-apiserver"),
        controller_manager: directory.join("kube-controller-manager"),
        kubernetes_version,
        etcd_version,
    };
    if [
        &binaries.etcd,
        &binaries.apiserver,
        &binaries.controller_manager,
    ]
    .iter()
    .all(|path| path.is_file())
    {
        return Ok(binaries);
    }
    // Build beside the final folder and rename it in place, so an interrupted build never
    // leaves a folder that looks complete.
    let partial = cache_root().join(format!("{key}.partial-{}", std::process::id()));
    std::fs::create_dir_all(&partial)
        .with_context(|| format!("failed to create {}", partial.display()))?;
    go_build(
        &upstream.join("kubernetes"),
        &partial,
        &[
            "k8s.io/kubernetes/cmd/kube-apiserver",
            "k8s.io/kubernetes/cmd/kube-controller-manager",
        ],
        &kubernetes_version_flags(&binaries.kubernetes_version),
    )?;
    go_build(
        &upstream.join("etcd"),
        &partial.join("etcd"),
        &["go.etcd.io/etcd/server/v3"],
        "",
    )?;
    if let Err(error) = std::fs::rename(&partial, &directory) {
        // Another `up` finished the same build first: use its programs.
        if !directory.join("etcd").is_file() {
            return Err(error).with_context(|| {
                format!(
                    "failed to move {} to {}",
                    partial.display(),
                    directory.display()
                )
            });
        }
        let _ = std::fs::remove_dir_all(&partial);
    }
    Ok(binaries)
}

/// kube-router of the pin in `e2e/upstream/kube-router/`, built into the cache the first time: the
/// NetworkPolicy dataplane of the packet suite (its firewall only). Returns it and its version.
pub fn ensure_kube_router() -> anyhow::Result<(PathBuf, String)> {
    const MODULE: &str = "github.com/cloudnativelabs/kube-router/v2";
    ensure_program(
        "kube-router",
        MODULE,
        "cmd/kube-router",
        "",
        &|version, _| format!("-X {MODULE}/pkg/version.Version={version}"),
    )
}

/// Helm of the major version `major` (3 or 4), of the pin in `e2e/upstream/helm{major}/`, built
/// into the cache the first time: what the chart tests lint, render and install with. Returns it
/// and its version.
///
/// # Errors
///
/// When `major` is neither 3 nor 4, Go is missing, or the build fails.
pub fn ensure_helm(major: u8) -> anyhow::Result<(PathBuf, String)> {
    let module = match major {
        3 => "helm.sh/helm/v3",
        4 => "helm.sh/helm/v4",
        _ => bail!("Helm {major} is not pinned: e2e/upstream/ has helm3 and helm4"),
    };
    // The recipe names the flags below: changing them, change it, and the cache builds anew.
    ensure_program(
        &format!("helm{major}"),
        module,
        "cmd/helm",
        "kubernetes-stamp",
        &|version, go_mod| {
            // As Helm's Makefile stamps a release (`helm version` reports it). Helm 3's Makefile
            // also stamps the Kubernetes release `helm template` and `lint` assume, from client-go's
            // version (v0.37 is Kubernetes 1.37); unstamped it assumes 1.20 and refuses charts that
            // need later.
            let mut flags = format!("-X {module}/internal/version.version={version}");
            if major == 3
                && let Some(client_go) = required_version(go_mod, "k8s.io/client-go")
            {
                let minor = client_go.split('.').nth(1).unwrap_or_default();
                for package in ["pkg/chartutil", "pkg/lint/rules"] {
                    let _ = write!(
                        flags,
                        " -X {module}/{package}.k8sVersionMajor=1 -X {module}/{package}.k8sVersionMinor={minor}"
                    );
                }
            }
            flags
        },
    )
}

/// Builds started by this process, so that each has a folder of its own.
static BUILDS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// The program `package` of `module`, pinned by `e2e/upstream/{folder}/`, built into the cache
/// the first time under `{folder}-{version}-{hash of the pins and the recipe}/` (`recipe` names
/// a change of the program's own build flags). Returns it and its version.
fn ensure_program(
    folder: &str,
    module: &str,
    package: &str,
    recipe: &str,
    linker_flags: &dyn Fn(&str, &str) -> String,
) -> anyhow::Result<(PathBuf, String)> {
    let module_directory = upstream_directory().join(folder);
    let go_mod = read(&module_directory.join("go.mod"))?;
    let version = required_version(&go_mod, module)
        .with_context(|| format!("e2e/upstream/{folder}/go.mod requires no {module}"))?;
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(RECIPE.as_bytes());
    context.update(recipe.as_bytes());
    context.update(go_mod.as_bytes());
    context.update(read(&module_directory.join("go.sum"))?.as_bytes());
    let hash = short_hash(context.finish().as_ref());
    let binary = package.rsplit('/').next().unwrap_or(package);
    let directory = cache_root().join(format!("{folder}-{version}-{hash}"));
    let program = directory.join(binary);
    if program.is_file() {
        return Ok((program, version));
    }
    // A folder of this build's own, even beside another thread's build of the same program.
    let partial = cache_root().join(format!(
        "{folder}-{version}-{hash}.partial-{}-{}",
        std::process::id(),
        BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&partial)
        .with_context(|| format!("failed to create {}", partial.display()))?;
    go_build(
        &module_directory,
        &partial.join(binary),
        &[&format!("{module}/{package}")],
        &linker_flags(&version, &go_mod),
    )?;
    if std::fs::rename(&partial, &directory).is_err() && !program.is_file() {
        bail!(
            "failed to move {} to {}",
            partial.display(),
            directory.display()
        );
    }
    let _ = std::fs::remove_dir_all(&partial);
    Ok((program, version))
}

/// The CustomResourceDefinitions of the engines a ClusterBaseline renders to, read from their
/// pinned Go modules (`e2e/upstream/engines/`): network-policy-api's ClusterNetworkPolicy (the
/// standard channel) and Cilium's CiliumClusterwideNetworkPolicy, as (engine, file) pairs. `go mod
/// download` fetches each module once into Go's module cache, outside the clone, and the hash of
/// what it fetched must be the one go.sum pins. Calico's `github.com/projectcalico/api` is not
/// served by the module proxy (every version is refused), so Calico is not among them.
///
/// # Errors
///
/// When Go is missing, a download fails, or a hash or a file is not what the pins say.
pub fn ensure_engine_crds() -> anyhow::Result<Vec<(&'static str, PathBuf)>> {
    const FILES: [(&str, &str, &str); 2] = [
        (
            "ClusterNetworkPolicy",
            "sigs.k8s.io/network-policy-api",
            "config/crd/standard/policy.networking.k8s.io_clusternetworkpolicies.yaml",
        ),
        (
            "Cilium",
            "github.com/cilium/cilium",
            "pkg/k8s/apis/cilium.io/client/crds/v2/ciliumclusterwidenetworkpolicies.yaml",
        ),
    ];
    let module_directory = upstream_directory().join("engines");
    let go_mod = read(&module_directory.join("go.mod"))?;
    let go_sum = read(&module_directory.join("go.sum"))?;
    let mut files = Vec::new();
    for (engine, module, file) in FILES {
        let version = required_version(&go_mod, module)
            .with_context(|| format!("e2e/upstream/engines/go.mod requires no {module}"))?;
        let pinned = go_sum
            .lines()
            .find_map(|line| {
                let mut fields = line.split_whitespace();
                (fields.next() == Some(module) && fields.next() == Some(version.as_str()))
                    .then(|| fields.next().map(str::to_owned))
                    .flatten()
            })
            .with_context(|| {
                format!("e2e/upstream/engines/go.sum pins no hash for {module} {version}")
            })?;
        // Outside any module, so nothing in the repository is written.
        let output = Command::new("go")
            .current_dir(std::env::temp_dir())
            .env("GOTOOLCHAIN", "local")
            .env("GOFLAGS", "")
            .args(["mod", "download", "-json", &format!("{module}@{version}")])
            .output()
            .context("failed to run go (install Go 1.26)")?;
        let download: serde_json::Value = serde_json::from_slice(&output.stdout)
            .with_context(|| format!("go mod download {module}@{version} printed no JSON"))?;
        if let Some(error) = download["Error"].as_str() {
            bail!("go mod download {module}@{version}: {error}");
        }
        let sum = download["Sum"].as_str().unwrap_or_default();
        if sum != pinned {
            bail!("{module} {version} downloaded with hash {sum}, but go.sum pins {pinned}");
        }
        let path = Path::new(download["Dir"].as_str().unwrap_or_default()).join(file);
        if !path.is_file() {
            bail!("{module} {version} has no {file}");
        }
        files.push((engine, path));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_versions_are_read_from_blocks_and_lines() {
        let go_mod = "module x\n\nrequire k8s.io/kubernetes v1.37.2\n\nrequire (\n\tgo.etcd.io/etcd/server/v3 v3.6.16\n\tgithub.com/a/b v1.0.0 // indirect\n)\n";
        assert_eq!(
            required_version(go_mod, "k8s.io/kubernetes").as_deref(),
            Some("v1.37.2")
        );
        assert_eq!(
            required_version(go_mod, "go.etcd.io/etcd/server/v3").as_deref(),
            Some("v3.6.16")
        );
        assert_eq!(required_version(go_mod, "k8s.io/api"), None);
    }
}
