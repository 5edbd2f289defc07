//! Room on the disk for a new kind cluster. Each node copies the node image's `/var` (containerd's store with every
//! image the cluster runs) into a volume of its own, so five nodes need several gigabytes beyond the images; a disk
//! that fills half-way leaves Docker's "no space left on device" deep in kind's output. Before creating the cluster
//! the lane takes back what an earlier run that died left on the engine (volumes no container uses, untagged
//! layers) and, if there is still too little room, stops with the free and the needed space named.

use anyhow::bail;

use super::{
    Lane,
    lane::{output, run_quiet},
    log,
};

/// What creating the cluster and running the suite take on the engine's disk: 5.1 GiB measured on a cold run (five nodes'
/// `/var` volumes, their writable layers, the pods' logs), with a margin.
pub const NEEDED_BYTES: u64 = 6 << 30;

/// Clears what no container uses, then checks that the engine's data root has [`NEEDED_BYTES`] free.
pub fn make_room(lane: &Lane) -> anyhow::Result<()> {
    for (args, what) in [
        (["volume", "prune", "--force"], "docker volume prune"),
        (["image", "prune", "--force"], "docker image prune"),
    ] {
        run_quiet(lane.command("docker").args(args), what)?;
    }
    let root = output(
        lane.command("docker")
            .args(["info", "--format", "{{.DockerRootDir}}"]),
        "docker info",
    )?;
    let root = root.trim();
    let free = available_bytes(&output(
        lane.command("df")
            .args(["--block-size=1", "--output=avail", root]),
        "df",
    )?)?;
    log(format!(
        "{} GiB free for the cluster under {root}",
        free >> 30
    ));
    check_room(free, root)
}

/// The number `df --output=avail` printed under its header.
fn available_bytes(printed: &str) -> anyhow::Result<u64> {
    printed
        .lines()
        .nth(1)
        .and_then(|line| line.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("df printed no available size: {printed:?}"))
}

fn check_room(free: u64, root: &str) -> anyhow::Result<()> {
    if free < NEEDED_BYTES {
        bail!(
            "the kind cluster needs about {} GiB free on the disk of the Docker engine's data root {root}, which has \
             {:.1} GiB: free some space (RKTNETES_CACHE moves this lane's engine and caches to another disk)",
            NEEDED_BYTES >> 30,
            free as f64 / f64::from(1u32 << 30)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_available_size_is_below_dfs_header() {
        assert_eq!(
            available_bytes("    Avail\n123456789\n").expect("a size"),
            123_456_789
        );
        assert!(available_bytes("    Avail\n").is_err());
    }

    #[test]
    fn too_little_room_names_the_directory_and_both_sizes() {
        let error = check_room(1 << 30, "/cache/docker/data")
            .expect_err("1 GiB is too little")
            .to_string();
        assert!(error.contains("/cache/docker/data"), "{error}");
        assert!(error.contains("6 GiB"), "{error}");
        assert!(error.contains("1.0 GiB"), "{error}");
        assert!(check_room(NEEDED_BYTES, "/d").is_ok());
    }
}
