//! The rkt API service's systemd unit, as rkt runs it (rkt's `dist/init/systemd/rkt-api.service` and
//! `Documentation/subcommands/api-service.md`): `rkt api-service --listen=<endpoint>`, up before the kubelet,
//! whose rkt runtime talks to it. The agent writes it from its node's `spec.rkt`, unless told not to.

use super::host_file;
use crate::api::{
    HostFile, RktServiceSpec,
    host_paths::{DEFAULT_RKT_BINARY, api_service_unit_path},
};

/// The unit file of `rkt`'s API service.
pub fn render(rkt: &RktServiceSpec) -> HostFile {
    let binary = rkt.rkt_path().unwrap_or(DEFAULT_RKT_BINARY);
    let content = format!(
        "# The rkt API service, written by the rktnetes agent from this node's RktNodeState (spec.rkt); the agent\n\
         # puts back any edit. To run it your own way, set the RktNodeConfig's spec.rkt.apiServiceUnitPolicy to\n\
         # Leave and write this file yourself.\n\
         [Unit]\n\
         Description=rkt API service\n\
         Documentation=https://github.com/rkt/rkt/blob/v1.30.0/Documentation/subcommands/api-service.md\n\
         After=network.target\n\
         Before=kubelet.service\n\
         # A service that cannot come up ends `failed` rather than restarting forever (5 starts within 20 s).\n\
         StartLimitIntervalSec=20\n\
         StartLimitBurst=5\n\
         \n\
         [Service]\n\
         # The start job fails when the binary cannot be run at all (systemd 240 and later; older ones ignore this\n\
         # line and start it as Type=simple).\n\
         Type=exec\n\
         ExecStart={} api-service --listen={}\n\
         Restart=on-failure\n\
         RestartSec=1\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        exec_argument(binary),
        exec_argument(&rkt.api_endpoint),
    );
    host_file(api_service_unit_path(&rkt.api_service_unit), content)
}

/// One word of `ExecStart=`, taken literally by systemd: `%` (specifiers) and `$` (environment variables) doubled,
/// and the word quoted when it holds a character that would split or unquote it. The CRD already keeps paths and
/// endpoints to such characters; this holds for any string.
fn exec_argument(word: &str) -> String {
    let escaped = word.replace('%', "%%").replace('$', "$$");
    if escaped
        .chars()
        .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | ';'))
    {
        format!(
            "\"{}\"",
            escaped
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        )
    } else {
        escaped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::UnitPolicy;

    fn rkt(path: Option<&str>) -> RktServiceSpec {
        RktServiceSpec {
            version: "1.30.0".into(),
            api_endpoint: "localhost:15441".into(),
            api_service_unit: "rkt-api.service".into(),
            api_service_unit_policy: UnitPolicy::Create,
            path: path.map(str::to_owned),
            install: None,
        }
    }

    #[test]
    fn the_unit_runs_the_api_service_on_the_endpoint_before_the_kubelet() {
        let file = render(&rkt(None));
        assert_eq!(file.path, "/etc/systemd/system/rkt-api.service");
        assert_eq!(file.mode, 0o644);
        assert!(
            file.content
                .contains("\nExecStart=/usr/bin/rkt api-service --listen=localhost:15441\n"),
            "{}",
            file.content
        );
        assert!(file.content.contains("\nBefore=kubelet.service\n"));
        assert!(file.content.contains("\nWantedBy=multi-user.target\n"));
        let installed = render(&rkt(Some("/opt/rkt/v1.30.0/rkt")));
        assert!(
            installed
                .content
                .contains("\nExecStart=/opt/rkt/v1.30.0/rkt api-service")
        );
    }

    #[test]
    fn exec_arguments_are_taken_literally() {
        assert_eq!(exec_argument("/opt/rkt/rkt"), "/opt/rkt/rkt");
        assert_eq!(exec_argument("/opt/rkt/100%/rkt"), "/opt/rkt/100%%/rkt");
        assert_eq!(exec_argument("/opt/$HOME/rkt"), "/opt/$$HOME/rkt");
        assert_eq!(exec_argument("/opt/a b/rkt"), "\"/opt/a b/rkt\"");
        assert_eq!(exec_argument("/opt/\"q\\/rkt"), "\"/opt/\\\"q\\\\/rkt\"");
    }
}
