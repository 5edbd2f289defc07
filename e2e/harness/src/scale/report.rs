//! The bench's figures, the goals beside them (issue 12's), and the table it prints.

use std::{fmt::Write, time::Duration};

use anyhow::bail;

use super::{ScaleArgs, WRITES_PER_NODE_GOAL, measure::mib};

/// What the agent DaemonSet did while every node released.
#[derive(Clone, Debug, Default)]
pub struct Release {
    pub took: Duration,
    pub daemonset_bytes_before: Option<usize>,
    pub daemonset_bytes_most: Option<usize>,
    pub generation_before: Option<i64>,
    /// The generations seen while nodes released.
    pub daemonset_generations: Vec<i64>,
}

/// Everything measured at one size. Memory in KiB; writes as (controller, agents).
#[derive(Clone, Debug, Default)]
pub struct Figures {
    pub nodes: usize,
    pub node_bytes: usize,
    pub max_unavailable: &'static str,
    pub ready_nodes_only: Duration,
    pub ready_with_states: Duration,
    pub rss_nodes_only: u64,
    pub rss_steady: u64,
    pub rss_steady_after_rest: u64,
    pub relist_peak: u64,
    pub rss_after_relist: u64,
    pub rss_fresh_with_states: u64,
    pub rss_after_release: u64,
    pub rss_fresh_after_release: u64,
    pub first_rollout: Duration,
    pub first_writes: (u64, u64),
    pub change_rollout: Duration,
    pub rollout_minimum: Option<Duration>,
    pub change_writes: (u64, u64),
    pub change_breakdown: (String, String),
    pub rest_writes: (u64, u64),
    pub rest_breakdown: (String, String),
    /// The controller's leader Lease renewals at rest.
    pub rest_lease_renewals: u64,
    pub rest_cpu: f64,
    pub agents_watching: Option<Duration>,
    pub agent_watchers: Option<u64>,
    pub agents_rss: Option<u64>,
    pub apiserver_extra: Option<u64>,
    pub release: Option<Release>,
    /// States deleted by the controller and by the garbage collector while nodes released.
    pub release_deletes: (u64, u64),
    pub heartbeat_failures: u64,
}

impl Figures {
    fn per_node(&self, writes: u64) -> f64 {
        writes as f64 / self.nodes.max(1) as f64
    }

    /// Controller and agent writes per node, as `c + a`.
    fn both_per_node(&self, (controller, agents): (u64, u64)) -> String {
        format!(
            "{:.2} + {:.2}",
            self.per_node(controller),
            self.per_node(agents)
        )
    }

    fn change_per_node(&self) -> f64 {
        self.per_node(self.change_writes.0 + self.change_writes.1)
    }
}

/// The lines printed as each size finishes: the figures, and what the writes were.
pub fn size_summary(figures: &Figures) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "== {} nodes ({} bytes each as served)",
        figures.nodes, figures.node_bytes
    );
    let _ = writeln!(text, "change, controller: {}", figures.change_breakdown.0);
    let _ = writeln!(text, "change, agents: {}", figures.change_breakdown.1);
    let _ = writeln!(text, "at rest, controller: {}", figures.rest_breakdown.0);
    let _ = writeln!(text, "at rest, agents: {}", figures.rest_breakdown.1);
    if let Some(release) = &figures.release {
        let _ = writeln!(
            text,
            "release: {release:?}; state deletes by the controller {}, by the garbage collector {}",
            figures.release_deletes.0, figures.release_deletes.1
        );
    }
    let _ = write!(text, "heartbeat failures: {}", figures.heartbeat_failures);
    text
}

/// The table: one row per figure, one column per size, the goal last.
pub fn table(all: &[Figures], args: &ScaleArgs) -> String {
    let mut rows: Vec<(String, Vec<String>, &str)> = Vec::new();
    let mut row = |name: &str, goal: &'static str, value: &dyn Fn(&Figures) -> String| {
        rows.push((name.to_owned(), all.iter().map(value).collect(), goal));
    };
    let ms = |duration: Duration| format!("{:.2} s", duration.as_secs_f64());
    let mem = |kib: u64| format!("{:.1} MiB", mib(kib));
    row("Node object as served (JSON)", "about 15 KB", &|f| {
        format!("{:.1} KB", f.node_bytes as f64 / 1000.0)
    });
    row("ready after start, Nodes only", "≤ 1 s", &|f| {
        ms(f.ready_nodes_only)
    });
    row("ready after start, Nodes and states", "≤ 1 s", &|f| {
        ms(f.ready_with_states)
    });
    row("controller RSS, Nodes only", "", &|f| mem(f.rss_nodes_only));
    row(
        "controller RSS, steady (Nodes and states)",
        "≤ 48 MiB (5,000); ≤ 150 MiB (20,000)",
        &|f| mem(f.rss_steady_after_rest),
    );
    row(
        "controller RSS, peak during a relist",
        "≤ 96 MiB (5,000)",
        &|f| mem(f.relist_peak),
    );
    row("controller RSS, 30 s after the relist", "", &|f| {
        mem(f.rss_after_relist)
    });
    row("controller RSS, fresh process, same objects", "", &|f| {
        mem(f.rss_fresh_with_states)
    });
    row(
        "controller RSS after every node released",
        "within 20% of a fresh one",
        &|f| mem(f.rss_after_release),
    );
    row(
        "controller RSS, fresh process, Nodes only again",
        "",
        &|f| mem(f.rss_fresh_after_release),
    );
    row("rollout of the configs, maxUnavailable", "", &|f| {
        f.max_unavailable.to_owned()
    });
    row("first rollout (every node)", "", &|f| ms(f.first_rollout));
    row(
        "rollout of a change (every node)",
        "≤ 1.1 × minimum",
        &|f| ms(f.change_rollout),
    );
    row("minimum (10 waves × apply delay)", "", &|f| {
        f.rollout_minimum.map_or("—".to_owned(), ms)
    });
    row(
        "writes per node, first rollout (controller + agents; no Lease renewals)",
        "",
        &|f| f.both_per_node(f.first_writes),
    );
    row(
        "writes per node, one change (controller + agents; no Lease renewals)",
        "≤ 2.5 together",
        &|f| f.both_per_node(f.change_writes),
    );
    row(
        &format!(
            "writes at rest over {} s (controller but its Lease, agents)",
            args.rest_seconds
        ),
        "0",
        &|f| format!("{}, {}", f.rest_writes.0, f.rest_writes.1),
    );
    row(
        &format!("leader Lease renewals at rest over {} s", args.rest_seconds),
        "",
        &|f| f.rest_lease_renewals.to_string(),
    );
    row(
        &format!("controller CPU over the rest, {} s", args.rest_seconds),
        "",
        &|f| format!("{:.1} s", f.rest_cpu),
    );
    row("simulated agents: all watching after", "", &|f| {
        f.agents_watching.map_or("—".to_owned(), ms)
    });
    row(
        "RktNodeState watches on the API server (agents and controller)",
        "",
        &|f| f.agent_watchers.map_or("—".to_owned(), |w| w.to_string()),
    );
    row("simulated agents: RSS per agent", "", &|f| {
        f.agents_rss.map_or("—".to_owned(), |kib| {
            format!("{:.1} KiB", kib as f64 / f.nodes as f64)
        })
    });
    row(
        "kube-apiserver RSS added by the agents' watches",
        "",
        &|f| f.apiserver_extra.map_or("—".to_owned(), mem),
    );
    row(
        "agent DaemonSet size, before → most while releasing",
        "unchanged",
        &|f| {
            f.release.as_ref().map_or("—".to_owned(), |r| {
                format!(
                    "{} → {} B",
                    r.daemonset_bytes_before.unwrap_or(0),
                    r.daemonset_bytes_most.unwrap_or(0)
                )
            })
        },
    );
    row(
        "agent DaemonSet new generations while releasing",
        "≤ 1",
        &|f| {
            f.release
                .as_ref()
                .map_or("—".to_owned(), |r| new_generations(r).to_string())
        },
    );
    row("release of every node", "", &|f| {
        f.release.as_ref().map_or("—".to_owned(), |r| ms(r.took))
    });
    row(
        "state deletes while releasing (controller, garbage collector)",
        "one deleter",
        &|f| format!("{}, {}", f.release_deletes.0, f.release_deletes.1),
    );
    let mut text = String::new();
    let sizes: Vec<String> = all.iter().map(|f| format!("{} nodes", f.nodes)).collect();
    let _ = writeln!(text, "| figure | {} | goal |", sizes.join(" | "));
    let _ = writeln!(text, "|---|{}---|", "---:|".repeat(all.len()));
    for (name, values, goal) in rows {
        let _ = writeln!(text, "| {name} | {} | {goal} |", values.join(" | "));
    }
    text
}

/// New DaemonSet generations seen while nodes released (the agents roll once per new generation).
fn new_generations(release: &Release) -> usize {
    release
        .daemonset_generations
        .iter()
        .filter(|generation| Some(**generation) != release.generation_before)
        .count()
}

/// CI's gate: no operator write at rest, and at most [`WRITES_PER_NODE_GOAL`] writes per node for one change.
pub fn gate(all: &[Figures]) -> anyhow::Result<()> {
    for figures in all {
        if figures.rest_writes != (0, 0) {
            bail!(
                "{} nodes: the operator wrote at rest: controller {}, agents {}",
                figures.nodes,
                figures.rest_breakdown.0,
                figures.rest_breakdown.1
            );
        }
        if figures.change_per_node() > WRITES_PER_NODE_GOAL {
            bail!(
                "{} nodes: {:.2} writes per node for one change (controller {}, agents {}), above the goal of {WRITES_PER_NODE_GOAL}",
                figures.nodes,
                figures.change_per_node(),
                figures.change_writes.0,
                figures.change_writes.1
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_fails_on_any_write_at_rest() {
        let quiet = Figures {
            nodes: 200,
            change_writes: (220, 200),
            agents_rss: Some(1),
            ..Figures::default()
        };
        assert!(gate(std::slice::from_ref(&quiet)).is_ok());
        let busy = Figures {
            rest_writes: (0, 1),
            rest_breakdown: (String::new(), "patch rktnodestates/status: 1".to_owned()),
            ..quiet.clone()
        };
        let error = gate(&[busy]).expect_err("a write at rest").to_string();
        assert!(error.contains("patch rktnodestates/status: 1"), "{error}");
        let costly = Figures {
            change_writes: (220, 400),
            ..quiet
        };
        let error = gate(&[costly]).expect_err("3.1 writes a node").to_string();
        assert!(error.contains("3.10 writes per node"), "{error}");
    }

    #[test]
    fn only_generations_after_the_one_before_the_release_count() {
        let release = Release {
            generation_before: Some(3),
            daemonset_generations: vec![3, 4],
            ..Release::default()
        };
        assert_eq!(new_generations(&release), 1);
    }
}
