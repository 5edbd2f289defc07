//! What the cluster runs, built here: the tools (`e2e/build-tools.sh kind`), the operator and the stand-in
//! (`cargo build --release`), the node image and the operator image (their scripts), and no older images left.

use std::collections::BTreeSet;

use super::{
    Lane,
    lane::{output, run_quiet, run_to_stderr},
    log,
};

/// The images of one build, by reference (`repository:tag`, the tag a hash of what each holds).
pub struct Images {
    /// The rkt node image, the cluster's `--image`.
    pub node: String,
    /// The operator's image, loaded into the nodes.
    pub operator: String,
}

/// Installs and builds what the lane runs, leaving the lane on its Docker engine.
pub fn build(lane: &mut Lane) -> anyhow::Result<Images> {
    run_to_stderr(
        lane.script("install-deps.sh").arg("kind"),
        "e2e/install-deps.sh kind",
    )?;
    run_to_stderr(
        lane.script("build-tools.sh").arg("kind"),
        "e2e/build-tools.sh kind",
    )?;
    lane.use_engine()?;
    log("building the operator and the rkt stand-in (cargo build --release)");
    // The release build has a target directory of its own under the cache, so a fresh clone rebuilds only this
    // project's crates, not their dependencies.
    let target = lane.settings.cache.join("kind/target");
    run_to_stderr(
        lane.command("cargo")
            .env("CARGO_TARGET_DIR", &target)
            .args(["build", "--release", "--locked", "--bins"])
            .args(["-p", "rktnetes-operator", "-p", "rkt-standin"]),
        "cargo build --release",
    )?;
    let binaries = target.join("release");
    let node = image_reference(
        &output(
            lane.script("kind/node-image.sh")
                .arg("rkt-node")
                .arg(binaries.join("rkt")),
            "e2e/kind/node-image.sh rkt-node",
        )?,
        "e2e/kind/node-image.sh rkt-node",
    )?;
    let operator = image_reference(
        &output(
            lane.script("kind/operator-image.sh")
                .arg(binaries.join("rktnetes")),
            "e2e/kind/operator-image.sh",
        )?,
        "e2e/kind/operator-image.sh",
    )?;
    let base = image_reference(
        &output(
            lane.script("kind/node-image.sh").arg("node"),
            "e2e/kind/node-image.sh node",
        )?,
        "e2e/kind/node-image.sh node",
    )?;
    remove_older_images(lane, &[&node, &base, &operator])?;
    Ok(Images { node, operator })
}

/// The reference an image script printed on its last line.
fn image_reference(printed: &str, script: &str) -> anyhow::Result<String> {
    printed
        .lines()
        .map(str::trim)
        .rfind(|line| !line.is_empty())
        .filter(|reference| reference.contains(':') && !reference.contains(char::is_whitespace))
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("{script} printed no image reference: {printed:?}"))
}

/// Every code change makes new images; the older ones of the same repositories would only fill the disk. An image
/// a container still uses stays (`docker rmi` refuses it).
fn remove_older_images(lane: &Lane, current: &[&str]) -> anyhow::Result<()> {
    let repositories: BTreeSet<&str> = current
        .iter()
        .filter_map(|reference| reference.rsplit_once(':').map(|(repository, _)| repository))
        .collect();
    for repository in repositories {
        let listed = output(
            lane.command("docker").args([
                "images",
                "--format",
                "{{.Repository}}:{{.Tag}}",
                repository,
            ]),
            &format!("docker images {repository}"),
        )?;
        for image in older_images(&listed, current) {
            // Still in use, or already gone: either way nothing to do.
            let _ = run_quiet(
                lane.command("docker")
                    .args(["rmi", image])
                    .stderr(std::process::Stdio::null()),
                "docker rmi",
            );
        }
    }
    Ok(())
}

/// The images `docker images` listed that are not `current`.
fn older_images<'a>(listed: &'a str, current: &[&str]) -> Vec<&'a str> {
    listed
        .lines()
        .map(str::trim)
        .filter(|image| !image.is_empty() && !current.contains(image))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_images_are_those_not_built_now() {
        let listed = "rktnetes-operator:aaaa\nrktnetes-operator:bbbb\n\nrktnetes-operator:cccc\n";
        assert_eq!(
            older_images(listed, &["rktnetes-operator:bbbb", "rktnetes-node:x"]),
            ["rktnetes-operator:aaaa", "rktnetes-operator:cccc"]
        );
        assert!(older_images("", &["a:b"]).is_empty());
    }

    #[test]
    fn the_reference_is_the_scripts_last_line() {
        assert_eq!(
            image_reference("rktnetes-node:v1.37.2-0a1b\n", "s").expect("a reference"),
            "rktnetes-node:v1.37.2-0a1b"
        );
        assert_eq!(
            image_reference("building...\nrktnetes-operator:abc\n\n", "s").expect("a reference"),
            "rktnetes-operator:abc"
        );
        assert!(image_reference("", "s").is_err());
        assert!(image_reference("no reference here\n", "s").is_err());
    }
}
