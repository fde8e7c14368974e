//! `netfence crd`: print the CustomResourceDefinitions, or write one file each into a directory.

use std::{path::PathBuf, process::ExitCode};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

/// Arguments of `netfence crd`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write each CRD to `DIR/<plural>.<group>.yaml` instead of printing them all on stdout
    /// (DIR and its parents are created when missing).
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
}

/// The YAML of one CRD, as `netfence crd` prints it and `config/crd/` holds it.
pub fn crd_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_saphyr::SerializeError> {
    serde_saphyr::to_string(crd)
}

/// The file name of a CRD in `config/crd/`: `<plural>.<group>.yaml`, which is the CRD's own name.
#[must_use]
pub fn crd_file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"))
}

pub(super) fn run(args: &Args) -> ExitCode {
    let crds = netfence_crd::crds();
    let mut documents = Vec::new();
    for crd in &crds {
        match crd_yaml(crd) {
            Ok(yaml) => documents.push((crd_file_name(crd), yaml)),
            Err(error) => {
                eprintln!("error: failed to serialize the CRDs: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    match &args.output_dir {
        None => {
            let all: Vec<&str> = documents.iter().map(|(_, yaml)| yaml.as_str()).collect();
            if let Err(error) = super::output::write_stdout(&all.join("---\n")) {
                eprintln!("error: cannot write the CRDs to stdout: {error}");
                return ExitCode::FAILURE;
            }
        }
        Some(directory) => {
            if let Err(error) = std::fs::create_dir_all(directory) {
                eprintln!(
                    "error: cannot create the directory {}: {error}; pass --output-dir a directory you can write to",
                    directory.display()
                );
                return ExitCode::FAILURE;
            }
            for (file, yaml) in &documents {
                let path = directory.join(file);
                if let Err(error) = std::fs::write(&path, yaml) {
                    eprintln!("error: cannot write {}: {error}", path.display());
                    return ExitCode::FAILURE;
                }
                eprintln!("wrote {}", path.display());
            }
        }
    }
    ExitCode::SUCCESS
}
