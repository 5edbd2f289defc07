//! The machines' network: one IPv4 /24 behind the host bridge. The host takes `.1` (the machines reach it, and the
//! API server, there); machine `i` is `.(10+i)`, so up to 200 machines fit below the broadcast address.

use std::{fmt, net::Ipv4Addr, str::FromStr};

use anyhow::{Context, bail};

/// The most machines one network holds (`.11` to `.210`).
pub const MAX_MACHINES: u32 = 200;

/// A `a.b.c.0/24` network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeNetwork {
    base: Ipv4Addr,
}

impl NodeNetwork {
    /// The host's address on the bridge.
    pub fn host(self) -> Ipv4Addr {
        self.at(1)
    }

    /// Machine `index`'s address.
    pub fn machine(self, index: u32) -> anyhow::Result<Ipv4Addr> {
        if !(1..=MAX_MACHINES).contains(&index) {
            bail!("there is no machine {index} (machines are numbered 1 to {MAX_MACHINES})");
        }
        // In range: 10 + index <= 210.
        Ok(self.at(u8::try_from(10 + index).context("a machine's host number")?))
    }

    fn at(self, host: u8) -> Ipv4Addr {
        let [a, b, c, _] = self.base.octets();
        Ipv4Addr::new(a, b, c, host)
    }
}

impl FromStr for NodeNetwork {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        let wrong = || format!("RKTNETES_NODE_NETWORK must be a /24 like 10.213.0.0/24: {text:?}");
        let (address, prefix) = text.split_once('/').with_context(wrong)?;
        let base: Ipv4Addr = address.parse().with_context(wrong)?;
        if prefix != "24" || base.octets()[3] != 0 {
            bail!(wrong());
        }
        Ok(Self { base })
    }
}

impl fmt::Display for NodeNetwork {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}/24", self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_of_the_host_and_the_machines() {
        let network: NodeNetwork = "10.213.0.0/24".parse().expect("a /24");
        assert_eq!(network.host().to_string(), "10.213.0.1");
        assert_eq!(
            network.machine(1).expect("node 1").to_string(),
            "10.213.0.11"
        );
        assert_eq!(
            network.machine(200).expect("node 200").to_string(),
            "10.213.0.210"
        );
        assert!(network.machine(0).is_err());
        assert!(network.machine(201).is_err());
        assert_eq!(network.to_string(), "10.213.0.0/24");
    }

    #[test]
    fn only_a_slash_24_is_a_node_network() {
        for wrong in [
            "10.213.0.0",
            "10.213.0.0/16",
            "10.213.0.5/24",
            "10.213.0/24",
            "x/24",
            "",
        ] {
            let error = wrong.parse::<NodeNetwork>().expect_err(wrong);
            assert!(
                error.to_string().contains("RKTNETES_NODE_NETWORK"),
                "{error}"
            );
        }
    }
}
