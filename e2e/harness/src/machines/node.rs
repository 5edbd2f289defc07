//! Test machines' names: `rktnetes-node-I`, numbered from 1. A name's index gives its address, and orders listings
//! the way people count (node 10 after node 9).

/// What every machine's name starts with; the rest is its index.
pub const NODE_PREFIX: &str = "rktnetes-node-";

/// The name of machine `index`.
pub fn node_name(index: u32) -> String {
    format!("{NODE_PREFIX}{index}")
}

/// The index in a machine's name, when it is one (`rktnetes-node-3` is 3; `rktnetes-node-x` is none).
pub fn node_index(name: &str) -> Option<u32> {
    let digits = name.strip_prefix(NODE_PREFIX)?;
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A machine named by people: its name, or its index alone (`exec 2 -- ...`).
pub fn resolve(name_or_index: &str) -> String {
    if !name_or_index.is_empty() && name_or_index.bytes().all(|byte| byte.is_ascii_digit()) {
        format!("{NODE_PREFIX}{name_or_index}")
    } else {
        name_or_index.to_owned()
    }
}

/// The machine names among directory entries, in index order; anything else is left out.
pub fn machine_names<'a>(entries: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut indexed: Vec<(u32, String)> = entries
        .into_iter()
        .filter_map(|entry| Some((node_index(entry)?, entry.to_owned())))
        .collect();
    indexed.sort();
    indexed.into_iter().map(|(_, name)| name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_indices_round_trip() {
        assert_eq!(node_name(3), "rktnetes-node-3");
        assert_eq!(node_index("rktnetes-node-3"), Some(3));
        assert_eq!(node_index("rktnetes-node-"), None);
        assert_eq!(node_index("rktnetes-node-+3"), None);
        assert_eq!(node_index("rktnetes-node-3.pid"), None);
        assert_eq!(node_index("other-3"), None);
    }

    #[test]
    fn an_index_alone_names_its_machine() {
        assert_eq!(resolve("2"), "rktnetes-node-2");
        assert_eq!(resolve("rktnetes-node-2"), "rktnetes-node-2");
        assert_eq!(resolve("worker"), "worker");
    }

    #[test]
    fn listings_are_in_index_order_and_only_machines() {
        let entries = [
            "rktnetes-node-10",
            "rktnetes-node-9",
            ".rktnetes-nodes",
            "rktnetes-node-1.log",
            "rktnetes-node-1",
        ];
        assert_eq!(
            machine_names(entries),
            ["rktnetes-node-1", "rktnetes-node-9", "rktnetes-node-10"]
        );
    }
}
