//! The committed CRDs are exactly what the Rust types generate, and the pinned Kubernetes matches k8s-openapi.

use rktnetes_operator::api::crd;

use crate::support::repo_path;

/// The CRDs are committed twice: in `crds/` for `kubectl apply`, and in the chart's `crds/`, which `helm install`
/// applies (and, as Helm does for CRDs, never upgrades or deletes). Both must be what the types generate.
const CRD_DIRS: [&str; 2] = ["crds", "charts/rktnetes-operator/crds"];

#[test]
fn committed_crds_match_the_rust_types() {
    for dir in CRD_DIRS {
        assert_dir_matches_the_types(dir);
    }
}

fn assert_dir_matches_the_types(relative: &str) {
    let dir = repo_path(relative);
    let mut stale = Vec::new();
    for (path, generated) in crd::rendered_files(&dir).expect("the CRDs serialise") {
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != generated {
            stale.push(path.display().to_string());
        }
    }
    let mut committed_files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{relative}/ is not readable: {error}"))
        .map(|entry| {
            entry
                .expect("directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    committed_files.sort();
    let mut generated_files: Vec<_> = crd::all().iter().map(crd::file_name).collect();
    generated_files.sort();
    assert_eq!(
        committed_files, generated_files,
        "{relative}/ holds other files than the types generate"
    );
    assert!(
        stale.is_empty(),
        "{} differ from the Rust types; run `cargo run -- crdgen --dir {relative}` and commit the result",
        stale.join(", ")
    );
}

#[test]
fn pinned_kubernetes_matches_the_k8s_openapi_feature() {
    let versions = std::fs::read_to_string(repo_path("e2e/versions.env"))
        .expect("e2e/versions.env is readable");
    let kubernetes = versions
        .lines()
        .find_map(|line| line.strip_prefix("KUBERNETES_VERSION="))
        .expect("versions.env pins KUBERNETES_VERSION");
    let minor = kubernetes
        .trim()
        .trim_start_matches("v1.")
        .split('.')
        .next()
        .expect("a minor version");
    let manifest =
        std::fs::read_to_string(repo_path("Cargo.toml")).expect("Cargo.toml is readable");
    let feature = format!("\"v1_{minor}\"");
    assert!(
        manifest
            .lines()
            .any(|line| line.starts_with("k8s-openapi") && line.contains(&feature)),
        "the local cluster runs Kubernetes {kubernetes}, so k8s-openapi needs the feature {feature}"
    );
}
