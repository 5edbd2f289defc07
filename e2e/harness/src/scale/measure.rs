//! What the bench reads off processes and the API server: resident memory now and at its peak (the kernel's
//! high-water mark, which can be reset), CPU time, and the API server's own metrics.

use std::fs;

use anyhow::Context;
use kube::Client;

use crate::processes::Pid;

/// A process's resident memory, in KiB: now and the most since its start or the last [`reset_peak`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    pub rss_kib: u64,
    pub peak_kib: u64,
}

impl Memory {
    pub fn of(pid: Pid) -> anyhow::Result<Self> {
        let status = fs::read_to_string(format!("/proc/{}/status", pid.0))
            .with_context(|| format!("reading the status of process {}", pid.0))?;
        Ok(Self {
            rss_kib: status_field(&status, "VmRSS:").context("no VmRSS")?,
            peak_kib: status_field(&status, "VmHWM:").context("no VmHWM")?,
        })
    }
}

/// Makes the peak start again from the current resident memory.
pub fn reset_peak(pid: Pid) -> anyhow::Result<()> {
    fs::write(format!("/proc/{}/clear_refs", pid.0), "5")
        .with_context(|| format!("resetting the memory peak of process {}", pid.0))
}

/// The CPU time a process has used (user and system), in seconds.
pub fn cpu_seconds(pid: Pid) -> anyhow::Result<f64> {
    let stat = fs::read_to_string(format!("/proc/{}/stat", pid.0))
        .with_context(|| format!("reading the stat of process {}", pid.0))?;
    // After the command name in parentheses: state is field 3; utime and stime are fields 14 and 15.
    let (_, rest) = stat.rsplit_once(')').context("no command name")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |index: usize| -> anyhow::Result<f64> {
        Ok(fields.get(index).context("a short stat")?.parse::<f64>()?)
    };
    // SAFETY: sysconf reads a constant of the system.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok((ticks(11)? + ticks(12)?) / per_second)
}

fn status_field(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(name))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The sum of every sample of metric `name` whose labels contain each of `labels` (`key="value"`), from the API
/// server's `/metrics`.
pub async fn apiserver_metric(client: &Client, name: &str, labels: &[&str]) -> anyhow::Result<f64> {
    let request = http::Request::get("/metrics")
        .body(Vec::new())
        .context("a metrics request")?;
    let text = client
        .request_text(request)
        .await
        .context("reading kube-apiserver's /metrics")?;
    Ok(sum_samples(&text, name, labels))
}

fn sum_samples(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, series_labels) = match series.split_once('{') {
                Some((metric, rest)) => (metric, rest),
                None => (series, ""),
            };
            (metric == name && labels.iter().all(|label| series_labels.contains(label)))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// KiB as MiB, for the table.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_and_cpu_time() {
        let me = Pid(i32::try_from(std::process::id()).expect("a pid"));
        let memory = Memory::of(me).expect("read");
        assert!(memory.rss_kib > 0 && memory.peak_kib >= memory.rss_kib);
        assert!(cpu_seconds(me).expect("read") >= 0.0);
    }

    #[test]
    fn samples_are_summed_by_name_and_labels() {
        let text = "# HELP x\n\
            apiserver_registered_watchers{group=\"rktnetes.io\",kind=\"RktNodeState\",version=\"v1alpha1\"} 5000\n\
            apiserver_registered_watchers{group=\"\",kind=\"Node\",version=\"v1\"} 3\n\
            apiserver_registered_watchers_total 1\n";
        assert_eq!(
            sum_samples(text, "apiserver_registered_watchers", &[]),
            5003.0
        );
        assert_eq!(
            sum_samples(
                text,
                "apiserver_registered_watchers",
                &["kind=\"RktNodeState\""]
            ),
            5000.0
        );
    }
}
